//! The skill-probe examples (skill_probe, training_size, robustness, substitutability,
//! tree_shape) on tiny configurations of the real stories260k model and MCEval8K: their `run`
//! functions are called in-process and their output files checked for shape and content
//! (some values recomputed independently from the written features); the compiled example
//! binaries under `target/release/examples/` are run for a tiny job and for the bad-argument
//! behaviour (non-zero exit, one `error:` line, no files).
//!
//! Needs `../shared/models/stories260k` and `../shared/data/mceval8k`; fails, not skips, when
//! they are missing.
use neg_rs::cli::{Cli, Command as Neg};
use neg_rs::commands::{robustness, skill_probe, substitutability, training_size, tree_shape};

use std::path::Path;
use std::process::Command;

use clap::Parser;
use neg_probe::neuron_counts;
use neg_rs::skill::METHODS;
use safetensors::SafeTensors;

mod common;
use common::{example_binary, f32s, files_under, read_json, shared, tree_bytes, workspace};

/// `argv` (`[command, flags...]`, the command spelled as an example's name) parsed by the `neg`
/// command line.
fn parse(argv: Vec<&str>) -> Neg {
    let sub = argv[0].replace('_', "-");
    let full = ["neg", sub.as_str()]
        .into_iter()
        .chain(argv[1..].iter().copied());
    Cli::try_parse_from(full).unwrap().command
}

/// The arguments of subcommand `$variant` parsed from `$argv`.
macro_rules! args {
    ($variant:ident, $argv:expr) => {
        match parse($argv) {
            Neg::$variant(a) => a,
            other => unreachable!("{other:?}"),
        }
    };
}

fn model() -> String {
    shared("models/stories260k").display().to_string()
}

fn data() -> String {
    shared("data/mceval8k").display().to_string()
}

fn check_svg(path: &Path, must_contain: &[&str]) {
    let svg = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(svg.starts_with("<svg"), "{} is not an SVG", path.display());
    for s in must_contain {
        assert!(svg.contains(s), "{} lacks `{s}`", path.display());
    }
}

/// Files under `dir`, recursively (empty when it does not exist).
fn skill_args(extra: &[&str], out: &Path) -> skill_probe::Args {
    let (m, d) = (model(), data());
    let mut argv = vec![
        "skill_probe",
        "--model",
        &m,
        "--data",
        &d,
        "--quiet",
        "--trees",
        "20",
    ];
    argv.extend_from_slice(extra);
    let out = out.display().to_string();
    argv.extend_from_slice(&["--out", &out]);
    args!(SkillProbe, argv)
}

fn study_argv<'a>(name: &'a str, m: &'a str, d: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        name,
        "--model",
        m,
        "--data",
        d,
        "--task",
        "myriadlama",
        "--train-size",
        "16",
        "--valid-size",
        "8",
        "--test-size",
        "8",
        "--quiet",
        "--out",
        out,
    ]
}

