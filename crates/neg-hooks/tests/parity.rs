//! Parity with Hugging Face transformers (CPU, f32): logits, FF activations, target
//! probabilities and gradients of target probabilities with respect to FF activations, computed
//! by `parity/reference.py` in the workspace's venv.

mod common;

use std::path::Path;

use ndarray::{Axis, Ix2, Ix3, Ix4};
use neg_core::{ModelAdapter, TargetedPrompt};
use neg_hooks::HfModel;

/// Asserts the tolerances for `prompts` on `model` against transformers.
fn check_parity(model: &HfModel, dir: &Path, prompts: &[(String, Vec<u32>)]) {
    let tmp = tempfile::tempdir().unwrap();
    let r = common::reference(dir, prompts, tmp.path());
    for (i, (text, _)) in prompts.iter().enumerate() {
        let ours = model.encode(text).unwrap();
        let theirs: Vec<u32> = r[&format!("ids_{i}")].iter().map(|&x| x as u32).collect();
        assert_eq!(ours, theirs, "token ids of prompt {i} {text:?}");
    }
    let texts: Vec<&str> = prompts.iter().map(|p| p.0.as_str()).collect();
    let tp: Vec<TargetedPrompt> = prompts
        .iter()
        .map(|(t, tg)| TargetedPrompt::new(t.clone(), tg.clone()))
        .collect();

    let logits = model.logits(&texts).unwrap();
    let d = common::max_abs_diff(&logits, &r["logits"]);
    println!("logits max abs diff {d:e}");
    assert!(d <= 1e-4, "logits differ by {d}");

    let fwd = model.forward(&tp).unwrap();
    let d = common::max_abs_diff(&fwd.activations, &r["acts"]);
    let rel = common::rel_err(fwd.activations.iter(), r["acts"].iter());
    println!("activations max abs diff {d:e}, rel {rel:e}");
    assert!(
        rel <= 1e-3 && d <= 1e-4,
        "activations differ: abs {d}, rel {rel}"
    );
    let d = common::max_abs_diff(&fwd.probs, &r["probs"]);
    assert!(d <= 1e-5, "probabilities differ by {d}");

    let g = model.gradients(&tp).unwrap();
    let ref_grads = r["grads"].clone().into_dimensionality::<Ix4>().unwrap();
    let mut worst = 0.0f32;
    for (p, prompt) in tp.iter().enumerate() {
        for t in 0..prompt.targets.len() {
            let ours = g
                .grads
                .index_axis(Axis(0), p)
                .index_axis(Axis(0), t)
                .to_owned();
            let theirs = ref_grads
                .index_axis(Axis(0), p)
                .index_axis(Axis(0), t)
                .to_owned();
            worst = worst.max(common::rel_err(ours.iter(), theirs.iter()));
        }
    }
    println!("gradients worst relative error {worst:e}");
    assert!(worst <= 1e-3, "gradients differ: relative error {worst}");
    // The gradient path's own probabilities and activations agree with the forward pass.
    let d = common::max_abs_diff(
        &g.probs,
        &r["probs"]
            .clone()
            .into_dimensionality::<Ix2>()
            .unwrap()
            .into_dyn(),
    );
    assert!(d <= 1e-5, "gradient-path probabilities differ by {d}");
    let d = common::max_abs_diff(
        &g.activations,
        &r["acts"]
            .clone()
            .into_dimensionality::<Ix3>()
            .unwrap()
            .into_dyn(),
    );
    assert!(d <= 1e-4, "gradient-path activations differ by {d}");

    if let Some(ref_lpi) = r.get("lpi") {
        let mut worst = 0.0f32;
        for (p, prompt) in tp.iter().enumerate() {
            let ours = model.log_prob_increase(prompt).unwrap();
            let theirs = ref_lpi.index_axis(Axis(0), p).to_owned();
            worst = worst.max(common::max_abs_diff(&ours, &theirs));
        }
        println!("LPI max abs diff {worst:e}");
        assert!(worst <= 1e-4, "LPI differs by {worst}");
    }
}

fn targets(model: &HfModel, prompt: &str, fixed: u32) -> Vec<u32> {
    let mut t = common::top_tokens(model, prompt, 2);
    t.push(fixed);
    t
}

#[test]
fn stories260k_matches_transformers() {
    let dir = common::stories_dir();
    let model = common::load(&dir);
    let prompts: Vec<(String, Vec<u32>)> = [
        "Once upon a time, there was a little",
        "Lily wanted to play with the",
        "One day, Tom went to the park. He saw a big",
    ]
    .iter()
    .map(|p| (p.to_string(), targets(&model, p, 100)))
    .collect();
    check_parity(&model, &dir, &prompts);
}
