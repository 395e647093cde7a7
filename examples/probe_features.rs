//! Train and evaluate one skill-neuron probe on a features file.
//!
//! Same as `neg probe-features` (see `neg probe-features --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example probe_features -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("probe-features")
}
