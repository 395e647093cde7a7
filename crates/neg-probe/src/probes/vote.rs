//! The majority-vote probes ranked by a per-neuron consistency score: Polar and Magn.
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{check_neuron_count, check_neurons, check_shape, not_fitted, rank_by_abs};
use super::{Probe, VoteProbe, MAX_SEARCHED_NEURONS};
use crate::data::FeatureView;
use crate::error::Result;

/// State shared by the majority-vote probes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ranking {
    ranked: Vec<usize>,
    polarity: Vec<i8>,
    /// Per-neuron score the ranking sorts by |score|.
    scores: Vec<f64>,
    n_options: usize,
    k: Option<usize>,
}

impl Ranking {
    /// Replaces the ranking with one fitted on per-neuron `scores` (ranked by |score|), keeping
    /// a neuron count set before the fit. Polar and Magn differ only in how they score neurons.
    fn refit(&mut self, scores: Vec<f64>, n_options: usize) -> Result<()> {
        let (ranked, polarity) = rank_by_abs(&scores);
        let k = self.k;
        *self = Ranking {
            ranked,
            polarity,
            scores,
            n_options,
            k: None,
        };
        if let Some(k) = k {
            self.set_k(k)?;
        }
        Ok(())
    }

    fn fitted(&self, probe: &str) -> Result<()> {
        if self.ranked.is_empty() {
            return Err(not_fitted(probe));
        }
        Ok(())
    }

    /// Checks that the probe is fitted, that `view` has its shape and that `neurons` exist.
    fn check_votes(&self, probe: &str, view: &FeatureView, neurons: &[usize]) -> Result<()> {
        self.fitted(probe)?;
        check_shape(probe, self.ranked.len(), self.n_options, view.data)?;
        check_neurons(neurons, self.ranked.len())
    }

    fn set_k(&mut self, k: usize) -> Result<()> {
        let fitted = (!self.ranked.is_empty()).then_some(self.ranked.len());
        check_neuron_count(k, fitted)?;
        self.k = Some(k);
        Ok(())
    }

    /// The top-k neurons `predict` uses: the set count, else min(N, 2^13).
    fn top(&self) -> &[usize] {
        let k = self
            .k
            .unwrap_or(MAX_SEARCHED_NEURONS)
            .min(self.ranked.len());
        &self.ranked[..k]
    }
}

/// What Polar and Magn share: the constructor, `scores` and every [`Probe`] method; each
/// type brings its `neuron_scores` (the fit) and its [`VoteProbe::votes`].
macro_rules! ranking_probe {
    ($probe:ident, $name:literal) => {
        impl $probe {
            /// An unfitted probe; `k` (if given) is the neuron count `predict` uses.
            pub fn new(k: Option<usize>) -> Self {
                Self {
                    state: Ranking {
                        k,
                        ..Ranking::default()
                    },
                }
            }

            /// Per-neuron consistency scores of the last fit.
            pub fn scores(&self) -> &[f64] {
                &self.state.scores
            }
        }

        impl Probe for $probe {
            fn name(&self) -> &str {
                $name
            }

            fn fit(&mut self, train: &FeatureView) -> Result<()> {
                train.require_two_classes("train")?;
                let scores = Self::neuron_scores(train)?;
                self.state.refit(scores, train.data.n_options())
            }

            fn predict(&self, view: &FeatureView) -> Result<Vec<usize>> {
                self.state.fitted($name)?;
                self.predict_with_neurons(view, self.state.top())
            }

            fn ranked_neurons(&self) -> Option<&[usize]> {
                Some(&self.state.ranked)
            }

            fn polarities(&self) -> Option<&[i8]> {
                Some(&self.state.polarity)
            }

            fn neuron_count(&self) -> Option<usize> {
                Some(self.state.top().len())
            }

            fn set_neuron_count(&mut self, k: usize) -> Result<()> {
                self.state.set_k(k)
            }
        }
    };
}

