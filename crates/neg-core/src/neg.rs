//! Ground-truth NEG by intervention sweep.
//!
//! For each (prompt, target, neuron) the activation at the prompt's position is shifted by each
//! `d` of the grid, the target probability shift recorded, and a zero-intercept least-squares
//! line fitted: its slope is the neuron empirical gradient (NEG), Pearson r its linearity.
use ndarray::{Array2, Array3, Array4};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::adapter::{ModelAdapter, NeuronId, Patch, PatchOp, TargetedPrompt};
use crate::error::{NegError, Result};
use crate::stats::fit_through_origin;
use crate::validate;

/// How a shift `d` changes an activation `a`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum ShiftMode {
    /// `a -> a + d * sign(a)` (sign(a) = 1 if a > 0 else -1): moves the magnitude, as the
    /// paper's code does. Its slope at d = 0 is NeurGrad.
    #[default]
    Magnitude,
    /// `a -> a + d`. Its slope at d = 0 is dP/da (CG).
    Additive,
}

impl ShiftMode {
    /// The additive delta that realises shift `d` on activation `a`.
    pub fn delta(self, a: f32, d: f32) -> f32 {
        match self {
            ShiftMode::Magnitude => d * validate::sign(a),
            ShiftMode::Additive => d,
        }
    }
}

impl std::str::FromStr for ShiftMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "magnitude" => Ok(Self::Magnitude),
            "additive" => Ok(Self::Additive),
            other => Err(format!(
                "unknown shift mode {other:?} (expected magnitude or additive)"
            )),
        }
    }
}

/// Parameters of an intervention sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepConfig {
    /// R: shifts span [-R, R].
    pub range: f32,
    /// s: grid step.
    pub step: f32,
    pub mode: ShiftMode,
    /// Most patch variants sent to the adapter in one call.
    pub max_variants_per_call: usize,
    /// Use [`ModelAdapter::patched_probs_naive`] (full recomputation) instead of the fast path.
    pub naive: bool,
}

impl Default for SweepConfig {
    /// R = 2, s = 0.2, magnitude shifts: the paper's NEG setting.
    fn default() -> Self {
        Self {
            range: 2.0,
            step: 0.2,
            mode: ShiftMode::Magnitude,
            max_variants_per_call: 4096,
            naive: false,
        }
    }
}

impl SweepConfig {
    /// The default sweep with range R.
    pub fn with_range(range: f32) -> Self {
        Self {
            range,
            ..Self::default()
        }
    }
}

/// The grid `k * s` for integer k with |k * s| <= R (a tolerance of 1e-6 steps absorbs
/// rounding, so R = 2, s = 0.2 gives 21 points from -2 to 2, zero included).
pub fn shift_grid(range: f32, step: f32) -> Result<Vec<f32>> {
    if !(range.is_finite() && range > 0.0) {
        return Err(NegError::InvalidRange(range));
    }
    if !(step.is_finite() && step > 0.0) {
        return Err(NegError::InvalidStep(step));
    }
    let n = (range as f64 / step as f64 + 1e-6).floor() as i64;
    if n < 1 {
        return Err(NegError::InvalidArgument {
            name: "step",
            reason: format!(
                "step {step} exceeds the range {range}: the grid would hold only d = 0"
            ),
        });
    }
    if n > 1_000_000 {
        return Err(NegError::InvalidArgument {
            name: "step",
            reason: format!("range {range} / step {step} gives more than 2 million shifts"),
        });
    }
    Ok((-n..=n).map(|k| (k as f64 * step as f64) as f32).collect())
}

/// Result of [`ground_truth_neg`]. P prompts, T targets, K neurons, S shifts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub config: SweepConfig,
    /// [S]
    pub shifts: Vec<f32>,
    /// [K]
    pub neurons: Vec<NeuronId>,
    /// [P, T] unpatched probabilities (from the patched path with an empty variant).
    pub base_probs: Array2<f32>,
    /// [P, K] activation of each neuron at each prompt's position.
    pub activations: Array2<f32>,
    /// [P, T, K, S] P(shifted) - P(unshifted).
    pub delta_probs: Array4<f32>,
    /// [P, T, K] zero-intercept slope of delta_probs on shifts.
    pub neg: Array3<f32>,
    /// [P, T, K] Pearson r (0 where the probability does not move).
    pub r: Array3<f32>,
}

