//! NeuronLens: range-based interpretation and masking of neurons (Haider et al. 2025, "Neurons
//! Speak in Ranges").
//!
//! For a classification task whose answer is one of a few option tokens:
//!
//! 1. [`capture`] the units' activations at the answer position (FF neurons of some layers, or
//!    the residual stream = decoder-layer outputs, as the original work does) and the option
//!    probabilities of every prompt.
//! 2. [`ClassStats::fit`] per-class Gaussians (mean, std) on correctly predicted examples; the
//!    range of class `c` for unit `u` is `mean +- tau * std` ([`Tau`], default 2;
//!    [`Tau::INFINITY`] is whole-neuron masking).
//! 3. Pick salient units of a target class ([`ClassStats::salient`]: top fraction by mean
//!    |activation|, or [`top_fraction`] of any attribution score).
//! 4. [`evaluate`] the model with the salient units masked: replaced by a neutral value (their
//!    mean over a reference set, [`neutral_values`]) only when the activation falls inside the
//!    target class's range ([`Masking::Range`]) or always ([`Masking::Neuron`]), and report
//!    target-class and complement-class accuracy and confidence ([`run_class`] does all three
//!    conditions at once).
//! 5. [`ClassStats::overlap`]: how much the per-class ranges of each unit overlap.
//!
//! The in-range decision reads the unpatched activations of the prompt: masking several layers
//! at once does not re-test upper-layer units against their (shifted) patched values. The
//! published code masks one layer, where both readings agree.
//!
//! ```
//! use ndarray::array;
//! use neg_core::neuronlens::{ClassStats, Tau};
//!
//! // Two classes, one unit: class 0 near 1, class 1 near 5.
//! let acts = array![[0.9], [1.1], [1.0], [4.9], [5.1], [5.0]];
//! let stats = ClassStats::fit(acts.view(), &[0, 0, 0, 1, 1, 1], 2)?;
//! let (lo, hi) = stats.range(0, 0, Tau::new(2.0)?);
//! assert!(lo < 1.0 && 1.0 < hi && hi < 4.9);
//! assert!(stats.overlap(Tau::default())?[0] == 0.0);
//! assert!(Tau::new(0.0).is_err());
//! # Ok::<(), neg_core::neuronlens::LensError>(())
//! ```
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::adapter::{AdapterError, ModelAdapter, Patch, PatchOp, Site, TargetedPrompt};

/// Why a NeuronLens step could not run. Each variant names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum LensError {
    #[error("class {class} has {got} example(s) to fit its range; at least 2 are needed")]
    TooFewExamples { class: usize, got: usize },
    #[error("unit {unit} ({name}) is constant ({value}) over all {n} fitted examples, so it has no range to interpret")]
    ConstantActivations {
        unit: usize,
        name: String,
        value: f64,
        n: usize,
    },
    #[error("tau must be > 0 (or infinity for whole-neuron masking), got {0}")]
    InvalidTau(f64),
    #[error("salient fraction must be in (0, 1], got {0}")]
    InvalidFraction(f64),
    #[error("label {label} of example {index} is outside the {n_classes} classes")]
    LabelOutOfRange {
        index: usize,
        label: usize,
        n_classes: usize,
    },
    #[error("class {class} is outside the {n_classes} classes")]
    ClassOutOfRange { class: usize, n_classes: usize },
    #[error("{what}: expected {expected}, got {got}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("non-finite value {value} in {what} at {index:?}")]
    NonFinite {
        what: &'static str,
        index: Vec<usize>,
        value: f64,
    },
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("layer {layer} is outside the model ({layers} layers)")]
    LayerOutOfRange { layer: usize, layers: usize },
    #[error("unit index {index} is outside the {units} captured units")]
    UnitOutOfRange { index: usize, units: usize },
    #[error("model adapter: {0}")]
    Adapter(#[from] AdapterError),
}

pub type Result<T, E = LensError> = std::result::Result<T, E>;

/// The width of a class range in standard deviations: finite and > 0, or infinity.
/// Deserialising checks the value like [`Tau::new`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Tau(f64);

impl TryFrom<f64> for Tau {
    type Error = LensError;
    fn try_from(tau: f64) -> Result<Self> {
        Tau::new(tau)
    }
}

impl From<Tau> for f64 {
    fn from(tau: Tau) -> f64 {
        tau.0
    }
}

impl Tau {
    /// Whole-neuron masking: every value is "in range".
    pub const INFINITY: Tau = Tau(f64::INFINITY);

    /// A checked tau: > 0 (infinity allowed); zero, negative or NaN is [`LensError::InvalidTau`].
    pub fn new(tau: f64) -> Result<Self> {
        if tau.is_nan() || tau <= 0.0 {
            return Err(LensError::InvalidTau(tau));
        }
        Ok(Tau(tau))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for Tau {
    /// The published default, 2.
    fn default() -> Self {
        Tau(2.0)
    }
}

/// One maskable unit: an FF neuron or a residual-stream dimension of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unit {
    pub site: Site,
    pub layer: usize,
    pub index: usize,
}

impl Unit {
    /// The patch setting this unit to `value` at the prompt's position.
    pub fn set(&self, value: f32) -> Patch {
        Patch {
            site: self.site,
            layer: self.layer,
            index: self.index,
            op: PatchOp::Set(value),
        }
    }

