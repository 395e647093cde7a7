//! The paper's neuron analyses, each a function returning a serde-serialisable result.
//!
//! - [`linearity`]: r per neuron for several shift ranges, the linear-neuron ratio, polarity
//!   ratios (Table 1, Fig. 2) and layer/prompt generality LG and PG (Table 5).
//! - [`estimation_quality`] / [`compare_methods`]: r and MAE of estimators against ground truth
//!   (Table 2).
//! - [`topk_attribution`]: output shift when enhancing each method's top-K neurons (Fig. 3).
//! - [`neg_distribution`]: cumulative |NEG| share, histogram, per-layer |NEG| (Figs. 4, 11, 12).
//! - [`multi_neuron_accumulation`]: predicted vs actual shifts of 2^n neurons (Figs. 5, 14).
use ndarray::{Array3, Array4};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::adapter::{AdapterError, ModelAdapter, NeuronId, Patch, PatchOp, TargetedPrompt};
use crate::error::{NegError, Result};
use crate::methods::{self, Method};
use crate::neg::{ground_truth_neg, patched_probs_chunked, GroundTruth, ShiftMode, SweepConfig};
use crate::sampling::sample_neurons_with;
use crate::stats::{self, StatsError};
use crate::validate;

// ---------------------------------------------------------------------------------------------
// Linearity (Table 1, Fig. 2, Table 5)

/// Parameters of [`linearity`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearityConfig {
    /// Shift ranges R; each is swept with step R / `points_per_side`.
    pub ranges: Vec<f32>,
    pub points_per_side: usize,
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
            linear_threshold: 0.95,
            linear_range: 2.0,
            mode: ShiftMode::Magnitude,
            max_variants_per_call: 4096,
        }
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
    if config.points_per_side == 0 {
        return Err(NegError::InvalidArgument {
            name: "points_per_side",
            reason: "must be at least 1".into(),
        });
    }
    let sweep = |range: f32| -> Result<GroundTruth> {
        let cfg = SweepConfig {
            range,
            step: range / config.points_per_side as f32,
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

// ---------------------------------------------------------------------------------------------
// Estimation quality (Table 2)

/// Agreement of one estimator with ground-truth NEG, pooled over prompts, targets and neurons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodQuality {
    pub name: String,
    pub r: f64,
    pub spearman: f64,
    pub mae: f64,
    pub n: usize,
}

/// Result of [`estimation_quality`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimationQuality {
    pub sweep: SweepConfig,
    pub methods: Vec<MethodQuality>,
    /// Methods the model does not support (e.g. LPI on a masked LM), with the reason.
    pub unsupported: Vec<(String, String)>,
}

/// The estimates [P, T, L, N] at the ground truth's (prompt, target, neuron) cells, flattened
/// in the ground truth's [P, T, K] order.
pub fn gather(truth: &GroundTruth, scores: &Array4<f32>) -> Result<Vec<f64>> {
    let (p, t, _) = truth.neg.dim();
    let s = scores.shape();
    if s[0] != p
        || s[1] != t
        || truth
            .neurons
            .iter()
            .any(|n| n.layer >= s[2] || n.neuron >= s[3])
    {
        return Err(NegError::Shape {
            what: "scores",
            got: s.to_vec(),
            expected: vec![p, t],
        });
    }
    Ok(truth
        .neg
        .indexed_iter()
        .map(|((pi, ti, k), _)| {
            let n = truth.neurons[k];
            scores[[pi, ti, n.layer, n.neuron]] as f64
        })
        .collect())
}

