//! Skill neurons from auxiliary metrics (Zhao et al. 2025, "Auxiliary Metrics Help Decoding
//! Skill Neurons in the Wild").
//!
//! Each neuron's activation (at the answer position of a multiple-choice prompt, or averaged
//! over the tokens of a greedy generation) is correlated with a per-prompt auxiliary metric:
//! an external label one-vs-rest ([`one_vs_rest`]) or the model's own confidence
//! ([`Confidence::Gold`], [`Confidence::Max`]).
//!
//! - [`correlate`]: Pearson and Spearman per neuron (through [`crate::stats`]), two-sided
//!   two-sided p-values, by permutation (seeded) or Student's t ([`SignificanceTest`]), and
//!   Benjamini-Hochberg q-values ([`benjamini_hochberg`]).
//! - [`ablation_validation`]: ablating the top correlated neurons (set to their mean) should
//!   move the metric more than ablating the same number of random neurons; both are reported
//!   as mean and spread over seeds (each seed draws a bootstrap resample of the prompts and a
//!   random neuron set).
//! - [`generation_activations`]: mean FF activations over greedy generations, for metrics per
//!   generation. Ablation validation needs patched outputs, which the adapter's `generate`
//!   does not take, so it is defined for multiple-choice prompts only.
//!
//! ```
//! use ndarray::Array2;
//! use neg_core::aux_metrics::{correlate, CorrelationConfig};
//!
//! // Neuron 0 tracks the metric, neuron 1 does not.
//! let metric: Vec<f64> = (0..40).map(|i| (i % 7) as f64).collect();
//! let acts = Array2::from_shape_fn((40, 2), |(i, j)| {
//!     if j == 0 { metric[i] * 2.0 + 1.0 } else { ((i * 13) % 11) as f64 }
//! });
//! let cfg = CorrelationConfig { permutations: 200, seed: 1, ..Default::default() };
//! let r = correlate(acts.view(), &metric, &cfg)?;
//! assert!((r[0].pearson - 1.0).abs() < 1e-12 && r[0].q_pearson < 0.01);
//! assert!(r[1].p_pearson > 0.05);
//! # Ok::<(), neg_core::aux_metrics::AuxError>(())
//! ```
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adapter::{
    AdapterError, Generation, ModelAdapter, NeuronId, Patch, PatchOp, TargetedPrompt,
};
use crate::stats::{self, StatsError};

/// Why an auxiliary-metric step could not run. Each variant names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum AuxError {
    #[error("{what}: expected {expected}, got {got}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("need at least {needed} prompts to correlate, got {got}")]
    TooFewPrompts { needed: usize, got: usize },
    #[error("the metric is constant ({value}) over all {n} prompts, so no correlation is defined")]
    ConstantMetric { value: f64, n: usize },
    #[error(
        "neuron {unit} is constant ({value}) over all {n} prompts, so its correlation is undefined"
    )]
    ConstantActivations { unit: usize, value: f64, n: usize },
    #[error("non-finite value {value} in {what} at {index:?}")]
    NonFinite {
        what: &'static str,
        index: Vec<usize>,
        value: f64,
    },
    #[error("p-value {value} at index {index} is outside [0, 1]")]
    InvalidPValue { index: usize, value: f64 },
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument { name: &'static str, reason: String },
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("model adapter: {0}")]
    Adapter(#[from] AdapterError),
    #[error("statistics: {0}")]
    Stats(#[from] StatsError),
}

pub type Result<T, E = AuxError> = std::result::Result<T, E>;

/// How a correlation's two-sided p-value is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SignificanceTest {
    /// Permutations of the metric: exact under exchangeability whatever the distributions,
    /// but never below 1 / (B + 1), so with many neurons Benjamini-Hochberg can reject only
    /// when B is far larger than the number of neurons.
    #[default]
    Permutation,
    /// Student's t with n - 2 degrees of freedom on t = r sqrt((n - 2) / (1 - r^2)), as
    /// scipy's `pearsonr` (exact for bivariate normal data) and `spearmanr` (an approximation
    /// good for n above about 10). Reaches the small p-values that thousands of tests need,
    /// but trusts its assumptions: a metric with few distinct values or outlying activations
    /// makes it anti-conservative.
    StudentT,
}

/// Significance test settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrelationConfig {
    /// The test behind each p-value.
    pub test: SignificanceTest,
    /// Number of metric permutations B ([`SignificanceTest::Permutation`]);
    /// p = (1 + #{|r_perm| >= |r|}) / (1 + B).
    pub permutations: usize,
    /// Seed of the permutations.
    pub seed: u64,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self {
            test: SignificanceTest::Permutation,
            permutations: 1000,
            seed: 0,
        }
    }
}

