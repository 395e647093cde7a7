//! The `neg` command line and the experiments behind it. The science lives in the library
//! crates under `crates/`; this crate turns it into runs that read prompts and data, call the
//! libraries and write result files. Each experiment is one module of [`commands`] with its
//! `Args` (clap), a `run(&Args) -> Result<Report>` that tests call in process, and a `main`
//! that prints; the `neg` binary ([`cli`]) and the thin `examples/` dispatch to them.
//!
//! Shared plumbing, one module per concern:
//! - [`cli`]: the `neg` parser, its subcommands and the flags every subcommand shares.
//! - [`sources`]: where models and data come from (one resolution of defaults), model loading.
//! - [`output`]: output directories (checked before work, written as a unit under a lock),
//!   atomic files, JSON reports and safetensors files.
//! - [`progress`]: the one progress-bar style.
//! - [`plot`]: small SVG line, bar, grouped-bar and histogram helpers (plotters).
//! - [`factual`]: factual prompt sets (MyriadLAMA-style JSONL or the built-in TinyStories set)
//!   and what the five factual experiments share.
//! - [`skill`]: MCEval8K skill-neuron probing: tasks, prompts, NeurGrad features per option,
//!   the six methods, feature files and the study plumbing.
pub mod cli;
pub mod commands;
pub mod factual;
pub mod output;
pub mod plot;
pub mod progress;
pub mod skill;
pub mod sources;
