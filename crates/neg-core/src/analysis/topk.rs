//! Top-K knowledge attribution: output shift when enhancing each method's top-K neurons (Fig. 3).
use ndarray::{Array3, Array4};
use serde::{Deserialize, Serialize};

use crate::adapter::{ModelAdapter, NeuronId, Patch, PatchOp, TargetedPrompt};
use crate::error::{NegError, Result};
use crate::methods::Method;
use crate::neg::{patched_probs_chunked, ShiftMode};
use crate::validate;

/// How a method's scores rank neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    /// Largest |score| first, both polarities (NeurGrad, CG).
    Magnitude,
    /// Largest score first (IG, LPI, which only consider positive neurons).
    Positive,
}

impl Ranking {
    /// The paper's ranking for a method.
    pub fn for_method(method: Method) -> Self {
        match method {
            Method::NeurGrad | Method::Cg => Ranking::Magnitude,
            Method::Ig | Method::Lpi => Ranking::Positive,
        }
    }
}

/// Parameters of [`topk_attribution`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopKConfig {
    pub ks: Vec<usize>,
    pub shifts: Vec<f32>,
    /// How an enhancing shift is applied: magnitude (default, the paper's NEG sense) moves
    /// a -> a + shift * polarity * sign(a); additive moves a -> a + shift * polarity.
    pub mode: ShiftMode,
    pub max_variants_per_call: usize,
}

impl Default for TopKConfig {
    /// K = 1, 4, 16; shifts 0.1, 0.2, ..., 1.0.
    fn default() -> Self {
        Self {
            ks: vec![1, 4, 16],
            shifts: (1..=10).map(|i| i as f32 / 10.0).collect(),
            mode: ShiftMode::Magnitude,
            max_variants_per_call: 4096,
        }
    }
}

/// Mean target-probability shift when enhancing one method's top-K neurons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopKCurve {
    pub method: String,
    pub k: usize,
    pub shifts: Vec<f32>,
    /// Averaged over prompts and targets, one value per shift.
    pub mean_output_shift: Vec<f64>,
}

/// The patch that shifts neuron `id` of prompt `p` by `shift` in the direction of its score's
/// sign for target `ti` (`scores[[p, ti, layer, neuron]]`), from activation
/// `activations[[p, layer, neuron]]` under `mode`. Top-K attribution and multi-neuron
/// accumulation both push neurons this way, so they share it.
pub(super) fn polarity_patch(
    mode: ShiftMode,
    activations: &Array3<f32>,
    scores: &Array4<f32>,
    p: usize,
    ti: usize,
    id: NeuronId,
    shift: f32,
) -> Patch {
    let a = activations[[p, id.layer, id.neuron]];
    let pol = validate::sign(scores[[p, ti, id.layer, id.neuron]]);
    Patch::ff(id, PatchOp::Add(mode.delta(a, shift * pol)))
}

/// For each prompt and target, enhances the top-K neurons by `scores` [P, T, L, N] (polarity =
/// sign of the score) and records the mean probability shift per K and shift. `activations`
/// [P, L, N] are the unpatched activations (for magnitude shifts).
pub fn topk_attribution<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
    name: &str,
    scores: &Array4<f32>,
    activations: &Array3<f32>,
    ranking: Ranking,
    config: &TopKConfig,
) -> Result<Vec<TopKCurve>> {
    let t = validate::prompts(prompts)?;
    let (l, n) = (adapter.num_layers(), adapter.ff_width());
    validate::shape("scores", scores, &[prompts.len(), t, l, n])?;
    validate::shape("activations", activations, &[prompts.len(), l, n])?;
    validate::finite("scores", scores)?;
    if config.ks.is_empty() || config.ks.contains(&0) {
        return Err(NegError::NoNeurons);
    }
    if let Some(&k) = config.ks.iter().find(|&&k| k > l * n) {
        return Err(NegError::InvalidArgument {
            name: "ks",
            reason: format!("K = {k} exceeds the model's {} neurons", l * n),
        });
    }
    if config.shifts.is_empty() || config.shifts.iter().any(|s| !s.is_finite()) {
        return Err(NegError::InvalidArgument {
            name: "shifts",
            reason: format!("need finite shifts, got {:?}", config.shifts),
        });
    }
    let (nk, ns) = (config.ks.len(), config.shifts.len());
    let mut sums = vec![0.0f64; nk * ns];
    for (p, prompt) in prompts.iter().enumerate() {
        let mut variants = vec![Vec::new()];
        for ti in 0..t {
            let mut order: Vec<(usize, usize)> = (0..l)
                .flat_map(|li| (0..n).map(move |ni| (li, ni)))
                .collect();
            let key = |&(li, ni): &(usize, usize)| {
                let s = scores[[p, ti, li, ni]];
                match ranking {
                    Ranking::Magnitude => s.abs(),
                    Ranking::Positive => s,
                }
            };
            order.sort_by(|a, b| key(b).total_cmp(&key(a)));
            for &k in &config.ks {
                for &shift in &config.shifts {
                    variants.push(
                        order[..k]
                            .iter()
                            .map(|&(li, ni)| {
                                let id = NeuronId::new(li, ni);
                                polarity_patch(config.mode, activations, scores, p, ti, id, shift)
                            })
                            .collect(),
                    );
                }
            }
        }
        let probs = patched_probs_chunked(
            adapter,
            prompt,
            &variants,
            config.max_variants_per_call,
            false,
        )?;
        for ti in 0..t {
            for (i, sum) in sums.iter_mut().enumerate() {
                let row = 1 + ti * nk * ns + i;
                *sum += (probs[[row, ti]] - probs[[0, ti]]) as f64;
            }
        }
    }
    let count = (prompts.len() * t) as f64;
    Ok(config
        .ks
        .iter()
        .enumerate()
        .map(|(ki, &k)| TopKCurve {
            method: name.to_string(),
            k,
            shifts: config.shifts.clone(),
            mean_output_shift: (0..ns).map(|si| sums[ki * ns + si] / count).collect(),
        })
        .collect())
}
