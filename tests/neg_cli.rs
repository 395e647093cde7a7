//! The `neg` binary as a user meets it: every subcommand listed, the shared flags present with
//! one meaning, defaults found from any working directory, and `--out` never destroying files
//! that no run wrote. Needs `../shared/models/stories260k` (fails, not skips, without it).
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{read_json, shared, tree_bytes};

const SUBCOMMANDS: [&str; 17] = [
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
    "merge",
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

/// `neg args` in `cwd`, which must succeed (else the failure names the command and its stderr).
fn neg_ok(args: &[&str], cwd: &Path) -> Output {
    let o = neg(args, cwd);
    assert!(
        o.status.success(),
        "neg {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    o
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
        if !["mceval", "merge"].contains(&sub) {
            for flag in ["--out <OUT>", "--quiet"] {
                assert!(
                    text.contains(flag),
                    "neg {sub} --help lacks {flag}:\n{text}"
                );
            }
        }
        // The commands whose work can be split over machines: the skill probes' NeurGrad
        // batches, the NEG experiments' prompt blocks.
        let sharded = SUBCOMMANDS[..10].contains(&sub);
        assert_eq!(
            text.contains("--shard <SHARD>"),
            sharded,
            "neg {sub} --help and --shard:\n{text}"
        );
        if !["mceval", "probe-features", "merge"].contains(&sub) {
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

/// The names of the files that differ between two trees (all of both must be present).
fn differing(a: &[(String, Vec<u8>)], b: &[(String, Vec<u8>)]) -> Vec<String> {
    let names = |t: &[(String, Vec<u8>)]| t.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b));
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, _)| x.0.clone())
        .collect()
}

/// The five NEG experiments with `--shard i/n` (blocks of 16 prompts: their sweeps, NeurGrad,
/// the other estimators, the top-neuron sweeps, top-K enhancements and shifted neuron sets)
/// as separate processes, merged, write exactly the unsharded run's files (results.json and
/// table2.csv differ only in their wall-clock fields); an interrupted run resumes from the
/// blocks its cache holds, with the same files.
#[test]
fn sharded_factual_runs_merge_into_the_unsharded_outputs_and_a_cut_run_resumes() {
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path();
    let model = shared("models/stories260k").display().to_string();
    let common = ["--model", &model, "--max-prompts", "20", "--quiet"];
    for (command, extra, items) in [
        (
            "linearity",
            &["--neurons", "6", "--top-neurons", "3", "--ranges", "1,2"][..],
            8,
        ),
        (
            "estimate",
            &["--neurons", "6", "--methods", "neurgrad,ig,lpi"][..],
            8,
        ),
        (
            "attribution",
            &[
                "--methods",
                "neurgrad,lpi",
                "--ks",
                "1,4",
                "--max-shift",
                "0.5",
            ][..],
            8,
        ),
        ("distribution", &["--bins", "10"][..], 2),
        (
            "multi-neuron",
            &["--ranges", "0.5", "--step", "0.1", "--max-log2", "3"][..],
            4,
        ),
    ] {
        let run = |more: &[&str]| {
            let args: Vec<&str> = [&[command][..], &common, extra, more].concat();
            neg_ok(&args, cwd)
        };
        // The files without their wall-clock fields (seconds are the computations' own, so
        // they differ between runs), every other byte as written.
        let files = |dir: &str| {
            let mut t = tree_bytes(&cwd.join(dir));
            for (name, bytes) in &mut t {
                if name == "results.json" {
                    let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
                    strip_seconds(&mut v);
                    *bytes = serde_json::to_vec(&v).unwrap();
                } else if name == "table2.csv" {
                    let text = String::from_utf8(bytes.clone()).unwrap();
                    let rows: Vec<String> = text
                        .lines()
                        .map(|l| l.rsplit_once(',').map_or(l, |(kept, _)| kept).to_string())
                        .collect();
                    *bytes = rows.join("\n").into_bytes();
                }
            }
            t
        };
        run(&["--out", "whole"]);
        let reference = files("whole");
        assert!(
            !cwd.join("whole.resume").exists(),
            "the cache outlived the run"
        );
        let half = items / 2;
        for (i, out) in [(2, "s2"), (1, "s1")] {
            let o = run(&["--shard", &format!("{i}/2"), "--out", out]);
            let printed = String::from_utf8_lossy(&o.stdout).into_owned();
            let expected = format!("shard {i}/2: {half} of {items} batches");
            assert!(printed.contains(&expected), "{command}: {printed}");
        }
        let o = neg(&["merge", "--out", "merged", "s1", "s2"], cwd);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            differing(&reference, &files("merged")),
            Vec::<String>::new(),
            "{command}"
        );

        // A run cut after shard 1's blocks: its cache holds them, the rerun computes the rest.
        let cut = cwd.join("resumed.resume");
        std::fs::create_dir_all(&cut).unwrap();
        for e in std::fs::read_dir(cwd.join("s1/entries")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), cut.join(e.file_name())).unwrap();
        }
        let o = run(&["--out", "resumed"]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let note = format!("{half} of {items} blocks' items resumed");
        assert!(stderr.contains(&note), "{command}: {stderr}");
        assert_eq!(
            differing(&reference, &files("resumed")),
            Vec::<String>::new(),
            "{command}"
        );
        assert!(!cut.exists(), "the cache outlived the resumed run");
        for dir in ["whole", "merged", "resumed", "s1", "s2"] {
            std::fs::remove_dir_all(cwd.join(dir)).unwrap();
        }
    }
}

