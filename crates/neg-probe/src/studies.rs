//! The studies of §6 as functions returning serialisable results.
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{ProbeData, Split};
use crate::error::{ProbeError, Result};
use crate::forest::ForestConfig;
use crate::probes::{NeuronSubset, Probe, TreeProbe, VoteProbe};
use crate::select::{evaluate_views, Evaluation};

/// One point of the accuracy-vs-training-size curve (Fig. 7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSizePoint {
    /// Training prompts used.
    pub n_train: usize,
    /// The evaluation with that many training prompts.
    pub evaluation: Evaluation,
}

/// Accuracy vs training-set size (Fig. 7): for every size, the probe made by `make` is fitted
/// on the first `size` training prompts of a seeded shuffle of the train split (so smaller
/// sets are nested in larger ones), with the neuron count chosen on valid.
pub fn accuracy_vs_train_size(
    make: &dyn Fn() -> Box<dyn Probe>,
    data: &ProbeData,
    sizes: &[usize],
    seed: u64,
) -> Result<Vec<TrainSizePoint>> {
    let mut train = data.split_view(Split::Train);
    let valid = data.split_view(Split::Valid);
    let test = data.split_view(Split::Test);
    train.rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut out = Vec::with_capacity(sizes.len());
    for &size in sizes {
        if size == 0 || size > train.len() {
            return Err(ProbeError::InvalidConfig {
                what: format!(
                    "training size {size} is outside 1..={} (the train split)",
                    train.len()
                ),
            });
        }
        let sub = data.view(train.rows[..size].to_vec())?;
        let mut probe = make();
        let evaluation = evaluate_views(probe.as_mut(), &sub, &valid, &test, None)?;
        out.push(TrainSizePoint {
            n_train: size,
            evaluation,
        });
    }
    Ok(out)
}

/// Robustness of context X's skill neurons on context Y (§6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessCell {
    /// Context the probe was fitted in (X).
    pub source: String,
    /// Context it is evaluated in (Y).
    pub target: String,
    /// `ACC^Y_{N^X}`: test accuracy on Y of the probe fitted on X.
    pub accuracy_source_on_target: f64,
    /// `ACC^Y_{N^Y}`: test accuracy on Y of the probe fitted on Y.
    pub accuracy_target_on_target: f64,
    /// `max(ACC^Y_{N^X} - a, 0) / max(ACC^Y_{N^Y} - a, 0)` with `a` the chance accuracy;
    /// `None` when the denominator is 0 (Y's own probe is no better than chance).
    pub ratio: Option<f64>,
}

/// Pairwise robustness over several contexts of the same task (Fig. 21).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessMatrix {
    /// Context names in order.
    pub contexts: Vec<String>,
    /// Neuron count used (fixed, like the paper's 32, or chosen on each context's valid).
    pub neuron_counts: Vec<Option<usize>>,
    /// Chance accuracy `1 / options` (the Rand baseline's expectation).
    pub chance: f64,
    /// All ordered pairs, diagonal included.
    pub cells: Vec<RobustnessCell>,
}

/// The robustness ratio of §6.2 for every ordered pair of `contexts` (same prompts, neurons
/// and number of options, different instructions / demonstrations / option tokens). The probe
/// made by `make` is fitted on each context's train split, with `k` neurons (the paper fixes
/// 32) or the count chosen on its valid split, and evaluated on every context's test split.
pub fn robustness(
    make: &dyn Fn() -> Box<dyn Probe>,
    contexts: &[(&str, &ProbeData)],
    k: Option<usize>,
) -> Result<RobustnessMatrix> {
    let Some((_, first)) = contexts.first() else {
        return Err(ProbeError::InvalidConfig {
            what: "no contexts given".into(),
        });
    };
    for (name, d) in contexts {
        if d.n_neurons() != first.n_neurons() || d.n_options() != first.n_options() {
            return Err(ProbeError::Incompatible {
                what: format!(
                    "context `{name}` has {} neurons x {} options, the first has {} x {}",
                    d.n_neurons(),
                    d.n_options(),
                    first.n_neurons(),
                    first.n_options()
                ),
            });
        }
    }
    let chance = 1.0 / first.n_options() as f64;
    let mut probes = Vec::with_capacity(contexts.len());
    let mut counts = Vec::with_capacity(contexts.len());
    for (_, d) in contexts {
        let mut p = make();
        let e = evaluate_views(
            p.as_mut(),
            &d.split_view(Split::Train),
            &d.split_view(Split::Valid),
            &d.split_view(Split::Test),
            k,
        )?;
        counts.push(e.selected_neurons);
        probes.push(p);
    }
    // acc[x][y]: probe of context x on the test split of context y.
    let mut acc = vec![vec![0.0; contexts.len()]; contexts.len()];
    for (x, p) in probes.iter().enumerate() {
        for (y, (_, d)) in contexts.iter().enumerate() {
            let test = d.split_view(Split::Test);
            acc[x][y] = test.accuracy(&p.predict(&test)?);
        }
    }
    let mut cells = Vec::new();
    for (x, (sx, _)) in contexts.iter().enumerate() {
        for (y, (sy, _)) in contexts.iter().enumerate() {
            let num = (acc[x][y] - chance).max(0.0);
            let den = (acc[y][y] - chance).max(0.0);
            cells.push(RobustnessCell {
                source: sx.to_string(),
                target: sy.to_string(),
                accuracy_source_on_target: acc[x][y],
                accuracy_target_on_target: acc[y][y],
                ratio: (den > 0.0).then(|| num / den),
            });
        }
    }
    Ok(RobustnessMatrix {
        contexts: contexts.iter().map(|(n, _)| n.to_string()).collect(),
        neuron_counts: counts,
        chance,
        cells,
    })
}

