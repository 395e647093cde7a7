//! Fitting and evaluation with the neuron count chosen on the validation split.
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{FeatureView, ProbeData, Split};
use crate::error::{ProbeError, Result};
use crate::probes::{Probe, MAX_SEARCHED_NEURONS};

/// One point of the neuron-count curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Number of top-ranked neurons voting.
    pub k: usize,
    /// Validation accuracy with `k` neurons.
    pub valid_accuracy: f64,
    /// Test accuracy with `k` neurons.
    pub test_accuracy: f64,
}

/// The outcome of fitting and evaluating one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Probe name.
    pub probe: String,
    /// Training prompts used.
    pub n_train: usize,
    /// Validation prompts.
    pub n_valid: usize,
    /// Test prompts.
    pub n_test: usize,
    /// Neuron count used for the test accuracy (chosen on valid, or fixed by the caller);
    /// `None` for probes without one.
    pub selected_neurons: Option<usize>,
    /// Validation accuracy at the selected count.
    pub valid_accuracy: f64,
    /// Test accuracy at the selected count.
    pub test_accuracy: f64,
    /// Accuracy for every searched neuron count (empty for probes without one).
    pub curve: Vec<CurvePoint>,
    /// Seconds spent in `fit`.
    pub fit_seconds: f64,
}

/// Neuron counts searched: `2^0 .. 2^13`, capped at `n_neurons` (which is then included).
pub fn neuron_counts(n_neurons: usize) -> Vec<usize> {
    let mut ks: Vec<usize> = (0..=13)
        .map(|i| (1usize << i).min(n_neurons))
        .filter(|&k| k <= MAX_SEARCHED_NEURONS)
        .collect();
    ks.dedup();
    ks
}

/// Fits `probe` on the train split of `data` and evaluates it on valid and test; see
/// [`evaluate_views`].
pub fn evaluate(
    probe: &mut dyn Probe,
    data: &ProbeData,
    fixed_k: Option<usize>,
) -> Result<Evaluation> {
    let train = data.split_view(Split::Train);
    let valid = data.split_view(Split::Valid);
    let test = data.split_view(Split::Test);
    evaluate_views(probe, &train, &valid, &test, fixed_k)
}

/// Fits `probe` on `train`; for probes with a neuron count, computes valid and test accuracy
/// for every count of [`neuron_counts`], picks the count with the best validation accuracy
/// (the smallest on ties) unless `fixed_k` is given, and leaves the probe set to it.
pub fn evaluate_views(
    probe: &mut dyn Probe,
    train: &FeatureView,
    valid: &FeatureView,
    test: &FeatureView,
    fixed_k: Option<usize>,
) -> Result<Evaluation> {
    for (view, name) in [(train, "train"), (valid, "valid"), (test, "test")] {
        if view.is_empty() {
            return Err(ProbeError::EmptySplit { split: name.into() });
        }
    }
    let n_neurons = train.data.n_neurons();
    if let Some(k) = fixed_k {
        if k > n_neurons {
            return Err(ProbeError::TooManyNeurons { k, n_neurons });
        }
        if k == 0 {
            return Err(ProbeError::InvalidConfig {
                what: "neuron count must be at least 1".into(),
            });
        }
    }
    let start = Instant::now();
    probe.fit(train)?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let mut curve = Vec::new();
    if probe.neuron_count().is_some() {
        for k in neuron_counts(n_neurons) {
            probe.set_neuron_count(k)?;
            curve.push(CurvePoint {
                k,
                valid_accuracy: valid.accuracy(&probe.predict(valid)?),
                test_accuracy: test.accuracy(&probe.predict(test)?),
            });
        }
        let chosen = match fixed_k {
            Some(k) => k,
            None => {
                let mut best = &curve[0];
                for c in &curve {
                    if c.valid_accuracy > best.valid_accuracy {
                        best = c;
                    }
                }
                best.k
            }
        };
        probe.set_neuron_count(chosen)?;
    }
    let selected_neurons = probe.neuron_count();
    Ok(Evaluation {
        probe: probe.name().to_string(),
        n_train: train.len(),
        n_valid: valid.len(),
        n_test: test.len(),
        selected_neurons,
        valid_accuracy: valid.accuracy(&probe.predict(valid)?),
        test_accuracy: test.accuracy(&probe.predict(test)?),
        curve,
        fit_seconds,
    })
}
