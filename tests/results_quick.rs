//! `scripts/results.sh --quick` (what `cargo xtask results --quick` runs) end to end on
//! SmolLM2-135M-Instruct: every step of docs/RESULTS.md finishes and leaves its outputs, the
//! tables come out with every section filled, and a rerun resumes (skips every finished step)
//! without changing them. Uses the `neg` binary `cargo test` built; needs the venv (the
//! packaged model) and `../shared`.

use std::process::Command;

mod common;
use common::workspace;

const STEPS: &[&str] = &[
    "skill-zero-leakfree",
    "skill-zero-published",
    "skill-few-leakfree",
    "linearity-s0",
    "linearity-s1",
    "linearity-fixed-s0",
    "linearity-fixed-s1",
    "estimation-s0",
    "estimation-s1",
    "attribution-s0",
    "attribution-s1",
    "distribution-s0",
    "distribution-s1",
    "multi-neuron-s0",
    "multi-neuron-s1",
    "training-size-s0",
    "training-size-s1",
    "robustness-s0",
    "robustness-s1",
    "substitutability-s0",
    "substitutability-s1",
    "tree-shape-s0",
    "tree-shape-s1",
    "neuronlens-s0",
    "neuronlens-s1",
    "aux-metrics-s0",
    "aux-metrics-s1",
];

fn run(out: &std::path::Path) -> std::process::Output {
    Command::new("bash")
        .arg(workspace().join("scripts/results.sh"))
        .args(["--quick", "--out"])
        .arg(out)
        .env("NEG_RESULTS_NO_BUILD", "1")
        .current_dir(workspace())
        .output()
        .expect("start bash")
}

#[test]
fn quick_results_run_end_to_end_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let o = run(&out);
    assert!(
        o.status.success(),
        "results.sh --quick failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for step in STEPS {
        assert!(
            out.join(step).join(".done").is_file(),
            "step {step} did not finish"
        );
    }
    let tables = std::fs::read_to_string(out.join("RESULTS.tables.md")).unwrap();
    assert!(!tables.contains("_not run"), "{tables}");
    for heading in [
        "Zero-shot, leak-free splits",
        "Zero-shot, published splits",
        "Few-shot, leak-free splits",
        "Linearity (Fig. 2, Table 1, Table 5)",
        "Fig. 2 on the paper's fixed step",
        "NEG estimation (Table 2)",
        "Top-K knowledge attribution (Fig. 3)",
        "NEG distributions (Fig. 4, 11, 12)",
        "Multi-neuron accumulation (Fig. 5, 14)",
        "Training size (Fig. 7)",
        "Robustness (Fig. 8)",
        "Substitutability (Fig. 9)",
        "Tree shape",
        "NeuronLens",
        "Auxiliary metrics",
    ] {
        assert!(
            tables.contains(heading),
            "no section {heading:?}:\n{tables}"
        );
    }
    // Spreads: two seeds give mean ± sd; the skill tables carry bootstrap intervals.
    assert!(
        tables.contains("2 seeds") && tables.contains(" ± "),
        "{tables}"
    );
    assert!(tables.contains("leak"), "published splits warn: {tables}");
    let skill: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("skill-zero-leakfree/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(skill["model"], "smollm2-135m-instruct");
    assert!(skill["tasks"][0]["methods"][0]["test_ci95"].is_array());

    // Resume: every step is kept, nothing recomputed, the tables unchanged.
    let o = run(&out);
    assert!(o.status.success());
    let log = String::from_utf8_lossy(&o.stdout);
    for step in STEPS {
        assert!(
            log.contains(&format!("results: {step} done, skipped")),
            "{log}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(out.join("RESULTS.tables.md")).unwrap(),
        tables
    );
}