/// Two-sided p-value of a correlation `r` over `n` pairs under Student's t with n - 2 degrees
/// of freedom: `I_x(df / 2, 1 / 2)` with `x = df / (df + t^2) = 1 - r^2`, the regularized
/// incomplete beta (statrs), which keeps relative precision far into the tail where
/// `1 - cdf(t)` would round to 0. |r| = 1 gives 0.
pub fn student_t_p_value(r: f64, n: usize) -> Result<f64> {
    if n < 3 {
        return Err(AuxError::TooFewPrompts { needed: 3, got: n });
    }
    if !r.is_finite() || r.abs() > 1.0 + 1e-12 {
        return Err(AuxError::InvalidArgument {
            name: "r",
            reason: format!("a correlation must be in [-1, 1], got {r}"),
        });
    }
    let x = (1.0 - r * r).max(0.0);
    if x == 0.0 {
        return Ok(0.0);
    }
    let df = (n - 2) as f64;
    Ok(statrs::function::beta::beta_reg(df / 2.0, 0.5, x).clamp(0.0, 1.0))
}

/// Correlation of one neuron (column) with the metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitCorrelation {
    pub unit: usize,
    pub pearson: f64,
    pub spearman: f64,
    pub p_pearson: f64,
    pub p_spearman: f64,
    /// Benjamini-Hochberg adjusted p-values over all units.
    pub q_pearson: f64,
    pub q_spearman: f64,
}

/// Which correlation ranks neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    Pearson,
    Spearman,
}

impl UnitCorrelation {
    pub fn r(&self, s: Statistic) -> f64 {
        match s {
            Statistic::Pearson => self.pearson,
            Statistic::Spearman => self.spearman,
        }
    }
    pub fn q(&self, s: Statistic) -> f64 {
        match s {
            Statistic::Pearson => self.q_pearson,
            Statistic::Spearman => self.q_spearman,
        }
    }
}

fn check_finite(what: &'static str, a: ArrayView2<f64>) -> Result<()> {
    if let Some(((i, j), &v)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(AuxError::NonFinite {
            what,
            index: vec![i, j],
            value: v,
        });
    }
    Ok(())
}

/// Centres and scales `x` to unit norm (so dot products of two such vectors are Pearson r);
/// `None` when constant.
fn unit_norm(x: &[f64]) -> Option<Vec<f64>> {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let c: Vec<f64> = x.iter().map(|v| v - m).collect();
    let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm == 0.0 || norm <= m.abs() * 1e-15 * n.sqrt() {
        return None;
    }
    Some(c.into_iter().map(|v| v / norm).collect())
}

/// Pearson and Spearman of every column of `acts` [P, U] with `metric` [P], two-sided
/// p-values (`cfg.test`) and BH q-values. A constant metric or a constant neuron is an error
/// naming it.
pub fn correlate(
    acts: ArrayView2<f64>,
    metric: &[f64],
    cfg: &CorrelationConfig,
) -> Result<Vec<UnitCorrelation>> {
    let (p, u) = acts.dim();
    if metric.len() != p {
        return Err(AuxError::LengthMismatch {
            what: "metric values per activation row",
            expected: p,
            got: metric.len(),
        });
    }
    if p < 3 {
        return Err(AuxError::TooFewPrompts { needed: 3, got: p });
    }
    if u == 0 {
        return Err(AuxError::Empty("neuron set"));
    }
    if cfg.test == SignificanceTest::Permutation && cfg.permutations == 0 {
        return Err(AuxError::InvalidArgument {
            name: "permutations",
            reason: "need at least one permutation".into(),
        });
    }
    check_finite("activations", acts)?;
    if let Some((i, &v)) = metric.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(AuxError::NonFinite {
            what: "metric",
            index: vec![i],
            value: v,
        });
    }
    let zy = unit_norm(metric).ok_or(AuxError::ConstantMetric {
        value: metric[0],
        n: p,
    })?;
    let zy_rank = unit_norm(&stats::ranks(metric)).ok_or(AuxError::ConstantMetric {
        value: metric[0],
        n: p,
    })?;
    // Observed statistics through neg_core::stats; normalised columns (values and ranks) for
    // the permutation null, where each permuted r is one dot product.
    let mut zx = Array2::zeros((u, p));
    let mut zx_rank = Array2::zeros((u, p));
    let mut observed = Vec::with_capacity(u);
    for j in 0..u {
        let col = acts.column(j).to_vec();
        let constant = || AuxError::ConstantActivations {
            unit: j,
            value: col[0],
            n: p,
        };
        let z = unit_norm(&col).ok_or_else(constant)?;
        let zr = unit_norm(&stats::ranks(&col)).ok_or_else(constant)?;
        let map = |e: StatsError| match e {
            StatsError::ZeroVariance { which: "x" } => constant(),
            e => AuxError::Stats(e),
        };
        let pr = stats::pearson(&col, metric).map_err(map)?;
        let sr = stats::spearman(&col, metric).map_err(map)?;
        zx.row_mut(j).assign(&Array1::from(z));
        zx_rank.row_mut(j).assign(&Array1::from(zr));
        observed.push((pr, sr));
    }
    let (p_pearson, p_spearman) = match cfg.test {
        SignificanceTest::Permutation => {
            permutation_p_values(&zx, &zx_rank, &zy, &zy_rank, &observed, cfg)
        }
        SignificanceTest::StudentT => {
            let mut pp = Vec::with_capacity(u);
            let mut ps = Vec::with_capacity(u);
            for &(pr, sr) in &observed {
                pp.push(student_t_p_value(pr, p)?);
                ps.push(student_t_p_value(sr, p)?);
            }
            (pp, ps)
        }
    };
    let q_pearson = benjamini_hochberg(&p_pearson)?;
    let q_spearman = benjamini_hochberg(&p_spearman)?;
    Ok((0..u)
        .map(|j| UnitCorrelation {
            unit: j,
            pearson: observed[j].0,
            spearman: observed[j].1,
            p_pearson: p_pearson[j],
            p_spearman: p_spearman[j],
            q_pearson: q_pearson[j],
            q_spearman: q_spearman[j],
        })
        .collect())
}

