//! Tree-Probe vs scikit-learn's RandomForestClassifier on the same synthetic features.
//!
//! Runs `<workspace>/.venv/bin/python crates/neg-probe/scripts/sklearn_forest.py`; the
//! Python environment is part of the workspace set-up, so its absence is a failure, not a skip.
use std::path::PathBuf;
use std::process::Command;

use neg_probe::synthetic::{forest_task, sklearn_task_json};
use neg_probe::{ForestConfig, RandomForest};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn tree_probe_agrees_with_sklearn_within_two_points() {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: set up the workspace's Python environment (see the root README)",
        python.display()
    );
    // 2000 prompts x 2000 neurons, four options: train on 1000 prompts, test on the other 1000.
    let task = forest_task(2000, 2000, 4, 0).unwrap();
    let x = task.data.option_index();
    let y = task.data.labels().to_vec();
    let train: Vec<usize> = (0..1000).collect();
    let test: Vec<usize> = (1000..2000).collect();
    let y_train: Vec<usize> = train.iter().map(|&i| y[i]).collect();
    // Mean over five forest seeds on both sides: one forest's accuracy varies by about one
    // point with its seed, the mean of five by less than half of that.
    let seeds = 0..5u64;
    let mut ours = Vec::new();
    for seed in seeds.clone() {
        let forest = RandomForest::fit(
            x,
            &train,
            &y_train,
            4,
            &ForestConfig {
                seed,
                ..ForestConfig::default()
            },
        )
        .unwrap();
        let pred = forest.predict(x, &test).unwrap();
        ours.push(
            pred.iter().zip(&test).filter(|(p, &i)| **p == y[i]).count() as f64 / test.len() as f64,
        );
    }
    let ours_mean = ours.iter().sum::<f64>() / ours.len() as f64;

    let dir = tempfile_dir();
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
        "neg-probe forest {ours:?} mean {ours_mean:.4}; scikit-learn {} mean {sk_mean:.4}",
        result["accuracies"]
    );
    // The task is neither trivial nor hopeless, so agreement means something.
    assert!(
        (0.6..0.9).contains(&sk_mean),
        "scikit-learn accuracy {sk_mean}"
    );
    assert!(
        (ours_mean - sk_mean).abs() <= 0.02,
        "neg-probe {ours_mean} vs scikit-learn {sk_mean}"
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neg-probe-sklearn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
