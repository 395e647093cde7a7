//! Step 4: masking salient units inside (or regardless of) a class's range, and the
//! accuracy and confidence that follow.
use ndarray::{ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::capture::argmax;
use super::{ClassStats, LensError, Result, Tau, Unit};
use crate::adapter::{ModelAdapter, Patch, TargetedPrompt};

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
