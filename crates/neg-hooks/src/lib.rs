//! # neg-hooks
//!
//! Hugging Face transformer checkpoints run in libtorch, with every feed-forward neuron exposed
//! to capture, patching and differentiation through `neg_core::ModelAdapter`.

/// True when libtorch was linked with CUDA support and a device is visible.
pub fn cuda_available() -> bool {
    tch::Cuda::is_available()
}