/// Permutation p-values (Pearson, Spearman) of every unit: `zx`, `zx_rank` are the units'
/// centred, unit-norm values and ranks [U, P], `zy`, `zy_rank` the metric's.
fn permutation_p_values(
    zx: &Array2<f64>,
    zx_rank: &Array2<f64>,
    zy: &[f64],
    zy_rank: &[f64],
    observed: &[(f64, f64)],
    cfg: &CorrelationConfig,
) -> (Vec<f64>, Vec<f64>) {
    let (u, p) = zx.dim();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut exceed = vec![[0usize; 2]; u];
    // Permutations in blocks: [U, P] x [P, B] products keep memory bounded.
    const BLOCK: usize = 128;
    let mut order: Vec<usize> = (0..p).collect();
    let mut done = 0;
    while done < cfg.permutations {
        let b = BLOCK.min(cfg.permutations - done);
        let mut y = Array2::zeros((p, b));
        let mut yr = Array2::zeros((p, b));
        for k in 0..b {
            order.shuffle(&mut rng);
            for (i, &o) in order.iter().enumerate() {
                y[[i, k]] = zy[o];
                yr[[i, k]] = zy_rank[o];
            }
        }
        let r = zx.dot(&y);
        let rr = zx_rank.dot(&yr);
        for j in 0..u {
            // A relative tolerance so that permutations equal to the observed arrangement
            // count as exceeding despite rounding.
            let (po, so) = (observed[j].0.abs() - 1e-12, observed[j].1.abs() - 1e-12);
            exceed[j][0] += r.row(j).iter().filter(|v| v.abs() >= po).count();
            exceed[j][1] += rr.row(j).iter().filter(|v| v.abs() >= so).count();
        }
        done += b;
    }
    let denom = (cfg.permutations + 1) as f64;
    let p_pearson: Vec<f64> = exceed.iter().map(|e| (e[0] + 1) as f64 / denom).collect();
    let p_spearman: Vec<f64> = exceed.iter().map(|e| (e[1] + 1) as f64 / denom).collect();
    (p_pearson, p_spearman)
}

/// Benjamini-Hochberg adjusted p-values (q-values), in input order:
/// `q_(i) = min_{k >= i} min(1, p_(k) * m / k)` over the ascending order.
pub fn benjamini_hochberg(p: &[f64]) -> Result<Vec<f64>> {
    if let Some((index, &value)) = p
        .iter()
        .enumerate()
        .find(|(_, v)| !(0.0..=1.0).contains(*v))
    {
        return Err(AuxError::InvalidPValue { index, value });
    }
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![0.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m as f64 / (rank + 1) as f64);
        q[i] = running.min(1.0);
    }
    Ok(q)
}

/// Indices of the `k` units with the largest |r| (ties by index).
pub fn top_units(corrs: &[UnitCorrelation], k: usize, by: Statistic) -> Vec<usize> {
    let mut order: Vec<&UnitCorrelation> = corrs.iter().collect();
    order.sort_by(|a, b| {
        b.r(by)
            .abs()
            .total_cmp(&a.r(by).abs())
            .then(a.unit.cmp(&b.unit))
    });
    order.into_iter().take(k).map(|c| c.unit).collect()
}

