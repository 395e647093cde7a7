//! Linearity of FF neurons under activation shifts (the NEG paper's Fig. 2, Tables 1 and 5).
//!
//! Same as `neg linearity` (see `neg linearity --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example linearity -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("linearity")
}
