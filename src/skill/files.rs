//! Feature files: `features/<task>.safetensors` (probe features, readable by `neg
//! probe-features`) and `features/<task>.rows.jsonl` (one row per prompt, joinable to MCEval8K).

use anyhow::Result;
use ndarray::Array1;
use neg_probe::Split;

use super::*;
use crate::output::TensorFile;

/// The features as a safetensors file readable by the `probe_features` example: `scores`
/// `[P, K, N]` f32 (when kept), `option_index` `[P, N]` u8, `activations` `[P, N]` f32,
/// `probs` `[P, K]` f32, `labels` `[P]` i64, `split` `[P]` u8; metadata names the task,
/// context, model, answers and the layer layout (neuron i = layer i / ff_width).
pub fn features_safetensors(f: &SkillFeatures) -> Result<Vec<u8>> {
    features_safetensors_with(f, &[])
}

/// The rows of `f` as JSON lines (see [`FeatureRow`]).
pub fn feature_rows_jsonl(f: &SkillFeatures) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in &f.rows {
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// [`features_safetensors`] with extra metadata `(key, value)` pairs (dtype, template, seed,
/// shots, splits: the run's provenance; see docs/SCHEMA.md).
pub fn features_safetensors_with(f: &SkillFeatures, extra: &[(&str, String)]) -> Result<Vec<u8>> {
    let mut t = TensorFile::default();
    t.add("option_index", &f.option_index);
    t.add("activations", &f.activations);
    t.add("probs", &f.probs);
    t.add(
        "labels",
        &Array1::from_iter(f.labels.iter().map(|&y| y as i64)),
    );
    t.add(
        "split",
        &Array1::from_iter(f.splits.iter().map(|s| match s {
            Split::Train => 0u8,
            Split::Valid => 1,
            Split::Test => 2,
        })),
    );
    if let Some(s) = &f.scores {
        t.add("scores", s);
    }
    t.meta("task", f.task.clone());
    t.meta("context", f.context.clone());
    t.meta("model", f.model.clone());
    t.meta("answers", serde_json::to_string(&f.answers)?);
    t.meta("answer_ids", serde_json::to_string(&f.answer_ids)?);
    t.meta("n_layers", f.n_layers.to_string());
    t.meta("ff_width", f.ff_width.to_string());
    t.meta("method", "neurgrad");
    for (k, v) in extra {
        t.meta(k, v.clone());
    }
    t.to_bytes()
}
