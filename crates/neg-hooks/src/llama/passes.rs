//! The two pass shapes (full sequence, one token from a cached prefix), the prefix caches they
//! share, and the batched no-grad forward.

use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use super::block::{FullContext, Kv, StepContext};
use super::Llama;
use crate::hooks::{targets_tensor, Hooks, Record};
use crate::nn::{masked_score, MASKED};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvMode {
    /// Keep no keys/values.
    None,
    /// Keep every layer's keys/values and run the whole pass.
    Keep,
    /// Keep keys/values and stop once the last layer's are known (a prefix pass needs nothing
    /// else).
    Only,
}

/// A left-padded batch.
pub(crate) struct Batch {
    pub ids: Tensor,
    pub pads: Vec<i64>,
    pub len: i64,
}

pub(crate) fn left_pad(seqs: &[&[u32]], device: Device) -> Batch {
    let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(seqs.len() * len);
    let mut pads = Vec::with_capacity(seqs.len());
    for s in seqs {
        let pad = len - s.len();
        pads.push(pad as i64);
        // Any valid id works for padding: padded keys are masked and padded rows unused.
        flat.extend(std::iter::repeat_n(0i64, pad));
        flat.extend(s.iter().map(|&t| t as i64));
    }
    let ids = Tensor::from_slice(&flat)
        .reshape([seqs.len() as i64, len as i64])
        .to_device(device);
    Batch {
        ids,
        pads,
        len: len as i64,
    }
}

/// Keys and values of a prefix that every row of a batch starts with, computed once
/// (batch dimension 1) and continued by each row's own tokens ([`Llama::full`]). Few-shot
/// prompts share their instruction and demonstrations: 78-85% of their tokens on MCEval8K.
pub(crate) struct SharedPrefix {
    /// Its length in tokens.
    pub len: i64,
    /// Per layer, `[1, kv_heads, len, hd]`.
    pub kv: Vec<Kv>,
}

impl SharedPrefix {
    /// The same tensors, shared (no copy).
    fn shallow_clone(&self) -> Self {
        SharedPrefix {
            len: self.len,
            kv: self.kv.iter().map(Kv::shallow_clone).collect(),
        }
    }
}

/// The last [`SharedPrefix`] a model computed, with its tokens. A skill-probe set's batches
/// (all the few-shot prompts of a task) mostly share one prefix; without this each batch of 16
/// would run its 400-odd tokens again, a third of the work for a set of 34 prompts.
///
/// Why this cannot change a number: the prefix's keys and values are a pure function of its
/// tokens (a batch-1 pass with no hooks), so a batch that finds its own prefix here gets the
/// very tensors a fresh pass would compute. Only an exact match of the batch's own common
/// prefix is reused, never a shorter one continued: the split point stays a function of the
/// batch alone, which the resume cache's byte-identical outputs need.
#[derive(Default)]
pub(crate) struct PrefixMemo(Mutex<Option<(Vec<u32>, SharedPrefix)>>);

impl PrefixMemo {
    /// The prefix of `ids`: the kept one when its tokens are `ids`, else `compute(ids)`, which
    /// is kept in its place.
    fn get_or_compute(&self, ids: &[u32], compute: impl FnOnce() -> SharedPrefix) -> SharedPrefix {
        // A poisoned lock only means a pass panicked while holding it; the memo is then
        // dropped and recomputed, never trusted.
        let mut memo = self.0.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = None;
            guard
        });
        if let Some((kept, prefix)) = memo.as_ref() {
            if kept.as_slice() == ids {
                return prefix.shallow_clone();
            }
        }
        let prefix = compute();
        *memo = Some((ids.to_vec(), prefix.shallow_clone()));
        prefix
    }

    /// Whether a prefix of exactly `ids` is kept.
    #[cfg(test)]
    pub(crate) fn holds(&self, ids: &[u32]) -> bool {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.as_ref().map(|(kept, _)| kept.as_slice() == ids))
            .unwrap_or(false)
    }
}

