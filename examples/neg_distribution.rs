//! How NEG magnitudes are distributed over neurons and layers (Figs. 4, 11, 12).
//!
//! Same as `neg distribution` (see `neg distribution --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example neg_distribution -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("distribution")
}
