//! # neg-core
//!
//! Neuron empirical gradients (NEG) and their estimators over a model-agnostic
//! [`ModelAdapter`] trait. No libtorch dependency: a model implementation (such as
//! `neg-hooks`) implements the trait, and everything here works on `ndarray` arrays.
//!
//! ```
//! use neg_core::stats::fit_through_origin;
//! let shifts = [-1.0, -0.5, 0.5, 1.0];
//! let delta_p = [-0.2, -0.1, 0.1, 0.2];
//! let fit = fit_through_origin(&shifts, &delta_p).unwrap();
//! assert!((fit.slope - 0.2).abs() < 1e-12 && (fit.r - 1.0).abs() < 1e-12);
//! ```
pub mod adapter;
pub mod stats;

pub use adapter::{
    AdapterError, Forward, Generation, Gradients, ModelAdapter, ModelKind, NeuronId, Patch,
    PatchOp, Site, TargetedPrompt,
};
