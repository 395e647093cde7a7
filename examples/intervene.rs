//! Ground-truth NEG of chosen FF neurons by activation-shift sweeps, as safetensors.
//!
//! Same as `neg intervene` (see `neg intervene --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example intervene -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("intervene")
}
