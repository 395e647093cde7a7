//! # neg-core
//!
//! Neuron empirical gradients (NEG) and their estimators over a model-agnostic
//! [`ModelAdapter`] trait. No libtorch dependency: a model implementation (such as
//! `neg-hooks`) implements the trait, and everything here works on `ndarray` arrays.
//!
//! - [`adapter`]: the [`ModelAdapter`] trait (eight required methods; sweeps and IG by
//!   default from the patch primitive [`ModelAdapter::patched_pass`], see
//!   [`adapter::defaults`]) and the types crossing it. `docs/ADAPTER.md` and
//!   `examples/minimal_adapter.rs` show how to implement it.
//! - [`stats`]: zero-intercept slope, Pearson r, Spearman, MAE.
//! - [`neg`]: ground-truth NEG by intervention sweep ([`neg::ground_truth_neg`]).
//! - [`methods`]: NeurGrad, CG, IG and LPI for every FF neuron at once.
//! - [`analysis`]: linearity, estimation quality, top-K attribution, NEG distribution and
//!   multi-neuron accumulation (the paper's Tables 1, 2, 5 and Figs. 2-5, 11, 12, 14), one
//!   submodule each.
//! - [`neuronlens`]: NeuronLens range-based interpretation and masking (per-class activation
//!   ranges, range vs whole-neuron masking, range overlap).
//! - [`aux_metrics`]: skill neurons from auxiliary metrics (per-neuron Pearson/Spearman with
//!   permutation p- and BH q-values, ablation validation against random neurons).
//! - [`io`]: the examples' prompt files and neuron lists.
//! - [`testing`]: [`testing::AnalyticAdapter`], a model with closed-form answers.
//!
//! ```
//! use neg_core::testing::{AnalyticAdapter, Head};
//! use neg_core::{methods, neg, sampling, ModelAdapter, TargetedPrompt};
//!
//! // An exactly linear model: NeurGrad equals the ground-truth NEG.
//! let model = AnalyticAdapter::new(7, 3, 8, 5, 4).with_head(Head::Linear);
//! let prompts = vec![TargetedPrompt::new("Once upon a time", vec![1, 2])];
//! let neurons = sampling::sample_neurons(model.num_layers(), model.ff_width(), 6, 0).unwrap();
//! let truth = neg::ground_truth_neg(&model, &prompts, &neurons, &neg::SweepConfig::default()).unwrap();
//! let ng = methods::neurgrad(&model, &prompts).unwrap();
//! for (k, n) in neurons.iter().enumerate() {
//!     let est = ng.scores[[0, 1, n.layer, n.neuron]];
//!     assert!((est - truth.neg[[0, 1, k]]).abs() < 1e-4);
//! }
//! ```
pub mod adapter;
pub mod analysis;
pub mod aux_metrics;
pub mod error;
pub mod io;
pub mod methods;
pub mod neg;
pub mod neuronlens;
pub mod sampling;
pub mod stats;
pub mod testing;
pub mod validate;

pub use adapter::{
    AdapterError, CaptureOptions, CapturedForward, Forward, Generation, Gradients, ModelAdapter,
    ModelKind, NeuronId, PassOutputs, Patch, PatchOp, PatchedPass, Site, TargetedPrompt,
};
pub use error::{NegError, Result};
pub use methods::{Attribution, Method};
pub use neg::{ground_truth_neg, GroundTruth, ShiftMode, SweepConfig};
