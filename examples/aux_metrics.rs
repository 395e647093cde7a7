//! Skill neurons from auxiliary metrics (labels, confidence, generations).
//!
//! Same as `neg aux-metrics` (see `neg aux-metrics --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example aux_metrics -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("aux-metrics")
}
