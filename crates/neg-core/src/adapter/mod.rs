//! The boundary between the methods (this crate) and a model implementation (`neg-hooks`).
//!
//! Everything crosses it as `ndarray` arrays, so that the methods, their tests and downstream
//! crates never depend on libtorch. An implementation owns tokenization, batching, devices and
//! dtypes; callers only see prompts, target token ids, probabilities, activations and gradients.
//!
//! Shapes use these letters: P prompts, T targets per prompt, L layers, N FF neurons per layer,
//! H hidden size, V patch variants, A IG scaling factors.
//!
//! The FF neuron is TransformerLens's `blocks.{l}.mlp.hook_post`: the input of layer `l`'s FF
//! down projection (SiLU(gate) * up for Llama/Qwen, the GELU output for BERT).
//!
//! [`ModelAdapter`] has eight required methods (ids and shape, [`ModelAdapter::target_token`],
//! [`ModelAdapter::forward`], [`ModelAdapter::gradients`]): enough for NeurGrad and CG.
//! Implementing the patch primitive [`ModelAdapter::patched_pass`] as well gives, through
//! default methods ([`defaults`]), intervention sweeps (ground-truth NEG, NeuronLens masking,
//! residual patches) and integrated gradients. The rest are overridden for speed (prefix
//! reuse, batching) or model-specific measurements. `docs/ADAPTER.md` walks through a minimal
//! implementation.

pub mod defaults;

use ndarray::{Array1, Array2, Array3, Array4};
use serde::{Deserialize, Serialize};

/// What decides the measured position of a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Causal LM (Llama, Qwen): the last prompt token predicts the next token.
    CausalLm,
    /// Masked LM (BERT): the single `[MASK]` token of the prompt.
    MaskedLm,
}

/// A prompt and the token ids whose probabilities are measured at its position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetedPrompt {
    pub text: String,
    pub targets: Vec<u32>,
}

impl TargetedPrompt {
    pub fn new(text: impl Into<String>, targets: Vec<u32>) -> Self {
        Self {
            text: text.into(),
            targets,
        }
    }
}

/// The address of one feed-forward neuron: the input of layer `layer`'s down projection,
/// element `neuron`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NeuronId {
    pub layer: usize,
    pub neuron: usize,
}

impl NeuronId {
    pub fn new(layer: usize, neuron: usize) -> Self {
        Self { layer, neuron }
    }
}

/// Where a patched or captured unit lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Site {
    /// FF neuron: the input of the down projection (width N; TransformerLens'
    /// `blocks.{l}.mlp.hook_post`). On command lines `ff` (also `feed-forward`).
    #[cfg_attr(
        feature = "clap",
        value(name = "ff", alias = "feed_forward", alias = "feed-forward")
    )]
    FeedForward,
    /// Residual stream: the output of a decoder/encoder layer (width H).
    Residual,
}

/// How a patch changes a unit's value at the prompt's position.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchOp {
    /// a -> a + delta
    Add(f32),
    /// a -> value
    Set(f32),
}

/// One change to one unit. A patch variant is a slice of these, applied together.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Patch {
    pub site: Site,
    pub layer: usize,
    pub index: usize,
    pub op: PatchOp,
}

impl Patch {
    /// A patch of an FF neuron.
    pub fn ff(neuron: NeuronId, op: PatchOp) -> Self {
        Self {
            site: Site::FeedForward,
            layer: neuron.layer,
            index: neuron.neuron,
            op,
        }
    }

    /// A patch of a residual-stream dimension (output of `layer`).
    pub fn residual(layer: usize, index: usize, op: PatchOp) -> Self {
        Self {
            site: Site::Residual,
            layer,
            index,
            op,
        }
    }
}

/// Target probabilities and FF activations at each prompt's position.
#[derive(Clone, Debug, PartialEq)]
pub struct Forward {
    /// [P, T] softmax probability of each target token.
    pub probs: Array2<f32>,
    /// [P, L, N] FF activations.
    pub activations: Array3<f32>,
}

/// [`Forward`] plus the gradient of every target probability with respect to every FF
/// activation at the position.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients {
    /// [P, T]
    pub probs: Array2<f32>,
    /// [P, L, N]
    pub activations: Array3<f32>,
    /// [P, T, L, N]: dP(target t) / da(l, n)
    pub grads: Array4<f32>,
}

/// Text generated greedily from a prompt, with the FF activations averaged over the generated
/// tokens' positions (used by the auxiliary-metrics study on open-ended generation).
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub token_ids: Vec<u32>,
    pub text: String,
    /// [L, N]
    pub mean_activations: Array2<f32>,
}

