//! NeuronLens: range-based interpretation and masking of neurons (Haider et al. 2025, "Neurons
//! Speak in Ranges").
//!
//! For a classification task whose answer is one of a few option tokens:
//!
//! 1. [`capture`] the units' activations at the answer position (FF neurons of some layers, or
//!    the residual stream = decoder-layer outputs, as the original work does) and the option
//!    probabilities of every prompt.
//! 2. [`ClassStats::fit`] per-class Gaussians (mean, std) on correctly predicted examples; the
//!    range of class `c` for unit `u` is `mean +- tau * std` ([`Tau`], default 2;
//!    [`Tau::INFINITY`] is whole-neuron masking).
//! 3. Pick salient units of a target class ([`ClassStats::salient`]: top fraction by mean
//!    |activation|, or [`top_fraction`] of any attribution score).
//! 4. [`evaluate`] the model with the salient units masked: replaced by a neutral value (their
//!    mean over a reference set, [`neutral_values`]) only when the activation falls inside the
//!    target class's range ([`Masking::Range`]) or always ([`Masking::Neuron`]), and report
//!    target-class and complement-class accuracy and confidence ([`run_class`] does all three
//!    conditions at once).
//! 5. [`ClassStats::overlap`]: how much the per-class ranges of each unit overlap.
//!
//! The in-range decision reads the unpatched activations of the prompt: masking several layers
//! at once does not re-test upper-layer units against their (shifted) patched values. The
//! published code masks one layer, where both readings agree.
//!
//! ```
//! use ndarray::array;
//! use neg_core::neuronlens::{ClassStats, Tau};
//!
//! // Two classes, one unit: class 0 near 1, class 1 near 5.
//! let acts = array![[0.9], [1.1], [1.0], [4.9], [5.1], [5.0]];
//! let stats = ClassStats::fit(acts.view(), &[0, 0, 0, 1, 1, 1], 2)?;
//! let (lo, hi) = stats.range(0, 0, Tau::new(2.0)?);
//! assert!(lo < 1.0 && 1.0 < hi && hi < 4.9);
//! assert!(stats.overlap(Tau::default())?[0] == 0.0);
//! assert!(Tau::new(0.0).is_err());
//! # Ok::<(), neg_core::neuronlens::LensError>(())
//! ```

mod capture;
mod masking;
mod ranges;
#[cfg(test)]
pub(crate) mod table;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::adapter::{AdapterError, Patch, PatchOp, Site};

pub use capture::{capture, Capture, UnitSelection};
pub use masking::{
    correct_indices, evaluate, evaluate_all, mask_patches, run_class, run_classes, ClassReport,
    Condition, EvalSet, Masking, Outcome,
};
pub use ranges::{class_mean_scores, neutral_values, top_fraction, ClassStats};

/// Why a NeuronLens step could not run. Each variant names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum LensError {
    #[error("class {class} has {got} example(s) to fit its range; at least 2 are needed")]
    TooFewExamples { class: usize, got: usize },
    #[error("unit {unit} ({name}) is constant ({value}) over all {n} fitted examples, so it has no range to interpret")]
    ConstantActivations {
        unit: usize,
        name: String,
        value: f64,
        n: usize,
    },
    #[error("tau must be > 0 (or infinity for whole-neuron masking), got {0}")]
    InvalidTau(f64),
    #[error("salient fraction must be in (0, 1], got {0}")]
    InvalidFraction(f64),
    #[error("label {label} of example {index} is outside the {n_classes} classes")]
    LabelOutOfRange {
        index: usize,
        label: usize,
        n_classes: usize,
    },
    #[error("class {class} is outside the {n_classes} classes")]
    ClassOutOfRange { class: usize, n_classes: usize },
    #[error("{what}: expected {expected}, got {got}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("non-finite value {value} in {what} at {index:?}")]
    NonFinite {
        what: &'static str,
        index: Vec<usize>,
        value: f64,
    },
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("layer {layer} is outside the model ({layers} layers)")]
    LayerOutOfRange { layer: usize, layers: usize },
    #[error("unit index {index} is outside the {units} captured units")]
    UnitOutOfRange { index: usize, units: usize },
    #[error("model adapter: {0}")]
    Adapter(#[from] AdapterError),
}

pub type Result<T, E = LensError> = std::result::Result<T, E>;

/// The width of a class range in standard deviations: finite and > 0, or infinity.
/// Deserialising checks the value like [`Tau::new`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Tau(f64);

impl TryFrom<f64> for Tau {
    type Error = LensError;
    fn try_from(tau: f64) -> Result<Self> {
        Tau::new(tau)
    }
}

impl From<Tau> for f64 {
    fn from(tau: Tau) -> f64 {
        tau.0
    }
}

impl Tau {
    /// Whole-neuron masking: every value is "in range".
    pub const INFINITY: Tau = Tau(f64::INFINITY);

    /// A checked tau: > 0 (infinity allowed); zero, negative or NaN is [`LensError::InvalidTau`].
    pub fn new(tau: f64) -> Result<Self> {
        if tau.is_nan() || tau <= 0.0 {
            return Err(LensError::InvalidTau(tau));
        }
        Ok(Tau(tau))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for Tau {
    /// The published default, 2.
    fn default() -> Self {
        Tau(2.0)
    }
}

/// One maskable unit: an FF neuron or a residual-stream dimension of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unit {
    pub site: Site,
    pub layer: usize,
    pub index: usize,
}

impl Unit {
    /// The patch setting this unit to `value` at the prompt's position.
    pub fn set(&self, value: f32) -> Patch {
        Patch {
            site: self.site,
            layer: self.layer,
            index: self.index,
            op: PatchOp::Set(value),
        }
    }

    /// A short name such as `ff L2.17` or `resid L3.5`.
    pub fn name(&self) -> String {
        let site = match self.site {
            Site::FeedForward => "ff",
            Site::Residual => "resid",
        };
        format!("{site} L{}.{}", self.layer, self.index)
    }
}
