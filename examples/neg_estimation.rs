//! NeurGrad, CG, IG and LPI against ground-truth NEG (the NEG paper's Table 2).
//!
//! Same as `neg estimate` (see `neg estimate --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example neg_estimation -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("estimate")
}