#[test]
fn skill_probe_tiny_run_writes_table_features_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sp");
    let args = skill_args(
        &[
            "--tasks",
            "myriadlama,clang8",
            "--train-size",
            "24",
            "--valid-size",
            "12",
            "--test-size",
            "12",
        ],
        &out,
    );
    let report = skill_probe::run(&args).unwrap();
    assert_eq!(report.n_layers * report.ff_width, 5 * 172);

    let json = read_json(&out.join("results.json"));
    let tasks = json["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    for (t, (name, k)) in tasks.iter().zip([("myriadlama", 4usize), ("clang8", 2)]) {
        assert_eq!(t["task"], name);
        assert_eq!(
            (
                t["n_train"].as_u64(),
                t["n_valid"].as_u64(),
                t["n_test"].as_u64()
            ),
            (Some(24), Some(12), Some(12))
        );
        let methods: Vec<&str> = t["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["method"].as_str().unwrap())
            .collect();
        assert_eq!(methods, METHODS.map(|m| m.name()));
        for m in t["methods"].as_array().unwrap() {
            let acc = m["test_accuracy"].as_f64().unwrap();
            // 12 test prompts: accuracy is a multiple of 1/12.
            assert!((0.0..=1.0).contains(&acc) && ((acc * 12.0).round() - acc * 12.0).abs() < 1e-9);
            let curve = m["evaluation"]["curve"].as_array().unwrap();
            if ["polar", "magn", "act"].contains(&m["method"].as_str().unwrap()) {
                let ks: Vec<usize> = curve
                    .iter()
                    .map(|c| c["k"].as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(ks, neuron_counts(860));
                let chosen = m["selected_neurons"].as_u64().unwrap() as usize;
                let best_valid = curve
                    .iter()
                    .map(|c| c["valid_accuracy"].as_f64().unwrap())
                    .fold(0.0, f64::max);
                assert!(ks.contains(&chosen));
                assert_eq!(
                    m["valid_accuracy"].as_f64().unwrap(),
                    best_valid,
                    "k chosen on valid"
                );
            } else {
                assert!(curve.is_empty() && m["selected_neurons"].is_null());
            }
        }

        // Selected neurons and bootstrap intervals.
        for m in t["methods"].as_array().unwrap() {
            let acc = m["test_accuracy"].as_f64().unwrap();
            let ci = m["test_ci95"].as_array().unwrap();
            let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
            assert!(lo <= acc && acc <= hi, "{lo} <= {acc} <= {hi}");
            let neurons = m["neurons"].as_array().unwrap();
            let name = m["method"].as_str().unwrap();
            if ["polar", "magn", "act"].contains(&name) {
                assert_eq!(
                    neurons.len() as u64,
                    m["selected_neurons"].as_u64().unwrap().min(256)
                );
            }
            for n in neurons {
                assert!(n["layer"].as_u64().unwrap() < 5 && n["neuron"].as_u64().unwrap() < 172);
                let pol = n["polarity"].as_i64();
                assert_eq!(pol.is_some(), ["polar", "magn"].contains(&name), "{n}");
            }
            if ["rand", "lmprob"].contains(&name) {
                assert!(neurons.is_empty());
            }
        }

        // Every row joins back to its record in the published files.
        let rows =
            std::fs::read_to_string(out.join(format!("features/{name}.rows.jsonl"))).unwrap();
        let rows: Vec<serde_json::Value> = rows
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 48);
        let genre = if name == "clang8" {
            "linguistic"
        } else {
            "fact"
        };
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r["row"].as_u64(), Some(i as u64));
            let file = shared(&format!(
                "data/mceval8k/{genre}/{name}/{}.json",
                r["record_split"].as_str().unwrap()
            ));
            let records = read_json(&file);
            let rec = &records[r["record_index"].as_u64().unwrap() as usize];
            let field = if name == "clang8" {
                "sentence1"
            } else {
                "text"
            };
            // myriadlama's text holds a `[Y]` slot the template fills in.
            let text = rec[field]
                .as_str()
                .unwrap()
                .split("[Y]")
                .next()
                .unwrap()
                .trim();
            assert!(
                r["prompt"].as_str().unwrap().contains(text),
                "row {i}: {text:?}"
            );
            let gold = r["label"].as_u64().unwrap() as usize;
            if name == "myriadlama" {
                assert_eq!(rec["label"].as_u64(), Some(gold as u64), "row {i}");
            }
            assert_eq!(r["target_ids"].as_array().unwrap().len(), k);
        }

        // The features file: shapes, and LM-Prob's accuracy recomputed from its probs.
        let bytes = std::fs::read(out.join(t["features_file"].as_str().unwrap())).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta["dtype"], "f32");
        assert_eq!(meta["seed"], "0");
        assert_eq!(meta["splits"], "leakfree");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (shape, scores) = f32s(&st, "scores");
        assert_eq!(shape, vec![48, k, 860]);
        let oi = st.tensor("option_index").unwrap();
        assert_eq!(oi.shape(), &[48, 860]);
        // option_index is the argmax over options of the scores (first on ties).
        for p in [0usize, 17, 47] {
            for n in [0usize, 171, 859] {
                let col: Vec<f32> = (0..k).map(|o| scores[(p * k + o) * 860 + n]).collect();
                let mut best = 0;
                for o in 1..k {
                    if col[o] > col[best] {
                        best = o;
                    }
                }
                assert_eq!(oi.data()[p * 860 + n] as usize, best);
            }
        }
        assert!(scores.iter().any(|&v| v != 0.0), "NeurGrad is not all zero");
        let (pshape, probs) = f32s(&st, "probs");
        assert_eq!(pshape, vec![48, k]);
        let labels: Vec<i64> = st
            .tensor("labels")
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let split = st.tensor("split").unwrap().data().to_vec();
        assert_eq!(split.iter().filter(|&&s| s == 0).count(), 24);
        assert_eq!(split.iter().filter(|&&s| s == 2).count(), 12);
        assert!(labels.iter().all(|&y| (0..k as i64).contains(&y)));
        let mut correct = 0;
        for p in (0..48).filter(|&p| split[p] == 2) {
            let row = &probs[p * k..(p + 1) * k];
            assert!(row.iter().all(|&x| (0.0..=1.0).contains(&x)));
            let arg = (0..k).fold(0, |b, o| if row[o] > row[b] { o } else { b });
            correct += (arg as i64 == labels[p]) as usize;
        }
        let lmprob = t["methods"][1]["test_accuracy"].as_f64().unwrap();
        assert!((lmprob - correct as f64 / 12.0).abs() < 1e-9);

        // Polar and Magn refitted from the file's f32 scores give the reported numbers.
        let scores = ndarray::Array3::from_shape_vec((48, k, 860), scores).unwrap();
        let reloaded =
            neg_probe::ProbeData::from_scores(scores.view(), &labels, &split, None, None).unwrap();
        for (i, mut probe) in [
            (
                2,
                Box::new(neg_probe::PolarProbe::new(None)) as Box<dyn neg_probe::Probe>,
            ),
            (3, Box::new(neg_probe::MagnProbe::new(None))),
        ] {
            let e = neg_probe::evaluate(probe.as_mut(), &reloaded, None).unwrap();
            let m = &t["methods"][i];
            assert_eq!(
                e.test_accuracy,
                m["test_accuracy"].as_f64().unwrap(),
                "{}",
                e.probe
            );
            assert_eq!(
                e.selected_neurons.map(|k| k as u64),
                m["selected_neurons"].as_u64()
            );
        }
    }
    check_svg(
        &out.join("accuracy_vs_neurons.svg"),
        &["myriadlama", "clang8", "Polar", "Magn"],
    );
}