/// The external label as a one-vs-rest metric: 1 where `labels[i] == class`, else 0.
pub fn one_vs_rest(labels: &[usize], class: usize) -> Vec<f64> {
    labels
        .iter()
        .map(|&l| f64::from(u8::from(l == class)))
        .collect()
}

/// The model's own confidence on a multiple-choice prompt, from its option probabilities
/// normalised over the options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Probability of the gold option.
    Gold,
    /// Probability of the most likely option.
    Max,
    /// Probability of option `k` (the model-side counterpart of a one-vs-rest label).
    Option(usize),
}

impl Confidence {
    /// The metric of one prompt from its option probabilities (any non-negative scores).
    pub fn of(self, probs: ArrayView1<f64>, label: usize) -> Result<f64> {
        let total: f64 = probs.sum();
        if !(total.is_finite() && total > 0.0) {
            return Err(AuxError::NonFinite {
                what: "option probability sum",
                index: vec![],
                value: total,
            });
        }
        let pick = |k: usize| {
            probs.get(k).copied().ok_or(AuxError::InvalidArgument {
                name: "option",
                reason: format!("option {k} is outside the {} options", probs.len()),
            })
        };
        Ok(match self {
            Confidence::Gold => pick(label)?,
            Confidence::Max => probs.fold(0.0f64, |m, &v| m.max(v)),
            Confidence::Option(k) => pick(k)?,
        } / total)
    }

    /// The metric of every prompt: `probs` [P, O], gold `labels` [P].
    pub fn of_all(self, probs: ArrayView2<f64>, labels: &[usize]) -> Result<Vec<f64>> {
        if labels.len() != probs.nrows() {
            return Err(AuxError::LengthMismatch {
                what: "labels per probability row",
                expected: probs.nrows(),
                got: labels.len(),
            });
        }
        probs
            .rows()
            .into_iter()
            .zip(labels)
            .map(|(r, &l)| self.of(r, l))
            .collect()
    }
}

/// How ablated neurons are set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ablation {
    /// To the neuron's mean activation over the prompts.
    Mean,
    /// To zero.
    Zero,
}

/// Settings of [`ablation_validation`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AblationConfig {
    /// Number of random neuron sets and prompt resamples.
    pub seeds: usize,
    pub seed: u64,
    pub ablation: Ablation,
}

impl Default for AblationConfig {
    fn default() -> Self {
        Self {
            seeds: 5,
            seed: 0,
            ablation: Ablation::Mean,
        }
    }
}

/// Mean and sample standard deviation of per-seed values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub per_seed: Vec<f64>,
}

impl Spread {
    fn of(values: Vec<f64>) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Self {
            mean,
            std,
            per_seed: values,
        }
    }
}

/// Mean metric change (ablated - unablated) when ablating the top neurons and random ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AblationResult {
    pub k: usize,
    pub base_metric: f64,
    /// Over seeds: each seed resamples the prompts (bootstrap).
    pub top_delta: Spread,
    /// Over seeds: each seed draws `k` random neurons outside the top set and resamples the
    /// prompts the same way as `top_delta`.
    pub random_delta: Spread,
    /// Mean per-prompt |change| for the top neurons (over the same seeds): a neuron pushed to
    /// its mean moves high and low prompts in opposite directions, which a signed mean hides.
    pub top_abs_delta: Spread,
    pub random_abs_delta: Spread,
}

impl AblationResult {
    /// Whether the top neurons move the metric more (mean per-prompt |change|) than random
    /// ones, beyond the random sets' spread: top > random mean + random std.
    pub fn top_moves_more(&self) -> bool {
        self.top_abs_delta.mean > self.random_abs_delta.mean + self.random_abs_delta.std
    }
}

/// Ablates `top` (indices into `neurons`) and, per seed, `top.len()` random other neurons of
/// `neurons`, measuring `metric` on the option probabilities of each prompt (targets = options,
/// gold `labels`). `acts` [P, neurons.len()] are the unpatched activations (for mean ablation).
#[allow(clippy::too_many_arguments)]
pub fn ablation_validation(
    model: &dyn ModelAdapter,
    prompts: &[TargetedPrompt],
    labels: &[usize],
    neurons: &[NeuronId],
    acts: ArrayView2<f64>,
    top: &[usize],
    metric: Confidence,
    cfg: &AblationConfig,
) -> Result<AblationResult> {
    let mut out = ablation_validation_many(
        model,
        prompts,
        labels,
        neurons,
        acts,
        &[(metric, top.to_vec())],
        cfg,
    )?;
    out.pop().ok_or(AuxError::Empty("validation list"))
}

