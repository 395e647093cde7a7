//! Linearity of neurons under shifts (Table 1, Fig. 2) and layer/prompt generality (Table 5).
use ndarray::Array3;
use serde::{Deserialize, Serialize};

use crate::adapter::{ModelAdapter, NeuronId, TargetedPrompt};
use crate::error::{NegError, Result};
use crate::neg::{ground_truth_neg, GroundTruth, ShiftMode, SweepConfig};

/// Parameters of [`linearity`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearityConfig {
    /// Shift ranges R; each is swept with step R / `points_per_side`, or `fixed_step`.
    pub ranges: Vec<f32>,
    pub points_per_side: usize,
    /// One step for every range (the paper's Fig. 2 grid: s = 0.2 for R up to 10); each R
    /// must then be a whole multiple of it. `None`: step R / `points_per_side`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_step: Option<f32>,
    /// |r| at or above this marks a linear neuron.
    pub linear_threshold: f32,
    /// The range at which linearity, polarity and generality are judged.
    pub linear_range: f32,
    pub mode: ShiftMode,
    pub max_variants_per_call: usize,
}

impl Default for LinearityConfig {
    /// Ranges 0.5, 1, 2, 5, 10 with 10 points per side (R = 2 gives the paper's s = 0.2);
    /// linear = |r| >= 0.95 within +-2.
    fn default() -> Self {
        Self {
            ranges: vec![0.5, 1.0, 2.0, 5.0, 10.0],
            points_per_side: 10,
            fixed_step: None,
            linear_threshold: 0.95,
            linear_range: 2.0,
            mode: ShiftMode::Magnitude,
            max_variants_per_call: 4096,
        }
    }
}

impl LinearityConfig {
    /// The grid step at shift range `range`: `fixed_step`, which must divide `range` into a
    /// whole number (at least 1) of steps, else `range / points_per_side`.
    pub fn step_for(&self, range: f32) -> Result<f32> {
        if self.points_per_side == 0 {
            return Err(NegError::InvalidArgument {
                name: "points_per_side",
                reason: "must be at least 1".into(),
            });
        }
        let Some(step) = self.fixed_step else {
            return Ok(range / self.points_per_side as f32);
        };
        if !(step.is_finite() && step > 0.0) {
            return Err(NegError::InvalidArgument {
                name: "fixed_step",
                reason: format!("must be positive, got {step}"),
            });
        }
        let points = range / step;
        if points.round() < 1.0 || (points - points.round()).abs() > 1e-3 {
            return Err(NegError::InvalidArgument {
                name: "fixed_step",
                reason: format!(
                    "range {range} is not a whole multiple (at least 1) of the step {step}"
                ),
            });
        }
        // range / points, not step itself: the grid then ends exactly at +-range.
        Ok(range / points.round())
    }

    /// Checks the grid of every range swept, `ranges` and `linear_range` ([`Self::step_for`]),
    /// so that a bad one fails before any sweep runs.
    pub fn check_grids(&self) -> Result<()> {
        for &r in self.ranges.iter().chain([&self.linear_range]) {
            self.step_for(r)?;
        }
        Ok(())
    }
}

/// Linearity at one shift range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangeLinearity {
    pub range: f32,
    pub step: f32,
    /// [P, T, K] Pearson r of each sweep.
    pub r: Array3<f32>,
    pub mean_abs_r: f64,
    /// Share of (prompt, target, neuron) with |r| >= threshold.
    pub linear_ratio: f64,
}

/// Coverage x distribution of linear neurons over bins (layers or prompts), paper eqs. 5-8.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generality {
    /// Linear neurons per bin.
    pub counts: Vec<usize>,
    /// Share of bins holding at least one linear neuron.
    pub coverage: f64,
    /// 1 - Var(counts) / maxVar, maxVar being the variance with every linear neuron in one bin
    /// (population variances); 1 when there is a single bin or no linear neuron.
    pub distribution: f64,
    pub generality: f64,
}

/// [`Generality`] of per-bin counts.
pub fn generality(counts: &[usize]) -> Generality {
    let bins = counts.len();
    let total: usize = counts.iter().sum();
    if bins == 0 {
        return Generality {
            counts: vec![],
            coverage: 0.0,
            distribution: 0.0,
            generality: 0.0,
        };
    }
    let b = bins as f64;
    let coverage = counts.iter().filter(|&&c| c > 0).count() as f64 / b;
    let mean = total as f64 / b;
    let var = counts
        .iter()
        .map(|&c| (c as f64 - mean).powi(2))
        .sum::<f64>()
        / b;
    let max_var = (total as f64).powi(2) * (b - 1.0) / (b * b);
    let distribution = if max_var > 0.0 {
        1.0 - var / max_var
    } else {
        1.0
    };
    Generality {
        counts: counts.to_vec(),
        coverage,
        distribution,
        generality: coverage * distribution,
    }
}