#[test]
fn skill_probe_bad_inputs_fail_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--tasks", "nope"], "nope"),
        (
            vec!["--tasks", "myriadlama", "--batch", "0"],
            "--batch must be at least 1",
        ),
        // fever's answers `False` / `True` are several tokens for stories260k.
        (
            vec![
                "--tasks",
                "fever",
                "--train-size",
                "4",
                "--valid-size",
                "2",
                "--test-size",
                "2",
            ],
            "single token",
        ),
        // mnli's few-shot prompts are all longer than stories260k's 512 tokens.
        (
            vec!["--tasks", "mnli", "--shots", "few"],
            "fits the model's context",
        ),
    ];
    for (i, (extra, needle)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("o{i}"));
        let err = skill_probe::run(&skill_args(&extra, &out)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(needle), "{msg}");
        assert!(!out.exists(), "{} was created", out.display());
    }
    // Missing data directory.
    let out = dir.path().join("o-missing");
    let mut args = skill_args(&["--tasks", "myriadlama"], &out);
    args.skill.data = Some(dir.path().join("no-such-dir").display().to_string());
    let msg = format!("{:#}", skill_probe::run(&args).unwrap_err());
    assert!(msg.contains("no-such-dir"), "{msg}");
    // Unwritable --out: its parent is a file.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let msg = format!(
        "{:#}",
        skill_probe::run(&skill_args(
            &["--tasks", "myriadlama"],
            &blocker.join("out")
        ))
        .unwrap_err()
    );
    assert!(msg.contains("--out"), "{msg}");
}

