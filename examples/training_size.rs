//! Skill-probe accuracy vs training-set size (the NEG paper's Fig. 7).
//!
//! Same as `neg training-size` (see `neg training-size --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example training_size -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("training-size")
}
