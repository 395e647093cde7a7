//! The paper's neuron analyses, each a function returning a serde-serialisable result.
//!
//! - [`linearity`]: r per neuron for several shift ranges, the linear-neuron ratio, polarity
//!   ratios (Table 1, Fig. 2) and layer/prompt generality LG and PG (Table 5).
//! - [`estimation_quality`] / [`compare_methods`]: r and MAE of estimators against ground truth
//!   (Table 2).
//! - [`topk_attribution`]: output shift when enhancing each method's top-K neurons (Fig. 3).
//! - [`neg_distribution`]: cumulative |NEG| share, histogram, per-layer |NEG| (Figs. 4, 11, 12).
//! - [`multi_neuron_accumulation`]: predicted vs actual shifts of 2^n neurons (Figs. 5, 14).
//!
//! One submodule per analysis; everything public is re-exported here, so paths such as
//! `neg_core::analysis::LinearityConfig` name the same items as before the split.

mod accumulation;
mod distribution;
mod estimation;
mod linearity;
mod topk;

pub use accumulation::*;
pub use distribution::*;
pub use estimation::*;
pub use linearity::*;
pub use topk::*;
