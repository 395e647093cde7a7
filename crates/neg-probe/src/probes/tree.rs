//! The Tree-Probe: a random forest on the option index of the largest NEG.
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{check_neuron_count, check_neurons, not_fitted, rank_by_abs, Probe};
use crate::data::FeatureView;
use crate::error::{ProbeError, Result};
use crate::forest::{ForestConfig, RandomForest};

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
    fitted: Option<FittedTree>,
}

/// A fitted Tree-Probe.
#[derive(Debug, Clone)]
struct FittedTree {
    forest: RandomForest,
    /// The neuron behind each forest feature.
    ids: Vec<usize>,
    /// Neurons the forest splits on, by decreasing importance.
    ranked: Vec<usize>,
    /// Neuron count of the data set it was fitted on.
    n_neurons: usize,
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
        self.fitted.as_ref().map(|f| &f.forest)
    }

    /// Number of neurons the forest actually splits on.
    pub fn n_used_neurons(&self) -> Option<usize> {
        self.fitted.as_ref().map(|f| f.ranked.len())
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
                check_neurons(idx, n)?;
                Ok(Some(idx.clone()))
            }
            NeuronSubset::TopAgreement(k) => {
                check_neuron_count(*k, Some(n))?;
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
        let ids: Vec<usize> = match subset {
            None => (0..data.n_neurons()).collect(),
            Some(idx) => idx,
        };
        let ranked = used.iter().map(|&f| ids[f]).collect();
        self.fitted = Some(FittedTree {
            forest,
            ids,
            ranked,
            n_neurons: data.n_neurons(),
        });
        Ok(())
    }

    fn predict(&self, view: &FeatureView) -> Result<Vec<usize>> {
        let fitted = self.fitted.as_ref().ok_or_else(|| not_fitted("tree"))?;
        let n = fitted.n_neurons;
        if view.data.n_neurons() != n {
            return Err(ProbeError::Incompatible {
                what: format!(
                    "tree was fitted on {n} neurons, the data has {}",
                    view.data.n_neurons()
                ),
            });
        }
        if fitted.ids.len() == n {
            fitted.forest.predict(view.data.option_index(), &view.rows)
        } else {
            let x = gather_rows(view.data.option_index(), &fitted.ids);
            fitted.forest.predict(x.view(), &view.rows)
        }
    }

    /// Neurons the forest splits on, by decreasing mean decrease in impurity.
    fn ranked_neurons(&self) -> Option<&[usize]> {
        self.fitted.as_ref().map(|f| f.ranked.as_slice())
    }
}
