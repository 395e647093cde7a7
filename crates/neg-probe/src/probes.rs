//! The probes: Polar-, Magn-, Tree- and Act-Probe, and the LM-Prob and Rand baselines.
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{FeatureView, ProbeData};
use crate::error::{ProbeError, Result};
use crate::forest::{ForestConfig, RandomForest};

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
            .map(|r| argmax_i32(r.as_slice().unwrap_or(&r.to_vec())))
            .collect())
    }
}

fn argmax_i32(v: &[i32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
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
            return Err(ProbeError::NotFitted {
                probe: probe.to_string(),
            });
        }
        Ok(())
    }

    fn check_view(&self, probe: &str, data: &ProbeData) -> Result<()> {
        self.fitted(probe)?;
        if data.n_neurons() != self.ranked.len() || data.n_options() != self.n_options {
            return Err(ProbeError::Incompatible {
                what: format!(
                    "{probe} was fitted on {} neurons x {} options, the data has {} x {}",
                    self.ranked.len(),
                    self.n_options,
                    data.n_neurons(),
                    data.n_options()
                ),
            });
        }
        Ok(())
    }

    fn check_neurons(&self, neurons: &[usize]) -> Result<()> {
        if let Some(&bad) = neurons.iter().find(|&&n| n >= self.ranked.len()) {
            return Err(ProbeError::NeuronOutOfRange {
                neuron: bad,
                n_neurons: self.ranked.len(),
            });
        }
        Ok(())
    }

    fn set_k(&mut self, k: usize) -> Result<()> {
        if k == 0 {
            return Err(ProbeError::InvalidConfig {
                what: "neuron count must be at least 1".into(),
            });
        }
        if !self.ranked.is_empty() && k > self.ranked.len() {
            return Err(ProbeError::TooManyNeurons {
                k,
                n_neurons: self.ranked.len(),
            });
        }
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

impl PolarProbe {
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

impl Probe for PolarProbe {
    fn name(&self) -> &str {
        "polar"
    }

    fn fit(&mut self, train: &FeatureView) -> Result<()> {
        train.require_two_classes("train")?;
        let sf = train.data.score_features("polar")?;
        let labels = train.data.labels();
        let scores: Vec<f64> = (0..train.data.n_neurons())
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
            .collect();
        self.state.refit(scores, train.data.n_options())
    }

    fn predict(&self, view: &FeatureView) -> Result<Vec<usize>> {
        self.state.fitted("polar")?;
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

impl VoteProbe for PolarProbe {
    fn votes(&self, view: &FeatureView, neurons: &[usize]) -> Result<Array2<i32>> {
        self.state.check_view("polar", view.data)?;
        self.state.check_neurons(neurons)?;
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

impl MagnProbe {
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

impl Probe for MagnProbe {
    fn name(&self) -> &str {
        "magn"
    }

    fn fit(&mut self, train: &FeatureView) -> Result<()> {
        train.require_two_classes("train")?;
        let sf = train.data.score_features("magn")?;
        let scores: Vec<f64> = (0..train.data.n_neurons())
            .into_par_iter()
            .map(|n| {
                let m = sf.gold_margin.row(n);
                train.rows.iter().map(|&p| m[p] as i64).sum::<i64>() as f64
            })
            .collect();
        self.state.refit(scores, train.data.n_options())
    }

    fn predict(&self, view: &FeatureView) -> Result<Vec<usize>> {
        self.state.fitted("magn")?;
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

impl VoteProbe for MagnProbe {
    fn votes(&self, view: &FeatureView, neurons: &[usize]) -> Result<Array2<i32>> {
        self.state.check_view("magn", view.data)?;
        self.state.check_neurons(neurons)?;
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
        let acts = train
            .data
            .activations()
            .ok_or_else(|| ProbeError::MissingFeature {
                probe: "act".into(),
                feature: "activations",
            })?;
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
            return Err(ProbeError::NotFitted {
                probe: "act".into(),
            });
        }
        if view.data.n_neurons() != self.n_neurons || view.data.n_options() != self.n_options {
            return Err(ProbeError::Incompatible {
                what: format!(
                    "act was fitted on {} neurons x {} options, the data has {} x {}",
                    self.n_neurons,
                    self.n_options,
                    view.data.n_neurons(),
                    view.data.n_options()
                ),
            });
        }
        let acts = view
            .data
            .activations()
            .ok_or_else(|| ProbeError::MissingFeature {
                probe: "act".into(),
                feature: "activations",
            })?;
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
        if k == 0 {
            return Err(ProbeError::InvalidConfig {
                what: "neuron count must be at least 1".into(),
            });
        }
        if self.n_neurons > 0 && k > self.n_neurons {
            return Err(ProbeError::TooManyNeurons {
                k,
                n_neurons: self.n_neurons,
            });
        }
        self.k = Some(k);
        Ok(())
    }
}

/// LM-Prob baseline: the option with the highest model probability.
#[derive(Debug, Clone, Default)]
pub struct LmProbBaseline;

impl Probe for LmProbBaseline {
    fn name(&self) -> &str {
        "lmprob"
    }

    fn fit(&mut self, train: &FeatureView) -> Result<()> {
        train
            .data
            .probs()
            .ok_or_else(|| ProbeError::MissingFeature {
                probe: "lmprob".into(),
                feature: "probs",
            })?;
        Ok(())
    }

    fn predict(&self, view: &FeatureView) -> Result<Vec<usize>> {
        let probs = view
            .data
            .probs()
            .ok_or_else(|| ProbeError::MissingFeature {
                probe: "lmprob".into(),
                feature: "probs",
            })?;
        Ok(view
            .rows
            .iter()
            .map(|&p| crate::forest::argmax_f32(&probs.row(p).to_vec()))
            .collect())
    }

    fn ranked_neurons(&self) -> Option<&[usize]> {
        None
    }
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

/// Which neurons the Tree-Probe's forest sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NeuronSubset {
    /// All neurons (the paper's Tree-Probe).
    All,
    /// These neuron indices.
    Indices(Vec<usize>),
    /// The `k` neurons whose top option agrees with (or avoids) the gold option most
    /// consistently on the training prompts: score `|mean(top == y) - 1/K|`. Needs only the
    /// compact option index.
    TopAgreement(usize),
}

/// Tree-Probe (§5.3, G.2): a random forest on the per-neuron option index of the largest
/// NEG (for binary tasks a 0/1 feature: which option's NEG is larger). The authors' code
/// writes the binary feature as `1 if g[0] > g[1]`, the mirror image of this index; a tree
/// splits a two-valued feature into the same two groups either way, so the forests agree.
#[derive(Debug, Clone)]
pub struct TreeProbe {
    /// Forest hyper-parameters (100 trees, unlimited depth by default).
    pub forest: ForestConfig,
    /// Neurons the forest sees.
    pub neurons: NeuronSubset,
    fitted: Option<(RandomForest, Vec<usize>, Vec<usize>, usize)>,
}

impl Default for TreeProbe {
    fn default() -> Self {
        Self::new(ForestConfig::default(), NeuronSubset::All)
    }
}

impl TreeProbe {
    /// An unfitted Tree-Probe.
    pub fn new(forest: ForestConfig, neurons: NeuronSubset) -> Self {
        Self {
            forest,
            neurons,
            fitted: None,
        }
    }

    /// The fitted forest.
    pub fn model(&self) -> Option<&RandomForest> {
        self.fitted.as_ref().map(|f| &f.0)
    }

    /// Number of neurons the forest actually splits on.
    pub fn n_used_neurons(&self) -> Option<usize> {
        self.fitted.as_ref().map(|f| f.2.len())
    }

    fn chosen(&self, train: &FeatureView) -> Result<Option<Vec<usize>>> {
        let data = train.data;
        let n = data.n_neurons();
        match &self.neurons {
            NeuronSubset::All => Ok(None),
            NeuronSubset::Indices(idx) => {
                if idx.is_empty() {
                    return Err(ProbeError::InvalidConfig {
                        what: "empty neuron subset".into(),
                    });
                }
                if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
                    return Err(ProbeError::NeuronOutOfRange {
                        neuron: bad,
                        n_neurons: n,
                    });
                }
                Ok(Some(idx.clone()))
            }
            NeuronSubset::TopAgreement(k) => {
                if *k == 0 {
                    return Err(ProbeError::InvalidConfig {
                        what: "neuron count must be at least 1".into(),
                    });
                }
                if *k > n {
                    return Err(ProbeError::TooManyNeurons {
                        k: *k,
                        n_neurons: n,
                    });
                }
                let top = data.option_index();
                let labels = data.labels();
                let chance = 1.0 / data.n_options() as f64;
                let scores: Vec<f64> = (0..n)
                    .into_par_iter()
                    .map(|i| {
                        let row = top.row(i);
                        let hits = train
                            .rows
                            .iter()
                            .filter(|&&p| row[p] as usize == labels[p])
                            .count();
                        hits as f64 / train.len() as f64 - chance
                    })
                    .collect();
                let (ranked, _) = rank_by_abs(&scores);
                Ok(Some(ranked[..*k].to_vec()))
            }
        }
    }
}

fn gather_rows(x: ArrayView2<u8>, idx: &[usize]) -> Array2<u8> {
    let mut out = Array2::zeros((idx.len(), x.ncols()));
    for (i, &n) in idx.iter().enumerate() {
        out.row_mut(i).assign(&x.row(n));
    }
    out
}

impl Probe for TreeProbe {
    fn name(&self) -> &str {
        "tree"
    }

    fn fit(&mut self, train: &FeatureView) -> Result<()> {
        train.require_two_classes("train")?;
        let data = train.data;
        let subset = self.chosen(train)?;
        let y = train.labels();
        let forest = match &subset {
            None => RandomForest::fit(
                data.option_index(),
                &train.rows,
                &y,
                data.n_options(),
                &self.forest,
            )?,
            Some(idx) => {
                let x = gather_rows(data.option_index(), idx);
                RandomForest::fit(x.view(), &train.rows, &y, data.n_options(), &self.forest)?
            }
        };
        let imp = forest.feature_importances();
        let mut used: Vec<usize> = (0..imp.len()).filter(|&f| imp[f] > 0.0).collect();
        used.sort_by(|&a, &b| imp[b].total_cmp(&imp[a]).then(a.cmp(&b)));
        let ids: Vec<usize> = match &subset {
            None => (0..data.n_neurons()).collect(),
            Some(idx) => idx.clone(),
        };
        let ranked = used.iter().map(|&f| ids[f]).collect();
        self.fitted = Some((forest, ids, ranked, data.n_neurons()));
        Ok(())
    }

    fn predict(&self, view: &FeatureView) -> Result<Vec<usize>> {
        let (forest, ids, _, n) = self.fitted.as_ref().ok_or_else(|| ProbeError::NotFitted {
            probe: "tree".into(),
        })?;
        if view.data.n_neurons() != *n {
            return Err(ProbeError::Incompatible {
                what: format!(
                    "tree was fitted on {n} neurons, the data has {}",
                    view.data.n_neurons()
                ),
            });
        }
        if ids.len() == *n {
            forest.predict(view.data.option_index(), &view.rows)
        } else {
            let x = gather_rows(view.data.option_index(), ids);
            forest.predict(x.view(), &view.rows)
        }
    }

    /// Neurons the forest splits on, by decreasing mean decrease in impurity.
    fn ranked_neurons(&self) -> Option<&[usize]> {
        self.fitted.as_ref().map(|f| f.2.as_slice())
    }
}

/// The probe kinds, for command lines and configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// [`PolarProbe`].
    Polar,
    /// [`MagnProbe`].
    Magn,
    /// [`TreeProbe`].
    Tree,
    /// [`ActProbe`].
    Act,
    /// [`LmProbBaseline`].
    Lmprob,
    /// [`RandomBaseline`].
    Rand,
}

impl std::str::FromStr for ProbeKind {
    type Err = ProbeError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "polar" => ProbeKind::Polar,
            "magn" => ProbeKind::Magn,
            "tree" => ProbeKind::Tree,
            "act" => ProbeKind::Act,
            "lmprob" => ProbeKind::Lmprob,
            "rand" => ProbeKind::Rand,
            other => {
                return Err(ProbeError::InvalidConfig {
                    what: format!("unknown probe `{other}` (polar, magn, tree, act, lmprob, rand)"),
                })
            }
        })
    }
}

impl ProbeKind {
    /// A fresh probe of this kind with default settings (Tree: 100 trees, all neurons).
    pub fn build(self) -> Box<dyn Probe> {
        match self {
            ProbeKind::Polar => Box::new(PolarProbe::new(None)),
            ProbeKind::Magn => Box::new(MagnProbe::new(None)),
            ProbeKind::Tree => Box::new(TreeProbe::default()),
            ProbeKind::Act => Box::new(ActProbe::new(None)),
            ProbeKind::Lmprob => Box::new(LmProbBaseline),
            ProbeKind::Rand => Box::new(RandomBaseline::default()),
        }
    }
}
