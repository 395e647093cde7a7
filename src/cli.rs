//! Command-line plumbing shared by the examples.
use std::process::ExitCode;

/// Runs an example's body: on error prints one line `error: ...` (the whole context chain;
/// newlines inside messages, e.g. from multi-line prompts, are escaped as `\n` so the error
/// stays on one line) and exits with status 1.
pub fn run_main(body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', "\\n"));
            ExitCode::FAILURE
        }
    }
}