/// Patched probabilities for many variants, in chunks of at most `chunk` variants per call,
/// with every value checked finite.
pub fn patched_probs_chunked<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompt: &TargetedPrompt,
    variants: &[Vec<Patch>],
    chunk: usize,
    naive: bool,
) -> Result<Array2<f32>> {
    let t = prompt.targets.len();
    let mut out = Array2::zeros((variants.len(), t));
    let chunk = chunk.max(1);
    for (c, vs) in variants.chunks(chunk).enumerate() {
        let probs = if naive {
            adapter.patched_probs_naive(prompt, vs)?
        } else {
            adapter.patched_probs(prompt, vs)?
        };
        validate::shape("patched_probs", &probs, &[vs.len(), t])?;
        validate::finite("patched_probs", &probs)?;
        out.slice_mut(ndarray::s![c * chunk..c * chunk + vs.len(), ..])
            .assign(&probs);
    }
    Ok(out)
}

/// Ground-truth NEG of `neurons` for every prompt and target, by intervention sweep through the
/// adapter's batched patch path (one call per prompt carries K x S variants, split at
/// `config.max_variants_per_call`).
pub fn ground_truth_neg<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
    neurons: &[NeuronId],
    config: &SweepConfig,
) -> Result<GroundTruth> {
    let t = validate::prompts(prompts)?;
    validate::neurons(adapter, neurons)?;
    let shifts = shift_grid(config.range, config.step)?;
    let forward = adapter.forward(prompts)?;
    validate::shape(
        "forward activations",
        &forward.activations,
        &[prompts.len(), adapter.num_layers(), adapter.ff_width()],
    )?;
    validate::finite("forward activations", &forward.activations)?;
    let (p_count, k_count, s_count) = (prompts.len(), neurons.len(), shifts.len());
    let activations = Array2::from_shape_fn((p_count, k_count), |(p, k)| {
        forward.activations[[p, neurons[k].layer, neurons[k].neuron]]
    });
    let mut base_probs = Array2::zeros((p_count, t));
    let mut delta_probs = Array4::zeros((p_count, t, k_count, s_count));
    for (p, prompt) in prompts.iter().enumerate() {
        let mut variants = Vec::with_capacity(1 + k_count * s_count);
        variants.push(Vec::new());
        for (k, &neuron) in neurons.iter().enumerate() {
            let a = activations[[p, k]];
            for &d in &shifts {
                variants.push(vec![Patch::ff(
                    neuron,
                    PatchOp::Add(config.mode.delta(a, d)),
                )]);
            }
        }
        let probs = patched_probs_chunked(
            adapter,
            prompt,
            &variants,
            config.max_variants_per_call,
            config.naive,
        )?;
        for j in 0..t {
            let base = probs[[0, j]];
            base_probs[[p, j]] = base;
            for k in 0..k_count {
                for s in 0..s_count {
                    delta_probs[[p, j, k, s]] = probs[[1 + k * s_count + s, j]] - base;
                }
            }
        }
    }
    let x: Vec<f64> = shifts.iter().map(|&d| d as f64).collect();
    let fits = (0..p_count * t * k_count)
        .into_par_iter()
        .map(|i| {
            let (p, j, k) = (i / (t * k_count), (i / k_count) % t, i % k_count);
            let y: Vec<f64> = (0..s_count)
                .map(|s| delta_probs[[p, j, k, s]] as f64)
                .collect();
            fit_through_origin(&x, &y)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let neg = Array3::from_shape_fn((p_count, t, k_count), |(p, j, k)| {
        fits[(p * t + j) * k_count + k].slope as f32
    });
    let r = Array3::from_shape_fn((p_count, t, k_count), |(p, j, k)| {
        fits[(p * t + j) * k_count + k].r as f32
    });
    Ok(GroundTruth {
        config: config.clone(),
        shifts,
        neurons: neurons.to_vec(),
        base_probs,
        activations,
        delta_probs,
        neg,
        r,
    })
}
