//! Parity with Hugging Face transformers (CPU, f32): logits, FF activations, target
//! probabilities and gradients of target probabilities with respect to FF activations, computed
//! by `parity/reference.py` in the workspace's venv.

mod common;

use std::path::Path;

use ndarray::{Axis, Ix2, Ix3, Ix4};
use neg_core::{ModelAdapter, NeuronId, Patch, PatchOp, TargetedPrompt};
use neg_hooks::{Family, HfModel, ModelConfig, RopeScaling};

use common::tiny;

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

/// SmolLM2-135M-Instruct from its Q4_1 GGUF file (dequantized to f32) against transformers'
/// GGUF loader on the same file: ids, logits, probabilities, activations, gradients, LPI.
#[test]
fn smollm2_gguf_matches_transformers() {
    let path = common::smollm2_gguf();
    let model = HfModel::load(
        &neg_hooks::ModelSource::Gguf(path.clone()),
        &neg_hooks::LoadOptions::default(),
    )
    .unwrap();
    let ModelConfig::Llama(cfg) = model.config() else {
        panic!("expected a Llama config")
    };
    assert_eq!(
        (cfg.num_layers, cfg.hidden_size, cfg.intermediate_size),
        (30, 576, 1536)
    );
    assert_eq!(
        (cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size),
        (9, 3, 49152)
    );
    assert!(cfg.tie_word_embeddings);
    let prompts: Vec<(String, Vec<u32>)> = [
        "The capital of France is",
        "Question: Is this review positive or negative? The film was a delight from start to finish.\nAnswer:",
        "Paris is the capital of",
    ]
    .iter()
    .map(|p| (p.to_string(), targets(&model, p, 100)))
    .collect();
    check_parity(&model, &path, &prompts);
}

fn causal_prompts(model: &HfModel) -> Vec<(String, Vec<u32>)> {
    [
        "Once upon a time, there was a little girl who liked to run in the sun",
        "The dog and the cat",
        "Tom",
    ]
    .iter()
    .map(|p| (p.to_string(), targets(model, p, 100)))
    .collect()
}

#[test]
fn llama3_rope_scaling_untied_head_matches_transformers() {
    let dir = tiny("llama3");
    let model = common::load(dir.path());
    let ModelConfig::Llama(cfg) = model.config() else {
        panic!("expected a Llama config")
    };
    // transformers 5 writes the v5 `rope_parameters` form; check it was read as such.
    assert!(
        matches!(cfg.rope.scaling, RopeScaling::Llama3 { factor, original_max_position_embeddings: 64, .. } if factor == 8.0)
    );
    assert_eq!(cfg.rope.theta, 500000.0);
    assert_eq!((cfg.head_dim, cfg.num_kv_heads), (32, 2));
    assert!(!cfg.tie_word_embeddings);
    let prompts = causal_prompts(&model);
    check_parity(&model, dir.path(), &prompts);
}

#[test]
fn qwen2_matches_transformers() {
    let dir = tiny("qwen2");
    let model = common::load(dir.path());
    let ModelConfig::Llama(cfg) = model.config() else {
        panic!("expected a Llama-family config")
    };
    assert_eq!(cfg.family, Family::Qwen2);
    assert!(cfg.qkv_bias && !cfg.o_bias);
    assert_eq!((cfg.rope.theta, cfg.rms_norm_eps), (1e6, 1e-6));
    let prompts = causal_prompts(&model);
    check_parity(&model, dir.path(), &prompts);
}

#[test]
fn bert_mlm_matches_transformers() {
    let dir = tiny("bert");
    let model = common::load(dir.path());
    assert_eq!(model.kind(), neg_core::ModelKind::MaskedLm);
    let t = |a: &str| model.target_token("", a).unwrap();
    let prompts = vec![
        (
            "paris is the capital of [MASK] .".to_string(),
            vec![t("france"), t("germany"), t("italy")],
        ),
        (
            "the quick brown [MASK] jumped over the lazy dog".to_string(),
            vec![t("fox"), t("cat"), t("dog")],
        ),
        ("[MASK] sat".to_string(), vec![t("she"), t("he"), t("it")]),
    ];
    check_parity(&model, dir.path(), &prompts);

    // Batched (right-padded) equals one at a time.
    let tp: Vec<TargetedPrompt> = prompts
        .iter()
        .map(|(p, t)| TargetedPrompt::new(p.clone(), t.clone()))
        .collect();
    let batch = model.forward(&tp).unwrap();
    for (i, p) in tp.iter().enumerate() {
        let one = model.forward(std::slice::from_ref(p)).unwrap();
        let d = common::max_abs_diff(
            &batch.probs.row(i).to_owned(),
            &one.probs.row(0).to_owned().into_dyn(),
        );
        assert!(d <= 1e-5, "prompt {i}: batched probabilities differ by {d}");
    }
    // The sweep path (reusing hidden states below the patched layer) equals recomputation.
    let variants: Vec<Vec<Patch>> = vec![
        vec![],
        vec![Patch::ff(NeuronId::new(0, 3), PatchOp::Add(1.0))],
        vec![Patch::ff(NeuronId::new(1, 100), PatchOp::Set(0.0))],
        vec![
            Patch::residual(0, 7, PatchOp::Add(-2.0)),
            Patch::ff(NeuronId::new(1, 5), PatchOp::Add(0.5)),
        ],
    ];
    let fast = model.patched_probs(&tp[0], &variants).unwrap();
    let naive = model.patched_probs_naive(&tp[0], &variants).unwrap();
    let d = common::max_abs_diff(&fast, &naive.clone().into_dyn());
    assert!(d <= 1e-5, "BERT sweep differs from recomputation by {d}");
    assert!(
        common::max_abs_diff(
            &fast.row(0).to_owned(),
            &batch.probs.row(0).to_owned().into_dyn()
        ) <= 1e-5
    );
    assert!(
        common::max_abs_diff(
            &fast.row(1).to_owned(),
            &batch.probs.row(0).to_owned().into_dyn()
        ) > 1e-7
    );
    // IG path at alpha = 1 is the gradient.
    let g = model.gradients(std::slice::from_ref(&tp[0])).unwrap();
    let sg = model.scaled_gradients(&tp[0], &[1], &[1.0]).unwrap();
    let ours = sg.slice(ndarray::s![0, 0, .., ..]).to_owned();
    let full = g.grads.slice(ndarray::s![0, .., 1, ..]).to_owned();
    assert!(common::max_abs_diff(&ours, &full.into_dyn()) <= 1e-6);
    // LPI is defined for Llama-family models only.
    assert!(matches!(
        model.log_prob_increase(&tp[0]),
        Err(neg_core::AdapterError::Unsupported { .. })
    ));

    // The same weights saved with gamma/beta LayerNorm names (and no decoder weight) load and
    // give the same logits.
    let legacy = tiny("bert-legacy");
    let old = common::load(legacy.path());
    let texts: Vec<&str> = prompts.iter().map(|p| p.0.as_str()).collect();
    let a = model.logits(&texts).unwrap();
    let b = old.logits(&texts).unwrap();
    assert_eq!(a, b, "gamma/beta checkpoint gives different logits");
}