    /// A short name such as `ff L2.17` or `resid L3.5`.
    pub fn name(&self) -> String {
        let site = match self.site {
            Site::FeedForward => "ff",
            Site::Residual => "resid",
        };
        format!("{site} L{}.{}", self.layer, self.index)
    }
}

/// Which units to capture: all units of `layers` at `site`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitSelection {
    pub site: Site,
    pub layers: Vec<usize>,
}

impl UnitSelection {
    /// The units in column order (layer by layer), checked against the model.
    pub fn units(&self, model: &dyn ModelAdapter) -> Result<Vec<Unit>> {
        if self.layers.is_empty() {
            return Err(LensError::Empty("layer selection"));
        }
        let width = match self.site {
            Site::FeedForward => model.ff_width(),
            Site::Residual => model.hidden_size(),
        };
        let mut out = Vec::with_capacity(self.layers.len() * width);
        for &layer in &self.layers {
            if layer >= model.num_layers() {
                return Err(LensError::LayerOutOfRange {
                    layer,
                    layers: model.num_layers(),
                });
            }
            out.extend((0..width).map(|index| Unit {
                site: self.site,
                layer,
                index,
            }));
        }
        Ok(out)
    }
}

/// Activations of the selected units and option probabilities at each prompt's position.
#[derive(Clone, Debug, PartialEq)]
pub struct Capture {
    pub units: Vec<Unit>,
    /// [P, U]
    pub activations: Array2<f64>,
    /// [P, O]: probability of each option token (the prompts' targets).
    pub probs: Array2<f64>,
}

impl Capture {
    /// The predicted option of each prompt (argmax of the option probabilities).
    pub fn predictions(&self) -> Vec<usize> {
        self.probs.rows().into_iter().map(argmax).collect()
    }
}

/// Runs the model once (twice for the residual stream) over `prompts`, whose targets are the
/// option tokens in class order.
pub fn capture(
    model: &dyn ModelAdapter,
    prompts: &[TargetedPrompt],
    selection: &UnitSelection,
) -> Result<Capture> {
    if prompts.is_empty() {
        return Err(LensError::Empty("prompt set"));
    }
    let units = selection.units(model)?;
    let fwd = model.forward(prompts)?;
    let probs = fwd.probs.mapv(f64::from);
    check_finite("option probabilities", probs.view())?;
    let layered = match selection.site {
        Site::FeedForward => fwd.activations,
        Site::Residual => model.residual(prompts)?,
    };
    let width = layered.shape()[2];
    let mut activations = Array2::zeros((prompts.len(), units.len()));
    for (u, unit) in units.iter().enumerate() {
        if unit.layer >= layered.shape()[1] || unit.index >= width {
            return Err(LensError::LengthMismatch {
                what: "captured activations per layer",
                expected: unit.index + 1,
                got: width,
            });
        }
        for p in 0..prompts.len() {
            activations[[p, u]] = f64::from(layered[[p, unit.layer, unit.index]]);
        }
    }
    check_finite("activations", activations.view())?;
    Ok(Capture {
        units,
        activations,
        probs,
    })
}

fn check_finite(what: &'static str, a: ArrayView2<f64>) -> Result<()> {
    if let Some(((i, j), &v)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(LensError::NonFinite {
            what,
            index: vec![i, j],
            value: v,
        });
    }
    Ok(())
}

fn argmax(r: ArrayView1<f64>) -> usize {
    r.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Per-class Gaussian fit of every unit: mean, standard deviation (population) and mean
/// |activation|, each [C, U].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    pub counts: Vec<usize>,
    pub mean: Array2<f64>,
    pub std: Array2<f64>,
    pub mean_abs: Array2<f64>,
}

impl ClassStats {
    /// Fits every class on the rows of `acts` [E, U] labelled with it. Every class needs two
    /// examples; a unit constant over all examples is an error (it has no range).
    pub fn fit(acts: ArrayView2<f64>, labels: &[usize], n_classes: usize) -> Result<Self> {
        Self::fit_named(acts, labels, n_classes, None)
    }

