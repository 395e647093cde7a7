//! The baselines: LM-Prob (the model's own choice) and Rand (seeded uniform guesses).
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Probe;
use crate::data::FeatureView;
use crate::error::{ProbeError, Result};

/// LM-Prob baseline: the option with the highest model probability.
#[derive(Debug, Clone, Default)]
pub struct LmProbBaseline;

impl Probe for LmProbBaseline {
    fn name(&self) -> &str {
        "lmprob"
    }

    fn fit(&mut self, train: &FeatureView) -> Result<()> {
        probs_of(train)?;
        Ok(())
    }

    fn predict(&self, view: &FeatureView) -> Result<Vec<usize>> {
        let probs = probs_of(view)?;
        Ok(view
            .rows
            .iter()
            .map(|&p| crate::forest::argmax(&probs.row(p).to_vec()))
            .collect())
    }

    fn ranked_neurons(&self) -> Option<&[usize]> {
        None
    }
}

/// The `[P, K]` option probabilities of `view`'s data set, which LM-Prob needs.
fn probs_of<'a>(view: &FeatureView<'a>) -> Result<ndarray::ArrayView2<'a, f32>> {
    view.data.probs().ok_or_else(|| ProbeError::MissingFeature {
        probe: "lmprob".into(),
        feature: "probs",
    })
}

/// Rand baseline: a uniformly random option per prompt, reproducible from the seed and the
/// prompt index.
#[derive(Debug, Clone, Default)]
pub struct RandomBaseline {
    /// Seed of the guesses.
    pub seed: u64,
}

impl Probe for RandomBaseline {
    fn name(&self) -> &str {
        "rand"
    }

    fn fit(&mut self, _train: &FeatureView) -> Result<()> {
        Ok(())
    }

    fn predict(&self, view: &FeatureView) -> Result<Vec<usize>> {
        let k = view.data.n_options();
        Ok(view
            .rows
            .iter()
            .map(|&p| {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                rng.set_stream(p as u64);
                rng.gen_range(0..k)
            })
            .collect())
    }

    fn ranked_neurons(&self) -> Option<&[usize]> {
        None
    }
}