/// What [`ModelAdapter::forward_with`] records besides the target probabilities and FF
/// activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureOptions {
    /// Each layer's output (the residual stream) at each prompt's position.
    pub residual: bool,
}

/// [`Forward`] plus what [`CaptureOptions`] asked for, from one pass where the model allows.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedForward {
    /// [P, T]
    pub probs: Array2<f32>,
    /// [P, L, N]
    pub activations: Array3<f32>,
    /// [P, L, H] layer outputs, when [`CaptureOptions::residual`] was set.
    pub residual: Option<Array3<f32>>,
}

/// What the patch primitive [`ModelAdapter::patched_pass`] must compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassOutputs {
    /// Target probabilities and FF activations.
    Probs,
    /// Also the gradient of every target probability with respect to every FF activation.
    Gradients,
}

/// One prompt under one patch variant: the answer of [`ModelAdapter::patched_pass`].
#[derive(Clone, Debug, PartialEq)]
pub struct PatchedPass {
    /// `[T]`
    pub probs: Array1<f32>,
    /// [L, N] FF activations after the patches (a `Set` unit reads its set value).
    pub activations: Array2<f32>,
    /// [T, L, N] dP(target t) / da(l, n) at the patched point, the patched value of a unit
    /// being the variable; `Some` exactly when [`PassOutputs::Gradients`] was asked for.
    pub grads: Option<Array3<f32>>,
}

