//! The crate's typed errors. Every variant names the file, field, value or index at fault.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config.json not found: {path}")]
    ConfigMissing { path: PathBuf },
    #[error("malformed {path}: {source}")]
    ConfigParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid field `{field}` in {path}: {reason}")]
    ConfigField {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("unsupported model_type {model_type:?} in {path} (supported: llama, qwen2, bert)")]
    UnsupportedModelType { model_type: String, path: PathBuf },
    #[error(
        "no safetensors weights (model.safetensors or model.safetensors.index.json) in {location}"
    )]
    NoWeights { location: String },
    #[error("cannot read safetensors file {path}: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("missing weight `{name}` in {location}")]
    MissingWeight { name: String, location: String },
    #[error(
        "{location} holds `{name}`, a weight of layer {layer}, but the config has {num_layers} \
         layers (num_hidden_layers does not match the checkpoint)"
    )]
    ExtraLayer {
        name: String,
        layer: usize,
        num_layers: usize,
        location: String,
    },
    #[error("weight `{name}` has shape {actual:?}, expected {expected:?}")]
    WeightShape {
        name: String,
        expected: Vec<i64>,
        actual: Vec<i64>,
    },
    #[error(
        "weight `{name}` in {location} is of type {actual}, not a floating-point type: the \
         checkpoint does not hold this model's weights"
    )]
    WeightDtype {
        name: String,
        actual: String,
        location: String,
    },
    #[error("cannot load tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("cannot tokenize {text:?}: {message}")]
    Tokenize { text: String, message: String },
    #[error("hub model {id}: {message}")]
    Hub { id: String, message: String },
    #[error("device {spec:?}: {reason}")]
    Device { spec: String, reason: String },
    #[error("unknown dtype {spec:?} (expected f32, bf16 or f16)")]
    DType { spec: String },
    #[error("prompt {prompt:?} has {count} [MASK] tokens; a masked-LM prompt needs exactly one")]
    MaskCount { prompt: String, count: usize },
    #[error(
        "prompt {prompt:?} tokenizes to {tokens} tokens, more than the model's context of {max}"
    )]
    PromptTooLong {
        prompt: String,
        tokens: usize,
        max: usize,
    },
    #[error("prompt {prompt:?} tokenizes to no tokens")]
    EmptyPrompt { prompt: String },
    #[error(
        "{site} unit (layer {layer}, index {index}) out of range: {layers} layers of width {width}"
    )]
    UnitOutOfRange {
        site: &'static str,
        layer: usize,
        index: usize,
        layers: usize,
        width: usize,
    },
    #[error("layer {layer} out of range: the model has {layers} layers")]
    LayerOutOfRange { layer: usize, layers: usize },
    #[error("target token id {token} of prompt {prompt} is outside the vocabulary of {vocab}")]
    TargetOutOfRange {
        prompt: usize,
        token: u32,
        vocab: usize,
    },
    #[error("prompt {prompt} has {actual} targets, but prompt 0 has {expected}; all prompts of a call need the same number")]
    TargetCount {
        prompt: usize,
        expected: usize,
        actual: usize,
    },
    #[error(
        "answer {answer:?} after prompt {prompt:?} is not exactly one token: it adds {tokens:?}"
    )]
    AnswerNotOneToken {
        prompt: String,
        answer: String,
        tokens: Vec<String>,
    },
    #[error(
        "prompt {prompt:?} tokenizes to id {token}, outside the model's vocabulary of {vocab}: \
         the tokenizer does not belong to this model"
    )]
    TokenOutOfVocab {
        prompt: String,
        token: u32,
        vocab: usize,
    },
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("model {name:?} is not installed: {hint}")]
    NotInstalled { name: String, hint: String },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("libtorch failed in {op}: {message}")]
    Libtorch { op: &'static str, message: String },
}

impl HooksError {
    /// True for errors caused by the caller's prompts, targets or patches (as opposed to the
    /// model files or the backend).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            HooksError::MaskCount { .. }
                | HooksError::PromptTooLong { .. }
                | HooksError::EmptyPrompt { .. }
                | HooksError::UnitOutOfRange { .. }
                | HooksError::LayerOutOfRange { .. }
                | HooksError::TargetOutOfRange { .. }
                | HooksError::TargetCount { .. }
                | HooksError::AnswerNotOneToken { .. }
                | HooksError::Tokenize { .. }
        )
    }
}

/// Input errors become `InvalidInput` (with this crate's message); everything else is boxed in
/// `Backend`, from which callers can downcast to [`HooksError`].
impl From<HooksError> for neg_core::AdapterError {
    fn from(e: HooksError) -> Self {
        if e.is_input_error() {
            neg_core::AdapterError::InvalidInput(e.to_string())
        } else {
            neg_core::AdapterError::Backend(Box::new(e))
        }
    }
}

pub type Result<T, E = HooksError> = std::result::Result<T, E>;