/// Polar-Probe (§5.3): a neuron's feature is the sign of its NEG per option; its global
/// polarity the dominant sign of the gold option's NEG over training prompts.
///
/// `score_n = sum_p ( sign(g[p, y_p, n]) - sum_{o != y_p} sign(g[p, o, n]) )`; neurons are
/// ranked by `|score_n|`, polarity `sign(score_n)`; a prompt is assigned
/// `argmax_o sum_{n in top-k} polarity_n * sign(g[p, o, n])`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolarProbe {
    state: Ranking,
}

ranking_probe!(PolarProbe, "polar");

impl PolarProbe {
    fn neuron_scores(train: &FeatureView) -> Result<Vec<f64>> {
        let sf = train.data.score_features("polar")?;
        let labels = train.data.labels();
        Ok((0..train.data.n_neurons())
            .into_par_iter()
            .map(|n| {
                let (pos, neg) = (sf.pos_bits.row(n), sf.neg_bits.row(n));
                let mut s = 0i64;
                for &p in &train.rows {
                    let (pb, nb) = (pos[p], neg[p]);
                    let all = pb.count_ones() as i64 - nb.count_ones() as i64;
                    let y = labels[p];
                    let sy = ((pb >> y) & 1) as i64 - ((nb >> y) & 1) as i64;
                    // s(y) - sum_{o != y} s(o) = 2 s(y) - sum_o s(o)
                    s += 2 * sy - all;
                }
                s as f64
            })
            .collect())
    }
}

impl VoteProbe for PolarProbe {
    fn votes(&self, view: &FeatureView, neurons: &[usize]) -> Result<Array2<i32>> {
        self.state.check_votes("polar", view, neurons)?;
        let sf = view.data.score_features("polar")?;
        let k = view.data.n_options();
        let mut votes = Array2::<i32>::zeros((view.len(), k));
        for &n in neurons {
            let pol = self.state.polarity[n] as i32;
            if pol == 0 {
                continue;
            }
            let (pos, neg) = (sf.pos_bits.row(n), sf.neg_bits.row(n));
            for (i, &p) in view.rows.iter().enumerate() {
                for o in 0..k {
                    let s = ((pos[p] >> o) & 1) as i32 - ((neg[p] >> o) & 1) as i32;
                    votes[[i, o]] += pol * s;
                }
            }
        }
        Ok(votes)
    }
}

/// Magn-Probe (§5.3): neurons whose gold-option NEG is consistently the highest (or lowest)
/// among the options.
///
/// `score_n = sum_p sum_o sign(g[p, y_p, n] - g[p, o, n])`; neurons ranked by `|score_n|`,
/// polarity `sign(score_n)`; each selected neuron votes for `argmax_o polarity_n * g[p, o, n]`
/// (the highest option for positive polarity, the lowest for negative); the most voted
/// option wins.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MagnProbe {
    state: Ranking,
}

ranking_probe!(MagnProbe, "magn");

impl MagnProbe {
    fn neuron_scores(train: &FeatureView) -> Result<Vec<f64>> {
        let sf = train.data.score_features("magn")?;
        Ok((0..train.data.n_neurons())
            .into_par_iter()
            .map(|n| {
                let m = sf.gold_margin.row(n);
                train.rows.iter().map(|&p| m[p] as i64).sum::<i64>() as f64
            })
            .collect())
    }
}

impl VoteProbe for MagnProbe {
    fn votes(&self, view: &FeatureView, neurons: &[usize]) -> Result<Array2<i32>> {
        self.state.check_votes("magn", view, neurons)?;
        let sf = view.data.score_features("magn")?;
        let top = view.data.option_index();
        let mut votes = Array2::<i32>::zeros((view.len(), view.data.n_options()));
        for &n in neurons {
            let row = match self.state.polarity[n] {
                1 => top.row(n),
                -1 => sf.bottom.row(n),
                _ => continue,
            };
            for (i, &p) in view.rows.iter().enumerate() {
                votes[[i, row[p] as usize]] += 1;
            }
        }
        Ok(votes)
    }
}
