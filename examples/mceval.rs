//! MCEval8K: audit, re-split, build and render tasks.
//!
//! Same as `neg mceval` (see `neg mceval --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example mceval -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("mceval")
}
