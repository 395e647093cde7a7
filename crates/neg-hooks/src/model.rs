//! [`HfModel`]: a loaded checkpoint with its tokenizer, and the input checks shared by every
//! method of the adapter.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

use neg_core::{Patch, Site, TargetedPrompt};
use tokenizers::Tokenizer;

use crate::bert::Bert;
use crate::config::ModelConfig;
use crate::error::{HooksError, Result};
use crate::gguf::GgufTensors;
use crate::llama::Llama;
use crate::loader::{self, LoadOptions, ModelSource, Resolved, Weights};
use crate::tokenize;

pub(crate) enum Arch {
    Llama(Llama),
    Bert(Bert),
}

/// A Hugging Face checkpoint loaded into libtorch; implements [`neg_core::ModelAdapter`].
pub struct HfModel {
    pub(crate) id: String,
    pub(crate) config: ModelConfig,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) opts: LoadOptions,
    /// The layers: built by [`HfModel::load`], or by the first call that runs the model when
    /// [`LoadOptions::defer_weights`] is set ([`HfModel::arch`]).
    arch: OnceLock<Arch>,
    /// Where the weights are while they are deferred and not loaded yet. Locked while they
    /// load, so that two threads asking at once load them once.
    pending: Mutex<Option<WeightSource>>,
    /// Llama/Qwen2: whether a batch's common prefix runs once ([`HfModel::set_prefix_sharing`]);
    /// kept here so that it holds for weights loaded later.
    pub(crate) share_prefix: bool,
    /// `[MASK]` id (masked LMs).
    pub(crate) mask_id: Option<u32>,
    /// Generation stops at these ids.
    pub(crate) eos: Vec<u32>,
    /// The files it was loaded from (config, tokenizer and weights, or the one GGUF file).
    pub(crate) files: Vec<PathBuf>,
}

/// Where a model's weights are, until they are read.
enum WeightSource {
    Safetensors(Vec<PathBuf>),
    Gguf(GgufTensors),
}

impl std::fmt::Debug for HfModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfModel")
            .field("id", &self.id)
            .field("config", &self.config)
            .field("opts", &self.opts)
            .field("weights_loaded", &self.weights_loaded())
            .finish_non_exhaustive()
    }
}

impl HfModel {
    /// Loads config, tokenizer and weights from a directory, a GGUF file, a packaged model or the
    /// hub, onto `opts.device` in `opts.dtype` (GGUF tensors are dequantized to it). With
    /// [`LoadOptions::defer_weights`], only config and tokenizer now; the weights at first use.
    pub fn load(source: &ModelSource, opts: &LoadOptions) -> Result<Self> {
        crate::guard::libtorch("loading the model", || Self::load_unguarded(source, opts))
    }

    fn load_unguarded(source: &ModelSource, opts: &LoadOptions) -> Result<Self> {
        let resolved = loader::resolve(source)?;
        let files = match &resolved {
            Resolved::Safetensors(f) => [
                vec![f.config.clone(), f.tokenizer.clone()],
                f.weights.clone(),
            ]
            .concat(),
            Resolved::Gguf(path) => vec![path.clone()],
        };
        let (config, tokenizer, weights, tokenizer_path) = match resolved {
            Resolved::Safetensors(files) => (
                ModelConfig::from_file(&files.config)?,
                tokenize::load(&files.tokenizer)?,
                WeightSource::Safetensors(files.weights),
                files.tokenizer,
            ),
            Resolved::Gguf(path) => {
                let ck = crate::gguf::load(&path)?;
                (
                    ck.config,
                    ck.tokenizer,
                    WeightSource::Gguf(ck.tensors),
                    path,
                )
            }
        };
        let (mask_id, eos) = match &config {
            ModelConfig::Llama(c) => {
                let mut eos = c.eos_token_ids.clone();
                if eos.is_empty() {
                    eos.extend(tokenizer.token_to_id("</s>"));
                }
                (None, eos)
            }
            ModelConfig::Bert(_) => {
                let mask = tokenizer
                    .token_to_id("[MASK]")
                    .or_else(|| tokenizer.token_to_id("<mask>"))
                    .ok_or_else(|| HooksError::Tokenizer {
                        path: tokenizer_path.clone(),
                        message: "no [MASK] token in the vocabulary".into(),
                    })?;
                (Some(mask), Vec::new())
            }
        };
        let model = HfModel {
            id: source.id(),
            config,
            tokenizer,
            opts: opts.clone(),
            arch: OnceLock::new(),
            pending: Mutex::new(Some(weights)),
            share_prefix: true,
            mask_id,
            eos,
            files,
        };
        if !opts.defer_weights {
            model.arch()?;
        }
        Ok(model)
    }

