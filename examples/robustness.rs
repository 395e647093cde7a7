//! Robustness of skill neurons across prompt contexts (the NEG paper's §6.2).
//!
//! Same as `neg robustness` (see `neg robustness --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example robustness -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("robustness")
}
