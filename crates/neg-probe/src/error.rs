//! Typed errors of the probes. Every variant names the thing that is wrong (tensor, split,
//! prompt, option, neuron or value) so that a caller can print it as one clear line.
use thiserror::Error;

/// Everything that can go wrong when building features, fitting or evaluating a probe.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ProbeError {
    /// Two inputs disagree on a dimension (e.g. `labels` has 9 entries for 10 prompts).
    #[error("shape mismatch in {what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// The input whose shape is wrong.
        what: String,
        /// The expected shape or length.
        expected: String,
        /// The shape or length that was given.
        found: String,
    },
    /// A feature value is NaN or infinite.
    #[error("non-finite value {value} in {what} at prompt {prompt}, option {option:?}, neuron {neuron:?}")]
    NonFinite {
        /// The tensor holding the value (`scores`, `activations`, `probs`).
        what: &'static str,
        /// Prompt index.
        prompt: usize,
        /// Option index, where the tensor has one.
        option: Option<usize>,
        /// Neuron index, where the tensor has one.
        neuron: Option<usize>,
        /// The offending value, as text.
        value: String,
    },
    /// A gold label is not a valid option index.
    #[error("label {label} of prompt {prompt} is out of range for {n_options} options")]
    LabelOutOfRange {
        /// Prompt index.
        prompt: usize,
        /// The label given.
        label: i64,
        /// The number of options.
        n_options: usize,
    },
    /// An `option_index` feature is not a valid option index.
    #[error("option_index {value} at prompt {prompt}, neuron {neuron} is out of range for {n_options} options")]
    OptionIndexOutOfRange {
        /// Prompt index.
        prompt: usize,
        /// Neuron index.
        neuron: usize,
        /// The value given.
        value: u8,
        /// The number of options.
        n_options: usize,
    },
    /// A split id is not 0 (train), 1 (valid) or 2 (test).
    #[error("split id {value} of prompt {prompt} is not 0 (train), 1 (valid) or 2 (test)")]
    InvalidSplitId {
        /// Prompt index.
        prompt: usize,
        /// The value given.
        value: u8,
    },
    /// A split has no prompts.
    #[error("the {split} split is empty")]
    EmptySplit {
        /// Split name.
        split: String,
    },
    /// A training split holds a single class: nothing can be learnt from it.
    #[error("the {split} split holds only one class (label {class}) over {n_prompts} prompts")]
    SingleClass {
        /// Split name.
        split: String,
        /// The only label present.
        class: usize,
        /// Number of prompts in the split.
        n_prompts: usize,
    },
    /// A requested neuron count exceeds the neurons available.
    #[error("neuron count {k} is larger than the {n_neurons} neurons available")]
    TooManyNeurons {
        /// The count requested.
        k: usize,
        /// Neurons available.
        n_neurons: usize,
    },
    /// A neuron index is out of range.
    #[error("neuron index {neuron} is out of range for {n_neurons} neurons")]
    NeuronOutOfRange {
        /// The index given.
        neuron: usize,
        /// Neurons available.
        n_neurons: usize,
    },
    /// The number of options is outside what the compact features support.
    #[error("{n_options} options: the compact sign features support 2 to {max} options")]
    OptionCount {
        /// Options given.
        n_options: usize,
        /// Largest supported.
        max: usize,
    },
    /// A probe needs a feature the data set was built without.
    #[error("{probe} needs the `{feature}` feature, which this data set does not hold")]
    MissingFeature {
        /// The probe.
        probe: String,
        /// The missing feature (`scores`, `activations`, `probs`).
        feature: &'static str,
    },
    /// `predict` was called before `fit`.
    #[error("{probe} has not been fitted")]
    NotFitted {
        /// The probe.
        probe: String,
    },
    /// Two data sets that must describe the same neurons do not.
    #[error("incompatible data sets: {what}")]
    Incompatible {
        /// What differs.
        what: String,
    },
    /// A data set's matrix could not be kept on disk ([`crate::Storage::Disk`]): the
    /// temporary file could not be made, sized or mapped.
    #[error("cannot keep the {what} matrix ({bytes} bytes) on disk in {}: {message}", dir.display())]
    Spool {
        /// The matrix (`option_index`, `activations`, ...).
        what: &'static str,
        /// Its size.
        bytes: u64,
        /// The directory given.
        dir: std::path::PathBuf,
        /// The operating system's error.
        message: String,
    },
    /// A configuration value is invalid (e.g. zero trees).
    #[error("invalid configuration: {what}")]
    InvalidConfig {
        /// What is wrong.
        what: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ProbeError>;
