//! The `neurgrad` and `intervene` examples end to end on the real stories260k model: output
//! shapes and metadata, agreement with the library, and bad input (one-line error, non-zero
//! exit, no output file).
//!
//! The example binaries are built by `cargo test` (examples are test targets' siblings in
//! `target/<profile>/examples`). Needs `../shared/models/stories260k`; fails when absent.
use std::process::{Command, Output};

use neg_core::neg::{ground_truth_neg, SweepConfig};
use neg_core::{methods, ModelAdapter, NeuronId};
use neg_hooks::{HfModel, LoadOptions, ModelSource};
use safetensors::SafeTensors;

mod common;
use common::{example_binary, f32s, shared};

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(example_binary(name))
        .args(args)
        .output()
        .expect("run the example")
}

const PROMPTS: &str = r#"{"prompt": "Lily and Ben were best", "targets": [" friend", " be"]}
{"prompt": "One day, Lily went to the", "targets": [" p", " st"]}
{"prompt": "Tom had a big red", "targets": [" b", " r"]}
"#;

fn metadata(bytes: &[u8]) -> std::collections::HashMap<String, String> {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata().clone().unwrap_or_default()
}

#[test]
fn neurgrad_and_intervene_write_what_the_library_computes() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let neurons = dir.path().join("n.json");
    std::fs::write(&neurons, "[[0, 5], [2, 100], [4, 171]]").unwrap();
    let model = shared("models/stories260k");
    let m = HfModel::load(&ModelSource::Dir(model.clone()), &LoadOptions::default()).unwrap();
    let specs = neg_core::io::read_prompt_file(&prompts).unwrap();
    let tp = neg_core::io::resolve_targets(&m, &prompts, &specs).unwrap();

    let out = dir.path().join("ng");
    let o = run(
        "neurgrad",
        &[
            "--model",
            model.to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
            "--method",
            "neurgrad",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(out.join("neurgrad.safetensors")).unwrap();
    let meta = metadata(&bytes);
    assert_eq!(meta["method"], "neurgrad");
    assert_eq!(meta["model"], m.model_id());
    assert!(
        meta["shapes"].contains("\"scores\":[3,2,5,172]"),
        "{}",
        meta["shapes"]
    );
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, probs) = f32s(&st, "probs");
    assert_eq!(shape, vec![3, 2]);
    assert_eq!(f32s(&st, "activations").0, vec![3, 5, 172]);
    let (shape, scores) = f32s(&st, "scores");
    assert_eq!(shape, vec![3, 2, 5, 172]);
    let lib = methods::neurgrad(&m, &tp).unwrap();
    assert_eq!(scores, lib.scores.iter().copied().collect::<Vec<_>>());
    assert_eq!(probs, lib.probs.iter().copied().collect::<Vec<_>>());

    let out = dir.path().join("iv");
    let o = run(
        "intervene",
        &[
            "--model",
            model.to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
            "--neuron-file",
            neurons.to_str().unwrap(),
            "--range",
            "0.5",
            "--step",
            "0.1",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(out.join("intervene.safetensors")).unwrap();
    let meta = metadata(&bytes);
    assert_eq!(meta["mode"], "magnitude");
    assert_eq!(meta["range"], "0.5");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, shifts) = f32s(&st, "shifts");
    assert_eq!(shape, vec![11]);
    assert!((shifts[0] + 0.5).abs() < 1e-6 && (shifts[10] - 0.5).abs() < 1e-6);
    assert_eq!(f32s(&st, "delta_probs").0, vec![3, 2, 3, 11]);
    assert_eq!(f32s(&st, "r").0, vec![3, 2, 3]);
    let (shape, neg) = f32s(&st, "neg");
    assert_eq!(shape, vec![3, 2, 3]);
    let ids = [
        NeuronId::new(0, 5),
        NeuronId::new(2, 100),
        NeuronId::new(4, 171),
    ];
    let cfg = SweepConfig {
        range: 0.5,
        step: 0.1,
        ..SweepConfig::default()
    };
    let truth = ground_truth_neg(&m, &tp, &ids, &cfg).unwrap();
    assert_eq!(neg, truth.neg.iter().copied().collect::<Vec<_>>());
}

#[test]
fn bad_input_fails_with_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = shared("models/stories260k");
    let model = model.to_str().unwrap();
    let good = dir.path().join("p.jsonl");
    std::fs::write(&good, PROMPTS).unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let multi = dir.path().join("multi.jsonl");
    std::fs::write(
        &multi,
        "{\"prompt\": \"The cat\", \"targets\": [\" elephant\"]}\n",
    )
    .unwrap();
    let neurons = dir.path().join("n.json");
    std::fs::write(&neurons, "[[0, 1]]").unwrap();
    let no_neurons = dir.path().join("none.json");
    std::fs::write(&no_neurons, "[]").unwrap();
    let outside = dir.path().join("outside.json");
    std::fs::write(&outside, "[[5, 0]]").unwrap();
    let out = dir.path().join("out.safetensors");
    let (g, e, mu) = (
        good.to_str().unwrap(),
        empty.to_str().unwrap(),
        multi.to_str().unwrap(),
    );
    let (n, nn, no) = (
        neurons.to_str().unwrap(),
        no_neurons.to_str().unwrap(),
        outside.to_str().unwrap(),
    );
    let o = out.to_str().unwrap();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("neurgrad", vec!["--prompts", e], "no prompts"),
        (
            "neurgrad",
            vec!["--prompts", mu],
            "multi.jsonl:1: target \" elephant\"",
        ),
        (
            "neurgrad",
            vec!["--prompts", "/nonexistent.jsonl"],
            "cannot read /nonexistent.jsonl",
        ),
        (
            "intervene",
            vec!["--prompts", g, "--neuron-file", n, "--range", "0"],
            "range",
        ),
        (
            "intervene",
            vec!["--prompts", g, "--neuron-file", n, "--range", "-1"],
            "range",
        ),
        (
            "intervene",
            vec!["--prompts", g, "--neuron-file", n, "--step", "0"],
            "step",
        ),
        (
            "intervene",
            vec!["--prompts", g, "--neuron-file", nn],
            "no neurons",
        ),
        (
            "intervene",
            vec!["--prompts", g, "--neuron-file", no],
            "outside the model",
        ),
        (
            "intervene",
            vec!["--prompts", e, "--neuron-file", n],
            "no prompts",
        ),
    ];
    for (name, extra, needle) in cases {
        let mut args = vec!["--model", model, "--out", o];
        args.extend(extra.iter());
        let r = run(name, &args);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{name} {extra:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name} {extra:?}: {stderr}"
        );
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "{name} {extra:?}: {stderr}"
        );
        assert!(!out.exists(), "{name} {extra:?} left {o}");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(
            leftovers, 6,
            "{name} {extra:?}: temporary files left behind"
        );
    }
    // An unknown method is rejected by the argument parser.
    let r = run(
        "neurgrad",
        &[
            "--model",
            model,
            "--prompts",
            g,
            "--method",
            "magic",
            "--out",
            o,
        ],
    );
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("magic"));
    assert!(!out.exists());
}
