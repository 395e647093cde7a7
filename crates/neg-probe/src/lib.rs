//! # neg-probe
//!
//! Skill-neuron probes on NEG (neuron empirical gradient) features, after §5.3, §6 and
//! appendix G of "Neuron Empirical Gradient" (ACL 2025).
//!
//! * [`ProbeData`] holds a probing data set compactly: per (neuron, prompt) one byte for the
//!   option with the largest NEG, and, when built from full scores, bytes for the smallest
//!   option, the sign bit masks and the gold margin (5 bytes in all), plus optional
//!   activations, option probabilities, gold labels and train/valid/test splits. Build it from
//!   `[P, K, N]` scores ([`ProbeData::from_scores`]), from `[P, N]` option indices
//!   ([`ProbeData::from_option_index`]) or prompt by prompt ([`ProbeDataBuilder`]).
//! * [`Probe`] (fit / predict / ranked neurons) is implemented by [`PolarProbe`],
//!   [`MagnProbe`], [`TreeProbe`], [`ActProbe`], [`LmProbBaseline`] and [`RandomBaseline`].
//! * [`evaluate`] fits a probe, chooses its neuron count among `2^0 .. 2^13` on the
//!   validation split and reports the test accuracy and the whole curve.
//! * [`studies`]: accuracy vs training size, robustness ratio across contexts,
//!   substitutability of 64-neuron windows, and the Tree-Probe shape sweep.
//! * [`forest`]: the random forest behind the Tree-Probe, specialised for u8 features.
//!
//! [`probes`] is a folder: the traits and shared checks in `probes/mod.rs`, then one file per
//! probe family (`vote.rs`: Polar and Magn, `act.rs`, `tree.rs`, `baseline.rs`, `kind.rs`:
//! [`ProbeKind`]); every type is re-exported here. The `clap` cargo feature derives
//! `clap::ValueEnum` on [`ProbeKind`] with the names its `FromStr` takes (`polar`, `magn`,
//! `tree`, `act`, `lmprob`, `rand`).
//!
//! ```
//! use neg_probe::synthetic::{Planted, PlantedConfig};
//! use neg_probe::{evaluate, MagnProbe, Probe};
//!
//! // 400 prompts, 2 options, 200 neurons of which 8 carry the answer; 5% label noise.
//! let task = Planted::generate(&PlantedConfig {
//!     n_prompts: 400, n_neurons: 200, n_skill: 8, label_noise: 0.05, ..Default::default()
//! })?;
//! let mut probe = MagnProbe::new(None);
//! let result = evaluate(&mut probe, &task.data, None)?;
//! assert!(result.test_accuracy > 0.8, "{result:?}");
//! // The best-ranked neuron is a planted one.
//! let best = probe.ranked_neurons().unwrap()[0];
//! assert!(task.skill_neurons.contains(&best));
//! # Ok::<(), neg_probe::ProbeError>(())
//! ```
#![warn(missing_docs)]

pub mod data;
pub mod error;
pub mod forest;
pub mod probes;
pub mod select;
pub mod store;
pub mod studies;
pub mod synthetic;

pub use data::{FeatureView, ProbeData, ProbeDataBuilder, Split, MAX_OPTIONS};
pub use error::{ProbeError, Result};
pub use forest::{ForestConfig, MaxFeatures, RandomForest};
pub use probes::{
    ActProbe, LmProbBaseline, MagnProbe, NeuronSubset, PolarProbe, Probe, ProbeKind,
    RandomBaseline, TreeProbe, VoteProbe, MAX_SEARCHED_NEURONS,
};
pub use select::{evaluate, evaluate_views, neuron_counts, CurvePoint, Evaluation};
pub use store::Storage;
