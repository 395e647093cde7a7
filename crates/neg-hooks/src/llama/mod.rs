//! Llama-family decoders (Llama 2, Llama 3.x, Qwen2/2.5) in libtorch.
//!
//! Where a Llama FF neuron (TransformerLens `blocks.{l}.mlp.hook_post`, the input of the down
//! projection) is
//! - computed: [`block::Mlp::neurons`], SiLU(gate(x)) * up(x), called from
//!   `Block::feed_forward` in [`block`];
//! - captured or patched: [`crate::hooks::Hooks::ff`], the one place that decides, called right
//!   after (patches, IG replacement and autograd leaves are [`crate::hooks::FfEdits`]);
//! - differentiated: [`backward`], a hand-written backward through the last position over the
//!   [`Tape`] a full pass records (f32), or autograd through a one-token pass.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Llama`]: weights, embedding, final norm and LM head |
//! | `block.rs` | `Attention`, `Mlp`, `Block` and their forwards |
//! | `rope.rs` | rotary embeddings (with `llama3`/linear scaling) |
//! | `passes.rs` | the two pass shapes, prefix caches, the batched forward |
//! | `backward.rs` | gradients: hand-written tape backward and the autograd reference |
//! | `sweeps.rs` | patched probabilities, IG path gradients, LPI, the patch primitive |
//! | `generate.rs` | greedy generation |
//!
//! Two kinds of pass share the blocks:
//! - a *full* pass over a left-padded batch of sequences (causal + padding mask, position ids
//!   counted from each row's first real token), with the hooks at the last position;
//! - a *one-token* pass: `R` rows per batch element, all at the same position, each attending to
//!   a cached prefix (keys/values of earlier positions) and to itself only. The gradient, sweep,
//!   IG and generation paths use it so that the prefix is computed once, without gradients.

mod backward;
mod block;
mod generate;
mod passes;
mod rope;
mod sweeps;
#[cfg(test)]
mod tests;

use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;
use crate::error::Result;
use crate::loader::Weights;
use crate::nn::{Embedding, RmsNorm};

pub(crate) use backward::{AttentionTape, GradientTensors, MlpTape, Tape};
pub(crate) use block::Kv;
pub(crate) use passes::{shared_prefix_len, ForwardTensors};

use block::Block;
use rope::Rope;

/// A Llama / Qwen2 causal LM.
pub struct Llama {
    pub(crate) cfg: LlamaConfig,
    embed: Embedding,
    pub(crate) blocks: Vec<Block>,
    norm: RmsNorm,
    /// `None` when tied to the input embeddings.
    lm_head: Option<Tensor>,
    rope: Rope,
    pub(crate) kind: Kind,
    pub(crate) device: Device,
    /// Whether a batch's common prefix runs once ([`passes::SharedPrefix`]); on by default,
    /// off only to measure what it saves.
    pub(crate) share_prefix: bool,
    /// The last shared prefix computed, kept for the next batch that starts with the same
    /// tokens ([`passes::PrefixMemo`]).
    pub(crate) prefix_memo: passes::PrefixMemo,
}

impl Llama {
    pub(crate) fn load(
        cfg: LlamaConfig,
        ws: &mut Weights,
        kind: Kind,
        device: Device,
    ) -> Result<Self> {
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let embed = Embedding::load(ws, "model.embed_tokens.weight", v, h)?;
        let blocks = (0..cfg.num_layers)
            .map(|layer| Block::load(ws, layer, &cfg, kind))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(ws, "model.norm.weight", h, cfg.rms_norm_eps)?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(ws.get("lm_head.weight", &[v as i64, h as i64])?)
        };
        let rope = Rope::new(&cfg, kind, device);
        Ok(Self {
            cfg,
            embed,
            blocks,
            norm,
            lm_head,
            rope,
            kind,
            device,
            share_prefix: true,
            prefix_memo: passes::PrefixMemo::default(),
        })
    }

    fn lm_head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed.weight)
    }

    /// f32 logits of hidden states `[.., H]` (final norm + LM head).
    pub(crate) fn logits(&self, h: &Tensor) -> Tensor {
        self.norm
            .forward(h)
            .linear(self.lm_head(), None::<Tensor>)
            .to_kind(Kind::Float)
    }

    fn embed_ids(&self, ids: &[i64], shape: &[i64]) -> Tensor {
        let t = Tensor::from_slice(ids)
            .reshape(shape)
            .to_device(self.device);
        self.embed.forward(&t)
    }

    /// Probability of `targets` (`[rows...]` x T, as `[.., T]` i64) from logits `[.., V]`.
    fn target_probs(logits: &Tensor, targets: &Tensor) -> Tensor {
        let d = logits.dim() as i64 - 1;
        logits.softmax(d, Kind::Float).gather(d, targets, false)
    }
}
