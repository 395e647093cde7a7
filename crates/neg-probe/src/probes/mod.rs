//! The probes: Polar-, Magn-, Tree- and Act-Probe, and the LM-Prob and Rand baselines.
//!
//! The [`Probe`] and [`VoteProbe`] traits and the checks the probes share live here; each
//! probe family has its own file: `vote.rs` (Polar, Magn), `act.rs`, `tree.rs`,
//! `baseline.rs` (LM-Prob, Rand) and `kind.rs` ([`ProbeKind`]).
use ndarray::Array2;

use crate::data::{FeatureView, ProbeData};
use crate::error::{ProbeError, Result};

mod act;
mod baseline;
mod kind;
mod tree;
mod vote;

pub use act::ActProbe;
pub use baseline::{LmProbBaseline, RandomBaseline};
pub use kind::ProbeKind;
pub use tree::{NeuronSubset, TreeProbe};
pub use vote::{MagnProbe, PolarProbe};

/// Largest neuron count searched by default (2^13, the paper's grid).
pub const MAX_SEARCHED_NEURONS: usize = 1 << 13;

/// A skill-neuron probe: fitted on training prompts, predicts an option per prompt.
pub trait Probe: Send + Sync {
    /// Short name (`polar`, `magn`, `tree`, `act`, `lmprob`, `rand`).
    fn name(&self) -> &str;
    /// Fits on the prompts of `train`; errors if they hold fewer than two classes or the
    /// data set lacks a feature the probe needs.
    fn fit(&mut self, train: &FeatureView) -> Result<()>;
    /// Predicts an option index for every prompt of `view`.
    fn predict(&self, view: &FeatureView) -> Result<Vec<usize>>;
    /// Neurons ranked by importance as skill indicators, best first (`None` for baselines).
    fn ranked_neurons(&self) -> Option<&[usize]>;
    /// Per neuron (indexed by neuron, not rank), the sign of its fitted skill score: +1 when
    /// its NEG favours the gold option, -1 when it disfavours it, 0 when neutral (Polar and
    /// Magn); `None` for probes without one.
    fn polarities(&self) -> Option<&[i8]> {
        None
    }
    /// The number of top-ranked neurons `predict` votes with, for majority-vote probes.
    fn neuron_count(&self) -> Option<usize> {
        None
    }
    /// Sets the number of top-ranked neurons `predict` uses (after `fit`). Errors with
    /// [`ProbeError::TooManyNeurons`] when `k` exceeds the neuron count, and with
    /// [`ProbeError::InvalidConfig`] for probes without a neuron count.
    fn set_neuron_count(&mut self, k: usize) -> Result<()> {
        Err(ProbeError::InvalidConfig {
            what: format!("{} has no neuron count (k = {k})", self.name()),
        })
    }
}

/// A majority-vote probe whose neurons vote independently: any neuron set can be used.
pub trait VoteProbe: Probe {
    /// Votes `[rows, options]` cast by `neurons` on the prompts of `view`.
    fn votes(&self, view: &FeatureView, neurons: &[usize]) -> Result<Array2<i32>>;

    /// Predictions of the vote with `neurons` (ties: the lowest option index).
    fn predict_with_neurons(&self, view: &FeatureView, neurons: &[usize]) -> Result<Vec<usize>> {
        let votes = self.votes(view, neurons)?;
        Ok(votes
            .rows()
            .into_iter()
            .map(|r| crate::forest::argmax(r.as_slice().unwrap_or(&r.to_vec())))
            .collect())
    }
}

/// Ranks neurons by |score| (descending, ties by index) and returns (ranking, polarity).
fn rank_by_abs(scores: &[f64]) -> (Vec<usize>, Vec<i8>) {
    let mut ranked: Vec<usize> = (0..scores.len()).collect();
    ranked.sort_by(|&a, &b| scores[b].abs().total_cmp(&scores[a].abs()).then(a.cmp(&b)));
    let polarity = scores
        .iter()
        .map(|&s| (s > 0.0) as i8 - (s < 0.0) as i8)
        .collect();
    (ranked, polarity)
}

/// Checks a neuron count `k`: at least 1, and at most `n_neurons` when that is known (after
/// a fit).
fn check_neuron_count(k: usize, n_neurons: Option<usize>) -> Result<()> {
    if k == 0 {
        return Err(ProbeError::InvalidConfig {
            what: "neuron count must be at least 1".into(),
        });
    }
    match n_neurons {
        Some(n_neurons) if k > n_neurons => Err(ProbeError::TooManyNeurons { k, n_neurons }),
        _ => Ok(()),
    }
}

/// Checks that every neuron index is below `n_neurons`.
fn check_neurons(neurons: &[usize], n_neurons: usize) -> Result<()> {
    match neurons.iter().find(|&&n| n >= n_neurons) {
        Some(&neuron) => Err(ProbeError::NeuronOutOfRange { neuron, n_neurons }),
        None => Ok(()),
    }
}

/// Checks that `data` has the neuron and option counts `probe` was fitted on.
fn check_shape(probe: &str, n_neurons: usize, n_options: usize, data: &ProbeData) -> Result<()> {
    if data.n_neurons() != n_neurons || data.n_options() != n_options {
        return Err(ProbeError::Incompatible {
            what: format!(
                "{probe} was fitted on {n_neurons} neurons x {n_options} options, the data has {} x {}",
                data.n_neurons(),
                data.n_options()
            ),
        });
    }
    Ok(())
}

/// The error of a probe used before `fit`.
fn not_fitted(probe: &str) -> ProbeError {
    ProbeError::NotFitted {
        probe: probe.to_string(),
    }
}