/// Result of [`linearity`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearityReport {
    pub config: LinearityConfig,
    pub neurons: Vec<NeuronId>,
    pub per_range: Vec<RangeLinearity>,
    /// At `linear_range`: share with |r| >= threshold.
    pub linear_ratio: f64,
    /// At `linear_range`: share of ground-truth NEG > 0 and < 0 (Table 1 uses ground truth so
    /// that near-zero NeurGrad values do not flip polarity).
    pub positive_ratio: f64,
    pub negative_ratio: f64,
    /// Bins = layers.
    pub layer_generality: Generality,
    /// Bins = prompts.
    pub prompt_generality: Generality,
}

/// Linearity statistics from sweeps already run: `per_range` ground truths (any ranges) and the
/// one at the judging range.
pub fn linearity_from(
    config: &LinearityConfig,
    per_range: &[GroundTruth],
    judged: &GroundTruth,
    num_layers: usize,
) -> Result<LinearityReport> {
    let thr = config.linear_threshold;
    let summarise = |g: &GroundTruth| -> RangeLinearity {
        let n = g.r.len().max(1) as f64;
        RangeLinearity {
            range: g.config.range,
            step: g.config.step,
            r: g.r.clone(),
            mean_abs_r: g.r.iter().map(|v| v.abs() as f64).sum::<f64>() / n,
            linear_ratio: g.r.iter().filter(|v| v.abs() >= thr).count() as f64 / n,
        }
    };
    let n = judged.neg.len().max(1) as f64;
    let p_count = judged.r.dim().0;
    let mut per_layer = vec![0usize; num_layers];
    let mut per_prompt = vec![0usize; p_count];
    for ((p, _, k), r) in judged.r.indexed_iter() {
        if r.abs() >= thr {
            let layer = judged.neurons[k].layer;
            if layer >= num_layers {
                return Err(NegError::InvalidArgument {
                    name: "num_layers",
                    reason: format!(
                        "neuron {:?} lies in layer {layer} of a {num_layers}-layer model",
                        judged.neurons[k]
                    ),
                });
            }
            per_layer[layer] += 1;
            per_prompt[p] += 1;
        }
    }
    Ok(LinearityReport {
        config: config.clone(),
        neurons: judged.neurons.clone(),
        per_range: per_range.iter().map(summarise).collect(),
        linear_ratio: summarise(judged).linear_ratio,
        positive_ratio: judged.neg.iter().filter(|&&v| v > 0.0).count() as f64 / n,
        negative_ratio: judged.neg.iter().filter(|&&v| v < 0.0).count() as f64 / n,
        layer_generality: generality(&per_layer),
        prompt_generality: generality(&per_prompt),
    })
}

/// Sweeps `neurons` at every configured range (and at `linear_range`) and summarises linearity.
pub fn linearity<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
    neurons: &[NeuronId],
    config: &LinearityConfig,
) -> Result<LinearityReport> {
    config.check_grids()?;
    let sweep = |range: f32| -> Result<GroundTruth> {
        let cfg = SweepConfig {
            range,
            step: config.step_for(range)?,
            mode: config.mode,
            max_variants_per_call: config.max_variants_per_call,
            naive: false,
        };
        ground_truth_neg(adapter, prompts, neurons, &cfg)
    };
    let per_range = config
        .ranges
        .iter()
        .map(|&r| sweep(r))
        .collect::<Result<Vec<_>>>()?;
    let judged = match per_range
        .iter()
        .find(|g| g.config.range == config.linear_range)
    {
        Some(g) => g.clone(),
        None => sweep(config.linear_range)?,
    };
    linearity_from(config, &per_range, &judged, adapter.num_layers())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_for_scaled_and_fixed_grids() {
        let scaled = LinearityConfig::default();
        assert!((scaled.step_for(2.0).unwrap() - 0.2).abs() < 1e-7);
        assert!((scaled.step_for(10.0).unwrap() - 1.0).abs() < 1e-7);
        let fixed = LinearityConfig {
            fixed_step: Some(0.2),
            ..LinearityConfig::default()
        };
        for r in [0.2f32, 1.0, 2.0, 10.0] {
            assert!((fixed.step_for(r).unwrap() - 0.2).abs() < 1e-6, "R = {r}");
        }
        for r in [0.1f32, 0.5, 0.3] {
            let e = fixed.step_for(r).unwrap_err().to_string();
            assert!(e.contains(&format!("range {r}")), "{e}");
        }
        let zero = LinearityConfig {
            fixed_step: Some(0.0),
            ..LinearityConfig::default()
        };
        assert!(zero
            .step_for(1.0)
            .unwrap_err()
            .to_string()
            .contains("positive"));
    }
}
