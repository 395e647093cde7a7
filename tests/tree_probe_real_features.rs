//! Tree-Probe vs scikit-learn's RandomForestClassifier on a real feature matrix: NeurGrad
//! option-index features that the `skill_probe` pipeline computes with the real stories260k
//! model on MCEval8K prompts from `../shared`. Both forests are fitted on the same train split
//! and scored on the same test split, over several seeds each; the mean test accuracies must
//! agree within 2 points (the criterion). scikit-learn runs through the workspace's
//! `.venv/bin/python` (`crates/neg-probe/scripts/compare_real_features.py`), and our side
//! through the compiled `probe_features` example, which `cargo test` builds.
use std::path::{Path, PathBuf};
use std::process::Command;

use neg_rs::commands::skill_probe::{run_skill_probe, SkillProbeConfig};
use neg_rs::skill::Sizes;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{} is missing: {what} (see the root README for the set-up)",
        path.display()
    );
}

#[test]
fn tree_probe_matches_sklearn_on_real_neurgrad_features() {
    let root = workspace();
    let shared = root.join("../shared");
    require(
        &shared.join("models/stories260k/config.json"),
        "the real model from ../shared",
    );
    require(&shared.join("data/mceval8k"), "MCEval8K from ../shared");
    let python = root.join(".venv/bin/python");
    require(&python, "the workspace's Python environment");
    let probe_bin = root.join("target/release/examples/probe_features");
    require(
        &probe_bin,
        "the probe_features example (built by `cargo test --release`)",
    );

    let out = std::env::temp_dir().join(format!("neg-rs-tree-real-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = SkillProbeConfig {
        model: Some(shared.join("models/stories260k").display().to_string()),
        splits: neg_rs::skill::SplitMode::Published,
        tasks: vec!["myriadlama".into()],
        sizes: Sizes {
            train: 384,
            valid: 32,
            test: 192,
        },
        trees: 10,
        out: out.clone(),
        progress: false,
        ..SkillProbeConfig::default()
    };
    run_skill_probe(&config).expect("skill_probe pipeline on stories260k");
    let features = out.join("features/myriadlama.safetensors");
    require(&features, "the features file skill_probe writes");

    let script = root.join("crates/neg-probe/scripts/compare_real_features.py");
    let result = Command::new(&python)
        .arg(&script)
        .arg(&features)
        .args(["--seeds", "8", "--bin"])
        .arg(&probe_bin)
        .output()
        .expect("run the scikit-learn comparison");
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        result.status.success(),
        "compare_real_features.py failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&result.stdout).expect("the script prints one JSON object");
    let ours = report["neg_probe_mean"].as_f64().unwrap();
    let sklearn = report["sklearn_mean"].as_f64().unwrap();
    eprintln!("real features: {report}");
    assert_eq!(
        report["n_neurons"].as_u64(),
        Some(860),
        "all 5 x 172 FF neurons"
    );
    assert_eq!(report["n_test"].as_u64(), Some(192));
    assert!(
        (ours - sklearn).abs() <= 0.02,
        "Tree-Probe {ours:.4} vs scikit-learn {sklearn:.4}: more than 2 points apart"
    );
}
