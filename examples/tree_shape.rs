//! Tree-Probe accuracy over forest shapes (the NEG paper's §6.4, Fig. 9).
//!
//! Same as `neg tree-shape` (see `neg tree-shape --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example tree_shape -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("tree-shape")
}