/// [`ablation_validation`] for several `(metric, top neurons)` pairs at once, with one
/// `patched_probs` call per prompt holding every ablation as a patch variant (the prompt's
/// prefix is computed once). Each pair gets its own random sets, drawn outside its top set.
pub fn ablation_validation_many(
    model: &dyn ModelAdapter,
    prompts: &[TargetedPrompt],
    labels: &[usize],
    neurons: &[NeuronId],
    acts: ArrayView2<f64>,
    checks: &[(Confidence, Vec<usize>)],
    cfg: &AblationConfig,
) -> Result<Vec<AblationResult>> {
    let (p, u) = (prompts.len(), neurons.len());
    if p == 0 {
        return Err(AuxError::Empty("prompt set"));
    }
    if checks.is_empty() {
        return Err(AuxError::Empty("validation list"));
    }
    if cfg.seeds == 0 {
        return Err(AuxError::InvalidArgument {
            name: "seeds",
            reason: "need at least one seed".into(),
        });
    }
    if acts.dim() != (p, u) {
        return Err(AuxError::LengthMismatch {
            what: "activation matrix size (prompts x neurons)",
            expected: p * u,
            got: acts.len(),
        });
    }
    if labels.len() != p {
        return Err(AuxError::LengthMismatch {
            what: "labels per prompt",
            expected: p,
            got: labels.len(),
        });
    }
    for (_, top) in checks {
        if top.is_empty() {
            return Err(AuxError::Empty("top neuron set"));
        }
        if let Some(&bad) = top.iter().find(|&&j| j >= u) {
            return Err(AuxError::InvalidArgument {
                name: "top",
                reason: format!("neuron index {bad} is outside the {u} neurons"),
            });
        }
        let k = top.len();
        if u < 2 * k {
            return Err(AuxError::InvalidArgument {
                name: "top",
                reason: format!("{k} top neurons leave fewer than {k} random ones among {u}"),
            });
        }
    }
    let value: Array1<f64> = match cfg.ablation {
        Ablation::Mean => acts
            .mean_axis(Axis(0))
            .ok_or(AuxError::Empty("prompt set"))?,
        Ablation::Zero => Array1::zeros(u),
    };
    let patches = |set: &[usize]| -> Vec<Patch> {
        set.iter()
            .map(|&j| Patch::ff(neurons[j], PatchOp::Set(value[j] as f32)))
            .collect()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    // Bootstrap resamples first, so that they do not depend on how many checks follow.
    let samples: Vec<Vec<usize>> = (0..cfg.seeds)
        .map(|_| (0..p).map(|_| rng.gen_range(0..p)).collect())
        .collect();
    // Variant 0 is unpatched; check c owns variants 1 + c * (1 + seeds) .. (top, then randoms).
    let stride = 1 + cfg.seeds;
    let mut variants = vec![Vec::new()];
    for (_, top) in checks {
        let rest: Vec<usize> = (0..u).filter(|j| !top.contains(j)).collect();
        variants.push(patches(top));
        for _ in 0..cfg.seeds {
            let set: Vec<usize> = rest.choose_multiple(&mut rng, top.len()).copied().collect();
            variants.push(patches(&set));
        }
    }
    // deltas[c][v][i]: metric change of prompt i under check c's variant v.
    let mut deltas = vec![vec![vec![0.0; p]; stride]; checks.len()];
    let mut base_sum = vec![0.0; checks.len()];
    for (i, prompt) in prompts.iter().enumerate() {
        let out = model.patched_probs(prompt, &variants)?.mapv(f64::from);
        if out.nrows() != variants.len() {
            return Err(AuxError::LengthMismatch {
                what: "patched probability rows per variant",
                expected: variants.len(),
                got: out.nrows(),
            });
        }
        if let Some(((a, b), &v)) = out.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(AuxError::NonFinite {
                what: "patched option probabilities",
                index: vec![i, a, b],
                value: v,
            });
        }
        for (c, (metric, _)) in checks.iter().enumerate() {
            let base = metric.of(out.row(0), labels[i])?;
            base_sum[c] += base;
            for (v, d) in deltas[c].iter_mut().enumerate() {
                d[i] = metric.of(out.row(1 + c * stride + v), labels[i])? - base;
            }
        }
    }
    Ok(checks
        .iter()
        .enumerate()
        .map(|(c, (_, top))| {
            let d = &deltas[c];
            let mut means = [(); 4].map(|_| Vec::with_capacity(cfg.seeds));
            for (s, sample) in samples.iter().enumerate() {
                let mean = |d: &[f64]| sample.iter().map(|&i| d[i]).sum::<f64>() / p as f64;
                let mean_abs =
                    |d: &[f64]| sample.iter().map(|&i| d[i].abs()).sum::<f64>() / p as f64;
                means[0].push(mean(&d[0]));
                means[1].push(mean(&d[1 + s]));
                means[2].push(mean_abs(&d[0]));
                means[3].push(mean_abs(&d[1 + s]));
            }
            let [top_d, random, top_abs, random_abs] = means;
            AblationResult {
                k: top.len(),
                base_metric: base_sum[c] / p as f64,
                top_delta: Spread::of(top_d),
                random_delta: Spread::of(random),
                top_abs_delta: Spread::of(top_abs),
                random_abs_delta: Spread::of(random_abs),
            }
        })
        .collect())
}