/// `v` without its wall-clock values (`runtime_s`, `seconds_per_prompt`,
/// `sweep_seconds_per_prompt`), at any depth.
fn strip_seconds(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| k != "runtime_s" && !k.ends_with("seconds_per_prompt"));
            map.values_mut().for_each(strip_seconds);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_seconds),
        _ => {}
    }
}

/// `--shard i/n` runs as separate processes (in any order), merged by `neg merge`, write
/// exactly the files of the unsharded run (only the wall-clock timings.json differs), for
/// skill-probe and for a study; shards that do not belong together are refused by name,
/// before any work.
#[test]
fn sharded_runs_merge_into_exactly_the_unsharded_outputs() {
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path();
    let model = shared("models/stories260k").display().to_string();
    let data = shared("data/mceval8k").display().to_string();
    let common = [
        "--model",
        &model,
        "--data",
        &data,
        "--train-size",
        "24",
        "--valid-size",
        "8",
        "--test-size",
        "8",
        "--batch",
        "4",
        "--quiet",
    ];
    for (command, extra) in [
        (
            "skill-probe",
            &["--tasks", "myriadlama,clang8", "--trees", "10"][..],
        ),
        ("tree-shape", &["--task", "clang8", "--max-sum", "4"][..]),
    ] {
        let run = |more: &[&str]| {
            let args: Vec<&str> = [&[command][..], &common, extra, more].concat();
            String::from_utf8_lossy(&neg_ok(&args, cwd).stdout).into_owned()
        };
        run(&["--out", "whole"]);
        let reference = tree_bytes(&cwd.join("whole"));
        std::fs::remove_dir_all(cwd.join("whole")).unwrap();
        let printed = run(&["--shard", "3/3", "--out", "s3"]);
        assert!(printed.contains("shard 3/3: "), "{printed}");
        run(&["--shard", "1/3", "--out", "s1"]);
        run(&["--shard=2/3", "--out", "s2"]);
        let held: usize = ["s1", "s2", "s3"]
            .iter()
            .map(|s| {
                read_json(&cwd.join(s).join("shard.json"))["entries"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum();
        let total = read_json(&cwd.join("s1/shard.json"))["batches_total"]
            .as_u64()
            .unwrap();
        assert_eq!(held as u64, total);
        assert!(total >= 3, "{total} batches");

        // Not all shards, or one twice: refused, nothing written.
        let o = neg(&["merge", "--out", "whole", "s1", "s3"], cwd);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("shards 2/3 are missing"), "{stderr}");
        let o = neg(&["merge", "--out", "whole", "s1", "s2", "s3", "s1"], cwd);
        assert!(String::from_utf8_lossy(&o.stderr).contains("shard 1/3 is given twice"));
        assert!(!cwd.join("whole").exists());

        let o = neg(&["merge", "--out", "whole", "s2", "s3", "s1"], cwd);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let merged = tree_bytes(&cwd.join("whole"));
        assert_eq!(
            differing(&reference, &merged),
            vec!["timings.json"],
            "{command}"
        );
        assert!(
            !cwd.join("whole.resume").exists(),
            "the pooled cache outlived the merge"
        );
        // The shards are left as they were: a second merge elsewhere gives the same files.
        let o = neg(&["merge", "--out", "again", "s1", "s2", "s3"], cwd);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // The merge computes nothing: a damaged entry is an error, not a recomputation.
        let entry = read_json(&cwd.join("s1/shard.json"))["entries"][0]
            .as_str()
            .unwrap()
            .to_string();
        std::fs::write(cwd.join("s1/entries").join(&entry), b"damaged").unwrap();
        let o = neg(&["merge", "--out", "third", "s1", "s2", "s3"], cwd);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("is in none of the shards"), "{stderr}");
        assert!(!cwd.join("third").exists());
        std::fs::remove_dir_all(cwd.join("third.resume")).unwrap();
        for dir in ["whole", "again", "s1", "s2", "s3"] {
            std::fs::remove_dir_all(cwd.join(dir)).unwrap();
        }
    }

    // Shards of different runs: refused, naming the field.
    let shard = |tasks: &str, s: &str, out: &str| {
        let args: Vec<&str> = [
            &["skill-probe"][..],
            &common,
            &[
                "--tasks", tasks, "--trees", "10", "--shard", s, "--out", out,
            ],
        ]
        .concat();
        assert!(neg(&args, cwd).status.success());
    };
    shard("clang8", "1/2", "a");
    shard("myriadlama", "2/2", "b");
    let o = neg(&["merge", "--out", "whole", "a", "b"], cwd);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("shards of different runs: field args"),
        "{stderr}"
    );
    // A command without shards is refused at parse time.
    let o = neg(&["neurgrad", "--shard", "1/2", "--quiet"], cwd);
    assert_eq!(o.status.code(), Some(2));
}
