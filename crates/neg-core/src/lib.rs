//! # neg-core
//!
//! Neuron empirical gradients (NEG) and their estimators over a model-agnostic
//! [`ModelAdapter`] trait. No libtorch dependency: a model implementation (such as
//! `neg-hooks`) implements the trait, and everything here works on `ndarray` arrays.
pub mod adapter;

pub use adapter::{
    AdapterError, Forward, Generation, Gradients, ModelAdapter, ModelKind, NeuronId, Patch,
    PatchOp, Site, TargetedPrompt,
};
