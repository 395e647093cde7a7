//! The `neg` binary as a user meets it: every subcommand listed, the shared flags present with
//! one meaning, defaults found from any working directory, and `--out` never destroying files
//! that no run wrote. Needs `../shared/models/stories260k` (fails, not skips, without it).
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{read_json, shared};

const SUBCOMMANDS: [&str; 16] = [
    "skill-probe",
    "training-size",
    "robustness",
    "substitutability",
    "tree-shape",
    "linearity",
    "estimate",
    "attribution",
    "distribution",
    "multi-neuron",
    "neurgrad",
    "intervene",
    "lens",
    "aux-metrics",
    "probe-features",
    "mceval",
];

fn neg(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_neg"))
        .args(args)
        .current_dir(cwd)
        // The defaults under test, not the caller's.
        .env_remove("NEG_MODEL")
        .env_remove("NEG_SHARED")
        .output()
        .expect("run neg")
}

#[test]
fn help_lists_every_subcommand_and_each_has_the_shared_flags() {
    let here = std::env::temp_dir();
    let o = neg(&["--help"], &here);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for sub in SUBCOMMANDS {
        assert!(help.contains(sub), "`neg --help` lacks {sub}:\n{help}");
        let o = neg(&[sub, "--help"], &here);
        assert!(o.status.success(), "neg {sub} --help");
        let text = String::from_utf8_lossy(&o.stdout);
        if sub != "mceval" {
            for flag in ["--out <OUT>", "--quiet"] {
                assert!(
                    text.contains(flag),
                    "neg {sub} --help lacks {flag}:\n{text}"
                );
            }
        }
        if !["mceval", "probe-features"].contains(&sub) {
            for flag in ["--model <MODEL>", "--device <DEVICE>", "--dtype <DTYPE>"] {
                assert!(
                    text.contains(flag),
                    "neg {sub} --help lacks {flag}:\n{text}"
                );
            }
        }
        assert!(
            !text.contains("--no-progress"),
            "neg {sub}: one progress flag"
        );
    }
    let o = neg(&["--version"], &here);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("neg {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn defaults_are_found_from_any_working_directory() {
    shared("models/stories260k/config.json");
    let cwd = tempfile::tempdir().unwrap();
    // No --model, no --prompts: stories260k and its built-in facts, found from the binary's
    // workspace although `../shared` does not exist from this directory.
    assert!(!cwd.path().join("../shared").exists());
    let o = neg(
        &[
            "distribution",
            "--max-prompts",
            "2",
            "--bins",
            "5",
            "--quiet",
        ],
        cwd.path(),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let out = cwd.path().join("out/distribution");
    let j = read_json(&out.join("results.json"));
    assert!(
        j["info"]["model"].as_str().unwrap().contains("stories260k"),
        "{j}"
    );
    assert_eq!(j["info"]["prompts"]["used"], 2);
    assert!(out.join(neg_rs::output::RUN_MARKER).is_file());
    // A second run replaces the first as a unit.
    let o = neg(
        &[
            "distribution",
            "--max-prompts",
            "3",
            "--bins",
            "5",
            "--quiet",
        ],
        cwd.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        read_json(&out.join("results.json"))["info"]["prompts"]["used"],
        3
    );
}

#[test]
fn a_missing_model_path_or_a_foreign_out_is_one_error_line() {
    let cwd = tempfile::tempdir().unwrap();
    let o = neg(
        &["linearity", "--model", "./no-such-model", "--quiet"],
        cwd.path(),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("./no-such-model does not exist"),
        "{stderr}"
    );

    // --out naming a folder of the user's own files: refused before any work, files intact.
    let mine = cwd.path().join("my-files");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("thesis.tex"), b"keep me").unwrap();
    let o = neg(
        &[
            "distribution",
            "--max-prompts",
            "2",
            "--quiet",
            "--out",
            mine.to_str().unwrap(),
        ],
        cwd.path(),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no neg run wrote"), "{stderr}");
    assert_eq!(std::fs::read(mine.join("thesis.tex")).unwrap(), b"keep me");
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);
}
