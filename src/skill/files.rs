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
    if !f.score_batches.is_empty() {
        anyhow::bail!(
            "task {}: the scores are in the resume cache, not in memory; write the file with \
             write_features_file",
            f.task
        );
    }
    let mut t = TensorFile::default();
    t.add("option_index", &f.data.option_index().t());
    t.add("activations", &f.activations()?.t());
    t.add("probs", &f.probs);
    t.add(
        "labels",
        &Array1::from_iter(f.labels.iter().map(|&y| y as i64)),
    );
    t.add("split", &Array1::from_iter(split_ids(f)));
    if let Some(s) = &f.scores {
        t.add("scores", s);
    }
    for (k, v) in feature_metadata(f, extra)? {
        t.meta(&k, v);
    }
    t.to_bytes()
}

/// Writes the features file of `f` (the tensors and metadata of [`features_safetensors_with`])
/// to `path` atomically without building it in memory: each tensor goes to the file as it is,
/// and kept NeurGrad that lives in the resume cache ([`SkillFeatures::score_batches`]) is
/// copied in one batch at a time. So writing adds no memory in the number of prompts.
pub fn write_features_file(
    path: &std::path::Path,
    f: &SkillFeatures,
    extra: &[(&str, String)],
) -> Result<()> {
    use safetensors::Dtype;
    let (p, k, w) = (f.rows.len(), f.answers.len(), f.n_layers * f.ff_width);
    let mut l = crate::output::TensorLayout::default();
    l.tensor("option_index", Dtype::U8, &[p, w]);
    l.tensor("activations", Dtype::F32, &[p, w]);
    l.tensor("probs", Dtype::F32, &[p, k]);
    l.tensor("labels", Dtype::I64, &[p]);
    l.tensor("split", Dtype::U8, &[p]);
    let has_scores = f.scores.is_some() || !f.score_batches.is_empty();
    if has_scores {
        l.tensor("scores", Dtype::F32, &[p, k, w]);
    }
    for (key, v) in feature_metadata(f, extra)? {
        l.meta(&key, v);
    }
    l.write(path, |r| {
        // The data set is neuron-major (`[L*N, P]`, perhaps on disk); the file is prompt-major.
        r.put_transposed("option_index", f.data.option_index())?;
        r.put_transposed("activations", f.activations()?)?;
        r.put("probs", 0, f.probs.iter().copied())?;
        r.put("labels", 0, f.labels.iter().map(|&y| y as i64))?;
        r.put("split", 0, split_ids(f))?;
        if let Some(s) = &f.scores {
            r.put("scores", 0, s.iter().copied())?;
        }
        for b in &f.score_batches {
            let batch = super::cache::read_batch(&b.entry, b.rows.len(), k)?;
            for (i, &row) in b.rows.iter().enumerate() {
                // [T, L, N] in row-major order is the row's [K, L*N].
                let slab = batch.scores.index_axis(ndarray::Axis(0), i);
                r.put("scores", row * k * w, slab.iter().copied())?;
            }
        }
        Ok(())
    })
}

/// The on-disk split id of each row: 0 train, 1 valid, 2 test.
fn split_ids(f: &SkillFeatures) -> impl Iterator<Item = u8> + '_ {
    f.splits.iter().map(|s| match s {
        Split::Train => 0u8,
        Split::Valid => 1,
        Split::Test => 2,
    })
}

/// The metadata of a features file: task, context, model, answers, layer layout and method,
/// then `extra` (later keys win, as with repeated `meta` calls).
fn feature_metadata(f: &SkillFeatures, extra: &[(&str, String)]) -> Result<Vec<(String, String)>> {
    let mut m = vec![
        ("task".to_string(), f.task.clone()),
        ("context".to_string(), f.context.clone()),
        ("model".to_string(), f.model.clone()),
        ("answers".to_string(), serde_json::to_string(&f.answers)?),
        (
            "answer_ids".to_string(),
            serde_json::to_string(&f.answer_ids)?,
        ),
        ("n_layers".to_string(), f.n_layers.to_string()),
        ("ff_width".to_string(), f.ff_width.to_string()),
        ("method".to_string(), "neurgrad".to_string()),
    ];
    m.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Ok(m)
}
