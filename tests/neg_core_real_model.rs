//! Acceptance of neg-core's methods on the real stories260k model (through neg-hooks):
//! NeurGrad tracks ground-truth NEG, the batched sweep equals a full-recompute loop, and an
//! independent Python reference (transformers + forward pre-hooks on `mlp.down_proj`, autograd)
//! gives the same NeurGrad and NEG.
//!
//! Needs `../shared/models/stories260k` and `.venv/bin/python` (with torch and transformers);
//! fails, not skips, when either is missing.
use std::path::PathBuf;
use std::process::Command;

use neg_core::analysis::compare_methods;
use neg_core::methods::{self, Method};
use neg_core::neg::{ground_truth_neg, GroundTruth, SweepConfig};
use neg_core::stats::pearson;
use neg_core::{sampling, ModelAdapter, NeuronId, TargetedPrompt};
use neg_hooks::{HfModel, LoadOptions, ModelSource};

mod common;
use common::workspace;

const SEED: u64 = 2025;

fn model() -> HfModel {
    let dir = workspace().join("../shared/models/stories260k");
    assert!(
        dir.join("config.json").is_file(),
        "the real model is missing: expected {} (see ../shared/README.md)",
        dir.display()
    );
    // Whole sweeps of one prompt (1 + 50 x 21 variants) in one batch: far fewer libtorch calls.
    let options = LoadOptions {
        max_batch: 2048,
        ..LoadOptions::default()
    };
    HfModel::load(&ModelSource::Dir(dir), &options).expect("load stories260k")
}

/// 20 TinyStories-style prompts; the two targets of each are the model's top-2 next tokens as
/// transformers computes them (chosen once by inspection; they are inputs, not results).
fn prompts() -> Vec<TargetedPrompt> {
    [
        ("Once upon a time, there was a little", [298, 268]),
        ("One day, Lily went to the", [282, 349]),
        ("Tom had a big red", [268, 352]),
        ("She was very", [261, 344]),
        ("The sun was shining and the birds were", [399, 262]),
        ("Lily and Ben were best", [374, 329]),
        ("He wanted to play with the", [315, 423]),
        ("Mom said, \"Be careful, Tim", [426, 443]),
        ("The little dog ran to the", [282, 349]),
        ("They saw a big tree in the", [282, 298]),
        ("The cat liked to sleep on the", [298, 262]),
        ("Once upon a time, there was a boy named", [405, 326]),
        ("Sara found a shiny", [280, 262]),
        ("The girl smiled and said,", [313, 263]),
        ("Every day, the bird would", [262, 298]),
        ("After lunch, they went to the", [282, 349]),
        ("The boy was sad because he lost his", [267, 329]),
        ("Mia loved to eat", [280, 282]),
        ("The old man gave her a", [370, 280]),
        ("At night, the moon was", [261, 399]),
    ]
    .iter()
    .map(|(t, ids)| TargetedPrompt::new(*t, ids.to_vec()))
    .collect()
}

/// NeurGrad at the ground truth's (prompt, target, neuron) cells, in [P, T, K] order.
fn at_cells(truth: &GroundTruth, scores: &ndarray::Array4<f32>) -> Vec<f64> {
    neg_core::analysis::gather(truth, scores).unwrap()
}

fn flat(a: &ndarray::Array3<f32>) -> Vec<f64> {
    a.iter().map(|&v| v as f64).collect()
}

