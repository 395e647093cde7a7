//! # neg-hooks
//!
//! Hugging Face transformer checkpoints run in libtorch (`tch`), with every feed-forward (FF)
//! neuron exposed to capture, patching and differentiation through
//! [`neg_core::ModelAdapter`], implemented by [`HfModel`].
//!
//! - Architectures: Llama family (Llama 2, Llama 3.x with `llama3` rope scaling, GQA, optional
//!   `head_dim`, tied or untied head), Qwen2/2.5 (q/k/v biases), BERT masked LM.
//! - Loading: a local directory, a hub id, a `.gguf` file (llama.cpp's format: F32/F16/BF16,
//!   Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, Q4_K/Q5_K/Q6_K/Q8_K, dequantized on load; [`gguf`]) or a packaged
//!   model name such as `smollm2-135m-instruct` ([`ModelSource`]), single or sharded safetensors,
//!   f32/bf16/f16 ([`DType`]), CPU or `cuda:N` ([`DeviceSpec`]).
//! - The FF neuron is the input of the down projection: SiLU(gate(x)) * up(x) for Llama/Qwen,
//!   GELU(intermediate(x)) for BERT. The measured position is the last prompt token (causal)
//!   or the single `[MASK]` (BERT). Probabilities are f32 softmax over the full vocabulary.
//! - Layout (as candle-transformers' model files): `nn` holds the shared layers (`Linear`,
//!   `Embedding`, `RmsNorm`, `LayerNorm`); `llama/` one file per concern (`block`: `Attention`,
//!   `Mlp`, `Block`; `passes`; `backward`; `sweeps`; `rope`; `generate`), its module docs
//!   mapping where an FF neuron is computed, patched and differentiated; `hooks`: what a pass
//!   records or edits at the measured position, `Hooks::ff` deciding capture-or-patch.
//! - Causal LMs: gradients come from one no-grad pass and a hand-written backward through the
//!   last position for all T targets at once (f32; autograd over a one-token pass from cached
//!   keys/values otherwise); intervention sweeps reuse the prefix and the
//!   activations below the lowest patched layer and recompute only the last position above it.
//!
//! ```
//! use neg_core::{ModelAdapter, NeuronId, Patch, PatchOp, TargetedPrompt};
//! use neg_hooks::{HfModel, LoadOptions, ModelSource};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/models/stories260k");
//! let model = HfModel::load(&ModelSource::parse(dir), &LoadOptions::default())?;
//! let prompt = "Once upon a time, there was a little";
//! let target = model.target_token(prompt, " g")?;
//! let p = TargetedPrompt::new(prompt, vec![target]);
//! let g = model.gradients(std::slice::from_ref(&p))?;
//! assert_eq!(g.grads.shape(), &[1, 1, 5, 172]); // [P, T, L, N]
//! let shifted = model.patched_probs(&p, &[vec![], vec![Patch::ff(NeuronId::new(2, 7), PatchOp::Add(1.0))]])?;
//! assert!((shifted[[0, 0]] - g.probs[[0, 0]]).abs() < 1e-5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// `x = x + y` is deliberate everywhere: tch's `+=` is an in-place add, which would write into
// tensors shared with caches (expanded prefix states) and break autograd graphs.
#![allow(clippy::assign_op_pattern)]

mod adapter;
mod bert;
pub mod config;
pub mod cuda;
pub mod error;
pub mod gguf;
pub mod guard;
mod hooks;
mod llama;
pub mod loader;
mod model;
mod nn;
mod tokenize;

pub use config::{BertConfig, Family, LlamaConfig, ModelConfig, RopeConfig, RopeScaling};
pub use error::HooksError;
pub use loader::{DType, DeviceSpec, LoadOptions, ModelSource, PackagedModel, PACKAGED_MODELS};
pub use model::HfModel;

/// True when libtorch has CUDA support and a device is visible. Loads libtorch's CUDA backend
/// first if the binary was linked without it (see [`cuda::ensure_cuda_backend`]).
pub fn cuda_available() -> bool {
    cuda::ensure_cuda_backend();
    tch::Cuda::is_available()
}
