//! `neg lens` and `neg aux-metrics` end to end on tiny configurations of the real stories260k
//! model and MCEval8K agnews from `../shared` (which must be present: these tests fail, not
//! skip, without it), parsed by the `neg` command line and run in process.
use neg_rs::cli::{Cli, Command};
use neg_rs::commands::aux_metrics;
use neg_rs::commands::lens as neuronlens;

use std::path::Path;

use clap::Parser;
use serde_json::Value;

mod common;
use common::{read_json, shared};

/// Fails the test with a clear message unless the shared model and agnews data are present.
fn require_shared() {
    shared("models/stories260k/model.safetensors");
    shared("data/mceval8k/classification/agnews/train.json");
}

fn lens_args(out: &Path, extra: &[&str]) -> neuronlens::Args {
    require_shared();
    let mut argv = vec![
        "neg",
        "lens",
        "--n-fit",
        "24",
        "--n-eval",
        "12",
        "--max-tokens",
        "200",
        "--out",
        out.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Lens(args) => args,
        other => unreachable!("{other:?}"),
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn neuronlens_residual_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let report = neuronlens::run(&lens_args(dir.path(), &[])).unwrap();
    let json = read_json(&dir.path().join("neuronlens.json"));
    let svg = std::fs::read_to_string(dir.path().join("neuronlens.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("target drop, range"));
    assert_eq!(json["site"], "residual");
    assert_eq!(
        json["units"].as_array().unwrap().len(),
        64,
        "hidden size of stories260k"
    );
    let classes = json["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 4, "agnews has four options");
    assert_eq!(report.n_eval, 12);
    for c in classes {
        let salient = c["salient"].as_array().unwrap().len() as f64;
        assert_eq!(salient, 6.0, "10% of 64 units, rounded");
        for cond in ["base", "range", "neuron"] {
            let o = &c[cond];
            assert_eq!(
                o["n_target"].as_u64().unwrap() + o["n_complement"].as_u64().unwrap(),
                12
            );
            for k in ["complement_accuracy", "complement_confidence"] {
                let v = f(&o[k]);
                assert!((0.0..=1.0).contains(&v), "{cond}.{k} = {v}");
            }
        }
        // Neuron masking masks every salient unit; range masking a subset; no mask nothing.
        assert_eq!(f(&c["neuron"]["complement_masked"]), salient);
        assert!(f(&c["range"]["complement_masked"]) <= salient);
        assert_eq!(f(&c["base"]["complement_masked"]), 0.0);
        // Balanced eval set: three prompts per class.
        assert_eq!(c["base"]["n_target"], 3);
    }
    let per_unit = json["overlap"]["per_unit"].as_array().unwrap();
    assert_eq!(per_unit.len(), 64);
    assert!(per_unit.iter().all(|v| (0.0..=1.0).contains(&f(v))));
}

#[test]
fn neuronlens_infinite_tau_equals_neuron_masking_on_ff_units() {
    let dir = tempfile::tempdir().unwrap();
    let args = lens_args(
        dir.path(),
        &["--site", "ff", "--layers", "1,3", "--tau", "inf"],
    );
    let report = neuronlens::run(&args).unwrap();
    assert_eq!(report.units.len(), 2 * 172);
    assert!(report.units[0].starts_with("ff L1."));
    for c in &report.classes {
        assert_eq!(
            c.report.range, c.report.neuron,
            "tau = inf is whole-neuron masking"
        );
        assert_eq!(c.report.salient.len(), 34, "10% of 344 units");
    }
    assert!(report.overlap.per_unit.iter().all(|&v| v == 1.0));
}

#[test]
fn neuronlens_neurgrad_salience_on_ff_units() {
    let dir = tempfile::tempdir().unwrap();
    let args = lens_args(
        dir.path(),
        &["--site", "ff", "--layers", "3", "--salience", "neurgrad"],
    );
    let report = neuronlens::run(&args).unwrap();
    let sets: Vec<Vec<usize>> = report
        .classes
        .iter()
        .map(|c| c.report.salient.clone())
        .collect();
    assert!(sets.iter().all(|s| s.len() == 17), "10% of 172 units");
    // Gold options differ, so their gradients (and top units) differ between classes.
    assert!(sets.windows(2).any(|w| w[0] != w[1]), "{sets:?}");
    let mean_abs =
        neuronlens::run(&lens_args(dir.path(), &["--site", "ff", "--layers", "3"])).unwrap();
    assert_ne!(mean_abs.classes[0].report.salient, sets[0]);
}

#[test]
fn neuronlens_bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = |extra: &[&str]| {
        format!(
            "{:#}",
            neuronlens::run(&lens_args(dir.path(), extra)).unwrap_err()
        )
    };
    assert!(err(&["--tau", "0"]).contains("tau must be > 0"));
    assert!(err(&["--tau", "-1"]).contains("tau must be > 0"));
    assert!(err(&["--fraction", "0"]).contains("--fraction"));
    assert!(err(&["--task", "nope"]).contains("agnews"));
    // Four fit prompts over four classes: one example per class.
    let e = err(&["--n-fit", "4", "--fit-on", "all"]);
    assert!(
        e.contains("has 1 example(s)") && e.contains("at least 2"),
        "{e}"
    );
    assert!(err(&["--layers", "9"]).contains("layer 9 is outside the model"));
    assert!(err(&["--salience", "neurgrad"]).contains("needs --site ff"));
    assert!(err(&["--data", "/nonexistent/mceval8k"]).contains("/nonexistent/mceval8k"));
    assert!(
        !dir.path().join("neuronlens.json").exists(),
        "nothing is written on error"
    );
}

fn aux_args(out: &Path, extra: &[&str]) -> aux_metrics::Args {
    require_shared();
    let mut argv = vec![
        "neg",
        "aux-metrics",
        "--n",
        "16",
        "--max-tokens",
        "200",
        "--test",
        "permutation",
        "--permutations",
        "99",
        "--top-k",
        "3",
        "--seeds",
        "3",
        "--n-generations",
        "6",
        "--max-new-tokens",
        "8",
        "--out",
        out.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::AuxMetrics(args) => args,
        other => unreachable!("{other:?}"),
    }
}

#[test]
fn aux_metrics_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let report = aux_metrics::run(&aux_args(dir.path(), &[])).unwrap();
    let json = read_json(&dir.path().join("aux_metrics.json"));
    let svg = std::fs::read_to_string(dir.path().join("aux_metrics.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("random"));
    assert_eq!(report.n_prompts, 16);
    assert_eq!(json["test"], "permutation");
    let mc = json["multiple_choice"].as_array().unwrap();
    let names: Vec<&str> = mc.iter().map(|m| m["metric"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "gold_prob",
            "max_prob",
            "label=a",
            "label=b",
            "label=c",
            "label=d"
        ]
    );
    for m in mc {
        assert!(m["skipped"].is_null(), "{m}");
        let abs_r: Vec<f64> = m["abs_r"].as_array().unwrap().iter().map(f).collect();
        assert_eq!(abs_r.len(), 5 * 172);
        let top = m["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // The top neuron has the largest |r|, and its entry matches its (layer, neuron) slot.
        let best = abs_r.iter().cloned().fold(0.0, f64::max);
        assert_eq!(f(&top[0]["pearson"]).abs(), best);
        let slot = top[0]["layer"].as_u64().unwrap() * 172 + top[0]["neuron"].as_u64().unwrap();
        assert_eq!(abs_r[slot as usize], best);
        for t in top {
            let (p, q) = (f(&t["p_pearson"]), f(&t["q_pearson"]));
            assert!((0.01 - 1e-12..=1.0).contains(&p), "permutation p {p}");
            assert!(q >= p && q <= 1.0, "BH q {q} < p {p}");
        }
        let a = &m["ablation"];
        assert_eq!(a["k"], 3);
        assert_eq!(a["top_abs_delta"]["per_seed"].as_array().unwrap().len(), 3);
        assert!(f(&a["random_abs_delta"]["mean"]) >= 0.0);
    }
    // One-vs-rest over a balanced set: four prompts per class.
    let gen = json["generation"].as_array().unwrap();
    assert_eq!(gen.len(), 2);
    assert_eq!(json["n_generations"], 6);
    for g in gen {
        assert!(g["ablation"].is_null());
        assert!(g["skipped"].is_string() || g["abs_r"].as_array().unwrap().len() == 860);
    }
}

#[test]
fn aux_metrics_student_t_p_values() {
    let dir = tempfile::tempdir().unwrap();
    // The later --test wins (args_override_self), as on a command line.
    aux_metrics::run(&aux_args(
        dir.path(),
        &["--test", "student-t", "--n-generations", "0"],
    ))
    .unwrap();
    let json = read_json(&dir.path().join("aux_metrics.json"));
    assert_eq!(json["test"], "student_t");
    let n = json["n_prompts"].as_u64().unwrap() as usize;
    for m in json["multiple_choice"].as_array().unwrap() {
        for t in m["top"].as_array().unwrap() {
            for (r, p) in [("pearson", "p_pearson"), ("spearman", "p_spearman")] {
                let want = neg_core::aux_metrics::student_t_p_value(f(&t[r]), n).unwrap();
                // serde_json's default parser may round the last bit of r.
                assert!((f(&t[p]) - want).abs() <= 1e-12 * want.max(1e-300), "{m}");
            }
            assert!(f(&t["q_pearson"]) >= f(&t["p_pearson"]));
        }
        // The shuffled-metric calibration check is reported for every metric studied.
        let null = m["null_significant"].as_array().unwrap();
        assert_eq!(null.len(), 2);
        assert!(null.iter().all(|v| v.as_u64().unwrap() <= 860), "{m}");
    }
}

#[test]
fn aux_metrics_bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = |extra: &[&str]| {
        format!(
            "{:#}",
            aux_metrics::run(&aux_args(dir.path(), extra)).unwrap_err()
        )
    };
    assert!(err(&["--permutations", "0"]).contains("--permutations"));
    assert!(err(&["--n", "2"]).contains("at least 3"));
    assert!(
        err(&["--model", "/nonexistent/model"]).contains("model /nonexistent/model does not exist")
    );
    assert!(err(&["--top-k", "500"]).contains("too few random neurons"));
    assert!(err(&["--n-generations", "2"]).contains("--n-generations"));
    assert!(!dir.path().join("aux_metrics.json").exists());
}