/// Shortest common prefix worth a pass of its own: below it, sharing saves less than the
/// extra pass and the copies cost.
pub(crate) const MIN_SHARED_PREFIX: usize = 16;

/// The length of the longest prefix common to all `seqs` that leaves every row at least one
/// token of its own, when there are two rows or more and it is at least
/// [`MIN_SHARED_PREFIX`] tokens; 0 otherwise.
pub(crate) fn shared_prefix_len(seqs: &[&[u32]]) -> usize {
    let Some(first) = seqs.first() else {
        return 0;
    };
    if seqs.len() < 2 {
        return 0;
    }
    let min_len = seqs.iter().map(|s| s.len()).min().unwrap_or(0);
    let mut c = 0;
    while c + 1 < min_len && seqs.iter().all(|s| s[c] == first[c]) {
        c += 1;
    }
    if c >= MIN_SHARED_PREFIX {
        c
    } else {
        0
    }
}

/// What a full pass returns.
pub(crate) struct FullPass {
    /// The last layer's output at the last position `[B, 1, H]`; `None` for [`KvMode::Only`]
    /// or an empty sequence.
    pub last_hidden: Option<Tensor>,
    /// Every layer's keys and values, unless [`KvMode::None`].
    pub kv: Vec<Kv>,
}

/// A batch's prefix (all but each row's last token), ready for a one-token pass of the last
/// tokens.
pub(crate) struct Prefix {
    pub kv: Vec<Kv>,
    /// `[B]`: position of each row's last token.
    pub pos: Tensor,
    /// `[B, 1, 1, S]`: the one-token pass's mask of the prefix's padding.
    pub mask: Tensor,
    /// `[B, 1]`: each row's last token id.
    pub last_ids: Tensor,
}

/// Everything a single prompt's sweeps, IG and LPI reuse: the prefix's keys/values and, at the
/// last position, each layer's input, FF activation and pre-FF residual.
pub(crate) struct PromptCache {
    pub kv: Vec<Kv>,
    /// `[1]`: position of the last token.
    pub pos: Tensor,
    /// L + 1 tensors `[1, 1, H]`: the input of each layer, then the last layer's output.
    pub inputs: Vec<Tensor>,
    /// L tensors `[1, 1, N]`.
    pub acts: Vec<Tensor>,
    /// L tensors `[1, 1, H]`: layer input + attention output.
    pub pre_ff: Vec<Tensor>,
}

/// A batched no-grad forward at each prompt's last token.
pub(crate) struct ForwardTensors {
    /// `[P, T]` f32.
    pub probs: Tensor,
    /// `[P, L, N]` f32 FF activations.
    pub acts: Tensor,
    /// `[P, L, H]` f32 layer outputs, when asked for.
    pub resid: Option<Tensor>,
    /// `[P, V]` f32.
    pub logits: Tensor,
}

impl Llama {
    /// The keys and values of `ids`, a prefix every row of a batch shares.
    pub(crate) fn shared_prefix(&self, ids: &[u32]) -> SharedPrefix {
        tch::no_grad(|| {
            let batch = left_pad(&[ids], self.device);
            let kv = self
                .full(
                    &batch.ids,
                    &batch.pads,
                    None,
                    &mut Hooks::default(),
                    KvMode::Only,
                )
                .kv;
            SharedPrefix {
                len: ids.len() as i64,
                kv,
            }
        })
    }

    /// `seqs` split for a full pass: the prefix they all share (when worth it, see
    /// [`shared_prefix_len`]) with its keys and values (kept from the previous batch when it
    /// had the same prefix, see [`PrefixMemo`]), and each row's own tokens after it.
    pub(crate) fn split_shared<'a>(
        &self,
        seqs: &[&'a [u32]],
    ) -> (Option<SharedPrefix>, Vec<&'a [u32]>) {
        let c = if self.share_prefix {
            shared_prefix_len(seqs)
        } else {
            0
        };
        if c == 0 {
            return (None, seqs.to_vec());
        }
        let ids = &seqs[0][..c];
        let shared = self
            .prefix_memo
            .get_or_compute(ids, || self.shared_prefix(ids));
        (Some(shared), seqs.iter().map(|s| &s[c..]).collect())
    }

