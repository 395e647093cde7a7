//! NeuronLens: range masking vs neuron masking of class-salient units.
//!
//! Same as `neg lens` (see `neg lens --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example neuronlens -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("lens")
}
