//! Predicted vs actual output shifts of many neurons at once (Figs. 5, 14).
//!
//! Same as `neg multi-neuron` (see `neg multi-neuron --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example multi_neuron -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("multi-neuron")
}
