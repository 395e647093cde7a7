//! `neg`: every experiment and tool of neg-rs as a subcommand (`neg --help`).
fn main() -> std::process::ExitCode {
    neg_rs::cli::main()
}