    /// [`ClassStats::fit`] with unit names for error messages.
    pub fn fit_named(
        acts: ArrayView2<f64>,
        labels: &[usize],
        n_classes: usize,
        units: Option<&[Unit]>,
    ) -> Result<Self> {
        let (e, u) = acts.dim();
        if labels.len() != e {
            return Err(LensError::LengthMismatch {
                what: "labels per activation row",
                expected: e,
                got: labels.len(),
            });
        }
        if n_classes == 0 {
            return Err(LensError::Empty("class set"));
        }
        if u == 0 {
            return Err(LensError::Empty("unit set"));
        }
        check_finite("activations", acts)?;
        let mut counts = vec![0usize; n_classes];
        for (index, &label) in labels.iter().enumerate() {
            if label >= n_classes {
                return Err(LensError::LabelOutOfRange {
                    index,
                    label,
                    n_classes,
                });
            }
            counts[label] += 1;
        }
        if let Some((class, &got)) = counts.iter().enumerate().find(|(_, &n)| n < 2) {
            return Err(LensError::TooFewExamples { class, got });
        }
        // A unit with the same value everywhere carries no class information.
        for j in 0..u {
            let col = acts.column(j);
            let first = col[0];
            if col.iter().all(|&v| v == first) {
                return Err(LensError::ConstantActivations {
                    unit: j,
                    name: units
                        .and_then(|us| us.get(j))
                        .map_or_else(|| format!("column {j}"), Unit::name),
                    value: first,
                    n: e,
                });
            }
        }
        let mut mean = Array2::zeros((n_classes, u));
        let mut mean_abs = Array2::zeros((n_classes, u));
        let mut sq = Array2::<f64>::zeros((n_classes, u));
        for (row, &c) in acts.rows().into_iter().zip(labels) {
            for j in 0..u {
                mean[[c, j]] += row[j];
                mean_abs[[c, j]] += row[j].abs();
            }
        }
        for (c, &n) in counts.iter().enumerate() {
            mean.row_mut(c).mapv_inplace(|v| v / n as f64);
            mean_abs.row_mut(c).mapv_inplace(|v| v / n as f64);
        }
        for (row, &c) in acts.rows().into_iter().zip(labels) {
            for j in 0..u {
                let d = row[j] - mean[[c, j]];
                sq[[c, j]] += d * d;
            }
        }
        for (c, &n) in counts.iter().enumerate() {
            sq.row_mut(c).mapv_inplace(|v| (v / n as f64).sqrt());
        }
        Ok(Self {
            counts,
            mean,
            std: sq,
            mean_abs,
        })
    }

    pub fn n_classes(&self) -> usize {
        self.counts.len()
    }

    pub fn n_units(&self) -> usize {
        self.mean.ncols()
    }

    /// `[mean - tau * std, mean + tau * std]` of `class` for `unit` (infinite for
    /// [`Tau::INFINITY`]).
    pub fn range(&self, class: usize, unit: usize, tau: Tau) -> (f64, f64) {
        if tau.0.is_infinite() {
            return (f64::NEG_INFINITY, f64::INFINITY);
        }
        let (m, s) = (self.mean[[class, unit]], self.std[[class, unit]]);
        (m - tau.0 * s, m + tau.0 * s)
    }

    fn check_class(&self, class: usize) -> Result<()> {
        if class >= self.n_classes() {
            return Err(LensError::ClassOutOfRange {
                class,
                n_classes: self.n_classes(),
            });
        }
        Ok(())
    }

    /// The top `fraction` of units (at least one) by mean |activation| on `class`, best first.
    pub fn salient(&self, class: usize, fraction: f64) -> Result<Vec<usize>> {
        self.check_class(class)?;
        top_fraction(&self.mean_abs.row(class).to_vec(), fraction)
    }

    /// Overlap of the per-class ranges of every unit: the mean over class pairs of the
    /// intersection over union of the two intervals (0 = disjoint, 1 = identical). A
    /// zero-width pair counts 1 when equal, else 0.
    pub fn overlap(&self, tau: Tau) -> Result<Array1<f64>> {
        if tau.0.is_infinite() {
            return Ok(Array1::ones(self.n_units()));
        }
        let c = self.n_classes();
        if c < 2 {
            return Err(LensError::LengthMismatch {
                what: "classes to compare ranges",
                expected: 2,
                got: c,
            });
        }
        Ok(Array1::from_shape_fn(self.n_units(), |u| {
            let mut sum = 0.0;
            let mut pairs = 0.0;
            for a in 0..c {
                for b in a + 1..c {
                    sum += interval_iou(self.range(a, u, tau), self.range(b, u, tau));
                    pairs += 1.0;
                }
            }
            sum / pairs
        }))
    }
}

fn interval_iou(a: (f64, f64), b: (f64, f64)) -> f64 {
    let inter = (a.1.min(b.1) - a.0.max(b.0)).max(0.0);
    let union = a.1.max(b.1) - a.0.min(b.0);
    if union <= 0.0 {
        return if a == b { 1.0 } else { 0.0 };
    }
    inter / union
}

/// Indices of the top `fraction` of `scores` (at least one), highest first; ties by index.
pub fn top_fraction(scores: &[f64], fraction: f64) -> Result<Vec<usize>> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(LensError::InvalidFraction(fraction));
    }
    if scores.is_empty() {
        return Err(LensError::Empty("score list"));
    }
    if let Some((i, &v)) = scores.iter().enumerate().find(|(_, v)| v.is_nan()) {
        return Err(LensError::NonFinite {
            what: "scores",
            index: vec![i],
            value: v,
        });
    }
    let k = ((scores.len() as f64 * fraction).round() as usize).clamp(1, scores.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    Ok(order)
}

