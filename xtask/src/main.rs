//! Project runner: `cargo xtask <command>`.
//!
//! Why xtask rather than a Makefile: a fresh machine is promised nothing but the Rust toolchain
//! and python3, and `make` is not always there; an xtask needs only cargo. It never links
//! libtorch itself, so it builds before libtorch exists and can install it.
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <command> [args]

commands:
  setup                 create/refresh the libtorch virtual environment (idempotent)
  test                  setup, then fmt --check, clippy -D warnings, and the whole test suite
  skill-probe [ARGS]    setup, then run the main job (`neg skill-probe`) with ARGS
  neg [ARGS]            setup, then run the `neg` command line in release mode (`neg --help`)
  example NAME [ARGS]   setup, then run any example in release mode
  results [ARGS]        setup, then regenerate docs/RESULTS.md's tables (scripts/results.sh:
                        --quick for a CI-scale run, --out DIR, --only STEP,...; resumable)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(&root),
        Some("test") => setup(&root).and_then(|_| test(&root)),
        Some("skill-probe") => setup(&root).and_then(|_| {
            let mut full = vec!["skill-probe".to_string()];
            full.extend(strip_separator(&args[1..]).iter().cloned());
            run_cargo(&root, &["run", "--release", "--bin", "neg", "--"], &full)
        }),
        Some("neg") => setup(&root).and_then(|_| {
            run_cargo(
                &root,
                &["run", "--release", "--bin", "neg", "--"],
                strip_separator(&args[1..]),
            )
        }),
        Some("results") => setup(&root).and_then(|_| {
            let script = root.join("scripts/results.sh");
            let mut full = vec![script.to_str().ok_or("non-UTF-8 project path")?];
            full.extend(args[1..].iter().map(String::as_str));
            run(&root, "bash", &full)
        }),
        Some("example") => match args.get(1) {
            Some(name) => setup(&root).and_then(|_| run_example(&root, name, &args[2..])),
            None => Err(format!("`example` needs an example name\n\n{USAGE}")),
        },
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Variables `cargo run` sets for the xtask binary itself (package metadata, its manifest,
/// the binary's name). Passed on to an inner cargo they describe the wrong package and change
/// what build scripts and `env!` see, so alternating `cargo xtask` with plain `cargo` rebuilt
/// crates; the inner commands get the environment a shell would give them.
fn is_cargo_run_variable(name: &str) -> bool {
    name == "CARGO"
        || name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "CARGO_TARGET_TMPDIR"
        )
}

/// Runs a command in the project root, failing with the command line on a non-zero exit.
fn run(root: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_cargo_run_variable) {
            command.env_remove(&name);
        }
    }
    let status = command
        .args(args)
        .current_dir(root)
        .status()
        .map_err(|e| format!("could not start `{program}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn setup(root: &Path) -> Result<(), String> {
    let script = root.join("scripts/setup-libtorch.sh");
    run(
        root,
        "bash",
        &[script.to_str().ok_or("non-UTF-8 project path")?],
    )
}

/// The cargo to run: the one that started the xtask (`$CARGO`), else `cargo` on the PATH.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn test(root: &Path) -> Result<(), String> {
    let cargo = cargo();
    run(root, &cargo, &["fmt", "--all", "--check"])?;
    run(
        root,
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // Release: the suite runs real models and forests; the examples' main job shares the build.
    run(
        root,
        &cargo,
        &["test", "--workspace", "--release", "--no-fail-fast"],
    )
}

/// `args` without a leading `--`: `cargo xtask skill-probe -- --help` and `cargo xtask
/// skill-probe --help` mean the same.
fn strip_separator(args: &[String]) -> &[String] {
    match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    }
}

/// Runs cargo with `cargo_args` followed by `args`.
fn run_cargo(root: &Path, cargo_args: &[&str], args: &[String]) -> Result<(), String> {
    let mut full: Vec<&str> = cargo_args.to_vec();
    full.extend(args.iter().map(String::as_str));
    run(root, &cargo(), &full)
}

fn run_example(root: &Path, name: &str, args: &[String]) -> Result<(), String> {
    run_cargo(
        root,
        &["run", "--release", "--example", name, "--"],
        strip_separator(args),
    )
}
