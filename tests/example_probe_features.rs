//! `neg probe-features` end to end on synthetic safetensors files: parsed by the `neg`
//! command line and run in process, and once as the compiled example.
use std::path::Path;

use clap::Parser;
use neg_probe::synthetic::{Planted, PlantedConfig};
use neg_rs::cli::{Cli, Command};
use neg_rs::commands::probe_features;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

mod common;
use common::example_binary;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `tensors` (name, dtype, shape, bytes) as a safetensors file.
fn write(path: &Path, tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn task() -> Planted {
    Planted::generate(&PlantedConfig {
        n_prompts: 800,
        n_options: 4,
        n_neurons: 120,
        n_skill: 10,
        ..Default::default()
    })
    .unwrap()
}

fn common_tensors(t: &Planted) -> Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> {
    let p = t.labels.len();
    vec![
        (
            "labels",
            Dtype::I64,
            vec![p],
            t.labels.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        ("split", Dtype::U8, vec![p], t.split.clone()),
        (
            "activations",
            Dtype::F32,
            vec![p, 120],
            f32_bytes(t.activations.as_slice().unwrap()),
        ),
        (
            "probs",
            Dtype::F32,
            vec![p, 4],
            f32_bytes(t.probs.as_slice().unwrap()),
        ),
    ]
}

fn run(args: &[&str]) -> anyhow::Result<probe_features::Report> {
    let cli = Cli::try_parse_from(
        ["neg", "probe-features"]
            .into_iter()
            .chain(args.iter().copied()),
    )?;
    let Command::ProbeFeatures(args) = cli.command else {
        unreachable!("parsed as neg probe-features")
    };
    probe_features::run(&args)
}

#[test]
fn every_probe_runs_on_scores_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let t = task();
    let features = dir.path().join("f.safetensors");
    let mut tensors = common_tensors(&t);
    tensors.push((
        "scores",
        Dtype::F32,
        vec![800, 4, 120],
        f32_bytes(t.scores.as_slice().unwrap()),
    ));
    write(&features, tensors);
    let f = features.to_str().unwrap();
    let bound = t.attainable_accuracy(&t.data.split_view(neg_probe::Split::Test));
    for probe in ["polar", "magn", "tree", "act", "lmprob"] {
        let out = dir.path().join(format!("{probe}.json"));
        let r = run(&[
            "--features",
            f,
            "--probe",
            probe,
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("probe.json")).unwrap())
                .unwrap();
        assert_eq!(json["test_accuracy"].as_f64().unwrap(), r.test_accuracy);
        assert_eq!(json["n_neurons"], 120);
        assert!(json["evaluation"]["fit_seconds"].as_f64().unwrap() >= 0.0);
        if probe != "lmprob" {
            assert!(
                r.test_accuracy >= bound - 0.1,
                "{probe}: {} vs attainable {bound}",
                r.test_accuracy
            );
        }
        if matches!(probe, "polar" | "magn" | "act") {
            assert!(!json["evaluation"]["curve"].as_array().unwrap().is_empty());
            assert!(json["selected_neurons"].as_u64().is_some());
        }
    }
    let out = dir.path().join("tree8.json");
    let r = run(&[
        "--features",
        f,
        "--probe",
        "tree",
        "--out",
        out.to_str().unwrap(),
        "--trees",
        "8",
        "--depth",
        "3",
        "--neurons",
        "16",
    ])
    .unwrap();
    let tree = r.tree.unwrap();
    assert_eq!((tree.n_trees, tree.max_depth), (8, Some(3)));
    assert!(tree.n_used_neurons.unwrap() <= 16);
    let r = run(&[
        "--features",
        f,
        "--probe",
        "magn",
        "--out",
        out.to_str().unwrap(),
        "--neurons",
        "4",
    ])
    .unwrap();
    assert_eq!(r.selected_neurons, Some(4));
}

#[test]
fn option_index_input_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let t = task();
    let features = dir.path().join("oi.safetensors");
    let mut tensors = common_tensors(&t);
    tensors.push((
        "option_index",
        Dtype::U8,
        vec![800, 120],
        t.option_index().iter().copied().collect(),
    ));
    write(&features, tensors);
    let f = features.to_str().unwrap();
    let out = dir.path().join("r.json");
    let o = out.to_str().unwrap();
    let r = run(&["--features", f, "--probe", "tree", "--out", o]).unwrap();
    assert_eq!(
        (r.feature_tensor.as_str(), r.n_options),
        ("option_index", 4)
    );
    // Polar needs the scores.
    let err = format!(
        "{:#}",
        run(&["--features", f, "--probe", "polar", "--out", o]).unwrap_err()
    );
    assert!(err.contains("scores"), "{err}");
    // k larger than the neuron count.
    let err = format!(
        "{:#}",
        run(&[
            "--features",
            f,
            "--probe",
            "act",
            "--out",
            o,
            "--neurons",
            "121"
        ])
        .unwrap_err()
    );
    assert!(err.contains("121") && err.contains("120"), "{err}");
    // Unknown probe, misplaced option.
    assert!(format!(
        "{:#}",
        run(&["--features", f, "--probe", "svm", "--out", o]).unwrap_err()
    )
    .contains("svm"));
    assert!(run(&[
        "--features",
        f,
        "--probe",
        "magn",
        "--out",
        o,
        "--trees",
        "3"
    ])
    .is_err());
    // Mismatched shapes: labels for 799 prompts.
    let bad = dir.path().join("bad.safetensors");
    let mut tensors = common_tensors(&t);
    tensors[0] = (
        "labels",
        Dtype::I64,
        vec![799],
        t.labels[..799]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
    );
    tensors.push((
        "option_index",
        Dtype::U8,
        vec![800, 120],
        t.option_index().iter().copied().collect(),
    ));
    write(&bad, tensors);
    let err = format!(
        "{:#}",
        run(&[
            "--features",
            bad.to_str().unwrap(),
            "--probe",
            "tree",
            "--out",
            o
        ])
        .unwrap_err()
    );
    assert!(
        err.contains("labels") && err.contains("bad.safetensors"),
        "{err}"
    );
    // NaN in the scores.
    let mut scores = t.scores.clone();
    scores[[5, 1, 7]] = f32::NAN;
    let mut tensors = common_tensors(&t);
    tensors.push((
        "scores",
        Dtype::F32,
        vec![800, 4, 120],
        f32_bytes(scores.as_slice().unwrap()),
    ));
    write(&bad, tensors);
    let err = format!(
        "{:#}",
        run(&[
            "--features",
            bad.to_str().unwrap(),
            "--probe",
            "magn",
            "--out",
            o
        ])
        .unwrap_err()
    );
    assert!(err.contains("NaN") && err.contains("prompt 5"), "{err}");
    // Missing file, missing tensor.
    assert!(format!(
        "{:#}",
        run(&[
            "--features",
            "/nonexistent.safetensors",
            "--probe",
            "magn",
            "--out",
            o
        ])
        .unwrap_err()
    )
    .contains("/nonexistent.safetensors"));
    write(&bad, vec![("split", Dtype::U8, vec![2], vec![0, 2])]);
    let err = format!(
        "{:#}",
        run(&[
            "--features",
            bad.to_str().unwrap(),
            "--probe",
            "magn",
            "--out",
            o
        ])
        .unwrap_err()
    );
    assert!(err.contains("labels"), "{err}");
}

#[test]
fn the_binary_exits_non_zero_with_one_error_line() {
    let exe = example_binary("probe_features");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "--features",
            "/nonexistent.safetensors",
            "--probe",
            "magn",
            "--out",
        ])
        .arg(dir.path().join("r.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("/nonexistent.safetensors"),
        "{stderr}"
    );
}