/// Mean of per-example unit scores [E, U] (e.g. an attribution of the gold option) over the
/// examples of each class: [C, U]. Rank a class's units with [`top_fraction`] of its row to
/// select salient units by attribution instead of by mean |activation|.
pub fn class_mean_scores(
    scores: ArrayView2<f64>,
    labels: &[usize],
    n_classes: usize,
) -> Result<Array2<f64>> {
    let (e, u) = scores.dim();
    if labels.len() != e {
        return Err(LensError::LengthMismatch {
            what: "labels per score row",
            expected: e,
            got: labels.len(),
        });
    }
    check_finite("scores", scores)?;
    let mut sum = Array2::zeros((n_classes, u));
    let mut counts = vec![0usize; n_classes];
    for (index, (row, &label)) in scores.rows().into_iter().zip(labels).enumerate() {
        if label >= n_classes {
            return Err(LensError::LabelOutOfRange {
                index,
                label,
                n_classes,
            });
        }
        counts[label] += 1;
        sum.row_mut(label).zip_mut_with(&row, |s, v| *s += v);
    }
    if let Some((class, &got)) = counts.iter().enumerate().find(|(_, &n)| n == 0) {
        return Err(LensError::TooFewExamples { class, got });
    }
    for (c, &n) in counts.iter().enumerate() {
        sum.row_mut(c).mapv_inplace(|v| v / n as f64);
    }
    Ok(sum)
}

/// The mean of every unit over a reference set [R, U]: the neutral value masked units get.
pub fn neutral_values(reference: ArrayView2<f64>) -> Result<Array1<f64>> {
    if reference.nrows() == 0 {
        return Err(LensError::Empty("neutral reference set"));
    }
    check_finite("reference activations", reference)?;
    reference
        .mean_axis(Axis(0))
        .ok_or(LensError::Empty("neutral reference set"))
}

/// How salient units are masked.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Masking {
    /// Only when the activation lies inside the target class's range at this tau.
    Range(Tau),
    /// Always (tau = infinity).
    Neuron,
}

impl Masking {
    fn tau(self) -> Tau {
        match self {
            Masking::Range(t) => t,
            Masking::Neuron => Tau::INFINITY,
        }
    }
}

/// The patches that mask one prompt, given its unpatched activations `acts` [U].
pub fn mask_patches(
    acts: ArrayView1<f64>,
    units: &[Unit],
    stats: &ClassStats,
    class: usize,
    salient: &[usize],
    neutral: ArrayView1<f64>,
    masking: Masking,
) -> Result<Vec<Patch>> {
    stats.check_class(class)?;
    let u = units.len();
    for (what, got) in [
        ("activations per unit", acts.len()),
        ("class statistics per unit", stats.n_units()),
        ("neutral values per unit", neutral.len()),
    ] {
        if got != u {
            return Err(LensError::LengthMismatch {
                what,
                expected: u,
                got,
            });
        }
    }
    let tau = masking.tau();
    let mut out = Vec::new();
    for &j in salient {
        if j >= u {
            return Err(LensError::UnitOutOfRange { index: j, units: u });
        }
        let (lo, hi) = stats.range(class, j, tau);
        let a = acts[j];
        if a >= lo && a <= hi {
            out.push(units[j].set(neutral[j] as f32));
        }
    }
    Ok(out)
}

/// Accuracy and confidence of one condition, on the target class and on the other classes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub target_accuracy: f64,
    pub complement_accuracy: f64,
    /// Mean probability of the gold option, normalised over the options.
    pub target_confidence: f64,
    pub complement_confidence: f64,
    /// Mean number of units actually masked per prompt.
    pub target_masked: f64,
    pub complement_masked: f64,
    pub n_target: usize,
    pub n_complement: usize,
}

/// The evaluation set of [`evaluate`] and friends: prompts whose targets are the options in
/// class order, gold labels, and the prompts' unpatched activations `acts` [P, U] of `units`.
#[derive(Clone, Copy, Debug)]
pub struct EvalSet<'a> {
    pub prompts: &'a [TargetedPrompt],
    pub labels: &'a [usize],
    pub units: &'a [Unit],
    pub acts: ArrayView2<'a, f64>,
}

/// One masking condition: the salient units of `class` masked by `masking` (`None`: no mask).
#[derive(Clone, Debug, PartialEq)]
pub struct Condition<'a> {
    pub class: usize,
    pub salient: &'a [usize],
    pub masking: Option<Masking>,
}

