//! Errors of the methods and analyses.
use crate::adapter::{AdapterError, NeuronId};
use crate::stats::StatsError;

/// Why a method or analysis could not run. Each variant names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum NegError {
    #[error("the prompt set is empty")]
    EmptyPrompts,
    #[error("prompt {index} ({text:?}) has no target tokens")]
    NoTargets { index: usize, text: String },
    #[error(
        "prompt {index} has {got} targets but prompt 0 has {expected}; all prompts of one call need the same number"
    )]
    TargetCountMismatch {
        index: usize,
        expected: usize,
        got: usize,
    },
    #[error("shift range R must be finite and > 0, got {0}")]
    InvalidRange(f32),
    #[error("shift step s must be finite and > 0, got {0}")]
    InvalidStep(f32),
    #[error("no neurons given")]
    NoNeurons,
    #[error("neuron (layer {}, neuron {}) is outside the model ({layers} layers x {width} neurons)", .neuron.layer, .neuron.neuron)]
    NeuronOutOfRange {
        neuron: NeuronId,
        layers: usize,
        width: usize,
    },
    #[error("model output {what} holds a non-finite value ({value}) at index {index:?}")]
    NonFinite {
        what: &'static str,
        index: Vec<usize>,
        value: f32,
    },
    #[error("model output {what} has shape {got:?}, expected {expected:?}")]
    Shape {
        what: &'static str,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument { name: &'static str, reason: String },
    #[error("model adapter: {0}")]
    Adapter(#[from] AdapterError),
    #[error("statistics: {0}")]
    Stats(#[from] StatsError),
}

pub type Result<T, E = NegError> = std::result::Result<T, E>;