    /// Full pass over a left-padded batch `[B, s]` (`pads[b]` padding tokens first), each row
    /// continuing `shared` when given (its positions come first, then each row's own tokens).
    pub(crate) fn full(
        &self,
        ids: &Tensor,
        pads: &[i64],
        shared: Option<&SharedPrefix>,
        hooks: &mut Hooks,
        kv: KvMode,
    ) -> FullPass {
        let (b, s) = (ids.size()[0], ids.size()[1]);
        let nl = self.blocks.len();
        if s == 0 {
            let (kvh, hd) = (self.cfg.num_kv_heads as i64, self.cfg.head_dim as i64);
            let empty = || Tensor::zeros([b, kvh, 0, hd], (self.kind, self.device));
            let kvs = if kv == KvMode::None {
                Vec::new()
            } else {
                (0..nl)
                    .map(|_| Kv {
                        keys: empty(),
                        values: empty(),
                    })
                    .collect()
            };
            return FullPass {
                last_hidden: None,
                kv: kvs,
            };
        }
        let pads_t = Tensor::from_slice(pads).to_device(self.device);
        let ar = Tensor::arange(s, (Kind::Int64, self.device));
        let c = shared.map_or(0, |p| p.len);
        let pos = (ar.unsqueeze(0) - pads_t.unsqueeze(1)).clamp_min(0) + c;
        let causal = ar.unsqueeze(0).le_tensor(&ar.unsqueeze(1)); // [q, k]: k <= q
        let valid = ar.unsqueeze(0).ge_tensor(&pads_t.unsqueeze(1)); // [B, k]
        let mut allowed = causal.unsqueeze(0).logical_and(&valid.unsqueeze(1)); // [B, q, k]
        if c > 0 {
            // Every row sees all of the shared prefix, which has no padding.
            let all = Tensor::ones([b, s, c], (Kind::Bool, self.device));
            allowed = Tensor::cat(&[all, allowed], 2);
        }
        let ctx = FullContext {
            angles: self.rope.angles(&pos),
            mask: (allowed.logical_not().to_kind(self.kind) * masked_score(self.kind)).unsqueeze(1),
            shared: shared.map(|p| p.kv.as_slice()),
        };
        let mut h = self.embed.forward(ids);
        let mut kvs = Vec::new();
        for (l, blk) in self.blocks.iter().enumerate() {
            if kv == KvMode::Only && l + 1 == nl {
                hooks.layer_input(&h, &crate::hooks::Focus::LastPosition);
                kvs.push(blk.keys_values(&h, &ctx.angles));
                return FullPass {
                    last_hidden: None,
                    kv: kvs,
                };
            }
            let out = blk.forward_full(l, h, &ctx, hooks);
            if kv != KvMode::None {
                kvs.push(out.kv);
            }
            h = out.hidden;
        }
        FullPass {
            last_hidden: Some(h.narrow(1, s - 1, 1)),
            kv: kvs,
        }
    }

    /// One-token pass from layer `start`: `h` `[B, R, H]` is the input of layer `start` for `R`
    /// rows per element, all at position `pos[b]` (`[B]`), attending to `past[l]`
    /// (`[B or 1, kv_heads, p, hd]`; `past_mask` `[B, 1, 1, p + 1]` masks its padding) and to
    /// themselves. Returns the last layer's output `[B, R, H]`.
    pub(crate) fn step(
        &self,
        h: Tensor,
        start: usize,
        pos: &Tensor,
        past: &[Kv],
        past_mask: Option<&Tensor>,
        hooks: &mut Hooks,
    ) -> Tensor {
        let ctx = StepContext {
            angles: self.rope.angles(&pos.unsqueeze(1)),
            past,
            past_mask,
        };
        let mut h = h;
        for (l, blk) in self.blocks.iter().enumerate().skip(start) {
            h = blk.forward_step(l, h, &ctx, hooks);
        }
        h
    }