#[test]
fn neurgrad_tracks_ground_truth_matches_full_recomputation_and_the_python_reference() {
    let m = model();
    let ps = prompts();
    let neurons = sampling::sample_neurons(m.num_layers(), m.ff_width(), 50, SEED).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let half = SweepConfig {
        range: 0.5,
        step: 0.05,
        ..SweepConfig::default()
    };
    let (child, out_path) = start_python_reference(&ps, &neurons, &half, dir.path());
    let clock = std::time::Instant::now();
    let ng = methods::neurgrad(&m, &ps).unwrap();
    println!("NeurGrad for 20 prompts: {:.2?}", clock.elapsed());
    let mut rs = Vec::new();
    let mut at_half = None;
    for (range, step) in [(0.5f32, 0.05f32), (2.0, 0.2)] {
        let cfg = SweepConfig {
            range,
            step,
            ..half.clone()
        };
        let clock = std::time::Instant::now();
        let truth = ground_truth_neg(&m, &ps, &neurons, &cfg).unwrap();
        println!("sweep R = {range}: {:.2?}", clock.elapsed());
        let r = pearson(&at_cells(&truth, &ng.scores), &flat(&truth.neg)).unwrap();
        let linear =
            truth.r.iter().filter(|v| v.abs() >= 0.95).count() as f64 / truth.r.len() as f64;
        println!(
            "R = {range}: r(NeurGrad, NEG) = {r:.5} over {} (prompt, target, neuron); |r| >= 0.95 for {:.1}% of sweeps",
            truth.neg.len(),
            100.0 * linear
        );
        rs.push(r);
        if range == 0.5 {
            at_half = Some(truth);
        }
    }
    assert!(rs[0] >= 0.99, "r(NeurGrad, NEG) at R = 0.5 is {}", rs[0]);
    assert!(
        rs[1] > 0.0 && rs[1] < rs[0],
        "R = 2 should be less linear: {rs:?}"
    );

    // The batched fast path against full recomputation of every variant.
    let clock = std::time::Instant::now();
    let few: Vec<NeuronId> = neurons.iter().step_by(10).copied().collect();
    let cfg = SweepConfig::with_range(0.5);
    let fast = ground_truth_neg(&m, &ps[..3], &few, &cfg).unwrap();
    let naive = ground_truth_neg(&m, &ps[..3], &few, &SweepConfig { naive: true, ..cfg }).unwrap();
    let worst = (&fast.delta_probs - &naive.delta_probs)
        .iter()
        .fold(0.0f32, |w, v| w.max(v.abs()));
    let scale = naive.delta_probs.iter().fold(0.0f32, |w, v| w.max(v.abs()));
    println!("fast and naive sweeps: {:.2?}", clock.elapsed());
    println!("fast vs naive sweep: max |diff| = {worst:.3e} (max |delta P| = {scale:.3e})");
    assert!(scale > 1e-3 && worst <= 1e-5, "{worst} vs scale {scale}");
    let neg_diff = (&fast.neg - &naive.neg)
        .iter()
        .fold(0.0f32, |w, v| w.max(v.abs()));
    assert!(neg_diff <= 1e-5, "{neg_diff}");

    let truth = at_half.expect("the R = 0.5 sweep ran");
    let clock = std::time::Instant::now();
    check_against_python(&m, &ps, &truth, &ng.scores, child, &out_path);
    println!(
        "Python comparison finished {:.2?} after the Rust side",
        clock.elapsed()
    );
}

#[test]
fn baselines_on_the_real_model() {
    let m = model();
    let ps = prompts();
    let neurons = sampling::sample_neurons(m.num_layers(), m.ff_width(), 50, SEED).unwrap();
    let (_, q) = compare_methods(
        &m,
        &ps[..10],
        &neurons,
        &SweepConfig::default(),
        &Method::ALL,
    )
    .unwrap();
    for mq in &q.methods {
        println!(
            "R = 2: {:<16} r = {:+.4}  MAE = {:.3e}",
            mq.name, mq.r, mq.mae
        );
    }
    let get = |n: &str| q.methods.iter().find(|m| m.name == n).unwrap();
    assert!(q.unsupported.is_empty(), "{:?}", q.unsupported);
    // NeurGrad is the best estimator of the NEG's value (the paper's Table 2 ordering).
    assert!(get("neurgrad").r > get("cg").r);
    assert!(get("neurgrad").mae < get("cg").mae);
}