#[test]
fn studies_write_json_and_svg_of_the_expected_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (m, d) = (model(), data());

    let out = dir.path().join("ts").display().to_string();
    let mut argv = study_argv("training_size", &m, &d, &out);
    argv.extend([
        "--sizes",
        "4,8,16",
        "--probes",
        "polar,tree",
        "--trees",
        "10",
    ]);
    let r = training_size::run(&args!(TrainingSize, argv)).unwrap();
    let json = read_json(&Path::new(&out).join("training_size.json"));
    // Wall-clock values live in timings.json only; the resume cache is gone after the write.
    assert!(json.get("feature_seconds").is_none());
    let timings = read_json(&Path::new(&out).join("timings.json"));
    assert!(timings["feature_seconds"].as_f64().unwrap() >= 0.0);
    assert!(!neg_rs::skill::FeatureCache::beside(Path::new(&out)).exists());
    let curves = json["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 2);
    for c in curves {
        let n: Vec<u64> = c["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["evaluation"]["n_train"].as_u64().unwrap())
            .collect();
        assert_eq!(n, vec![4, 8, 16]);
    }
    assert_eq!(training_size::table(&r).lines().count(), 4);
    check_svg(
        &Path::new(&out).join("training_size.svg"),
        &["Polar", "Tree"],
    );

    let out = dir.path().join("rob").display().to_string();
    let mut argv = study_argv("robustness", &m, &d, &out);
    argv.extend(["--contexts", "published,upper-letters", "--neurons", "8"]);
    let r = robustness::run(&args!(Robustness, argv)).unwrap();
    assert_eq!(r.answers[1], vec!["A", "B", "C", "D"]);
    assert_eq!(r.answers[0], vec!["a", "b", "c", "d"]);
    let json = read_json(&Path::new(&out).join("robustness.json"));
    let cells = json["matrix"]["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    let chance = json["matrix"]["chance"].as_f64().unwrap();
    assert_eq!(chance, 0.25);
    for c in cells {
        let (xy, yy) = (
            c["accuracy_source_on_target"].as_f64().unwrap(),
            c["accuracy_target_on_target"].as_f64().unwrap(),
        );
        let den = (yy - chance).max(0.0);
        match c["ratio"].as_f64() {
            Some(v) => assert!((v - (xy - chance).max(0.0) / den).abs() < 1e-12),
            None => assert_eq!(den, 0.0),
        }
        if c["source"] == c["target"] {
            assert_eq!(xy, yy);
        }
    }
    assert_eq!(json["matrix"]["neuron_counts"], serde_json::json!([8, 8]));
    check_svg(&Path::new(&out).join("robustness.svg"), &["upper-letters"]);

    let out = dir.path().join("sub").display().to_string();
    let mut argv = study_argv("substitutability", &m, &d, &out);
    argv.extend(["--window", "64"]);
    substitutability::run(&args!(Substitutability, argv)).unwrap();
    let json = read_json(&Path::new(&out).join("substitutability.json"));
    let probes = json["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 2);
    for p in probes {
        let starts: Vec<u64> = p["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["start_rank"].as_u64().unwrap())
            .collect();
        // 860 neurons / 64 = 13 full windows.
        assert_eq!(starts, (0..13).map(|i| i * 64).collect::<Vec<u64>>());
    }
    check_svg(&Path::new(&out).join("substitutability.svg"), &["chance"]);

    let out = dir.path().join("shape").display().to_string();
    let mut argv = study_argv("tree_shape", &m, &d, &out);
    argv.extend(["--max-sum", "4"]);
    tree_shape::run(&args!(TreeShape, argv)).unwrap();
    let json = read_json(&Path::new(&out).join("tree_shape.json"));
    let shapes: Vec<(u64, u64)> = json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["log2_trees"].as_u64().unwrap(),
                p["log2_depth"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shapes, vec![(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (2, 1)]);
    check_svg(&Path::new(&out).join("tree_shape.svg"), &["2^0 trees"]);
}

#[test]
fn study_bad_inputs_fail_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (m, d) = (model(), data());
    let out = dir.path().join("o").display().to_string();
    let mut argv = study_argv("training_size", &m, &d, &out);
    argv.extend(["--sizes", "4,999"]);
    let err = training_size::run(&args!(TrainingSize, argv)).unwrap_err();
    assert!(format!("{err:#}").contains("999"));
    let mut argv = study_argv("robustness", &m, &d, &out);
    argv.extend(["--contexts", "published,nope"]);
    let err = robustness::run(&args!(Robustness, argv)).unwrap_err();
    assert!(format!("{err:#}").contains("nope"));
    let mut argv = study_argv("tree_shape", &m, &d, &out);
    argv[6] = "not-a-task";
    let err = tree_shape::run(&args!(TreeShape, argv)).unwrap_err();
    assert!(format!("{err:#}").contains("not-a-task"));
    assert!(!Path::new(&out).exists());
}

/// The compiled example, when `cargo test` (or `cargo build --release --examples`) built it.
/// Runs a binary expected to fail: non-zero exit, exactly one stderr line starting with
/// `error:`, and nothing under `out`.
fn expect_one_line_failure(bin: &Path, args: &[&str], out: &Path, needle: &str) {
    let o = Command::new(bin)
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{} {args:?} succeeded", bin.display());
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{} {args:?}: {stderr}", bin.display());
    assert!(
        lines[0].starts_with("error:") && lines[0].contains(needle),
        "{stderr}"
    );
    assert!(files_under(out).is_empty(), "{:?}", files_under(out));
}

#[test]
fn compiled_examples_run_and_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (m, d) = (model(), data());
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    {
        let bin = example_binary("skill_probe");
        let out = dir.path().join("sp");
        let o = Command::new(&bin)
            .args([
                "--model",
                &m,
                "--data",
                &d,
                "--tasks",
                "clang8",
                "--train-size",
                "12",
            ])
            .args([
                "--valid-size",
                "6",
                "--test-size",
                "6",
                "--trees",
                "10",
                "--quiet",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains("LM-Prob") && stdout.contains("clang8"),
            "{stdout}"
        );
        let json = read_json(&out.join("results.json"));
        assert_eq!(json["tasks"][0]["n_test"], 6);
        assert!(out.join("features/clang8.safetensors").is_file());
        assert!(out.join("accuracy_vs_neurons.svg").is_file());

        let bad = dir.path().join("bad");
        let bad_s = bad.display().to_string();
        let base = ["--model", &m, "--data", &d, "--out", &bad_s];
        expect_one_line_failure(
            &bin,
            &[&base[..], &["--tasks", "nope"]].concat(),
            &bad,
            "nope",
        );
        expect_one_line_failure(
            &bin,
            &[&base[..], &["--tasks", "fever", "--train-size", "2"]].concat(),
            &bad,
            "fever",
        );
        let missing = dir.path().join("missing-model").display().to_string();
        expect_one_line_failure(
            &bin,
            &["--model", &missing, "--data", &d, "--out", &bad_s],
            &bad,
            "missing-model",
        );
        let unwritable = blocker.join("out").display().to_string();
        expect_one_line_failure(
            &bin,
            &["--model", &m, "--data", &d, "--out", &unwritable],
            &bad,
            "--out",
        );
    }
    for name in [
        "training_size",
        "robustness",
        "substitutability",
        "tree_shape",
    ] {
        {
            let bin = example_binary(name);
            let bad = dir.path().join(format!("bad-{name}"));
            let bad_s = bad.display().to_string();
            expect_one_line_failure(
                &bin,
                &[
                    "--model", &m, "--data", &d, "--task", "nope", "--out", &bad_s,
                ],
                &bad,
                "nope",
            );
        }
    }
}

/// `--out` is written as a unit by one run at a time: a run while another holds it fails at
/// once naming the holder; a failing run leaves the earlier results intact; a rerun on fewer
/// tasks leaves none of the earlier run's files behind; no staging directory remains.
#[test]
fn skill_probe_out_is_exclusive_and_replaced_as_a_unit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sp");
    let sizes = [
        "--train-size",
        "12",
        "--valid-size",
        "6",
        "--test-size",
        "6",
    ];
    let with = |tasks: &str| {
        let mut a = vec!["--tasks", tasks];
        a.extend_from_slice(&sizes);
        skill_args(&a, &out)
    };
    skill_probe::run(&with("myriadlama,clang8")).unwrap();
    let first = std::fs::read(out.join("results.json")).unwrap();
    assert!(out.join("features/clang8.safetensors").is_file());

    // Another run holds --out: this one fails at once and names it.
    {
        let _held = neg_rs::output::RunOutput::begin(&out).unwrap();
        let e = skill_probe::run(&with("myriadlama"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("in use by another run (pid"), "{e}");
    }
    // A run failing after the lock (fever's answers are not single tokens for stories260k)
    // leaves the earlier results as they were.
    assert!(skill_probe::run(&with("fever")).is_err());
    assert_eq!(std::fs::read(out.join("results.json")).unwrap(), first);
    assert!(out.join("features/clang8.safetensors").is_file());

    // A rerun on fewer tasks: only its own files.
    skill_probe::run(&with("myriadlama")).unwrap();
    let features: Vec<String> = std::fs::read_dir(out.join("features"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        features.iter().all(|f| f.starts_with("myriadlama")),
        "{features:?}"
    );
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("staging") || n.contains(".old-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `kill -9` in the middle of a skill-probe run, then a rerun: the rerun takes the batches the
/// killed run finished from `<out>.resume` and writes exactly the bytes of an uninterrupted run
/// (results.json, features, rows, figure); wall-clock times are only in timings.json.
#[test]
fn skill_probe_resumes_after_kill_9_with_byte_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sp");
    let out_s = out.display().to_string();
    let (m, d) = (model(), data());
    // Batches of one prompt: many entries, so that the kill lands part-way.
    let flags = [
        "--model",
        &m,
        "--data",
        &d,
        "--tasks",
        "myriadlama",
        "--train-size",
        "160",
        "--valid-size",
        "40",
        "--test-size",
        "40",
        "--batch",
        "1",
        "--trees",
        "20",
        "--quiet",
        "--out",
        &out_s,
    ];
    let args = args!(
        SkillProbe,
        [&["skill_probe"][..], &flags[..]].concat().to_vec()
    );
    // The uninterrupted run, kept aside as the reference.
    let fresh = skill_probe::run(&args).unwrap();
    assert_eq!(fresh.tasks[0].resumed_batches, 0);
    let reference = tree_bytes(&out);
    let names: Vec<&str> = reference.iter().map(|(n, _)| n.as_str()).collect();
    for f in [
        "results.json",
        "timings.json",
        "accuracy_vs_neurons.svg",
        "features/myriadlama.safetensors",
        "features/myriadlama.rows.jsonl",
    ] {
        assert!(names.contains(&f), "{f} not in {names:?}");
    }
    let results = read_json(&out.join("results.json"));
    assert!(results.get("seconds").is_none());
    assert!(results["tasks"][0].get("feature_seconds").is_none());
    let timings = read_json(&out.join("timings.json"));
    assert!(timings["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(timings["tasks"][0]["resumed_batches"], 0);
    let cache = neg_rs::skill::FeatureCache::beside(&out);
    assert!(!cache.exists(), "the resume cache outlived a committed run");
    std::fs::remove_dir_all(&out).unwrap();

    // The same run as a process, killed once it has stored a few batches.
    let mut child = Command::new(example_binary("skill_probe"))
        .args(flags)
        .current_dir(workspace())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let entries = || {
        std::fs::read_dir(&cache).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
                .count()
        })
    };
    let start = std::time::Instant::now();
    while entries() < 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(start.elapsed().as_secs() < 300, "no batch stored in 300 s");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no clean-up
    child.wait().unwrap();
    let stored = entries();
    assert!(stored >= 3, "{stored}");
    assert!(!out.exists(), "a killed run left results in --out");

    let resumed = skill_probe::run(&args).unwrap();
    let task = &resumed.tasks[0];
    assert!(
        task.resumed_batches >= 3 && task.resumed_batches <= 240,
        "{} batches resumed",
        task.resumed_batches
    );
    let again = tree_bytes(&out);
    let differing: Vec<&str> = reference
        .iter()
        .zip(&again)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.as_str())
        .collect();
    assert_eq!(again.len(), reference.len());
    // Only the wall-clock file differs.
    assert_eq!(differing, vec!["timings.json"], "differing files");
    assert_eq!(
        read_json(&out.join("timings.json"))["tasks"][0]["resumed_batches"],
        task.resumed_batches
    );
    assert!(!cache.exists());
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("staging") || n.contains(".old-") || n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A write failing part-way through the result set (a full disk at the second file) fails the
/// run with a message naming the file, leaves the earlier run's files byte-identical and no
/// temporary or staging file behind, and keeps the computed batches for the rerun. (Each task's
/// files are written to the staging directory as soon as the task is done, so the failure
/// comes before the second task is computed.)
#[test]
fn a_write_failing_mid_set_leaves_the_earlier_run_intact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sp");
    let args = skill_args(
        &[
            "--tasks",
            "myriadlama,clang8",
            "--train-size",
            "12",
            "--valid-size",
            "6",
            "--test-size",
            "6",
        ],
        &out,
    );
    skill_probe::run(&args).unwrap();
    let earlier = tree_bytes(&out);
    // The first task's features file goes through; its rows file, the second file, fails
    // half-written. The pattern names this test's own staging directory.
    let e = {
        let _fault = neg_rs::output::fail_writes_to(&format!(
            "{}.staging-{}/features/myriadlama.rows.jsonl",
            out.display(),
            std::process::id()
        ));
        skill_probe::run(&args).unwrap_err()
    };
    let msg = format!("{e:#}");
    assert!(
        msg.contains("myriadlama.rows.jsonl") && msg.contains("injected write failure"),
        "{msg}"
    );
    assert_eq!(tree_bytes(&out), earlier, "the earlier run's files changed");
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("staging") || n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The computed batches were kept: the rerun resumes the first task's.
    assert!(neg_rs::skill::FeatureCache::beside(&out).is_dir());
    let rerun = skill_probe::run(&args).unwrap();
    assert!(rerun.tasks[0].resumed_batches > 0);
    assert_eq!(rerun.tasks[1].resumed_batches, 0);
    assert_eq!(
        tree_bytes(&out)
            .into_iter()
            .filter(|(n, _)| n != "timings.json")
            .collect::<Vec<_>>(),
        earlier
            .into_iter()
            .filter(|(n, _)| n != "timings.json")
            .collect::<Vec<_>>()
    );
}