/// Errors at the adapter boundary. Implementations map their own typed errors into `Backend`
/// (callers can downcast it) or `InvalidInput`.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("{what} is not supported for model {model}")]
    Unsupported { what: String, model: String },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An implementation returned something the contract rules out (a wrong shape, a missing
    /// gradient), found by a default method that assembles its answers.
    #[error("model {model}: {method} returned {problem}")]
    InvalidOutput {
        model: String,
        method: &'static str,
        problem: String,
    },
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// A language model whose FF neurons can be read, patched and differentiated at one position
/// per prompt (the last token for causal LMs, the `[MASK]` for masked LMs).
///
/// All prompts of one call must have the same number of targets T. Implementations batch and
/// pad internally and must give the same numbers as one prompt at a time.
///
/// Required: the ids and shape, [`Self::target_token`], [`Self::forward`] and
/// [`Self::gradients`]. Everything else has a default: the patch paths (sweeps, IG) are built
/// on the patch primitive [`Self::patched_pass`], which itself defaults to
/// [`AdapterError::Unsupported`]; model-specific measurements (LPI, residual stream,
/// generation) default to `Unsupported`. Override a default for speed (reuse of a prompt's
/// prefix across patch variants, batching) or to add a measurement.
pub trait ModelAdapter {
    /// A human-readable id (directory or hub id) recorded in results.
    fn model_id(&self) -> &str;
    fn kind(&self) -> ModelKind;
    /// L
    fn num_layers(&self) -> usize;
    /// N, FF neurons per layer.
    fn ff_width(&self) -> usize;
    /// H, residual-stream width.
    fn hidden_size(&self) -> usize;

    /// The single token that `answer` contributes after `prompt`: for causal LMs the tokens that
    /// tokenize(prompt + answer) adds after tokenize(prompt); for masked LMs the answer
    /// tokenized alone. Not exactly one token is an `InvalidInput` error naming the answer.
    fn target_token(&self, prompt: &str, answer: &str) -> Result<u32, AdapterError>;

    /// Probabilities of the targets and FF activations, no gradients.
    fn forward(&self, prompts: &[TargetedPrompt]) -> Result<Forward, AdapterError>;

    /// Probabilities, activations and dP/da for every target and every FF neuron.
    fn gradients(&self, prompts: &[TargetedPrompt]) -> Result<Gradients, AdapterError>;

    /// Longest prompt the model accepts, in tokens, when it has a limit.
    fn max_context(&self) -> Option<usize> {
        None
    }

    /// How many tokens `prompt` runs as, when the model can tell (`None`: unknown). Callers
    /// that batch many prompts use it to put prompts of similar length together, so that
    /// batches carry few padding tokens.
    fn token_count(&self, _prompt: &str) -> Option<usize> {
        None
    }

    /// How many leading tokens a batch of `prompts` shares that the model runs only once for
    /// the whole batch (its keys and values reused by every row: a few-shot prompt's
    /// instruction and demonstrations); 0 when it runs every prompt whole (the default).
    /// Callers that bound a batch's tokens count these once rather than once per row.
    fn shared_prefix_len(&self, _prompts: &[&str]) -> usize {
        0
    }

    /// The patch primitive: one prompt's pass with the patches of one variant applied at its
    /// position (in order: a later `Set` overrides an earlier `Add` on the same unit, a later
    /// `Add` adds to an earlier `Set`; a [`Site::Residual`] patch changes a layer's output).
    /// An empty variant is the unpatched pass. Out-of-range units are `InvalidInput`.
    ///
    /// The default methods [`Self::patched_probs`] and [`Self::scaled_gradients`] are built on
    /// it (see [`defaults`]); without it they are `Unsupported`.
    fn patched_pass(
        &self,
        _prompt: &TargetedPrompt,
        _patches: &[Patch],
        _outputs: PassOutputs,
    ) -> Result<PatchedPass, AdapterError> {
        Err(AdapterError::Unsupported {
            what: "patching (the patch primitive `patched_pass`)".into(),
            model: self.model_id().into(),
        })
    }

    /// Target probabilities of one prompt under each patch variant: [V, T]. Patches apply at the
    /// prompt's position only; an empty variant gives the unpatched probabilities.
    ///
    /// Default: one [`Self::patched_pass`] per variant ([`defaults::patched_probs_by_pass`]).
    /// This is the fast path of intervention sweeps: an override should not recompute what a
    /// patch cannot change (layers below the lowest patched layer; for causal LMs, the prefix).
    fn patched_probs(
        &self,
        prompt: &TargetedPrompt,
        variants: &[Vec<Patch>],
    ) -> Result<Array2<f32>, AdapterError> {
        defaults::patched_probs_by_pass(self, prompt, variants)
    }

    /// Same numbers as [`ModelAdapter::patched_probs`] by full recomputation of every variant.
    /// The reference the fast path is checked and benchmarked against. Default: whatever
    /// [`Self::patched_probs`] does (one full pass per variant unless overridden).
    fn patched_probs_naive(
        &self,
        prompt: &TargetedPrompt,
        variants: &[Vec<Patch>],
    ) -> Result<Array2<f32>, AdapterError> {
        self.patched_probs(prompt, variants)
    }

    /// Integrated-gradients path gradients: for each `layers[i]` and `alphas[j]`, the gradient
    /// of each target probability with respect to that layer's FF activations at the position
    /// when the layer's whole activation vector there is replaced by alpha * a (other layers as
    /// they follow from it). Shape [layers.len(), alphas.len(), T, N].
    ///
    /// Default: one [`Self::patched_pass`] with gradients per (layer, alpha), the layer's
    /// neurons `Set` to alpha * a ([`defaults::scaled_gradients_by_pass`]).
    fn scaled_gradients(
        &self,
        prompt: &TargetedPrompt,
        layers: &[usize],
        alphas: &[f32],
    ) -> Result<Array4<f32>, AdapterError> {
        defaults::scaled_gradients_by_pass(self, prompt, layers, alphas)
    }

    /// Log-probability increase (Yu & Ananiadou 2024) of every FF neuron for every target:
    /// [T, L, N]. Defined for Llama-family models only.
    fn log_prob_increase(&self, _prompt: &TargetedPrompt) -> Result<Array3<f32>, AdapterError> {
        Err(AdapterError::Unsupported {
            what: "log-probability increase (LPI)".into(),
            model: self.model_id().into(),
        })
    }

    /// Residual stream (each layer's output) at each prompt's position: [P, L, H].
    fn residual(&self, _prompts: &[TargetedPrompt]) -> Result<Array3<f32>, AdapterError> {
        Err(AdapterError::Unsupported {
            what: "residual-stream capture".into(),
            model: self.model_id().into(),
        })
    }

    /// [`Self::forward`] plus the captures `capture` asks for. Default: [`Self::forward`], then
    /// [`Self::residual`] when the residual stream is asked for (two passes); an override
    /// should record everything in one pass.
    fn forward_with(
        &self,
        prompts: &[TargetedPrompt],
        capture: CaptureOptions,
    ) -> Result<CapturedForward, AdapterError> {
        defaults::forward_with_by_parts(self, prompts, capture)
    }

    /// Greedy generation of up to `max_new_tokens` tokens, with FF activations averaged over the
    /// generated positions.
    fn generate(&self, _prompt: &str, _max_new_tokens: usize) -> Result<Generation, AdapterError> {
        Err(AdapterError::Unsupported {
            what: "generation".into(),
            model: self.model_id().into(),
        })
    }
}
