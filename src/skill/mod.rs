//! Skill-neuron probing on MCEval8K with a [`ModelAdapter`]: prompt selection, NeurGrad
//! features for every option, the six methods of the paper's Table 3, and result files.
//!
//! The flow (one task):
//! 1. [`load_task`] reads the published splits (directory or hub) and, for
//!    [`SplitMode::LeakFree`], re-splits them with `mceval::resplit`.
//! 2. [`select_prompts`] renders one or more *contexts* (template set x shots) of the same
//!    records and draws a seeded subset of train/valid/test whose prompts fit the model.
//! 3. [`compute_features`] runs `neg_core::methods::neurgrad` with one target per option
//!    (`adapter.target_token(prompt, answer)`; NeurGrad = dP/da x sign(a)) and keeps, per
//!    prompt, the compact probe features (`neg_probe::ProbeDataBuilder`), the activations and
//!    option probabilities, and optionally the full f32 scores.
//! 4. [`evaluate_methods`] trains and evaluates Rand, LM-Prob, Polar-, Magn-, Tree- and
//!    Act-Probe with the neuron count chosen on valid.
//!
//! Modules: [`data`] (steps 1-2), [`features`] (3; [`cache`] keeps each batch's NeurGrad so
//! an interrupted run resumes), [`evaluate`] (4), [`files`] (feature
//! files), [`study`] (what the four studies share), [`shard`] (`--shard i/n` and `neg merge`). The `skill-probe` command
//! ([`crate::commands::skill_probe`]) runs the whole flow for several tasks and writes its
//! files as a unit.
//!
//! ```
//! use neg_rs::skill::{format_table, MethodRow, TaskResult};
//! // The table layout only: tasks as rows, methods as columns.
//! let row = TaskResult::example_row("agnews", &[("rand", 0.25), ("polar", 0.5)]);
//! let table = format_table(&[row]);
//! assert!(table.contains("agnews") && table.contains("0.500"));
//! # let _ = MethodRow::default();
//! ```
pub mod cache;
pub mod data;
pub mod evaluate;
pub mod features;
pub mod files;
pub mod shard;
pub mod study;

pub use cache::{files_digest, BatchFeatures, CachedItem, FeatureCache};
pub use data::*;
pub use evaluate::*;
pub use features::*;
pub use files::*;
pub use shard::{Shard, ShardSummary};
pub use study::*;