/// Greedy generations of every prompt and their mean FF activations, flattened to
/// [P, L * N] in (layer, neuron) order.
pub fn generation_activations(
    model: &dyn ModelAdapter,
    prompts: &[String],
    max_new_tokens: usize,
) -> Result<(Array2<f64>, Vec<Generation>)> {
    if prompts.is_empty() {
        return Err(AuxError::Empty("prompt set"));
    }
    if max_new_tokens == 0 {
        return Err(AuxError::InvalidArgument {
            name: "max_new_tokens",
            reason: "must be at least 1".into(),
        });
    }
    let (l, n) = (model.num_layers(), model.ff_width());
    let mut acts = Array2::zeros((prompts.len(), l * n));
    let mut gens = Vec::with_capacity(prompts.len());
    for (i, text) in prompts.iter().enumerate() {
        let g = model.generate(text, max_new_tokens)?;
        if g.mean_activations.dim() != (l, n) {
            return Err(AuxError::LengthMismatch {
                what: "generation mean activations (layers x neurons)",
                expected: l * n,
                got: g.mean_activations.len(),
            });
        }
        for (j, &v) in g.mean_activations.iter().enumerate() {
            acts[[i, j]] = f64::from(v);
        }
        gens.push(g);
    }
    check_finite("generation activations", acts.view())?;
    Ok((acts, gens))
}

/// All FF neurons in (layer, neuron) order: the columns of flattened [L, N] activations.
pub fn all_neurons(layers: usize, width: usize) -> Vec<NeuronId> {
    (0..layers)
        .flat_map(|l| (0..width).map(move |n| NeuronId::new(l, n)))
        .collect()
}

