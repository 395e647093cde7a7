//! The Student t p-values of `aux_metrics::correlate` against scipy's `pearsonr` and
//! `spearmanr`, on data from weak to strong correlation (p from about 0.9 down to 1e-50 and
//! below) and
//! with ties. Runs `<workspace>/.venv/bin/python crates/neg-core/scripts/scipy_correlation.py`;
//! the Python environment is part of the workspace set-up, so its absence is a failure.
use std::path::PathBuf;
use std::process::Command;

use ndarray::Array2;
use neg_core::aux_metrics::{correlate, CorrelationConfig, SignificanceTest};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn student_t_p_values_match_scipy() {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: set up the workspace's Python environment (see the root README)",
        python.display()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // (prompts, signal weight): one metric, several neurons per size.
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for &n in &[5usize, 12, 64, 300] {
        let metric: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let weights = [0.0, 0.3, 1.0, 4.0, 20.0];
        let acts = Array2::from_shape_fn((n, weights.len() + 1), |(i, j)| {
            if j < weights.len() {
                weights[j] * metric[i] + rng.gen_range(-1.0..1.0)
            } else {
                // Ties: a neuron with three distinct values.
                (metric[i] * 1.5).round()
            }
        });
        let cfg = CorrelationConfig {
            test: SignificanceTest::StudentT,
            ..Default::default()
        };
        let r = correlate(acts.view(), &metric, &cfg).unwrap();
        for (j, c) in r.iter().enumerate() {
            cases.push(serde_json::json!({ "x": acts.column(j).to_vec(), "y": metric }));
            ours.push((n, c.clone()));
        }
    }
    let dir = std::env::temp_dir().join(format!("neg-core-scipy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cases.json");
    std::fs::write(&path, serde_json::to_string(&cases).unwrap()).unwrap();
    let script = workspace().join("crates/neg-core/scripts/scipy_correlation.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reference.len(), ours.len());
    let mut smallest = 1.0f64;
    for ((n, c), want) in ours.iter().zip(&reference) {
        for (name, r, p) in [
            ("pearson", c.pearson, c.p_pearson),
            ("spearman", c.spearman, c.p_spearman),
        ] {
            let (wr, wp) = (
                want[name][0].as_f64().unwrap(),
                want[name][1].as_f64().unwrap(),
            );
            assert!((r - wr).abs() < 1e-12, "n {n} {name}: r {r} vs scipy {wr}");
            if wp < 1e-290 {
                // Beyond f64's range of relative precision both must be about 0.
                assert!(p < 1e-290, "n {n} {name} r {r}: p {p:e} vs scipy {wp:e}");
                continue;
            }
            let rel = (p - wp).abs() / wp;
            assert!(
                rel < 1e-6,
                "n {n} {name} r {r}: p {p:e} vs scipy {wp:e} (rel {rel:e})"
            );
            smallest = smallest.min(wp);
        }
    }
    eprintln!(
        "{} p-values agree with scipy; smallest positive {smallest:e}",
        2 * ours.len()
    );
    // The cases reach far into the tail, where the t test's precision matters.
    assert!(smallest < 1e-50, "smallest p {smallest:e}");
}
