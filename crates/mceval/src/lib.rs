//! # mceval
//!
//! MCEval8K (Zhao et al., 2025: 22 multiple-choice tasks in 6 genres, 6000/1000/1000 records
//! each) as a library: a task registry with each task's schema, loading the published files
//! from a directory or the Hugging Face hub (`iszhaoxin/MCEval8K`), zero- and few-shot prompt
//! rendering with single-token answers (including PAWS' published k-shot rule), a leak audit
//! with a leak-free re-split, and construction of tasks from raw sources (UD, CoNLL-2000,
//! CoNLL-2003, JSON/JSONL/CSV).
//!
//! Modules: [`registry`] (the tasks), [`dataset`] (loading, writing, [`Split`]), [`record`]
//! (records and their file formats), [`template`] (a folder: `schema.rs` for the
//! `templates.json` types, `fill.rs` for one record, `demos.rs` for few-shot blocks, and
//! [`TemplateSet`] / [`Shots`] in `mod.rs`), [`pyrng`], [`audit`](mod@audit), [`build`], [`error`];
//! the main types are re-exported here. The `clap` cargo feature derives `clap::ValueEnum` on
//! [`Split`] (`train`, `valid` alias `validation`/`dev`, `test`).
//!
//! ```
//! use mceval::{Dataset, Record, Shots, Split, TaskRegistry, TemplateSet};
//! use std::path::Path;
//!
//! let task = TaskRegistry::builtin().get("agnews")?;
//! let rec = |text: &str, label: u64| Record::new().with("text", text).with("label", label);
//! let train: Vec<Record> = (0..8).map(|i| rec(&format!("story {i}"), i % 4)).collect();
//! let test = vec![rec("Stocks rally as rates fall", 2)];
//! let data = Dataset::from_splits(task, Path::new("mem"), Some(train), None, Some(test))?;
//!
//! let items = TemplateSet::builtin().render(task, &data, Split::Test, Shots::Zero, None)?;
//! assert_eq!(items[0].answer(), "c");
//! assert!(items[0].prompt.contains("Stocks rally"));
//! let few = TemplateSet::builtin().render(task, &data, Split::Test, Shots::Few { seed: 1 }, None)?;
//! assert!(few[0].prompt.len() > items[0].prompt.len());
//! // The first 3 records of the twice-shuffled train, each with its own answer.
//! let k3 = Shots::FirstK { k: 3, seed: 1 };
//! let k3 = TemplateSet::builtin().render(task, &data, Split::Test, k3, None)?;
//! assert_eq!(k3[0].prompt.matches("\n\n").count(), 4);
//! // An unknown task name lists the valid ones.
//! assert!(TaskRegistry::builtin().get("nope").unwrap_err().to_string().contains("agnews"));
//! # Ok::<(), mceval::Error>(())
//! ```
pub mod audit;
pub mod build;
pub mod dataset;
pub mod error;
pub mod pyrng;
pub mod record;
pub mod registry;
pub mod template;

pub use audit::{audit, audit_dataset, resplit, resplit_with, TaskAudit};
pub use dataset::{DataSource, Dataset, HubSource, Split, HUB_REPO};
pub use error::{Error, Result};
pub use record::{
    read_csv_records, read_json_records, read_jsonl_records, write_atomic, write_published_json,
    Record,
};
pub use registry::{Genre, TaskRegistry, TaskSpec, LANGUAGES};
pub use template::{
    check_single_token, RenderedItem, Shots, TaskTemplate, TemplateSet, FIRST_K_RESHUFFLE_SEED,
};
