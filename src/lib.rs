//! Shared plumbing and logic of the examples layer (`examples/`), kept in a library so that the
//! integration tests can call each experiment directly on tiny configurations. The science
//! lives in the library crates under `crates/`.
//!
//! - [`aux_metrics`]: skill neurons from auxiliary metrics (correlation, BH, ablation; the
//!   `aux_metrics` example).
//! - [`cli`]: the `main` wrapper of the examples (one-line `error:` message, exit status 1),
//!   model loading, and the arguments of the single-file exporters (`neurgrad`, `intervene`).
//! - [`lens`]: NeuronLens range masking on an MCEval8K task (the `neuronlens` example).
//! - [`output`]: result files written atomically (temporary file, then rename), and
//!   safetensors files built from ndarray arrays ([`output::TensorFile`]).
//! - [`plot`]: small SVG line, bar, grouped-bar and histogram helpers (plotters).
//! - [`skill`]: MCEval8K skill-neuron probing: NeurGrad features per option and every probe
//!   (the `skill_probe`, `training_size`, `robustness`, `substitutability`, `tree_shape`
//!   examples).
//! - [`factual`]: factual prompt sets (MyriadLAMA-style JSONL, or a built-in TinyStories set)
//!   turned into targeted prompts for a model.
//! - [`negexp`]: the NEG experiments of the paper's §3-§4 (`linearity`, `neg_estimation`,
//!   `knowledge_attribution`, `neg_distribution`, `multi_neuron`).
pub mod aux_metrics;
pub mod cli;
pub mod factual;
pub mod lens;
pub mod negexp;
pub mod output;
pub mod plot;
pub mod skill;
