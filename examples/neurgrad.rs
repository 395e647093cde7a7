//! NeurGrad / CG / IG / LPI scores of every FF neuron for a prompt file, as safetensors.
//!
//! Same as `neg neurgrad` (see `neg neurgrad --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example neurgrad -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("neurgrad")
}
