//! Tree-Probe vs scikit-learn's RandomForestClassifier on the same synthetic features.
//!
//! Runs `<workspace>/.venv/bin/python crates/neg-probe/scripts/sklearn_forest.py`; the
//! Python environment is part of the workspace set-up, so its absence is a failure, not a skip.
//! No real feature matrix is checked in; the `skill_probe` job computes real ones.
use std::path::PathBuf;
use std::process::Command;

use neg_probe::synthetic::{forest_task, sklearn_task_json};
use neg_probe::{ForestConfig, RandomForest};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Mean test accuracy over five forest seeds, ours and scikit-learn's, on a planted task with
/// the first half of the prompts for training and the second half for testing.
fn compare(n_samples: usize, n_features: usize, n_classes: usize) -> (f64, f64) {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: set up the workspace's Python environment (see the root README)",
        python.display()
    );
    let task = forest_task(n_samples, n_features, n_classes, 0).unwrap();
    let x = task.data.option_index();
    let y = task.data.labels().to_vec();
    let train: Vec<usize> = (0..n_samples / 2).collect();
    let test: Vec<usize> = (n_samples / 2..n_samples).collect();
    let y_train: Vec<usize> = train.iter().map(|&i| y[i]).collect();
    // One forest's accuracy varies by about one point with its seed, the mean of five by
    // less than half of that.
    let seeds = 0..5u64;
    let mut ours = Vec::new();
    for seed in seeds.clone() {
        let config = ForestConfig {
            seed,
            ..ForestConfig::default()
        };
        let forest = RandomForest::fit(x, &train, &y_train, n_classes, &config).unwrap();
        let pred = forest.predict(x, &test).unwrap();
        let hits = pred.iter().zip(&test).filter(|(p, &i)| **p == y[i]).count();
        ours.push(hits as f64 / test.len() as f64);
    }
    let ours_mean = ours.iter().sum::<f64>() / ours.len() as f64;

    let dir = std::env::temp_dir().join(format!(
        "neg-probe-sklearn-{}-{n_classes}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("task.json");
    std::fs::write(&path, sklearn_task_json(x, &y, &train, &test, 100, None)).unwrap();
    let script = workspace().join("crates/neg-probe/scripts/sklearn_forest.py");
    let seeds_arg = seeds.map(|s| s.to_string()).collect::<Vec<_>>().join(",");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .args(["--seeds", &seeds_arg])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sk_mean = result["mean_accuracy"].as_f64().unwrap();
    eprintln!(
        "{n_samples} x {n_features}, {n_classes} classes: neg-probe {ours:?} mean {ours_mean:.4}; \
         scikit-learn {} mean {sk_mean:.4}",
        result["accuracies"]
    );
    (ours_mean, sk_mean)
}

#[test]
fn tree_probe_agrees_with_sklearn_within_two_points() {
    for (n, f, k) in [(2000, 2000, 4), (1200, 500, 2)] {
        let (ours, sk) = compare(n, f, k);
        // The tasks are neither trivial nor hopeless, so agreement means something.
        assert!(
            (0.6..0.97).contains(&sk),
            "scikit-learn accuracy {sk} on {n} x {f}, {k} classes"
        );
        assert!(
            (ours - sk).abs() <= 0.02,
            "neg-probe {ours} vs scikit-learn {sk} on {n} x {f}, {k} classes"
        );
    }
}
