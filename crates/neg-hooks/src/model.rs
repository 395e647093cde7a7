//! [`HfModel`]: a loaded checkpoint with its tokenizer, and the input checks shared by every
//! method of the adapter.

use std::path::PathBuf;

use neg_core::{Patch, Site, TargetedPrompt};
use tokenizers::Tokenizer;

use crate::bert::Bert;
use crate::config::ModelConfig;
use crate::error::{HooksError, Result};
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
    pub(crate) arch: Arch,
    /// `[MASK]` id (masked LMs).
    pub(crate) mask_id: Option<u32>,
    /// Generation stops at these ids.
    pub(crate) eos: Vec<u32>,
    /// The files it was loaded from (config, tokenizer and weights, or the one GGUF file).
    pub(crate) files: Vec<PathBuf>,
}

impl std::fmt::Debug for HfModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfModel")
            .field("id", &self.id)
            .field("config", &self.config)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl HfModel {
    /// Loads config, tokenizer and weights from a directory, a GGUF file, a packaged model or the
    /// hub, onto `opts.device` in `opts.dtype` (GGUF tensors are dequantized to it).
    pub fn load(source: &ModelSource, opts: &LoadOptions) -> Result<Self> {
        crate::guard::libtorch("loading the model", || Self::load_unguarded(source, opts))
    }

    fn load_unguarded(source: &ModelSource, opts: &LoadOptions) -> Result<Self> {
        let device = opts.device.device()?;
        let kind = opts.dtype.kind();
        // `gguf_file`: errors about the weights are restated in the GGUF file's terms.
        let resolved = loader::resolve(source)?;
        let files = match &resolved {
            Resolved::Safetensors(f) => [
                vec![f.config.clone(), f.tokenizer.clone()],
                f.weights.clone(),
            ]
            .concat(),
            Resolved::Gguf(path) => vec![path.clone()],
        };
        let (config, tokenizer, mut ws, tokenizer_path, gguf_file) = match resolved {
            Resolved::Safetensors(files) => (
                ModelConfig::from_file(&files.config)?,
                tokenize::load(&files.tokenizer)?,
                Weights::load(&files.weights, kind, device)?,
                files.tokenizer,
                None,
            ),
            Resolved::Gguf(path) => {
                let ck = crate::gguf::load(&path)?;
                let location = path.display().to_string();
                (
                    ck.config,
                    ck.tokenizer,
                    Weights::from_map(ck.tensors, location, kind, device),
                    path.clone(),
                    Some(path),
                )
            }
        };
        let (arch, mask_id, eos) = match &config {
            ModelConfig::Llama(c) => {
                let mut eos = c.eos_token_ids.clone();
                if eos.is_empty() {
                    eos.extend(tokenizer.token_to_id("</s>"));
                }
                (
                    Arch::Llama(Llama::load(c.clone(), &mut ws, kind, device).map_err(|e| {
                        match &gguf_file {
                            Some(file) => crate::gguf::in_file_terms(file, e),
                            None => e,
                        }
                    })?),
                    None,
                    eos,
                )
            }
            ModelConfig::Bert(c) => {
                let mask = tokenizer
                    .token_to_id("[MASK]")
                    .or_else(|| tokenizer.token_to_id("<mask>"))
                    .ok_or_else(|| HooksError::Tokenizer {
                        path: tokenizer_path.clone(),
                        message: "no [MASK] token in the vocabulary".into(),
                    })?;
                (
                    Arch::Bert(Bert::load(c.clone(), &mut ws, kind, device)?),
                    Some(mask),
                    Vec::new(),
                )
            }
        };
        let num_layers = match &config {
            ModelConfig::Llama(c) => c.num_layers,
            ModelConfig::Bert(c) => c.num_layers,
        };
        ws.check_no_extra_layers(num_layers)
            .map_err(|e| match &gguf_file {
                Some(file) => crate::gguf::in_file_terms(file, e),
                None => e,
            })?;
        Ok(HfModel {
            id: source.id(),
            config,
            tokenizer,
            opts: opts.clone(),
            arch,
            mask_id,
            eos,
            files,
        })
    }

    /// Whether the prompts of a batch that share a prefix (few-shot demonstrations) run it
    /// once (the default) or each in full, for measuring what sharing saves. Results are the
    /// same either way (to float rounding). Llama/Qwen2 only; BERT runs every prompt whole.
    pub fn set_prefix_sharing(&mut self, on: bool) {
        if let Arch::Llama(m) = &mut self.arch {
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