/// r, Spearman and MAE of each named estimate [P, T, L, N] against `truth.neg`.
pub fn estimation_quality(
    truth: &GroundTruth,
    estimates: &[(&str, &Array4<f32>)],
) -> Result<EstimationQuality> {
    let y: Vec<f64> = truth.neg.iter().map(|&v| v as f64).collect();
    let methods = estimates
        .iter()
        .map(|(name, scores)| {
            let x = gather(truth, scores)?;
            Ok(MethodQuality {
                name: name.to_string(),
                r: stats::pearson(&x, &y)?,
                spearman: stats::spearman(&x, &y)?,
                mae: stats::mae(&x, &y)?,
                n: y.len(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EstimationQuality {
        sweep: truth.config.clone(),
        methods,
        unsupported: vec![],
    })
}

/// Ground truth for `neurons` plus each of `methods` on the same prompts, compared. IG is
/// reported twice: `ig` (attribution a x mean gradient) and `ig_mean_gradient`. An
/// unsupported method is listed in `unsupported` instead of failing the comparison.
pub fn compare_methods<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
    neurons: &[NeuronId],
    sweep: &SweepConfig,
    methods_to_compare: &[Method],
) -> Result<(GroundTruth, EstimationQuality)> {
    let truth = ground_truth_neg(adapter, prompts, neurons, sweep)?;
    let mut named: Vec<(String, Array4<f32>)> = Vec::new();
    let mut unsupported = Vec::new();
    for &m in methods_to_compare {
        let result = match m {
            Method::Ig => {
                methods::integrated_gradients(adapter, prompts, methods::IG_STEPS).map(|ig| {
                    named.push(("ig".into(), ig.attribution));
                    named.push(("ig_mean_gradient".into(), ig.mean_gradient));
                })
            }
            other => methods::attribute(adapter, prompts, other)
                .map(|a| named.push((other.name().into(), a.scores))),
        };
        match result {
            Ok(()) => {}
            Err(NegError::Adapter(e @ AdapterError::Unsupported { .. })) => {
                unsupported.push((m.name().to_string(), e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    let refs: Vec<(&str, &Array4<f32>)> = named.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut quality = estimation_quality(&truth, &refs)?;
    quality.unsupported = unsupported;
    Ok((truth, quality))
}

// ---------------------------------------------------------------------------------------------
// Top-K knowledge attribution (Fig. 3)

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
fn polarity_patch(
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

// ---------------------------------------------------------------------------------------------
// NEG distribution (Figs. 4, 11, 12)

/// Equal-width histogram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// bins + 1 edges.
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// Mean and population variance of |NEG| in one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerMagnitude {
    pub layer: usize,
    pub mean_abs: f64,
    pub var_abs: f64,
}

/// Result of [`neg_distribution`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NegDistribution {
    /// Number of (prompt, target, neuron) values.
    pub count: usize,
    pub mean: f64,
    pub total_abs: f64,
    /// 1, 2, ..., 100.
    pub percentiles: Vec<f64>,
    /// Share of the total |NEG| held by the top q% of values (largest |NEG| first).
    pub cumulative_share: Vec<f64>,
    /// Histogram of the signed NEG values.
    pub histogram: Histogram,
    pub per_layer: Vec<LayerMagnitude>,
}

/// Distribution of NEG estimates `scores` [P, T, L, N] (e.g. NeurGrad for every neuron).
pub fn neg_distribution(scores: &Array4<f32>, bins: usize) -> Result<NegDistribution> {
    validate::finite("scores", scores)?;
    if scores.is_empty() {
        return Err(NegError::NoNeurons);
    }
    if bins == 0 {
        return Err(NegError::InvalidArgument {
            name: "bins",
            reason: "a histogram needs at least one bin".into(),
        });
    }
    let values: Vec<f64> = scores.iter().map(|&v| v as f64).collect();
    let count = values.len();
    let mut mags: Vec<f64> = values.iter().map(|v| v.abs()).collect();
    mags.par_sort_unstable_by(|a, b| b.total_cmp(a));
    let total_abs: f64 = mags.iter().sum();
    let mut prefix = Vec::with_capacity(count);
    let mut acc = 0.0;
    for m in &mags {
        acc += m;
        prefix.push(acc);
    }
    let percentiles: Vec<f64> = (1..=100).map(|q| q as f64).collect();
    let cumulative_share = percentiles
        .iter()
        .map(|q| {
            let m = ((q / 100.0) * count as f64).ceil().max(1.0) as usize;
            if total_abs > 0.0 {
                prefix[m.min(count) - 1] / total_abs
            } else {
                0.0
            }
        })
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let width = if hi > lo {
        (hi - lo) / bins as f64
    } else {
        1.0
    };
    let edges: Vec<f64> = (0..=bins).map(|i| lo + i as f64 * width).collect();
    let mut counts = vec![0u64; bins];
    for v in &values {
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let layers = scores.shape()[2];
    let per_layer = (0..layers)
        .into_par_iter()
        .map(|l| {
            let m: Vec<f64> = scores
                .index_axis(ndarray::Axis(2), l)
                .iter()
                .map(|v| v.abs() as f64)
                .collect();
            let n = m.len().max(1) as f64;
            let mean = m.iter().sum::<f64>() / n;
            let var = m.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            LayerMagnitude {
                layer: l,
                mean_abs: mean,
                var_abs: var,
            }
        })
        .collect();
    Ok(NegDistribution {
        count,
        mean: values.iter().sum::<f64>() / count as f64,
        total_abs,
        percentiles,
        cumulative_share,
        histogram: Histogram { edges, counts },
        per_layer,
    })
}

// ---------------------------------------------------------------------------------------------
// Multi-neuron accumulation (Figs. 5, 14)

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
