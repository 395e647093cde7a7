//! Synthetic probing tasks with planted skill neurons, for tests, benchmarks and examples.
//!
//! Every prompt has a latent answer `t`; the gold label equals `t` except for a fraction
//! `label_noise` of prompts, where it is another option drawn uniformly. Skill neurons carry
//! `t` through their NEG (`g[o] = polarity * strength * (o == t ? 1 : -1) + N(0, 1)`), their
//! activation (`polarity * strength * (2t - (K - 1)) + N(0, 1)`, monotone in `t`); all other
//! neurons are pure N(0, 1) noise. Option probabilities favour `t` mildly. The best accuracy
//! any probe can reach is therefore the fraction of prompts whose label equals `t`
//! ([`Planted::attainable_accuracy`]).
use ndarray::{Array1, Array2, Array3};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::{FeatureView, ProbeData};
use crate::error::Result;

/// Parameters of a planted task.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantedConfig {
    /// Prompts.
    pub n_prompts: usize,
    /// Options per prompt.
    pub n_options: usize,
    /// Neurons.
    pub n_neurons: usize,
    /// Planted skill neurons (chosen at random among all).
    pub n_skill: usize,
    /// Signal-to-noise of a skill neuron (noise has unit variance).
    pub strength: f32,
    /// Fraction of prompts whose label is not the latent answer.
    pub label_noise: f64,
    /// Seed of the prompts, labels and noise.
    pub seed: u64,
    /// Seed of the choice and polarity of the skill neurons: tasks with the same
    /// `skill_seed` and different `seed`s are the same skill in different contexts.
    pub skill_seed: u64,
}

impl Default for PlantedConfig {
    fn default() -> Self {
        Self {
            n_prompts: 800,
            n_options: 2,
            n_neurons: 500,
            n_skill: 16,
            strength: 1.0,
            label_noise: 0.1,
            seed: 0,
            skill_seed: 0,
        }
    }
}

/// A generated task: the full tensors (prompt-major, as a Python caller would write them)
/// and the compact data set built from them.
#[derive(Debug, Clone)]
pub struct Planted {
    /// NEG `[P, K, N]`.
    pub scores: Array3<f32>,
    /// Activations `[P, N]`.
    pub activations: Array2<f32>,
    /// Option probabilities `[P, K]`.
    pub probs: Array2<f32>,
    /// Gold labels `[P]`.
    pub labels: Vec<i64>,
    /// Split ids `[P]`: prompt `i` is valid if `i % 8 == 6`, test if `i % 8 == 7`, else train.
    pub split: Vec<u8>,
    /// Latent answers `[P]`.
    pub latent: Vec<usize>,
    /// Indices of the planted skill neurons.
    pub skill_neurons: Vec<usize>,
    /// Polarity (+1 / -1) of each planted skill neuron.
    pub polarity: Vec<i8>,
    /// The compact data set.
    pub data: ProbeData,
}

/// A standard normal draw (Box-Muller; `rand_distr` is not a dependency for one function).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