/// Accuracy of one window of consecutive ranked neurons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowAccuracy {
    /// Rank of the window's first neuron (0 = the best skill neuron).
    pub start_rank: usize,
    /// Number of neurons in the window.
    pub size: usize,
    /// Test accuracy of the vote of the window's neurons.
    pub test_accuracy: f64,
}

/// Substitutability of skill neurons (§6.3, Fig. 8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Substitutability {
    /// Probe name.
    pub probe: String,
    /// Window size (the paper: 64).
    pub window: usize,
    /// One entry per window down the ranking.
    pub windows: Vec<WindowAccuracy>,
}

/// Fits the vote probe on the train split, then evaluates on test the vote of each window of
/// `window` consecutive neurons down its ranking (non-overlapping; at most `max_windows`,
/// spread evenly over the ranking when there are more).
pub fn substitutability<P: VoteProbe>(
    probe: &mut P,
    data: &ProbeData,
    window: usize,
    max_windows: Option<usize>,
) -> Result<Substitutability> {
    if window == 0 {
        return Err(ProbeError::InvalidConfig {
            what: "window size must be at least 1".into(),
        });
    }
    if window > data.n_neurons() {
        return Err(ProbeError::TooManyNeurons {
            k: window,
            n_neurons: data.n_neurons(),
        });
    }
    let train = data.split_view(Split::Train);
    let test = data.split_view(Split::Test);
    if test.is_empty() {
        return Err(ProbeError::EmptySplit {
            split: "test".into(),
        });
    }
    probe.fit(&train)?;
    let ranked = probe
        .ranked_neurons()
        .ok_or_else(|| ProbeError::NotFitted {
            probe: probe.name().to_string(),
        })?
        .to_vec();
    let n_windows = ranked.len() / window;
    let picks: Vec<usize> = match max_windows {
        Some(m) if m > 0 && m < n_windows => (0..m)
            .map(|i| i * (n_windows - 1) / (m - 1).max(1))
            .collect(),
        _ => (0..n_windows).collect(),
    };
    let mut windows = Vec::with_capacity(picks.len());
    for w in picks {
        let neurons = &ranked[w * window..(w + 1) * window];
        let pred = probe.predict_with_neurons(&test, neurons)?;
        windows.push(WindowAccuracy {
            start_rank: w * window,
            size: window,
            test_accuracy: test.accuracy(&pred),
        });
    }
    Ok(Substitutability {
        probe: probe.name().to_string(),
        window,
        windows,
    })
}

/// One forest shape of the sweep (Fig. 9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapePoint {
    /// `N`: the forest has `2^N` trees.
    pub log2_trees: u32,
    /// `M`: the trees are at most `2^M` deep.
    pub log2_depth: u32,
    /// Validation accuracy.
    pub valid_accuracy: f64,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Seconds to fit.
    pub fit_seconds: f64,
}

/// Tree-Probe shape sweep (§6.4, H.3): trees `2^N` for `N` in `0..=10`, depth `2^M` for `M` in
/// `1..=11`, all pairs with `N + M < max_sum` (the paper: 12), on `neurons`.
pub fn tree_shape_sweep(
    data: &ProbeData,
    neurons: NeuronSubset,
    base: &ForestConfig,
    max_sum: u32,
) -> Result<Vec<ShapePoint>> {
    let train = data.split_view(Split::Train);
    let valid = data.split_view(Split::Valid);
    let test = data.split_view(Split::Test);
    let mut out = Vec::new();
    for n in 0..=10u32 {
        for m in 1..=11u32 {
            if n + m >= max_sum {
                continue;
            }
            let config = ForestConfig {
                n_trees: 1 << n,
                max_depth: Some(1 << m),
                ..base.clone()
            };
            let mut probe = TreeProbe::new(config, neurons.clone());
            let start = Instant::now();
            probe.fit(&train)?;
            let fit_seconds = start.elapsed().as_secs_f64();
            out.push(ShapePoint {
                log2_trees: n,
                log2_depth: m,
                valid_accuracy: valid.accuracy(&probe.predict(&valid)?),
                test_accuracy: test.accuracy(&probe.predict(&test)?),
                fit_seconds,
            });
        }
    }
    Ok(out)
}