/// Outcomes of all `conditions` on `set`, with one `patched_probs` call per prompt holding
/// every condition as a patch variant (so the prompt's prefix is computed once).
pub fn evaluate_all(
    model: &dyn ModelAdapter,
    set: EvalSet,
    stats: &ClassStats,
    neutral: ArrayView1<f64>,
    conditions: &[Condition],
) -> Result<Vec<Outcome>> {
    let p = set.prompts.len();
    if p == 0 {
        return Err(LensError::Empty("evaluation prompt set"));
    }
    for c in conditions {
        stats.check_class(c.class)?;
    }
    for (what, got) in [
        ("labels per prompt", set.labels.len()),
        ("activation rows per prompt", set.acts.nrows()),
    ] {
        if got != p {
            return Err(LensError::LengthMismatch {
                what,
                expected: p,
                got,
            });
        }
    }
    // sums[k][g]: condition k, g = 0 target / 1 complement; [correct, confidence, masked].
    let mut sums = vec![[[0.0f64; 3]; 2]; conditions.len()];
    let mut counts = vec![[0usize; 2]; conditions.len()];
    for (i, prompt) in set.prompts.iter().enumerate() {
        let label = set.labels[i];
        if label >= prompt.targets.len() {
            return Err(LensError::LabelOutOfRange {
                index: i,
                label,
                n_classes: prompt.targets.len(),
            });
        }
        let variants = conditions
            .iter()
            .map(|c| match c.masking {
                Some(m) => mask_patches(
                    set.acts.row(i),
                    set.units,
                    stats,
                    c.class,
                    c.salient,
                    neutral,
                    m,
                ),
                None => Ok(Vec::new()),
            })
            .collect::<Result<Vec<_>>>()?;
        let probs = model.patched_probs(prompt, &variants)?.mapv(f64::from);
        if probs.nrows() != variants.len() {
            return Err(LensError::LengthMismatch {
                what: "patched probability rows per variant",
                expected: variants.len(),
                got: probs.nrows(),
            });
        }
        for (k, c) in conditions.iter().enumerate() {
            let row = probs.row(k);
            if let Some((j, &v)) = row.indexed_iter().find(|(_, v)| !v.is_finite()) {
                return Err(LensError::NonFinite {
                    what: "patched option probabilities",
                    index: vec![i, k, j],
                    value: v,
                });
            }
            let total: f64 = row.sum();
            let conf = if total > 0.0 { row[label] / total } else { 0.0 };
            let g = usize::from(label != c.class);
            counts[k][g] += 1;
            sums[k][g][0] += f64::from(u8::from(argmax(row) == label));
            sums[k][g][1] += conf;
            sums[k][g][2] += variants[k].len() as f64;
        }
    }
    Ok(sums
        .iter()
        .zip(&counts)
        .map(|(s, n)| {
            let avg = |g: usize, k: usize| {
                if n[g] == 0 {
                    f64::NAN
                } else {
                    s[g][k] / n[g] as f64
                }
            };
            Outcome {
                target_accuracy: avg(0, 0),
                complement_accuracy: avg(1, 0),
                target_confidence: avg(0, 1),
                complement_confidence: avg(1, 1),
                target_masked: avg(0, 2),
                complement_masked: avg(1, 2),
                n_target: n[0],
                n_complement: n[1],
            }
        })
        .collect())
}

/// The outcome of one condition (see [`evaluate_all`]).
pub fn evaluate(
    model: &dyn ModelAdapter,
    set: EvalSet,
    stats: &ClassStats,
    neutral: ArrayView1<f64>,
    condition: &Condition,
) -> Result<Outcome> {
    let mut out = evaluate_all(model, set, stats, neutral, std::slice::from_ref(condition))?;
    out.pop().ok_or(LensError::Empty("condition list"))
}

/// Unmasked, range-masked and neuron-masked outcomes for one target class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub class: usize,
    pub tau: f64,
    pub salient: Vec<usize>,
    pub base: Outcome,
    pub range: Outcome,
    pub neuron: Outcome,
}