impl Planted {
    /// Generates a task.
    pub fn generate(c: &PlantedConfig) -> Result<Self> {
        let (p, k, n) = (c.n_prompts, c.n_options, c.n_neurons);
        let mut skill_rng = ChaCha8Rng::seed_from_u64(c.skill_seed);
        let mut all: Vec<usize> = (0..n).collect();
        all.shuffle(&mut skill_rng);
        let skill_neurons: Vec<usize> = all[..c.n_skill.min(n)].to_vec();
        let polarity: Vec<i8> = skill_neurons
            .iter()
            .map(|_| if skill_rng.gen_bool(0.5) { 1 } else { -1 })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        let mut skill_of = vec![None; n];
        for (i, &s) in skill_neurons.iter().enumerate() {
            skill_of[s] = Some(polarity[i] as f32);
        }
        let latent: Vec<usize> = (0..p).map(|_| rng.gen_range(0..k)).collect();
        let labels: Vec<i64> = latent
            .iter()
            .map(|&t| {
                if rng.gen_bool(c.label_noise) {
                    let other = rng.gen_range(0..k - 1);
                    (if other >= t { other + 1 } else { other }) as i64
                } else {
                    t as i64
                }
            })
            .collect();
        let split: Vec<u8> = (0..p)
            .map(|i| match i % 8 {
                6 => 1,
                7 => 2,
                _ => 0,
            })
            .collect();
        let mut scores = Array3::<f32>::zeros((p, k, n));
        let mut activations = Array2::<f32>::zeros((p, n));
        let mut probs = Array2::<f32>::zeros((p, k));
        let centre = (k as f32 - 1.0) / 2.0;
        for i in 0..p {
            let t = latent[i];
            for j in 0..n {
                let signal = skill_of[j].map(|pol| pol * c.strength);
                for o in 0..k {
                    let s = signal.map_or(0.0, |v| if o == t { v } else { -v });
                    scores[[i, o, j]] = s + normal(&mut rng);
                }
                activations[[i, j]] =
                    signal.map_or(0.0, |v| v * (2.0 * t as f32 - 2.0 * centre)) + normal(&mut rng);
            }
            let logits: Array1<f32> = (0..k)
                .map(|o| normal(&mut rng) + if o == t { 1.0 } else { 0.0 })
                .collect();
            let z: f32 = logits.iter().map(|l| l.exp()).sum();
            for o in 0..k {
                probs[[i, o]] = logits[o].exp() / z;
            }
        }
        let data = ProbeData::from_scores(
            scores.view(),
            &labels,
            &split,
            Some(activations.view()),
            Some(probs.view()),
        )?;
        Ok(Self {
            scores,
            activations,
            probs,
            labels,
            split,
            latent,
            skill_neurons,
            polarity,
            data,
        })
    }

    /// Option index `[P, N]` of the largest NEG (prompt-major, the on-disk layout).
    pub fn option_index(&self) -> Array2<u8> {
        self.data.option_index().t().to_owned()
    }

    /// The best accuracy any probe can reach on `view`: the fraction of its prompts whose
    /// label equals the latent answer.
    pub fn attainable_accuracy(&self, view: &FeatureView) -> f64 {
        let hits = view
            .rows
            .iter()
            .filter(|&&p| self.labels[p] as usize == self.latent[p])
            .count();
        hits as f64 / view.len().max(1) as f64
    }
}

/// The forest benchmark task: `n_samples` prompts x `n_features` neurons, `n_classes`
/// options, option-index features with 64 planted skill neurons of strength 0.5 and 10%
/// label noise (the 2000 x 2000 four-class task of the benchmark and of docs/PERFORMANCE.md).
pub fn forest_task(
    n_samples: usize,
    n_features: usize,
    n_classes: usize,
    seed: u64,
) -> Result<Planted> {
    Planted::generate(&PlantedConfig {
        n_prompts: n_samples,
        n_options: n_classes,
        n_neurons: n_features,
        n_skill: 64.min(n_features),
        strength: 0.5,
        label_noise: 0.1,
        seed,
        skill_seed: seed,
    })
}

/// JSON for `scripts/sklearn_forest.py`: features `[samples, features]` row-major from the
/// feature-major `x`, labels, train and test rows, forest size.
pub fn sklearn_task_json(
    x: ndarray::ArrayView2<u8>,
    y: &[usize],
    train: &[usize],
    test: &[usize],
    n_trees: usize,
    max_depth: Option<usize>,
) -> String {
    let rows: Vec<Vec<u8>> = (0..x.ncols()).map(|s| x.column(s).to_vec()).collect();
    serde_json::json!({
        "x": rows, "y": y, "train": train, "test": test,
        "n_trees": n_trees, "max_depth": max_depth,
    })
    .to_string()
}
