//! Multi-neuron accumulation: predicted vs actual shifts of 2^n neurons (Figs. 5, 14).
use ndarray::{Array3, Array4};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::topk::polarity_patch;
use crate::adapter::{ModelAdapter, NeuronId, TargetedPrompt};
use crate::error::{NegError, Result};
use crate::neg::{patched_probs_chunked, ShiftMode};
use crate::sampling::sample_neurons_with;
use crate::stats::{self, StatsError};
use crate::validate;

/// Parameters of [`multi_neuron_accumulation`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccumulationConfig {
    /// Neuron counts 2^0 .. 2^max_log2, capped at the model's neuron count.
    pub max_log2: u32,
    /// Shifts 0, step, ..., max_shift.
    pub max_shift: f32,
    pub step: f32,
    pub seed: u64,
    pub mode: ShiftMode,
    pub max_variants_per_call: usize,
}

impl Default for AccumulationConfig {
    /// 2^0..2^12 neurons, shifts in [0, 0.5] step 0.01 (Fig. 5).
    fn default() -> Self {
        Self {
            max_log2: 12,
            max_shift: 0.5,
            step: 0.01,
            seed: 0,
            mode: ShiftMode::Magnitude,
            max_variants_per_call: 4096,
        }
    }
}

/// Predicted vs actual shifts for one neuron count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccumulationPoint {
    pub neurons: usize,
    /// Mean over (prompt, target) of r(predicted, actual) across the shift grid.
    pub r_mean: f64,
    /// r(predicted, actual) pooled over every (prompt, target, shift): also tests magnitudes.
    pub r_pooled: f64,
    /// Mean predicted (sum NEG x shift) and actual probability shift at the largest shift.
    pub mean_predicted_at_max: f64,
    pub mean_actual_at_max: f64,
    /// (prompt, target) pairs with a defined r (all-zero NEG gives none).
    pub pairs: usize,
}

/// Result of [`multi_neuron_accumulation`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccumulationReport {
    pub config: AccumulationConfig,
    pub shifts: Vec<f32>,
    pub points: Vec<AccumulationPoint>,
}

/// For each prompt and each count 2^j, samples that many distinct neurons (seeded), shifts them
/// all together by d in polarity-aligned directions (polarity = sign of `neg` [P, T, L, N], e.g.
/// NeurGrad) and correlates the predicted shift `d * sum |NEG|` with the actual one.
pub fn multi_neuron_accumulation<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
    neg: &Array4<f32>,
    activations: &Array3<f32>,
    config: &AccumulationConfig,
) -> Result<AccumulationReport> {
    let t = validate::prompts(prompts)?;
    let (l, n) = (adapter.num_layers(), adapter.ff_width());
    validate::shape("neg", neg, &[prompts.len(), t, l, n])?;
    validate::shape("activations", activations, &[prompts.len(), l, n])?;
    validate::finite("neg", neg)?;
    validate::finite("activations", activations)?;
    if !(config.max_shift.is_finite() && config.max_shift > 0.0) {
        return Err(NegError::InvalidRange(config.max_shift));
    }
    if !(config.step.is_finite() && config.step > 0.0) {
        return Err(NegError::InvalidStep(config.step));
    }
    let steps = (config.max_shift as f64 / config.step as f64 + 1e-6).floor() as usize;
    let shifts: Vec<f32> = (0..=steps)
        .map(|k| (k as f64 * config.step as f64) as f32)
        .collect();
    let total = l * n;
    let sizes: Vec<usize> = (0..=config.max_log2.min(63))
        .map(|j| 1usize << j)
        .take_while(|&s| s <= total)
        .collect();
    if sizes.is_empty() {
        return Err(NegError::NoNeurons);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let ns = shifts.len();
    // [size][(prompt, target)] -> (predicted, actual) series over shifts
    let mut series: Vec<Vec<(Vec<f64>, Vec<f64>)>> = vec![Vec::new(); sizes.len()];
    for (p, prompt) in prompts.iter().enumerate() {
        let chosen: Vec<Vec<NeuronId>> = sizes
            .iter()
            .map(|&s| sample_neurons_with(&mut rng, l, n, s))
            .collect::<Result<_>>()?;
        let mut variants = vec![Vec::new()];
        for ti in 0..t {
            for set in &chosen {
                for &d in &shifts {
                    variants.push(
                        set.iter()
                            .map(|&id| polarity_patch(config.mode, activations, neg, p, ti, id, d))
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
            for (si, set) in chosen.iter().enumerate() {
                let sum_abs: f64 = set
                    .iter()
                    .map(|id| neg[[p, ti, id.layer, id.neuron]].abs() as f64)
                    .sum();
                let base_row = 1 + (ti * sizes.len() + si) * ns;
                let predicted: Vec<f64> = shifts.iter().map(|&d| d as f64 * sum_abs).collect();
                let actual: Vec<f64> = (0..ns)
                    .map(|k| (probs[[base_row + k, ti]] - probs[[0, ti]]) as f64)
                    .collect();
                series[si].push((predicted, actual));
            }
        }
    }
    let points = sizes
        .par_iter()
        .zip(series.par_iter())
        .map(|(&size, pairs)| {
            let rs: Vec<f64> = pairs
                .iter()
                .filter_map(|(x, y)| match stats::pearson(x, y) {
                    Ok(r) => Some(Ok(r)),
                    // All-zero NEG (constant prediction) or a flat response: no defined r.
                    Err(StatsError::ZeroVariance { .. }) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<std::result::Result<_, _>>()?;
            let all_x: Vec<f64> = pairs.iter().flat_map(|(x, _)| x.iter().copied()).collect();
            let all_y: Vec<f64> = pairs.iter().flat_map(|(_, y)| y.iter().copied()).collect();
            let r_pooled = match stats::pearson(&all_x, &all_y) {
                Ok(r) => r,
                Err(StatsError::ZeroVariance { .. }) => 0.0,
                Err(e) => return Err(e.into()),
            };
            let m = pairs.len().max(1) as f64;
            Ok(AccumulationPoint {
                neurons: size,
                r_mean: if rs.is_empty() {
                    0.0
                } else {
                    rs.iter().sum::<f64>() / rs.len() as f64
                },
                r_pooled,
                mean_predicted_at_max: pairs.iter().map(|(x, _)| x[ns - 1]).sum::<f64>() / m,
                mean_actual_at_max: pairs.iter().map(|(_, y)| y[ns - 1]).sum::<f64>() / m,
                pairs: rs.len(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AccumulationReport {
        config: config.clone(),
        shifts,
        points,
    })
}
