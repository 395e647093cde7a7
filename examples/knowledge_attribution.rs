//! Output shifts when enhancing each method's top-K neurons (the NEG paper's Fig. 3).
//!
//! Same as `neg attribution` (see `neg attribution --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example knowledge_attribution -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("attribution")
}
