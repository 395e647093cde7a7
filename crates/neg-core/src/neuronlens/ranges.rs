//! Steps 2, 3 and 5: per-class ranges, salient units, neutral values and range overlap.
use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::capture::check_finite;
use super::{LensError, Result, Tau, Unit};

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

    pub(super) fn check_class(&self, class: usize) -> Result<()> {
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