/// Starts the Python reference on `ps` and `neurons` at range 0.5, step 0.05 (it runs while the
/// Rust side computes); returns the child and the path of its result.
fn start_python_reference(
    ps: &[TargetedPrompt],
    neurons: &[NeuronId],
    cfg: &SweepConfig,
    dir: &std::path::Path,
) -> (std::process::Child, PathBuf) {
    let root = workspace();
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: set up the Python reference environment (scripts/requirements-dev.txt)",
        python.display()
    );
    let spec = serde_json::json!({
        "prompts": ps.iter().map(|p| serde_json::json!({"prompt": p.text, "targets": p.targets})).collect::<Vec<_>>(),
        "neurons": neurons.iter().map(|n| [n.layer, n.neuron]).collect::<Vec<_>>(),
        "range": cfg.range, "step": cfg.step, "mode": "magnitude", "dtype": "float64",
    });
    let spec_path = dir.join("spec.json");
    let out_path = dir.join("ref.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let child = Command::new(&python)
        .arg(root.join("scripts/reference/neg_reference.py"))
        .arg("--model")
        .arg(root.join("../shared/models/stories260k"))
        .arg("--spec")
        .arg(&spec_path)
        .arg("--out")
        .arg(&out_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the Python reference");
    (child, out_path)
}

/// Compares NeurGrad and ground-truth NEG with the Python reference's.
fn check_against_python(
    m: &HfModel,
    ps: &[TargetedPrompt],
    truth: &GroundTruth,
    ng: &ndarray::Array4<f32>,
    child: std::process::Child,
    out_path: &std::path::Path,
) {
    let output = child
        .wait_with_output()
        .expect("wait for the Python reference");
    assert!(
        output.status.success(),
        "the Python reference failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_path).unwrap()).unwrap();
    // Same tokenization.
    for (p, prompt) in ps.iter().enumerate() {
        let ids: Vec<u32> = serde_json::from_value(reference["token_ids"][p].clone()).unwrap();
        assert_eq!(
            m.encode(&prompt.text).unwrap(),
            ids,
            "tokens of {:?}",
            prompt.text
        );
    }
    let ours_ng = at_cells(truth, ng);
    let ours_neg = flat(&truth.neg);
    let theirs = |key: &str| -> Vec<f64> {
        let v: Vec<Vec<Vec<f64>>> = serde_json::from_value(reference[key].clone()).unwrap();
        v.into_iter().flatten().flatten().collect()
    };
    for (name, ours, theirs) in [
        ("NeurGrad", &ours_ng, theirs("neurgrad")),
        ("ground-truth NEG", &ours_neg, theirs("neg")),
    ] {
        // The relative error of the whole vector (L2), and per value against the value or, for
        // values below 1% of the largest magnitude, against that 1%: our probabilities are f32,
        // so a NEG near zero carries f32 rounding of P (~1e-8) divided by the shifts.
        let common::RelErrors {
            worst,
            at,
            l2: norm_rel,
            scale,
        } = common::rel_errors(ours, &theirs);
        println!(
            "{name}: relative L2 error {norm_rel:.2e}; max per-value relative error {worst:.2e} (at {at}: ours {:.6e}, reference {:.6e}; largest |value| {scale:.3e})",
            ours[at], theirs[at]
        );
        assert!(norm_rel <= 1e-3, "{name}: relative L2 error {norm_rel}");
        assert!(worst <= 1e-3, "{name}: relative error {worst} at {at}");
    }
}

#[test]
fn analyses_run_on_the_real_model() {
    use neg_core::analysis::{
        linearity, multi_neuron_accumulation, neg_distribution, topk_attribution,
        AccumulationConfig, LinearityConfig, Ranking, TopKConfig,
    };
    let m = model();
    let ps = &prompts()[..5];
    let neurons = sampling::sample_neurons(m.num_layers(), m.ff_width(), 10, SEED).unwrap();
    let lin = linearity(&m, ps, &neurons, &LinearityConfig::default()).unwrap();
    for r in &lin.per_range {
        println!(
            "linearity R = {:>4}: mean |r| = {:.3}, |r| >= 0.95 for {:.2}",
            r.range, r.mean_abs_r, r.linear_ratio
        );
    }
    println!(
        "polarity +{:.2} / -{:.2}; LG = {:.3}, PG = {:.3}",
        lin.positive_ratio,
        lin.negative_ratio,
        lin.layer_generality.generality,
        lin.prompt_generality.generality
    );
    // Linearity fades as the shift range grows (the paper's Fig. 2).
    assert!(lin.per_range[0].mean_abs_r > lin.per_range[4].mean_abs_r);

    let ng = methods::neurgrad(&m, ps).unwrap();
    let cg = methods::computational_gradient(&m, ps).unwrap();
    let cfg = TopKConfig::default();
    let top_ng = topk_attribution(
        &m,
        ps,
        "neurgrad",
        &ng.scores,
        &ng.activations,
        Ranking::Magnitude,
        &cfg,
    )
    .unwrap();
    let top_cg = topk_attribution(
        &m,
        ps,
        "cg",
        &cg.scores,
        &cg.activations,
        Ranking::Magnitude,
        &cfg,
    )
    .unwrap();
    for (a, b) in top_ng.iter().zip(&top_cg) {
        println!(
            "top-{:>2} enhancement at shift 1.0: NeurGrad {:+.4}, CG {:+.4}",
            a.k, a.mean_output_shift[9], b.mean_output_shift[9]
        );
    }
    // Enhancing by NeurGrad's polarity raises the target probability, more than CG's.
    assert!(top_ng.iter().all(|c| c.mean_output_shift[9] > 0.0));
    assert!(top_ng[2].mean_output_shift[9] > top_cg[2].mean_output_shift[9]);

    let dist = neg_distribution(&ng.scores, 50).unwrap();
    println!(
        "|NEG| share of the top 10% / 50% of (prompt, target, neuron): {:.2} / {:.2}; per-layer mean |NEG|: {:?}",
        dist.cumulative_share[9],
        dist.cumulative_share[49],
        dist.per_layer.iter().map(|l| format!("{:.1e}", l.mean_abs)).collect::<Vec<_>>()
    );
    assert!((dist.cumulative_share[99] - 1.0).abs() < 1e-9);

    let acc = AccumulationConfig {
        max_log2: 8,
        seed: SEED,
        ..AccumulationConfig::default()
    };
    let rep = multi_neuron_accumulation(
        &m,
        &ps[..3],
        &ng.scores.slice(ndarray::s![..3, .., .., ..]).to_owned(),
        &ng.activations.slice(ndarray::s![..3, .., ..]).to_owned(),
        &acc,
    )
    .unwrap();
    for p in &rep.points {
        println!(
            "accumulation {:>3} neurons: r = {:.3} (pooled {:.3}), at 0.5 predicted {:+.4} actual {:+.4}",
            p.neurons, p.r_mean, p.r_pooled, p.mean_predicted_at_max, p.mean_actual_at_max
        );
    }
    assert_eq!(rep.points.len(), 9);
    // Few neurons accumulate predictably; hundreds interact (the paper's Fig. 5 trend, far
    // stronger in this 860-neuron model).
    assert!(rep.points[0].r_pooled > 0.95 && rep.points[2].r_mean > 0.95);
    assert!(rep.points[8].r_mean < rep.points[2].r_mean);
}