    /// Prefix keys/values of a left-padded batch, no gradients.
    pub(crate) fn prefix(&self, batch: &Batch) -> Prefix {
        let s = batch.len;
        let prefix_ids = batch.ids.narrow(1, 0, s - 1);
        let last_ids = batch.ids.narrow(1, s - 1, 1);
        let kv = tch::no_grad(|| {
            self.full(
                &prefix_ids,
                &batch.pads,
                None,
                &mut Hooks::default(),
                KvMode::Only,
            )
            .kv
        });
        let pads_t = Tensor::from_slice(&batch.pads).to_device(self.device);
        let pos = (s - 1) - &pads_t;
        let ar = Tensor::arange(s, (Kind::Int64, self.device));
        // Key j < s - 1 is a prefix key (valid from the first real token); key s - 1 is the row
        // itself, always valid.
        let valid = ar.unsqueeze(0).ge_tensor(&pads_t.unsqueeze(1)); // [B, s]
        let mask = (valid.logical_not().to_kind(Kind::Float) * MASKED)
            .unsqueeze(1)
            .unsqueeze(1);
        Prefix {
            kv,
            pos,
            mask,
            last_ids,
        }
    }

    /// Prefix keys/values and the last position's per-layer state of one prompt.
    pub(crate) fn prompt_cache(&self, seq: &[u32]) -> PromptCache {
        tch::no_grad(|| {
            let batch = left_pad(&[seq], self.device);
            let prefix = self.prefix(&batch);
            let h0 = self.embed.forward(&prefix.last_ids);
            let mut hooks = Hooks::recording(Record {
                inputs: true,
                ff: true,
                pre_ff: true,
                ..Record::default()
            });
            let h = self.step(h0, 0, &prefix.pos, &prefix.kv, None, &mut hooks);
            let mut inputs = hooks.recorded.inputs;
            inputs.push(h);
            PromptCache {
                kv: prefix.kv,
                pos: prefix.pos,
                inputs,
                acts: hooks.recorded.ff,
                pre_ff: hooks.recorded.pre_ff,
            }
        })
    }

    /// No-grad full pass: target probabilities, FF activations and, when asked, layer outputs
    /// at each prompt's last token.
    pub(crate) fn forward_tokens(
        &self,
        seqs: &[&[u32]],
        targets: &[Vec<u32>],
        want_resid: bool,
    ) -> ForwardTensors {
        tch::no_grad(|| {
            let (shared, own) = self.split_shared(seqs);
            let batch = left_pad(&own, self.device);
            let mut hooks = Hooks::recording(Record {
                ff: true,
                resid: want_resid,
                ..Record::default()
            });
            let pass = self.full(
                &batch.ids,
                &batch.pads,
                shared.as_ref(),
                &mut hooks,
                KvMode::None,
            );
            let p = seqs.len() as i64;
            let t = targets.first().map_or(0, |t| t.len()) as i64;
            let h = pass.last_hidden.unwrap_or_else(|| {
                Tensor::zeros(
                    [p, 1, self.cfg.hidden_size as i64],
                    (self.kind, self.device),
                )
            });
            let logits = self.logits(&h).squeeze_dim(1);
            let probs = Self::target_probs(&logits, &targets_tensor(targets, &[p, t], self.device));
            let acts = Tensor::cat(&hooks.recorded.ff, 1).to_kind(Kind::Float);
            let resid =
                want_resid.then(|| Tensor::cat(&hooks.recorded.resid, 1).to_kind(Kind::Float));
            ForwardTensors {
                probs,
                acts,
                resid,
                logits,
            }
        })
    }
}
