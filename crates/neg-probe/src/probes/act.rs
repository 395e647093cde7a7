//! The Act-Probe baseline (Wang et al. 2022) on neuron activations.
use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{check_neuron_count, check_shape, not_fitted, rank_by_abs};
use super::{Probe, MAX_SEARCHED_NEURONS};
use crate::data::{FeatureView, ProbeData};
use crate::error::{ProbeError, Result};

/// One binary node of the Act-Probe: options `[lo, mid)` against `[mid, hi)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ActNode {
    lo: usize,
    mid: usize,
    hi: usize,
    threshold: Vec<f32>,
    ranked: Vec<usize>,
    polarity: Vec<i8>,
    /// Child node index for the lower / upper half (None: a single option).
    lower: Option<usize>,
    upper: Option<usize>,
}

/// Act-Probe baseline (Wang et al. 2022): a neuron's indicator is whether its activation is
/// above its mean over the training prompts; its predictivity is the accuracy of that
/// indicator as a predictor of the second option, minus 0.5; the top-k neurons by
/// |predictivity| vote with their polarity-adjusted indicators.
///
/// More than two options (the authors' extension): the option set is split recursively into
/// halves `[lo, mid)` / `[mid, hi)` with `mid = lo + (hi - lo) / 2`; every split is a binary
/// Act-Probe trained on the training prompts whose label lies in `[lo, hi)` (threshold = their
/// mean activation), and prediction descends from the root. Vote ties go to the lower half.
/// With an odd number of options the halves are unequal and the mean threshold sits off the
/// boundary between them, so this baseline is weaker there (as the method prescribes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActProbe {
    nodes: Vec<ActNode>,
    k: Option<usize>,
    n_neurons: usize,
    n_options: usize,
}

/// The `[N, P]` activations of `data`, which the Act-Probe needs.
fn activations(data: &ProbeData) -> Result<ArrayView2<'_, f32>> {
    data.activations()
        .ok_or_else(|| ProbeError::MissingFeature {
            probe: "act".into(),
            feature: "activations",
        })
}

impl ActProbe {
    /// An unfitted probe; `k` (if given) is the neuron count each split votes with.
    pub fn new(k: Option<usize>) -> Self {
        Self {
            k,
            ..Self::default()
        }
    }

    fn fit_node(
        &mut self,
        acts: &ArrayView2<f32>,
        labels: &[usize],
        rows: &[usize],
        lo: usize,
        hi: usize,
    ) -> usize {
        let mid = lo + (hi - lo) / 2;
        let node_rows: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&p| (lo..hi).contains(&labels[p]))
            .collect();
        let n_neurons = acts.nrows();
        let stats: Vec<(f32, f64)> = (0..n_neurons)
            .into_par_iter()
            .map(|n| {
                if node_rows.is_empty() {
                    return (0.0, 0.0);
                }
                let a = acts.row(n);
                let mean =
                    node_rows.iter().map(|&p| a[p] as f64).sum::<f64>() / node_rows.len() as f64;
                let thr = mean as f32;
                let hits = node_rows
                    .iter()
                    .filter(|&&p| (a[p] > thr) == (labels[p] >= mid))
                    .count();
                (thr, hits as f64 / node_rows.len() as f64 - 0.5)
            })
            .collect();
        let (threshold, pred): (Vec<f32>, Vec<f64>) = stats.into_iter().unzip();
        let (ranked, polarity) = rank_by_abs(&pred);
        let id = self.nodes.len();
        self.nodes.push(ActNode {
            lo,
            mid,
            hi,
            threshold,
            ranked,
            polarity,
            lower: None,
            upper: None,
        });
        if mid - lo >= 2 {
            let c = self.fit_node(acts, labels, rows, lo, mid);
            self.nodes[id].lower = Some(c);
        }
        if hi - mid >= 2 {
            let c = self.fit_node(acts, labels, rows, mid, hi);
            self.nodes[id].upper = Some(c);
        }
        id
    }

    fn effective_k(&self) -> usize {
        self.k.unwrap_or(MAX_SEARCHED_NEURONS).min(self.n_neurons)
    }
}

impl Probe for ActProbe {
    fn name(&self) -> &str {
        "act"
    }

    fn fit(&mut self, train: &FeatureView) -> Result<()> {
        train.require_two_classes("train")?;
        let acts = activations(train.data)?;
        self.nodes.clear();
        self.n_neurons = train.data.n_neurons();
        self.n_options = train.data.n_options();
        if let Some(k) = self.k {
            if k > self.n_neurons {
                return Err(ProbeError::TooManyNeurons {
                    k,
                    n_neurons: self.n_neurons,
                });
            }
        }
        self.fit_node(&acts, train.data.labels(), &train.rows, 0, self.n_options);
        Ok(())
    }

    fn predict(&self, view: &FeatureView) -> Result<Vec<usize>> {
        if self.nodes.is_empty() {
            return Err(not_fitted("act"));
        }
        check_shape("act", self.n_neurons, self.n_options, view.data)?;
        let acts = activations(view.data)?;
        let k = self.effective_k();
        Ok(view
            .rows
            .iter()
            .map(|&p| {
                let mut node = &self.nodes[0];
                loop {
                    let mut vote = 0i64;
                    for &n in &node.ranked[..k] {
                        let above = acts[[n, p]] > node.threshold[n];
                        let upper = if above { 1 } else { -1 };
                        vote += node.polarity[n] as i64 * upper;
                    }
                    let (child, first) = if vote > 0 {
                        (node.upper, node.mid)
                    } else {
                        (node.lower, node.lo)
                    };
                    match child {
                        Some(c) => node = &self.nodes[c],
                        None => break first,
                    }
                }
            })
            .collect())
    }

    fn ranked_neurons(&self) -> Option<&[usize]> {
        self.nodes.first().map(|n| n.ranked.as_slice())
    }

    fn neuron_count(&self) -> Option<usize> {
        Some(self.effective_k())
    }

    fn set_neuron_count(&mut self, k: usize) -> Result<()> {
        check_neuron_count(k, (self.n_neurons > 0).then_some(self.n_neurons))?;
        self.k = Some(k);
        Ok(())
    }
}