impl ClassReport {
    /// Target-class accuracy lost under range masking.
    pub fn range_target_drop(&self) -> f64 {
        self.base.target_accuracy - self.range.target_accuracy
    }
    /// Target-class accuracy lost under whole-neuron masking.
    pub fn neuron_target_drop(&self) -> f64 {
        self.base.target_accuracy - self.neuron.target_accuracy
    }
    /// Complement accuracy under range masking over the unmasked one (1 = nothing lost).
    pub fn range_complement_retained(&self) -> f64 {
        ratio(
            self.range.complement_accuracy,
            self.base.complement_accuracy,
        )
    }
    /// Complement accuracy under neuron masking over the unmasked one.
    pub fn neuron_complement_retained(&self) -> f64 {
        ratio(
            self.neuron.complement_accuracy,
            self.base.complement_accuracy,
        )
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// For every `(class, salient units)` target: unmasked, [`Masking::Range`] at `tau` and
/// [`Masking::Neuron`] outcomes, all from one `patched_probs` call per prompt.
pub fn run_classes(
    model: &dyn ModelAdapter,
    set: EvalSet,
    stats: &ClassStats,
    neutral: ArrayView1<f64>,
    targets: &[(usize, Vec<usize>)],
    tau: Tau,
) -> Result<Vec<ClassReport>> {
    // The unmasked condition splits target/complement by class, so it is one variant per
    // class too (an empty patch list costs one last-position pass, not a prefix pass).
    let mut conditions = Vec::with_capacity(3 * targets.len());
    for (class, salient) in targets {
        for masking in [None, Some(Masking::Range(tau)), Some(Masking::Neuron)] {
            conditions.push(Condition {
                class: *class,
                salient,
                masking,
            });
        }
    }
    let out = evaluate_all(model, set, stats, neutral, &conditions)?;
    Ok(targets
        .iter()
        .zip(out.chunks(3))
        .map(|((class, salient), o)| ClassReport {
            class: *class,
            tau: tau.get(),
            salient: salient.clone(),
            base: o[0].clone(),
            range: o[1].clone(),
            neuron: o[2].clone(),
        })
        .collect())
}

/// [`run_classes`] for one class.
pub fn run_class(
    model: &dyn ModelAdapter,
    set: EvalSet,
    stats: &ClassStats,
    neutral: ArrayView1<f64>,
    class: usize,
    salient: &[usize],
    tau: Tau,
) -> Result<ClassReport> {
    let mut out = run_classes(
        model,
        set,
        stats,
        neutral,
        &[(class, salient.to_vec())],
        tau,
    )?;
    out.pop().ok_or(LensError::Empty("class list"))
}

/// Indices of the examples the model answers correctly (the published fit set).
pub fn correct_indices(probs: ArrayView2<f64>, labels: &[usize]) -> Vec<usize> {
    probs
        .rows()
        .into_iter()
        .zip(labels)
        .enumerate()
        .filter(|(_, (r, &l))| argmax(r.view()) == l)
        .map(|(i, _)| i)
        .collect()
}

/// A test model whose FF activations (one layer) are a fixed table, one row per prompt (the
/// prompt text is the row number), and whose option logits are a function of the possibly
/// patched row. Shared by this module's and [`crate::aux_metrics`]'s tests.
#[cfg(test)]
pub(crate) mod table {
    use super::*;
    use crate::adapter::{Forward, Gradients, ModelKind};
    use ndarray::{Array3, Array4};

    type Head = fn(&[f64]) -> Vec<f64>;

    pub(crate) struct TableAdapter {
        pub acts: Array2<f64>,
        head: Head,
    }

    impl TableAdapter {
        pub fn new(acts: Array2<f64>, head: Head) -> Self {
            Self { acts, head }
        }

        /// One prompt per row with targets 0..n_options.
        pub fn prompts(&self, n_options: u32) -> Vec<TargetedPrompt> {
            (0..self.acts.nrows())
                .map(|i| TargetedPrompt::new(i.to_string(), (0..n_options).collect()))
                .collect()
        }

        fn row(&self, p: &TargetedPrompt) -> Result<Vec<f64>, AdapterError> {
            p.text
                .parse::<usize>()
                .ok()
                .filter(|&i| i < self.acts.nrows())
                .map(|i| self.acts.row(i).to_vec())
                .ok_or_else(|| AdapterError::InvalidInput(format!("unknown prompt {}", p.text)))
        }

        fn probs(&self, a: &[f64], targets: &[u32]) -> Vec<f32> {
            let z = (self.head)(a);
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            targets
                .iter()
                .map(|&t| (e[t as usize] / s) as f32)
                .collect()
        }
    }

    impl ModelAdapter for TableAdapter {
        fn model_id(&self) -> &str {
            "table"
        }
        fn kind(&self) -> ModelKind {
            ModelKind::CausalLm
        }
        fn num_layers(&self) -> usize {
            1
        }
        fn ff_width(&self) -> usize {
            self.acts.ncols()
        }
        fn hidden_size(&self) -> usize {
            self.acts.ncols()
        }
        fn target_token(&self, _: &str, _: &str) -> Result<u32, AdapterError> {
            Ok(0)
        }
        fn forward(&self, prompts: &[TargetedPrompt]) -> Result<Forward, AdapterError> {
            let t = prompts.first().map_or(0, |p| p.targets.len());
            let mut probs = Array2::zeros((prompts.len(), t));
            let mut activations = Array3::zeros((prompts.len(), 1, self.acts.ncols()));
            for (i, p) in prompts.iter().enumerate() {
                let a = self.row(p)?;
                probs
                    .row_mut(i)
                    .assign(&Array1::from(self.probs(&a, &p.targets)));
                for (j, v) in a.iter().enumerate() {
                    activations[[i, 0, j]] = *v as f32;
                }
            }
            Ok(Forward { probs, activations })
        }
        fn gradients(&self, _: &[TargetedPrompt]) -> Result<Gradients, AdapterError> {
            Err(AdapterError::Unsupported {
                what: "gradients".into(),
                model: "table".into(),
            })
        }
        fn patched_probs(
            &self,
            prompt: &TargetedPrompt,
            variants: &[Vec<Patch>],
        ) -> Result<Array2<f32>, AdapterError> {
            let base = self.row(prompt)?;
            let mut out = Array2::zeros((variants.len(), prompt.targets.len()));
            for (v, patches) in variants.iter().enumerate() {
                let mut a = base.clone();
                for p in patches {
                    let x = a.get_mut(p.index).ok_or_else(|| {
                        AdapterError::InvalidInput(format!("patch index {}", p.index))
                    })?;
                    match p.op {
                        PatchOp::Set(y) => *x = f64::from(y),
                        PatchOp::Add(d) => *x += f64::from(d),
                    }
                }
                out.row_mut(v)
                    .assign(&Array1::from(self.probs(&a, &prompt.targets)));
            }
            Ok(out)
        }
        fn scaled_gradients(
            &self,
            _: &TargetedPrompt,
            _: &[usize],
            _: &[f32],
        ) -> Result<Array4<f32>, AdapterError> {
            Err(AdapterError::Unsupported {
                what: "IG".into(),
                model: "table".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::table::TableAdapter;
    use super::*;
    use ndarray::array;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr_free::normal;

    /// Box-Muller normal draws (rand 0.8 without rand_distr).
    mod rand_distr_free {
        use rand::Rng;
        pub fn normal(rng: &mut impl Rng) -> f64 {
            let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
            let u2: f64 = rng.gen::<f64>();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }

    #[test]
    fn planted_ranges_are_recovered() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let means = [[-2.0, 0.5, 3.0], [1.0, 1.0, 1.0]];
        let sds = [[0.3, 0.2, 0.5], [0.1, 0.4, 0.8]];
        let per_class = 4000;
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for c in 0..3 {
            for _ in 0..per_class {
                rows.push(means[0][c] + sds[0][c] * normal(&mut rng));
                rows.push(means[1][c] + sds[1][c] * normal(&mut rng));
                labels.push(c);
            }
        }
        let acts = Array2::from_shape_vec((3 * per_class, 2), rows).unwrap();
        let stats = ClassStats::fit(acts.view(), &labels, 3).unwrap();
        for u in 0..2 {
            for c in 0..3 {
                assert!((stats.mean[[c, u]] - means[u][c]).abs() < 0.05);
                assert!((stats.std[[c, u]] / sds[u][c] - 1.0).abs() < 0.05);
                let (lo, hi) = stats.range(c, u, Tau::default());
                // About 95.4% of a Gaussian lies within 2 sd.
                let inside = labels
                    .iter()
                    .enumerate()
                    .filter(|(i, &l)| l == c && acts[[*i, u]] >= lo && acts[[*i, u]] <= hi)
                    .count() as f64
                    / per_class as f64;
                assert!((inside - 0.954).abs() < 0.015, "{inside}");
            }
        }
        let ov = stats.overlap(Tau::default()).unwrap();
        // Unit 0's classes are >= 2.5 apart with small sds: disjoint ranges. Unit 1's share a mean.
        assert_eq!(ov[0], 0.0);
        assert!(ov[1] > 0.2, "{}", ov[1]);
        assert_eq!(stats.salient(0, 0.5).unwrap(), vec![0]);
        assert_eq!(stats.salient(1, 0.5).unwrap(), vec![1]);
    }

    #[test]
    fn bad_input_gives_typed_errors() {
        let acts = array![[1.0, 2.0], [1.5, 2.0], [3.0, 2.0]];
        let e = ClassStats::fit(acts.view(), &[0, 0, 1], 2).unwrap_err();
        assert!(
            matches!(e, LensError::TooFewExamples { class: 1, got: 1 }),
            "{e}"
        );
        assert!(e.to_string().contains("class 1 has 1 example"), "{e}");
        let e = ClassStats::fit(acts.view(), &[0, 1, 1], 2).unwrap_err();
        assert!(matches!(e, LensError::TooFewExamples { class: 0, .. }));
        let acts4 = array![[1.0, 2.0], [1.5, 2.0], [3.0, 2.0], [4.0, 2.0]];
        let e = ClassStats::fit(acts4.view(), &[0, 0, 1, 1], 2).unwrap_err();
        assert!(
            matches!(e, LensError::ConstantActivations { unit: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("constant (2)"), "{e}");
        for bad in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
            assert!(matches!(Tau::new(bad), Err(LensError::InvalidTau(_))));
        }
        assert!(Tau::new(f64::INFINITY).is_ok());
        assert!(serde_json::from_str::<Tau>("-2.0").is_err());
        assert_eq!(serde_json::from_str::<Tau>("1.5").unwrap().get(), 1.5);
        let e = ClassStats::fit(acts4.view(), &[0, 0, 1, 5], 2).unwrap_err();
        assert!(matches!(
            e,
            LensError::LabelOutOfRange {
                index: 3,
                label: 5,
                ..
            }
        ));
        assert!(matches!(
            top_fraction(&[1.0], 0.0),
            Err(LensError::InvalidFraction(_))
        ));
        let nan = array![[1.0], [f64::NAN], [3.0], [4.0]];
        assert!(matches!(
            ClassStats::fit(nan.view(), &[0, 0, 1, 1], 2),
            Err(LensError::NonFinite { .. })
        ));
    }

    #[test]
    fn class_mean_scores_average_per_class() {
        let scores = array![[1.0, 0.0], [3.0, 2.0], [5.0, -4.0]];
        let m = class_mean_scores(scores.view(), &[0, 0, 1], 2).unwrap();
        assert_eq!(m, array![[2.0, 1.0], [5.0, -4.0]]);
        assert_eq!(top_fraction(&m.row(1).to_vec(), 0.5).unwrap(), vec![0]);
        assert!(matches!(
            class_mean_scores(scores.view(), &[0, 0, 0], 2),
            Err(LensError::TooFewExamples { class: 1, got: 0 })
        ));
    }

    #[test]
    fn top_fraction_orders_and_rounds() {
        assert_eq!(
            top_fraction(&[0.1, 0.9, 0.5, 0.7], 0.5).unwrap(),
            vec![1, 3]
        );
        assert_eq!(top_fraction(&[0.1, 0.9, 0.5], 0.01).unwrap(), vec![1]);
        assert_eq!(top_fraction(&[0.1, 0.9], 1.0).unwrap().len(), 2);
    }

    /// Three classes read off one neuron: class k's prompts put neuron 0 near 2k + 1; the
    /// option logits are -(a0 - (2k + 1))^2, so the model answers the nearest class centre.
    /// Neuron 1 is noise. A neutral value of 3 (class 1's centre) turns every masked prompt
    /// into a class-1 answer.
    fn planted(per_class: usize) -> (TableAdapter, Vec<TargetedPrompt>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for k in 0..3 {
            for _ in 0..per_class {
                rows.push(2.0 * k as f64 + 1.0 + 0.2 * normal(&mut rng));
                rows.push(rng.gen_range(-1.0..1.0));
                labels.push(k);
            }
        }
        let acts = Array2::from_shape_vec((3 * per_class, 2), rows).unwrap();
        let model = TableAdapter::new(acts, |a| {
            (0..3)
                .map(|k| -(a[0] - (2.0 * k as f64 + 1.0)).powi(2))
                .collect()
        });
        let prompts = model.prompts(3);
        (model, prompts, labels)
    }

    #[test]
    fn range_masking_hits_the_target_class_only() {
        let (model, prompts, labels) = planted(40);
        let sel = UnitSelection {
            site: Site::FeedForward,
            layers: vec![0],
        };
        let cap = capture(&model, &prompts, &sel).unwrap();
        let correct = correct_indices(cap.probs.view(), &labels);
        assert!(correct.len() > 110, "{}", correct.len());
        let fit_acts = cap.activations.select(Axis(0), &correct);
        let fit_labels: Vec<usize> = correct.iter().map(|&i| labels[i]).collect();
        let stats =
            ClassStats::fit_named(fit_acts.view(), &fit_labels, 3, Some(&cap.units)).unwrap();
        // Neutral value: class 1's centre, like a balanced reference set's mean.
        let neutral = neutral_values(cap.activations.view()).unwrap();
        assert!((neutral[0] - 3.0).abs() < 0.1);
        // Neuron 0 is class 0's most salient unit? Its mean |a| (~1) beats noise (~0.5).
        let salient = stats.salient(0, 0.5).unwrap();
        assert_eq!(salient, vec![0]);
        let set = EvalSet {
            prompts: &prompts,
            labels: &labels,
            units: &cap.units,
            acts: cap.activations.view(),
        };
        let r = run_class(
            &model,
            set,
            &stats,
            neutral.view(),
            0,
            &salient,
            Tau::default(),
        )
        .unwrap();
        // The batched path agrees with one condition at a time.
        let one = evaluate(
            &model,
            set,
            &stats,
            neutral.view(),
            &Condition {
                class: 0,
                salient: &salient,
                masking: Some(Masking::Range(Tau::default())),
            },
        )
        .unwrap();
        assert_eq!(one, r.range);
        let both = run_classes(
            &model,
            set,
            &stats,
            neutral.view(),
            &[(0, salient.clone()), (2, stats.salient(2, 0.5).unwrap())],
            Tau::default(),
        )
        .unwrap();
        assert_eq!(both[0], r);
        // Masking class 2's range sends class 2 to class 1 and spares classes 0 and 1.
        assert!(both[1].range.target_accuracy < 0.1);
        assert_eq!(both[1].range_complement_retained(), 1.0);
        assert!(r.base.target_accuracy > 0.95 && r.base.complement_accuracy > 0.95);
        // Range masking: class 0 collapses to class 1, classes 1 and 2 are untouched.
        assert!(r.range.target_accuracy < 0.1, "{:?}", r.range);
        assert_eq!(r.range.complement_accuracy, r.base.complement_accuracy);
        assert_eq!(r.range.complement_masked, 0.0);
        assert!(r.range_target_drop() > 0.85);
        assert_eq!(r.range_complement_retained(), 1.0);
        // Neuron masking: class 2 collapses to class 1 as well.
        assert!(r.neuron.target_accuracy < 0.1);
        assert!(r.neuron.complement_accuracy < 0.6, "{:?}", r.neuron);
        assert!(r.neuron_complement_retained() < 0.6);
        assert_eq!(r.neuron.complement_masked, 1.0);
        assert!(r.neuron.target_confidence < r.base.target_confidence);
    }

    #[test]
    fn analytic_model_residual_ranges_run() {
        use crate::testing::AnalyticAdapter;
        let model = AnalyticAdapter::new(1, 2, 6, 4, 3);
        let prompts: Vec<TargetedPrompt> = (0..24)
            .map(|i| TargetedPrompt::new(format!("prompt number {i}"), vec![0, 1, 2, 3]))
            .collect();
        let sel = UnitSelection {
            site: Site::Residual,
            layers: vec![1],
        };
        let cap = capture(&model, &prompts, &sel).unwrap();
        assert_eq!(cap.activations.dim(), (24, 4));
        // Residual stream of the last layer = logits, so residual masking with neutral = the
        // prompt's own value leaves the probabilities unchanged.
        let labels: Vec<usize> = (0..24).map(|i| i % 2).collect();
        let stats = ClassStats::fit(cap.activations.view(), &labels, 2).unwrap();
        let own = cap.activations.row(0).to_owned();
        let patches = mask_patches(
            cap.activations.row(0),
            &cap.units,
            &stats,
            0,
            &[0, 1, 2, 3],
            own.view(),
            Masking::Neuron,
        )
        .unwrap();
        assert_eq!(patches.len(), 4);
        let p = model
            .patched_probs(&prompts[0], &[vec![], patches])
            .unwrap();
        for j in 0..4 {
            assert!((p[[0, j]] - p[[1, j]]).abs() < 1e-5);
        }
        let bad = UnitSelection {
            site: Site::Residual,
            layers: vec![7],
        };
        assert!(matches!(
            capture(&model, &prompts, &bad),
            Err(LensError::LayerOutOfRange { layer: 7, .. })
        ));
    }
}
