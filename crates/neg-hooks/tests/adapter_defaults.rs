//! `HfModel`'s patch primitive through `neg_core`'s default methods equals its fast overrides
//! (prefix-reusing sweeps, IG paths, one-pass residual capture), for Llama and BERT.

mod common;

use ndarray::s;
use neg_core::adapter::defaults;
use neg_core::{
    CaptureOptions, ModelAdapter, NeuronId, PassOutputs, Patch, PatchOp, TargetedPrompt,
};
use neg_hooks::HfModel;

fn max_diff<'a>(a: impl IntoIterator<Item = &'a f32>, b: impl IntoIterator<Item = &'a f32>) -> f32 {
    a.into_iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Default vs override on one prompt: sweeps with FF and residual patches, the unpatched
/// primitive against `gradients`, IG paths, and the one-pass residual capture.
fn check(model: &HfModel, p: &TargetedPrompt, layers: &[usize]) {
    let variants = vec![
        vec![],
        vec![Patch::ff(NeuronId::new(layers[0], 3), PatchOp::Add(1.0))],
        vec![
            Patch::ff(NeuronId::new(layers[1], 7), PatchOp::Set(0.0)),
            Patch::residual(layers[0], 5, PatchOp::Add(-2.0)),
        ],
    ];
    let fast = model.patched_probs(p, &variants).unwrap();
    let by_pass = defaults::patched_probs_by_pass(model, p, &variants).unwrap();
    let d = max_diff(&fast, &by_pass);
    assert!(d <= 1e-6, "patched probabilities: default differs by {d}");

    let g = model.gradients(std::slice::from_ref(p)).unwrap();
    let pass = model.patched_pass(p, &[], PassOutputs::Gradients).unwrap();
    let scale = g.grads.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(max_diff(&pass.probs, g.probs.row(0)) <= 1e-6);
    assert!(max_diff(&pass.activations, g.activations.slice(s![0, .., ..])) <= 1e-5);
    let d = max_diff(
        pass.grads.as_ref().unwrap(),
        g.grads.slice(s![0, .., .., ..]),
    );
    assert!(
        d <= 1e-4 * scale,
        "unpatched pass gradients differ by {d} (scale {scale})"
    );

    let alphas = [0.25, 1.0];
    let fast = model.scaled_gradients(p, layers, &alphas).unwrap();
    let by_pass = defaults::scaled_gradients_by_pass(model, p, layers, &alphas).unwrap();
    let scale = fast.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let d = max_diff(&fast, &by_pass);
    assert!(
        d <= 1e-4 * scale,
        "IG paths: default differs by {d} (scale {scale})"
    );

    let ps = vec![p.clone(), p.clone()];
    let one_pass = model
        .forward_with(&ps, CaptureOptions { residual: true })
        .unwrap();
    assert_eq!(one_pass.residual.unwrap(), model.residual(&ps).unwrap());
    assert_eq!(one_pass.probs, model.forward(&ps).unwrap().probs);
    assert_eq!(
        ModelAdapter::max_context(model),
        Some(HfModel::max_context(model))
    );
}

#[test]
fn llama_defaults_equal_the_fast_paths() {
    let model = common::stories();
    let text = "Once upon a time, there was a little";
    let p = TargetedPrompt::new(text, common::top_tokens(&model, text, 2));
    check(&model, &p, &[1, 4]);
}

#[test]
fn bert_defaults_equal_the_fast_paths() {
    let dir = common::tiny("bert");
    let model = common::load(dir.path());
    let t = |a: &str| model.target_token("", a).unwrap();
    let p = TargetedPrompt::new(
        "paris is the capital of [MASK] .",
        vec![t("france"), t("germany")],
    );
    check(&model, &p, &[0, 1]);
}
