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
///
/// It is [`AccumulationPlan::new`], then [`AccumulationPlan::probs`] for every prompt, then
/// [`AccumulationPlan::report`]; a caller that spreads the prompts over processes (or keeps
/// their probabilities to resume) runs those steps itself, with the same numbers.
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
    let plan = AccumulationPlan::new(config, prompts.len(), l, n)?;
    let probs = prompts
        .iter()
        .enumerate()
        .map(|(p, prompt)| plan.probs(adapter, prompt, p, neg, activations, p))
        .collect::<Result<Vec<_>>>()?;
    plan.report(neg, &probs)
}

/// The neurons [`multi_neuron_accumulation`] shifts for each prompt (drawn in prompt order
/// from one seeded generator, so they depend only on the config, the prompt count and the
/// model's shape) and its shift grid.
#[derive(Clone, Debug)]
pub struct AccumulationPlan {
    config: AccumulationConfig,
    shifts: Vec<f32>,
    sizes: Vec<usize>,
    /// The model's FF shape the neurons were drawn from.
    layers: usize,
    width: usize,
    /// [prompt][size] -> the neurons shifted together.
    chosen: Vec<Vec<Vec<NeuronId>>>,
}

impl AccumulationPlan {
    /// Checks `config` and draws the neurons of `prompts` prompts of a model of `layers` x
    /// `width` FF neurons.
    pub fn new(
        config: &AccumulationConfig,
        prompts: usize,
        layers: usize,
        width: usize,
    ) -> Result<Self> {
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
        let total = layers * width;
        let sizes: Vec<usize> = (0..=config.max_log2.min(63))
            .map(|j| 1usize << j)
            .take_while(|&s| s <= total)
            .collect();
        if sizes.is_empty() {
            return Err(NegError::NoNeurons);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let chosen = (0..prompts)
            .map(|_| {
                sizes
                    .iter()
                    .map(|&s| sample_neurons_with(&mut rng, layers, width, s))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AccumulationPlan {
            config: config.clone(),
            shifts,
            sizes,
            layers,
            width,
            chosen,
        })
    }

    /// Prompt `prompt`'s patched probabilities `[1 + T x sizes x shifts, T]` (row 0
    /// unpatched), its neurons shifted by the polarity of `neg` [_, T, L, N] and from the
    /// `activations` [_, L, N] of row `row` of those arrays (`prompt` itself when they hold
    /// every prompt; its index within a block when they hold a block).
    pub fn probs<A: ModelAdapter + ?Sized>(
        &self,
        adapter: &A,
        prompt: &TargetedPrompt,
        index: usize,
        neg: &Array4<f32>,
        activations: &Array3<f32>,
        row: usize,
    ) -> Result<ndarray::Array2<f32>> {
        let t = validate::prompts(std::slice::from_ref(prompt))?;
        let (l, n) = (self.layers, self.width);
        if row >= neg.dim().0 || neg.dim().1 != t || (neg.dim().2, neg.dim().3) != (l, n) {
            return Err(NegError::InvalidArgument {
                name: "row",
                reason: format!(
                    "row {row} of NEG {:?} for a prompt of {t} targets",
                    neg.dim()
                ),
            });
        }
        validate::shape(
            "activations",
            activations,
            &[activations.dim().0.max(row + 1), l, n],
        )?;
        // This prompt's rows only: the caller may hold every prompt's.
        validate::finite("neg", &neg.slice(ndarray::s![row, .., .., ..]))?;
        validate::finite("activations", &activations.slice(ndarray::s![row, .., ..]))?;
        let chosen = self
            .chosen
            .get(index)
            .ok_or_else(|| NegError::InvalidArgument {
                name: "index",
                reason: format!("prompt {index} of a plan for {}", self.chosen.len()),
            })?;
        let mut variants = vec![Vec::new()];
        for ti in 0..t {
            for set in chosen {
                for &d in &self.shifts {
                    variants.push(
                        set.iter()
                            .map(|&id| {
                                polarity_patch(self.config.mode, activations, neg, row, ti, id, d)
                            })
                            .collect(),
                    );
                }
            }
        }
        patched_probs_chunked(
            adapter,
            prompt,
            &variants,
            self.config.max_variants_per_call,
            false,
        )
    }

    /// The report from every prompt's [`AccumulationPlan::probs`] (in prompt order) and the
    /// `neg` [P, T, L, N] of all prompts.
    pub fn report(
        &self,
        neg: &Array4<f32>,
        probs: &[ndarray::Array2<f32>],
    ) -> Result<AccumulationReport> {
        let (shifts, sizes) = (&self.shifts, &self.sizes);
        let (p_count, t, l, n) = neg.dim();
        if probs.len() != p_count
            || p_count != self.chosen.len()
            || (l, n) != (self.layers, self.width)
        {
            return Err(NegError::InvalidArgument {
                name: "probs",
                reason: format!(
                    "{} prompts' probabilities and NEG {:?} for a plan of {} prompts of {} x {} neurons",
                    probs.len(),
                    neg.dim(),
                    self.chosen.len(),
                    self.layers,
                    self.width
                ),
            });
        }
        let ns = shifts.len();
        let rows = 1 + t * sizes.len() * ns;
        // [size][(prompt, target)] -> (predicted, actual) series over shifts
        let mut series: Vec<Vec<(Vec<f64>, Vec<f64>)>> = vec![Vec::new(); sizes.len()];
        for (p, (chosen, probs)) in self.chosen.iter().zip(probs).enumerate() {
            validate::shape("probs", probs, &[rows, t])?;
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
        let config = &self.config;
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
            shifts: shifts.clone(),
            points,
        })
    }
}
