//! Substitutability of skill neurons down the ranking (the NEG paper's §6.3, Fig. 8).
//!
//! Same as `neg substitutability` (see `neg substitutability --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example substitutability -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("substitutability")
}