    /// The layers, reading the weights first if they are deferred and not read yet. A failed
    /// read leaves them pending, so every later call returns the same error.
    pub(crate) fn arch(&self) -> Result<&Arch> {
        if let Some(arch) = self.arch.get() {
            return Ok(arch);
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have read them while this one waited for the lock.
        if let Some(arch) = self.arch.get() {
            return Ok(arch);
        }
        let source = pending
            .as_ref()
            .expect("the weights are pending until they are loaded");
        let built = self.build_arch(source)?;
        let arch = self.arch.get_or_init(|| built);
        *pending = None;
        Ok(arch)
    }

    /// Reads the weights of `source` onto the device, in the model's dtype, into its layers.
    fn build_arch(&self, source: &WeightSource) -> Result<Arch> {
        let device = self.opts.device.device()?;
        let kind = self.opts.dtype.kind();
        // `gguf_file`: errors about the weights are restated in the GGUF file's terms.
        let (mut ws, gguf_file) = match source {
            WeightSource::Safetensors(files) => (Weights::load(files, kind, device)?, None),
            WeightSource::Gguf(tensors) => {
                let location = tensors.path().display().to_string();
                (
                    Weights::from_map(tensors.dequantize_all()?, location, kind, device),
                    Some(tensors.path()),
                )
            }
        };
        let in_file_terms = |e| match gguf_file {
            Some(file) => crate::gguf::in_file_terms(file, e),
            None => e,
        };
        let arch = match &self.config {
            ModelConfig::Llama(c) => {
                let mut m = Llama::load(c.clone(), &mut ws, kind, device).map_err(in_file_terms)?;
                m.share_prefix = self.share_prefix;
                Arch::Llama(m)
            }
            ModelConfig::Bert(c) => Arch::Bert(Bert::load(c.clone(), &mut ws, kind, device)?),
        };
        ws.check_no_extra_layers(self.layers())
            .map_err(in_file_terms)?;
        Ok(arch)
    }

    /// Whether the weights are read: always after [`HfModel::load`], unless
    /// [`LoadOptions::defer_weights`] is set and nothing has run the model yet.
    pub fn weights_loaded(&self) -> bool {
        self.arch.get().is_some()
    }

    /// Whether this is a causal LM (Llama/Qwen2), known from the config alone.
    pub(crate) fn is_causal(&self) -> bool {
        matches!(self.config, ModelConfig::Llama(_))
    }

    /// Whether the prompts of a batch that share a prefix (few-shot demonstrations) run it
    /// once (the default) or each in full, for measuring what sharing saves. Results are the
    /// same either way (to float rounding). Llama/Qwen2 only; BERT runs every prompt whole.
    pub fn set_prefix_sharing(&mut self, on: bool) {
        self.share_prefix = on;
        if let Some(Arch::Llama(m)) = self.arch.get_mut() {
            m.share_prefix = on;
        }
    }

    /// The files this model was loaded from, in a stable order: `config.json`,
    /// `tokenizer.json` and the safetensors weights, or the one GGUF file. Resume caches key
    /// their entries by these files' contents.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The tokenizer read from `tokenizer.json`.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The parsed `config.json`.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The options the model was loaded with.
    pub fn options(&self) -> &LoadOptions {
        &self.opts
    }

    pub fn vocab_size(&self) -> usize {
        match &self.config {
            ModelConfig::Llama(c) => c.vocab_size,
            ModelConfig::Bert(c) => c.vocab_size,
        }
    }

    /// Longest prompt, in tokens (`max_position_embeddings`).
    pub fn max_context(&self) -> usize {
        match &self.config {
            ModelConfig::Llama(c) => c.max_position_embeddings,
            ModelConfig::Bert(c) => c.max_position_embeddings,
        }
    }

    pub(crate) fn layers(&self) -> usize {
        match &self.config {
            ModelConfig::Llama(c) => c.num_layers,
            ModelConfig::Bert(c) => c.num_layers,
        }
    }

    pub(crate) fn width(&self) -> usize {
        match &self.config {
            ModelConfig::Llama(c) => c.intermediate_size,
            ModelConfig::Bert(c) => c.intermediate_size,
        }
    }

    pub(crate) fn hidden(&self) -> usize {
        match &self.config {
            ModelConfig::Llama(c) => c.hidden_size,
            ModelConfig::Bert(c) => c.hidden_size,
        }
    }

    /// Token ids of a prompt with special tokens, checked against the context length (and for
    /// masked LMs, to hold exactly one `[MASK]`).
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>> {
        let ids = tokenize::encode(&self.tokenizer, prompt, true)?;
        if ids.is_empty() {
            return Err(HooksError::EmptyPrompt {
                prompt: prompt.into(),
            });
        }
        // An id past the embedding table would make libtorch abort inside `embedding`.
        if let Some(&token) = ids.iter().find(|&&t| t as usize >= self.vocab_size()) {
            return Err(HooksError::TokenOutOfVocab {
                prompt: prompt.into(),
                token,
                vocab: self.vocab_size(),
            });
        }
        if ids.len() > self.max_context() {
            return Err(HooksError::PromptTooLong {
                prompt: prompt.into(),
                tokens: ids.len(),
                max: self.max_context(),
            });
        }
        if let Some(mask) = self.mask_id {
            let count = ids.iter().filter(|&&t| t == mask).count();
            if count != 1 {
                return Err(HooksError::MaskCount {
                    prompt: prompt.into(),
                    count,
                });
            }
        }
        Ok(ids)
    }

    /// Checks the targets of a call (same count T everywhere, ids in the vocabulary); returns T.
    pub(crate) fn check_targets(&self, prompts: &[TargetedPrompt]) -> Result<usize> {
        let t = prompts.first().map_or(0, |p| p.targets.len());
        let vocab = self.vocab_size();
        for (i, p) in prompts.iter().enumerate() {
            if p.targets.len() != t {
                return Err(HooksError::TargetCount {
                    prompt: i,
                    expected: t,
                    actual: p.targets.len(),
                });
            }
            if let Some(&token) = p.targets.iter().find(|&&x| x as usize >= vocab) {
                return Err(HooksError::TargetOutOfRange {
                    prompt: i,
                    token,
                    vocab,
                });
            }
        }
        Ok(t)
    }

    pub(crate) fn check_layer(&self, layer: usize) -> Result<()> {
        if layer >= self.layers() {
            return Err(HooksError::LayerOutOfRange {
                layer,
                layers: self.layers(),
            });
        }
        Ok(())
    }

    pub(crate) fn check_patches(&self, variants: &[Vec<Patch>]) -> Result<()> {
        for p in variants.iter().flatten() {
            let (site, width) = match p.site {
                Site::FeedForward => ("feed-forward", self.width()),
                Site::Residual => ("residual", self.hidden()),
            };
            if p.layer >= self.layers() || p.index >= width {
                return Err(HooksError::UnitOutOfRange {
                    site,
                    layer: p.layer,
                    index: p.index,
                    layers: self.layers(),
                    width,
                });
            }
        }
        Ok(())
    }
}