/// Flattens FF activations [P, L, N] to [P, L * N] in (layer, neuron) order.
pub fn flatten(acts: &ndarray::Array3<f32>) -> Array2<f64> {
    let (p, l, n) = acts.dim();
    Array2::from_shape_fn((p, l * n), |(i, j)| f64::from(acts[[i, j / n, j % n]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::AnalyticAdapter;
    use ndarray::array;

    fn noise(rng: &mut ChaCha8Rng) -> f64 {
        rng.gen_range(-1.0..1.0)
    }

    #[test]
    fn planted_correlations_are_recovered() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (p, u) = (150, 60);
        let metric: Vec<f64> = (0..p).map(|_| noise(&mut rng)).collect();
        // Units 3 and 17 follow the metric (17 negatively, 40 monotonically but nonlinearly);
        // the rest are noise.
        let acts = Array2::from_shape_fn((p, u), |(i, j)| match j {
            3 => metric[i] + 0.3 * noise(&mut rng),
            17 => -2.0 * metric[i] + 0.5 * noise(&mut rng),
            40 => (4.0 * metric[i]).exp(),
            _ => noise(&mut rng),
        });
        let cfg = CorrelationConfig {
            permutations: 500,
            seed: 2,
            ..Default::default()
        };
        let r = correlate(acts.view(), &metric, &cfg).unwrap();
        let significant: Vec<usize> = r
            .iter()
            .filter(|c| c.q_spearman < 0.05)
            .map(|c| c.unit)
            .collect();
        assert_eq!(significant, vec![3, 17, 40]);
        assert!(r[17].pearson < -0.8 && r[3].pearson > 0.8);
        assert!(r[40].spearman > 0.999 && r[40].pearson < r[40].spearman);
        let mut top = top_units(&r, 3, Statistic::Spearman);
        top.sort();
        assert_eq!(top, vec![3, 17, 40]);
        // The permutation null is roughly uniform: about 5% of noise units have p < 0.05.
        let noise_p: Vec<f64> = r
            .iter()
            .filter(|c| ![3, 17, 40].contains(&c.unit))
            .map(|c| c.p_pearson)
            .collect();
        let small = noise_p.iter().filter(|&&v| v < 0.05).count();
        assert!(
            small <= 8,
            "{small} of {} noise units have p < 0.05",
            noise_p.len()
        );
        // Same seed, same p-values.
        let again = correlate(acts.view(), &metric, &cfg).unwrap();
        assert_eq!(r, again);
        // Observed r agrees with neg_core::stats.
        let col: Vec<f64> = acts.column(3).to_vec();
        assert_eq!(r[3].pearson, stats::pearson(&col, &metric).unwrap());
    }

    #[test]
    fn student_t_reaches_what_bh_over_many_neurons_needs() {
        // 46,080 units of noise and two planted ones, 64 prompts: with 200 permutations no
        // p-value is below 1/201, so BH rejects nothing; the t test finds the planted units.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (p, u) = (64, 46_080);
        let metric: Vec<f64> = (0..p).map(|_| noise(&mut rng)).collect();
        let acts = Array2::from_shape_fn((p, u), |(i, j)| match j {
            7 => metric[i] + 0.2 * noise(&mut rng),
            40_000 => -metric[i] + 0.2 * noise(&mut rng),
            _ => noise(&mut rng),
        });
        let perm = CorrelationConfig {
            permutations: 200,
            ..Default::default()
        };
        let by_perm = correlate(acts.view(), &metric, &perm).unwrap();
        assert_eq!(by_perm.iter().filter(|c| c.q_pearson < 0.05).count(), 0);
        let t = CorrelationConfig {
            test: SignificanceTest::StudentT,
            ..perm
        };
        let by_t = correlate(acts.view(), &metric, &t).unwrap();
        let hits: Vec<usize> = by_t
            .iter()
            .filter(|c| c.q_pearson < 0.05)
            .map(|c| c.unit)
            .collect();
        assert_eq!(hits, vec![7, 40_000]);
        let hits_rho: Vec<usize> = by_t
            .iter()
            .filter(|c| c.q_spearman < 0.05)
            .map(|c| c.unit)
            .collect();
        assert_eq!(hits_rho, vec![7, 40_000]);
        // Under the null about 5% of p-values are below 0.05 (binomial sd of the count ~47).
        let small = by_t.iter().filter(|c| c.p_pearson < 0.05).count() as f64;
        assert!((small / u as f64 - 0.05).abs() < 0.005, "{small} of {u}");
    }

    #[test]
    fn student_t_p_value_edges() {
        assert_eq!(student_t_p_value(1.0, 10).unwrap(), 0.0);
        assert!((student_t_p_value(0.0, 10).unwrap() - 1.0).abs() < 1e-12);
        // n = 3 (one degree of freedom): p = 1 - 2 atan(|t|) / pi with t = r / sqrt(1 - r^2).
        let r: f64 = 0.6;
        let t = r / (1.0 - r * r).sqrt();
        let want = 1.0 - 2.0 * t.atan() / std::f64::consts::PI;
        assert!((student_t_p_value(r, 3).unwrap() - want).abs() < 1e-12);
        assert!(matches!(
            student_t_p_value(0.5, 2),
            Err(AuxError::TooFewPrompts { .. })
        ));
        assert!(matches!(
            student_t_p_value(1.5, 10),
            Err(AuxError::InvalidArgument { name: "r", .. })
        ));
    }

    #[test]
    fn one_vs_rest_label_correlation() {
        let labels: Vec<usize> = (0..90).map(|i| i % 3).collect();
        let metric = one_vs_rest(&labels, 2);
        let acts = Array2::from_shape_fn((90, 3), |(i, j)| {
            let x = ((i * 7 + j * 3) % 10) as f64 * 0.1;
            if j == 1 {
                x + 3.0 * metric[i]
            } else {
                x
            }
        });
        let r = correlate(acts.view(), &metric, &CorrelationConfig::default()).unwrap();
        assert_eq!(top_units(&r, 1, Statistic::Pearson), vec![1]);
        assert!(r[1].p_pearson < 0.002 && r[1].pearson > 0.9);
    }

    #[test]
    fn benjamini_hochberg_matches_hand_computation() {
        // m = 5, sorted p: .01 .02 .03 .04 .5 -> p*m/k: .05 .05 .05 .05 .5
        let q = benjamini_hochberg(&[0.04, 0.01, 0.5, 0.03, 0.02]).unwrap();
        let want = [0.05, 0.05, 0.5, 0.05, 0.05];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        // Monotone step-up: .001 .04 .045 with m=3 -> .003 .045 .045
        let q = benjamini_hochberg(&[0.045, 0.001, 0.04]).unwrap();
        assert!((q[0] - 0.045).abs() < 1e-12 && (q[1] - 0.003).abs() < 1e-12);
        assert!((q[2] - 0.045).abs() < 1e-12);
        assert!(matches!(
            benjamini_hochberg(&[0.1, 1.5]),
            Err(AuxError::InvalidPValue { index: 1, .. })
        ));
    }

    #[test]
    fn bad_input_gives_typed_errors() {
        let acts = array![[1.0, 2.0], [2.0, 2.0], [3.0, 2.0], [4.0, 2.0]];
        let cfg = CorrelationConfig::default();
        let e = correlate(acts.view(), &[1.0, 2.0, 3.0, 5.0], &cfg).unwrap_err();
        assert!(
            matches!(e, AuxError::ConstantActivations { unit: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("neuron 1 is constant"), "{e}");
        let e = correlate(acts.column(0).insert_axis(Axis(1)), &[7.0; 4], &cfg).unwrap_err();
        assert!(matches!(e, AuxError::ConstantMetric { .. }), "{e}");
        let e = correlate(acts.view(), &[1.0, 2.0], &cfg).unwrap_err();
        assert!(matches!(e, AuxError::LengthMismatch { .. }));
        let e = correlate(
            acts.column(0).insert_axis(Axis(1)),
            &[1.0, f64::NAN, 0.0, 2.0],
            &cfg,
        )
        .unwrap_err();
        assert!(matches!(e, AuxError::NonFinite { what: "metric", .. }));
    }

    #[test]
    fn ablating_correlated_neurons_moves_confidence_more_than_random() {
        // Option 0's logit is a0 + a1 + a2 (option 1's is 0): those three neurons drive the
        // confidence, the other 27 do nothing.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let acts = Array2::from_shape_fn((60, 30), |_| noise(&mut rng));
        let model = crate::neuronlens::table::TableAdapter::new(acts.clone(), |a| {
            vec![a[0] + a[1] + a[2], 0.0]
        });
        let prompts = model.prompts(2);
        let labels = vec![0; 60];
        let fwd = model.forward(&prompts).unwrap();
        let probs = fwd.probs.mapv(f64::from);
        let metric = Confidence::Gold.of_all(probs.view(), &labels).unwrap();
        let corrs = correlate(
            flatten(&fwd.activations).view(),
            &metric,
            &CorrelationConfig {
                permutations: 300,
                seed: 0,
                ..Default::default()
            },
        )
        .unwrap();
        let mut top = top_units(&corrs, 3, Statistic::Pearson);
        top.sort();
        assert_eq!(top, vec![0, 1, 2]);
        let neurons = all_neurons(1, 30);
        let res = ablation_validation(
            &model,
            &prompts,
            &labels,
            &neurons,
            acts.view(),
            &top,
            Confidence::Gold,
            &AblationConfig {
                seeds: 6,
                seed: 1,
                ablation: Ablation::Mean,
            },
        )
        .unwrap();
        assert_eq!(res.top_delta.per_seed.len(), 6);
        // Random neurons are inert here, so their ablation changes nothing at all.
        assert!(res.random_abs_delta.mean.abs() < 1e-6, "{res:?}");
        assert!(
            res.top_abs_delta.mean > 0.05 && res.top_abs_delta.std > 0.0,
            "{res:?}"
        );
        assert!(res.top_moves_more());
        // Batched checks agree with one at a time (same seed, first check).
        let many = ablation_validation_many(
            &model,
            &prompts,
            &labels,
            &neurons,
            acts.view(),
            &[
                (Confidence::Gold, top.clone()),
                (Confidence::Option(1), vec![5, 6, 7]),
            ],
            &AblationConfig {
                seeds: 6,
                seed: 1,
                ablation: Ablation::Mean,
            },
        )
        .unwrap();
        assert_eq!(many[0].top_abs_delta.mean, res.top_abs_delta.mean);
        assert!(many[1].top_abs_delta.mean < 1e-6 && !many[1].top_moves_more());
        let e = ablation_validation(
            &model,
            &prompts,
            &labels,
            &neurons,
            acts.view(),
            &[99],
            Confidence::Gold,
            &AblationConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("neuron index 99"), "{e}");
    }

    #[test]
    fn analytic_generation_is_unsupported_with_a_clear_error() {
        let model = AnalyticAdapter::new(1, 2, 3, 4, 2);
        let e = generation_activations(&model, &["hi".to_string()], 4).unwrap_err();
        assert!(e.to_string().contains("generation is not supported"), "{e}");
    }
}
