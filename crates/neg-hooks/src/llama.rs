//! Llama-family decoders (Llama 2, Llama 3.x, Qwen2/2.5) in libtorch.
//!
//! Two kinds of pass share the blocks:
//! - a *full* pass over a left-padded batch of sequences (causal + padding mask, position ids
//!   counted from each row's first real token), with the hooks at the last position;
//! - a *one-token* pass: `R` rows per batch element, all at the same position, each attending to
//!   a cached prefix (keys/values of earlier positions) and to itself only. The gradient, sweep,
//!   IG and generation paths use it so that the prefix is computed once, without gradients.

use neg_core::Patch;
use tch::{Device, Kind, Tensor};

use crate::config::{LlamaConfig, RopeScaling};
use crate::error::Result;
use crate::hooks::{copy_rows, targets_tensor, Hooks};
use crate::loader::Weights;

/// Added to the attention scores of masked keys. Finite (unlike -inf) so that fully masked
/// padding rows give a uniform softmax instead of NaN; exp(-1e9) underflows to exactly 0.
const MASKED: f64 = -1e9;

/// Tensors a full pass records per layer for the hand-written backward (`Hooks::tape`), in
/// this order: layer input, query, keys, values, last-row attention weights (`full`), then
/// residual before the FF block, gate output, up output (`ff_block`).
const TAPE_PER_LAYER: usize = 8;

pub(crate) struct Linear {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

impl Linear {
    pub fn load(ws: &mut Weights, name: &str, out: usize, inp: usize, bias: bool) -> Result<Self> {
        let w = ws.get(&format!("{name}.weight"), &[out as i64, inp as i64])?;
        let b = if bias {
            Some(ws.get(&format!("{name}.bias"), &[out as i64])?)
        } else {
            None
        };
        Ok(Self { w, b })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w, self.b.as_ref())
    }
}

struct RmsNorm {
    w: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// As transformers: normalise in f32, cast back, then scale.
    fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let var = xf
            .pow_tensor_scalar(2)
            .mean_dim([-1i64].as_slice(), true, Kind::Float);
        (xf * (var + self.eps).rsqrt()).to_kind(kind) * &self.w
    }
}

struct Block {
    in_norm: RmsNorm,
    post_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Cached keys and values of one layer, heads already repeated for GQA: `[B, heads, p, hd]`.
pub(crate) type Kv = (Tensor, Tensor);

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

/// A Llama / Qwen2 causal LM.
pub struct Llama {
    pub(crate) cfg: LlamaConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    /// `None` when tied to the input embeddings.
    lm_head: Option<Tensor>,
    /// `[head_dim / 2]` f32 inverse frequencies (with any rope scaling applied).
    inv_freq: Tensor,
    pub(crate) kind: Kind,
    pub(crate) device: Device,
}

/// RoPE inverse frequencies, in f32 exactly as transformers computes them.
fn inv_freq(cfg: &LlamaConfig) -> Tensor {
    let hd = cfg.head_dim as i64;
    let exps = Tensor::arange_start_step(0, hd, 2, (Kind::Int64, Device::Cpu)).to_kind(Kind::Float)
        / hd as f64;
    let inv = Tensor::pow_scalar(cfg.rope.theta, &exps).reciprocal();
    match cfg.rope.scaling {
        RopeScaling::None => inv,
        RopeScaling::Linear { factor } => inv / factor,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let old = original_max_position_embeddings as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            let wavelen = inv.reciprocal() * (2.0 * std::f64::consts::PI);
            // Long wavelengths (low frequencies) are divided by `factor`, short ones kept, and
            // the band between interpolated (transformers' `_compute_llama3_parameters`).
            let scaled = (&inv / factor).where_self(&wavelen.gt(low_wavelen), &inv);
            let smooth = (wavelen.reciprocal() * old - low_freq_factor)
                / (high_freq_factor - low_freq_factor);
            let one_minus: Tensor = smooth.ones_like() - &smooth;
            let smoothed: Tensor = one_minus * &scaled / factor + &smooth * &scaled;
            let medium = wavelen
                .lt(high_wavelen)
                .logical_not()
                .logical_and(&wavelen.gt(low_wavelen).logical_not());
            smoothed.where_self(&medium, &scaled)
        }
    }
}

/// Backward of [`RmsNorm`] (in f32): the gradient with respect to its input `x` `[B, 1, H]`
/// given the gradient `dy` `[B, R, H]` of its output, for each of R rows.
/// y = w x r with r = (mean(x^2) + eps)^-1/2, so dx = r (w dy) - r^3 x mean(x w dy).
fn rms_back(x: &Tensor, norm: &RmsNorm, dy: &Tensor) -> Tensor {
    let r = (x
        .pow_tensor_scalar(2)
        .mean_dim([-1i64].as_slice(), true, Kind::Float)
        + norm.eps)
        .rsqrt();
    let g = dy * &norm.w;
    let dot = (&g * x).mean_dim([-1i64].as_slice(), true, Kind::Float);
    &r * g - x * r.pow_tensor_scalar(3) * dot
}

fn rotate_half(x: &Tensor) -> Tensor {
    let d = x.size()[x.dim() - 1] / 2;
    Tensor::cat(&[-x.narrow(-1, d, d), x.narrow(-1, 0, d)], -1)
}

/// `x` `[B, heads, s, hd]`, `cos`/`sin` `[B, s, hd]`.
fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)
}

impl Llama {
    pub(crate) fn load(
        cfg: LlamaConfig,
        ws: &mut Weights,
        kind: Kind,
        device: Device,
    ) -> Result<Self> {
        let (h, n, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (nh, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let embed = ws.get("model.embed_tokens.weight", &[v as i64, h as i64])?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = format!("model.layers.{i}");
            let norm = |ws: &mut Weights, name: &str| -> Result<RmsNorm> {
                Ok(RmsNorm {
                    w: ws.get(&format!("{p}.{name}.weight"), &[h as i64])?,
                    eps: cfg.rms_norm_eps,
                })
            };
            blocks.push(Block {
                in_norm: norm(ws, "input_layernorm")?,
                post_norm: norm(ws, "post_attention_layernorm")?,
                q: Linear::load(
                    ws,
                    &format!("{p}.self_attn.q_proj"),
                    nh * hd,
                    h,
                    cfg.qkv_bias,
                )?,
                k: Linear::load(
                    ws,
                    &format!("{p}.self_attn.k_proj"),
                    kvh * hd,
                    h,
                    cfg.qkv_bias,
                )?,
                v: Linear::load(
                    ws,
                    &format!("{p}.self_attn.v_proj"),
                    kvh * hd,
                    h,
                    cfg.qkv_bias,
                )?,
                o: Linear::load(ws, &format!("{p}.self_attn.o_proj"), h, nh * hd, cfg.o_bias)?,
                gate: Linear::load(ws, &format!("{p}.mlp.gate_proj"), n, h, cfg.mlp_bias)?,
                up: Linear::load(ws, &format!("{p}.mlp.up_proj"), n, h, cfg.mlp_bias)?,
                down: Linear::load(ws, &format!("{p}.mlp.down_proj"), h, n, cfg.mlp_bias)?,
            });
        }
        let norm = RmsNorm {
            w: ws.get("model.norm.weight", &[h as i64])?,
            eps: cfg.rms_norm_eps,
        };
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(ws.get("lm_head.weight", &[v as i64, h as i64])?)
        };
        let inv_freq = inv_freq(&cfg).to_device(device);
        Ok(Self {
            cfg,
            embed,
            blocks,
            norm,
            lm_head,
            inv_freq,
            kind,
            device,
        })
    }

    fn lm_head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// `[B, s, hd]` cos and sin for position ids `[B, s]`.
    fn cos_sin(&self, pos: &Tensor) -> (Tensor, Tensor) {
        let freqs = pos.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos().to_kind(self.kind), emb.sin().to_kind(self.kind))
    }

    fn repeat_kv(&self, t: Tensor) -> Tensor {
        let rep = (self.cfg.num_heads / self.cfg.num_kv_heads) as i64;
        if rep == 1 {
            return t;
        }
        let s = t.size();
        t.unsqueeze(2)
            .expand([s[0], s[1], rep, s[2], s[3]], false)
            .reshape([s[0], s[1] * rep, s[2], s[3]])
    }

    /// Rotated queries and (GQA-repeated) keys and values: `[B, heads, s, hd]` each.
    fn qkv(&self, blk: &Block, x: &Tensor, cos: &Tensor, sin: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (b, s) = (x.size()[0], x.size()[1]);
        let hd = self.cfg.head_dim as i64;
        let heads = |t: Tensor, n: usize| t.view([b, s, n as i64, hd]).transpose(1, 2);
        let q = heads(blk.q.forward(x), self.cfg.num_heads);
        let k = heads(blk.k.forward(x), self.cfg.num_kv_heads);
        let v = heads(blk.v.forward(x), self.cfg.num_kv_heads);
        let q = apply_rope(&q, cos, sin);
        let k = apply_rope(&k, cos, sin);
        (q, self.repeat_kv(k), self.repeat_kv(v))
    }

    /// Softmax of scores in f32 (as transformers' eager attention), cast back.
    fn attn_probs(&self, scores: Tensor, mask: Option<&Tensor>) -> Tensor {
        let scores = scores.to_kind(Kind::Float);
        let scores = match mask {
            Some(m) => scores + m,
            None => scores,
        };
        scores.softmax(-1, Kind::Float).to_kind(self.kind)
    }

    /// The FF half of a block (and the hooks). `last`: the focus is the last position of the
    /// sequence dimension; otherwise every row is a focus row.
    fn ff_block(&self, l: usize, blk: &Block, h: Tensor, hooks: &mut Hooks, last: bool) -> Tensor {
        let focus = |t: &Tensor| {
            if last {
                let s = t.size()[1];
                t.narrow(1, s - 1, 1)
            } else {
                t.shallow_clone()
            }
        };
        let replace = |t: Tensor, new: Tensor| {
            if last {
                let s = t.size()[1];
                Tensor::cat(&[t.narrow(1, 0, s - 1), new], 1)
            } else {
                new
            }
        };
        if hooks.capture_pre_ff {
            hooks.pre_ff.push(focus(&h).detach());
        }
        let x = blk.post_norm.forward(&h);
        let (gate, up) = (blk.gate.forward(&x), blk.up.forward(&x));
        if hooks.capture_tape {
            hooks.tape.push(focus(&h));
            hooks.tape.push(focus(&gate));
            hooks.tape.push(focus(&up));
        }
        let mut act = gate.silu() * up;
        if hooks.modifies_ff(l) {
            let new = hooks.on_ff(l, focus(&act));
            act = replace(act, new);
        } else if hooks.capture_ff {
            let _ = hooks.on_ff(l, focus(&act));
        }
        let mut h = h + blk.down.forward(&act);
        if hooks.modifies_resid(l) {
            let new = hooks.on_resid(l, focus(&h));
            h = replace(h, new);
        } else if hooks.capture_resid {
            let _ = hooks.on_resid(l, focus(&h));
        }
        h
    }

    /// Full pass over a left-padded batch `[B, s]` (`pads[b]` padding tokens first). Returns the
    /// last layer's output at the last position (`[B, 1, H]`, `None` for `KvMode::Only` or an
    /// empty sequence) and the kept keys/values.
    pub(crate) fn full(
        &self,
        ids: &Tensor,
        pads: &[i64],
        hooks: &mut Hooks,
        kv: KvMode,
    ) -> (Option<Tensor>, Vec<Kv>) {
        let (b, s) = (ids.size()[0], ids.size()[1]);
        let nl = self.blocks.len();
        if s == 0 {
            let (nh, hd) = (self.cfg.num_heads as i64, self.cfg.head_dim as i64);
            let empty = || Tensor::zeros([b, nh, 0, hd], (self.kind, self.device));
            let kvs = if kv == KvMode::None {
                Vec::new()
            } else {
                (0..nl).map(|_| (empty(), empty())).collect()
            };
            return (None, kvs);
        }
        let pads_t = Tensor::from_slice(pads).to_device(self.device);
        let ar = Tensor::arange(s, (Kind::Int64, self.device));
        let pos = (ar.unsqueeze(0) - pads_t.unsqueeze(1)).clamp_min(0);
        let causal = ar.unsqueeze(0).le_tensor(&ar.unsqueeze(1)); // [q, k]: k <= q
        let valid = ar.unsqueeze(0).ge_tensor(&pads_t.unsqueeze(1)); // [B, k]
        let allowed = causal.unsqueeze(0).logical_and(&valid.unsqueeze(1));
        let mask = (allowed.logical_not().to_kind(Kind::Float) * MASKED).unsqueeze(1);
        let (cos, sin) = self.cos_sin(&pos);
        let scale = (self.cfg.head_dim as f64).powf(-0.5);
        let mut h = Tensor::embedding(&self.embed, ids, -1, false, false);
        let mut kvs = Vec::new();
        for (l, blk) in self.blocks.iter().enumerate() {
            if hooks.capture_inputs {
                hooks.inputs.push(h.narrow(1, s - 1, 1).detach());
            }
            let x = blk.in_norm.forward(&h);
            let (q, k, v) = self.qkv(blk, &x, &cos, &sin);
            if kv != KvMode::None {
                kvs.push((k.shallow_clone(), v.shallow_clone()));
            }
            if kv == KvMode::Only && l + 1 == nl {
                return (None, kvs);
            }
            let probs = self.attn_probs(q.matmul(&k.transpose(-2, -1)) * scale, Some(&mask));
            let att = probs.matmul(&v).transpose(1, 2).reshape([b, s, -1]);
            if hooks.capture_tape {
                hooks.tape.push(h.narrow(1, s - 1, 1));
                hooks.tape.push(q.narrow(2, s - 1, 1));
                hooks.tape.push(k);
                hooks.tape.push(v);
                hooks.tape.push(probs.narrow(2, s - 1, 1));
            }
            h = h + blk.o.forward(&att);
            h = self.ff_block(l, blk, h, hooks, true);
        }
        (Some(h.narrow(1, s - 1, 1)), kvs)
    }

    /// One-token pass from layer `start`: `h` `[B, R, H]` is the input of layer `start` for `R`
    /// rows per element, all at position `pos[b]` (`[B]`), attending to `past[l]`
    /// (`[B or 1, heads, p, hd]`; `past_mask` `[B, 1, 1, p + 1]` masks its padding) and to
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
        let (b, r) = (h.size()[0], h.size()[1]);
        let (cos, sin) = self.cos_sin(&pos.unsqueeze(1));
        let scale = (self.cfg.head_dim as f64).powf(-0.5);
        let mut h = h;
        for (l, blk) in self.blocks.iter().enumerate().skip(start) {
            if hooks.capture_inputs {
                hooks.inputs.push(h.detach());
            }
            let x = blk.in_norm.forward(&h);
            let (q, k, v) = self.qkv(blk, &x, &cos, &sin);
            let (pk, pv) = &past[l];
            let p = pk.size()[2];
            let s_past = q.matmul(&pk.transpose(-2, -1));
            let s_self = (&q * &k).sum_dim_intlist([-1i64].as_slice(), true, None::<Kind>);
            let probs = self.attn_probs(Tensor::cat(&[s_past, s_self], -1) * scale, past_mask);
            let out = probs.narrow(-1, 0, p).matmul(pv) + probs.narrow(-1, p, 1) * &v;
            if hooks.capture_kv {
                hooks.kv.push((k, v));
            }
            let att = out.transpose(1, 2).reshape([b, r, -1]);
            h = h + blk.o.forward(&att);
            h = self.ff_block(l, blk, h, hooks, false);
        }
        h
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
        Tensor::embedding(&self.embed, &t, -1, false, false)
    }

    /// Probability of `targets` (`[rows...]` x T, as `[.., T]` i64) from logits `[.., V]`.
    fn target_probs(logits: &Tensor, targets: &Tensor) -> Tensor {
        let d = logits.dim() as i64 - 1;
        logits.softmax(d, Kind::Float).gather(d, targets, false)
    }

    /// No-grad full pass: target probabilities `[P, T]`, FF activations `[P, L, N]` and, when
    /// asked, layer outputs `[P, L, H]` at each prompt's last token.
    pub(crate) fn forward_tokens(
        &self,
        seqs: &[&[u32]],
        targets: &[Vec<u32>],
        want_resid: bool,
    ) -> (Tensor, Tensor, Option<Tensor>, Tensor) {
        tch::no_grad(|| {
            let batch = left_pad(seqs, self.device);
            let mut hooks = Hooks {
                capture_ff: true,
                capture_resid: want_resid,
                ..Hooks::default()
            };
            let (h, _) = self.full(&batch.ids, &batch.pads, &mut hooks, KvMode::None);
            let p = seqs.len() as i64;
            let t = targets.first().map_or(0, |t| t.len()) as i64;
            let h = h.unwrap_or_else(|| {
                Tensor::zeros(
                    [p, 1, self.cfg.hidden_size as i64],
                    (self.kind, self.device),
                )
            });
            let logits = self.logits(&h).squeeze_dim(1);
            let probs = Self::target_probs(&logits, &targets_tensor(targets, &[p, t], self.device));
            let acts = Tensor::cat(&hooks.ff, 1).to_kind(Kind::Float);
            let resid = want_resid.then(|| Tensor::cat(&hooks.resid, 1).to_kind(Kind::Float));
            (probs, acts, resid, logits)
        })
    }

    /// Prefix keys/values of a left-padded batch (all but each row's last token), the position
    /// of each last token `[B]` and the one-token pass mask `[B, 1, 1, S]`.
    fn prefix(&self, batch: &Batch) -> (Vec<Kv>, Tensor, Tensor, Tensor) {
        let s = batch.len;
        let prefix_ids = batch.ids.narrow(1, 0, s - 1);
        let last_ids = batch.ids.narrow(1, s - 1, 1);
        let (_, kv) = tch::no_grad(|| {
            self.full(
                &prefix_ids,
                &batch.pads,
                &mut Hooks::default(),
                KvMode::Only,
            )
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
        (kv, pos, mask, last_ids)
    }

    /// Probabilities `[P, T]`, activations `[P, L, N]` and gradients `[P, T, L, N]`.
    ///
    /// In f32 with at least one target this is [`Self::gradients_tape`] (one no-grad pass and
    /// a hand-written backward through the last position); otherwise, and as the reference it
    /// is tested against, [`Self::gradients_autograd`].
    pub(crate) fn gradients_tokens(
        &self,
        seqs: &[&[u32]],
        targets: &[Vec<u32>],
    ) -> (Tensor, Tensor, Tensor) {
        let has_targets = targets.first().is_some_and(|t| !t.is_empty());
        let non_empty = seqs.iter().all(|s| !s.is_empty());
        if self.kind == Kind::Float && has_targets && non_empty {
            self.gradients_tape(seqs, targets)
        } else {
            self.gradients_autograd(seqs, targets)
        }
    }

    /// Gradients through a no-grad prefix pass and one differentiated (autograd) one-token pass
    /// of `P x T` rows.
    pub(crate) fn gradients_autograd(
        &self,
        seqs: &[&[u32]],
        targets: &[Vec<u32>],
    ) -> (Tensor, Tensor, Tensor) {
        let p = seqs.len() as i64;
        let t = targets.first().map_or(0, |t| t.len()) as i64;
        let (n, nl) = (self.cfg.intermediate_size as i64, self.blocks.len() as i64);
        let batch = left_pad(seqs, self.device);
        let (kv, pos, mask, last_ids) = self.prefix(&batch);
        let rows = t.max(1);
        let h0 = Tensor::embedding(&self.embed, &last_ids, -1, false, false)
            .expand([p, rows, -1], false);
        let mut hooks = Hooks {
            capture_ff: true,
            ..Hooks::default()
        };
        let leaves: Vec<Tensor> = (0..nl)
            .map(|_| Tensor::zeros([p, rows, n], (self.kind, self.device)).set_requires_grad(true))
            .collect();
        if t > 0 {
            for (l, leaf) in leaves.iter().enumerate() {
                hooks.grad_leaves.insert(l, leaf.shallow_clone());
            }
        }
        let h = self.step(h0, 0, &pos, &kv, Some(&mask), &mut hooks);
        let logits = self.logits(&h); // [P, rows, V]
        let acts = Tensor::stack(
            &hooks.ff.iter().map(|a| a.select(1, 0)).collect::<Vec<_>>(),
            1,
        )
        .to_kind(Kind::Float);
        if t == 0 {
            let empty = Tensor::zeros([p, 0], (Kind::Float, self.device));
            let grads = Tensor::zeros([p, 0, nl, n], (Kind::Float, self.device));
            return (empty, acts, grads);
        }
        let tgt = targets_tensor(targets, &[p, t, 1], self.device);
        let probs = Self::target_probs(&logits, &tgt).squeeze_dim(2); // [P, T]
        let grads = Tensor::run_backward(&[probs.sum(Kind::Float)], &leaves, false, false);
        let grads = Tensor::stack(&grads, 2).to_kind(Kind::Float); // [P, T, L, N]
        (probs.detach(), acts, grads)
    }

    /// Gradients by one no-grad full pass that keeps, per layer, the last position's state
    /// (the "tape"), then a backward written out by hand through that position only, all `T`
    /// targets as rows. Why by hand: autograd would need the last position re-run with
    /// gradients (a second read of every weight, forward and backward: 1.5x a forward for one
    /// prompt on a 135M model); this reads each weight once more, transposed. Earlier
    /// positions' keys and values do not depend on the last position, so they are constants.
    pub(crate) fn gradients_tape(
        &self,
        seqs: &[&[u32]],
        targets: &[Vec<u32>],
    ) -> (Tensor, Tensor, Tensor) {
        tch::no_grad(|| {
            let p = seqs.len() as i64;
            let t = targets.first().map_or(0, |t| t.len()) as i64;
            let (nh, kvh) = (self.cfg.num_heads as i64, self.cfg.num_kv_heads as i64);
            let (hd, nl) = (self.cfg.head_dim as i64, self.blocks.len());
            let batch = left_pad(seqs, self.device);
            let mut hooks = Hooks {
                capture_ff: true,
                capture_tape: true,
                ..Hooks::default()
            };
            let (h_last, _) = self.full(&batch.ids, &batch.pads, &mut hooks, KvMode::None);
            let h_last = h_last.expect("non-empty sequences give a last position");
            let acts = Tensor::cat(&hooks.ff, 1).to_kind(Kind::Float); // [P, L, N]

            // Top: dP_t/dh_L = rms_back(W^T (p_t (e_t - p))), rows = targets.
            let logits = self.logits(&h_last).squeeze_dim(1); // [P, V]
            let all = logits.softmax(-1, Kind::Float); // [P, V]
            let tgt = targets_tensor(targets, &[p, t], self.device);
            let probs = all.gather(1, &tgt, false); // [P, T]
            let d_logits =
                (all.unsqueeze(1).neg()
                    + Tensor::zeros([p, t, all.size()[1]], (Kind::Float, self.device))
                        .scatter_value(2, &tgt.unsqueeze(2), 1.0))
                    * probs.unsqueeze(2); // [P, T, V]
            let d_normed = d_logits.matmul(self.lm_head());
            let mut g = rms_back(&h_last, &self.norm, &d_normed); // [P, T, H]

            // Per layer, top down; the tape holds TAPE_PER_LAYER tensors per layer in pass order.
            let pos = (batch.len - 1) - Tensor::from_slice(&batch.pads).to_device(self.device);
            let (cos, sin) = self.cos_sin(&pos.unsqueeze(1)); // [P, 1, hd]
            let (cos, sin) = (cos.unsqueeze(1), sin.unsqueeze(1)); // [P, 1, 1, hd]
            let scale = (self.cfg.head_dim as f64).powf(-0.5);
            let rep = nh / kvh;
            let mut grads = Vec::with_capacity(nl);
            for (l, blk) in self.blocks.iter().enumerate().rev() {
                let tape = &hooks.tape[TAPE_PER_LAYER * l..TAPE_PER_LAYER * (l + 1)];
                let (h_in, q, k_all, v_all, att_p) =
                    (&tape[0], &tape[1], &tape[2], &tape[3], &tape[4]);
                let (h_mid, gate, up) = (&tape[5], &tape[6], &tape[7]);
                // FF block: h_out = h_mid + down(silu(gate) * up).
                let d_act = g.matmul(&blk.down.w); // [P, T, N]
                let sig = gate.sigmoid();
                let d_gate = &d_act * up * (&sig * (gate * (sig.ones_like() - &sig) + 1.0));
                let d_up = &d_act * gate.silu();
                let d_x2 = d_gate.matmul(&blk.gate.w) + d_up.matmul(&blk.up.w);
                let d_mid = &g + rms_back(h_mid, &blk.post_norm, &d_x2);
                grads.push(d_act);
                // Attention at the last position: out = sum_j a_j v_j over all keys j; only the
                // query and the last key/value depend on this position.
                let d_att = d_mid.matmul(&blk.o.w).view([p, t, nh, hd]).transpose(1, 2); // [P, nh, T, hd]
                let d_a = d_att.matmul(&v_all.transpose(-2, -1)); // [P, nh, T, S]
                let d_s = att_p
                    * (&d_a
                        - (att_p * &d_a).sum_dim_intlist([-1i64].as_slice(), true, None::<Kind>));
                let s_len = att_p.size()[3];
                let d_q = d_s.matmul(k_all) * scale; // [P, nh, T, hd]
                let d_k = d_s.narrow(-1, s_len - 1, 1) * q * scale;
                let d_v = att_p.narrow(-1, s_len - 1, 1) * &d_att;
                // GQA: query heads kv*rep + r share key/value head kv.
                let fold = |x: Tensor| {
                    x.view([p, kvh, rep, t, hd]).sum_dim_intlist(
                        [2i64].as_slice(),
                        false,
                        None::<Kind>,
                    )
                };
                let (d_k, d_v) = (fold(d_k), fold(d_v));
                // RoPE is a rotation: its transpose rotates back.
                let unrope = |x: &Tensor| x * &cos - rotate_half(&(x * &sin));
                let flat = |x: Tensor, heads: i64| x.transpose(1, 2).reshape([p, t, heads * hd]);
                let d_x1 = flat(unrope(&d_q), nh).matmul(&blk.q.w)
                    + flat(unrope(&d_k), kvh).matmul(&blk.k.w)
                    + flat(d_v, kvh).matmul(&blk.v.w);
                g = &d_mid + rms_back(h_in, &blk.in_norm, &d_x1);
            }
            grads.reverse();
            let grads = Tensor::stack(&grads, 2); // [P, T, L, N]
            (probs, acts, grads)
        })
    }

    /// Prefix keys/values and the last position's per-layer state of one prompt.
    pub(crate) fn prompt_cache(&self, seq: &[u32]) -> PromptCache {
        tch::no_grad(|| {
            let batch = left_pad(&[seq], self.device);
            let (kv, pos, _mask, last_ids) = self.prefix(&batch);
            let h0 = Tensor::embedding(&self.embed, &last_ids, -1, false, false);
            let mut hooks = Hooks {
                capture_inputs: true,
                capture_ff: true,
                capture_pre_ff: true,
                ..Hooks::default()
            };
            let h = self.step(h0, 0, &pos, &kv, None, &mut hooks);
            let mut inputs = hooks.inputs;
            inputs.push(h);
            PromptCache {
                kv,
                pos,
                inputs,
                acts: hooks.ff,
                pre_ff: hooks.pre_ff,
            }
        })
    }

    fn patch_hooks(&self, vars: &[&[Patch]], shape: impl Fn(usize) -> Vec<i64>) -> Hooks {
        crate::hooks::patch_hooks(
            vars,
            self.cfg.intermediate_size,
            self.cfg.hidden_size,
            self.kind,
            self.device,
            shape,
        )
    }

    /// Target probabilities `[V, T]` under each patch variant, recomputing only the last
    /// position from each variant's lowest patched layer up, with the cached prefix.
    pub(crate) fn sweep(
        &self,
        cache: &PromptCache,
        targets: &[u32],
        variants: &[Vec<Patch>],
        max_batch: usize,
    ) -> Tensor {
        let nl = self.blocks.len();
        let t = targets.len() as i64;
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, v) in variants.iter().enumerate() {
            let low = v.iter().map(|p| p.layer).min().unwrap_or(nl);
            groups.entry(low).or_default().push(i);
        }
        let tg: Vec<i64> = targets.iter().map(|&x| x as i64).collect();
        let mut out = Tensor::zeros([variants.len() as i64, t], (Kind::Float, self.device));
        tch::no_grad(|| {
            for (&low, idxs) in &groups {
                for chunk in idxs.chunks(max_batch.max(1)) {
                    let vc = chunk.len() as i64;
                    let h = if low == nl {
                        cache.inputs[nl].expand([1, vc, -1], false)
                    } else {
                        let vars: Vec<&[Patch]> =
                            chunk.iter().map(|&i| variants[i].as_slice()).collect();
                        let mut hooks = self.patch_hooks(&vars, |w| vec![1, vc, w as i64]);
                        let h0 = cache.inputs[low].expand([1, vc, -1], false);
                        self.step(h0, low, &cache.pos, &cache.kv, None, &mut hooks)
                    };
                    let tgt = Tensor::from_slice(&tg)
                        .to_device(self.device)
                        .expand([1, vc, t], false);
                    let probs = Self::target_probs(&self.logits(&h), &tgt).squeeze_dim(0);
                    copy_rows(&mut out, chunk, &probs, self.device);
                }
            }
        });
        out
    }

    /// Same as [`Llama::sweep`] by full recomputation of the whole prompt per variant.
    pub(crate) fn sweep_naive(
        &self,
        seq: &[u32],
        targets: &[u32],
        variants: &[Vec<Patch>],
        max_batch: usize,
    ) -> Tensor {
        let t = targets.len() as i64;
        let tg: Vec<i64> = targets.iter().map(|&x| x as i64).collect();
        let mut outs = Vec::new();
        tch::no_grad(|| {
            let batch = left_pad(&[seq], self.device);
            for chunk in variants.chunks(max_batch.max(1)) {
                let vc = chunk.len() as i64;
                let vars: Vec<&[Patch]> = chunk.iter().map(|v| v.as_slice()).collect();
                let mut hooks = self.patch_hooks(&vars, |w| vec![vc, 1, w as i64]);
                let ids = batch.ids.expand([vc, -1], false);
                let pads = vec![0i64; vc as usize];
                let (h, _) = self.full(&ids, &pads, &mut hooks, KvMode::None);
                let h = h.unwrap_or_else(|| {
                    Tensor::zeros(
                        [vc, 1, self.cfg.hidden_size as i64],
                        (self.kind, self.device),
                    )
                });
                let tgt = Tensor::from_slice(&tg)
                    .to_device(self.device)
                    .expand([vc, 1, t], false);
                outs.push(Self::target_probs(&self.logits(&h), &tgt).squeeze_dim(1));
            }
        });
        if outs.is_empty() {
            return Tensor::zeros([0, t], (Kind::Float, self.device));
        }
        Tensor::cat(&outs, 0)
    }

    /// IG path gradients `[layers, A, T, N]`: layer `l`'s activation replaced by alpha * a.
    pub(crate) fn scaled_gradients(
        &self,
        cache: &PromptCache,
        targets: &[u32],
        layers: &[usize],
        alphas: &[f32],
        max_batch: usize,
    ) -> Tensor {
        let n = self.cfg.intermediate_size as i64;
        crate::hooks::ig_path_gradients(
            layers,
            alphas,
            targets,
            max_batch,
            n,
            self.device,
            |l, al, tg| {
                let rc = al.len() as i64;
                let al = Tensor::from_slice(al)
                    .to_device(self.device)
                    .to_kind(self.kind)
                    .reshape([1, rc, 1]);
                let leaf = (&cache.acts[l] * al).detach().set_requires_grad(true);
                let mut hooks = Hooks {
                    ff_replace: Some((l, leaf.shallow_clone())),
                    ..Hooks::default()
                };
                let h0 = cache.inputs[l].expand([1, rc, -1], false);
                let h = self.step(h0, l, &cache.pos, &cache.kv, None, &mut hooks);
                let tgt = Tensor::from_slice(tg)
                    .to_device(self.device)
                    .reshape([1, rc, 1]);
                let probs = Self::target_probs(&self.logits(&h), &tgt);
                let g = Tensor::run_backward(&[probs.sum(Kind::Float)], &[&leaf], false, false);
                g[0].squeeze_dim(0).to_kind(Kind::Float)
            },
        )
    }

    /// Log-probability increase `[T, L, N]` (see the crate docs for the definition).
    pub(crate) fn log_prob_increase(&self, cache: &PromptCache, targets: &[u32]) -> Tensor {
        tch::no_grad(|| {
            let nl = self.blocks.len();
            let (n, hsz, vocab) = (
                self.cfg.intermediate_size as i64,
                self.cfg.hidden_size as i64,
                self.cfg.vocab_size as i64,
            );
            let t = targets.len() as i64;
            let tg: Vec<i64> = targets.iter().map(|&x| x as i64).collect();
            let tg = Tensor::from_slice(&tg).to_device(self.device);
            let fin = cache.inputs[nl].reshape([1, hsz]).to_kind(Kind::Float);
            let rs = (fin
                .pow_tensor_scalar(2)
                .mean_dim([-1i64].as_slice(), true, Kind::Float)
                + self.cfg.rms_norm_eps)
                .rsqrt();
            let logp = |x: &Tensor| -> Tensor {
                let y = (x.to_kind(Kind::Float) * &rs).to_kind(self.kind) * &self.norm.w;
                let lp = y
                    .linear(self.lm_head(), None::<Tensor>)
                    .to_kind(Kind::Float)
                    .log_softmax(-1, Kind::Float);
                let rows = lp.size()[0];
                lp.gather(1, &tg.unsqueeze(0).expand([rows, t], false), false)
            };
            // Rows per lm_head call, so that a chunk's logits stay near 2^26 floats.
            let chunk = ((1i64 << 26) / vocab).clamp(1, n);
            let mut layers = Vec::with_capacity(nl);
            for l in 0..nl {
                let r = cache.pre_ff[l].reshape([1, hsz]);
                let base = logp(&r); // [1, T]
                let a = cache.acts[l].reshape([n, 1]);
                let wd = self.blocks[l].down.w.transpose(0, 1); // [N, H]
                let mut parts = Vec::new();
                let mut start = 0;
                while start < n {
                    let len = chunk.min(n - start);
                    let x = &r + a.narrow(0, start, len) * wd.narrow(0, start, len);
                    parts.push(logp(&x) - &base);
                    start += len;
                }
                layers.push(Tensor::cat(&parts, 0).transpose(0, 1)); // [T, N]
            }
            Tensor::stack(&layers, 1) // [T, L, N]
        })
    }

    /// Greedy generation: new token ids and the sum of FF activations `[L, N]` over the
    /// positions that predicted them (with their count).
    pub(crate) fn generate(
        &self,
        seq: &[u32],
        max_new: usize,
        eos: &[u32],
    ) -> (Vec<u32>, Tensor, usize) {
        tch::no_grad(|| {
            let max_pos = self.cfg.max_position_embeddings;
            let batch = left_pad(&[seq], self.device);
            let mut hooks = Hooks {
                capture_ff: true,
                ..Hooks::default()
            };
            let (h, mut kv) = self.full(&batch.ids, &batch.pads, &mut hooks, KvMode::Keep);
            let first_acts = Tensor::cat(&hooks.ff, 1)
                .squeeze_dim(0)
                .to_kind(Kind::Float);
            let Some(mut h) = h.filter(|_| max_new > 0) else {
                return (Vec::new(), first_acts, 1);
            };
            let mut acts = first_acts.shallow_clone();
            let mut sum = Tensor::zeros_like(&first_acts);
            let mut out = Vec::new();
            loop {
                let tok = self
                    .logits(&h)
                    .reshape([-1])
                    .argmax(0, false)
                    .int64_value(&[]) as u32;
                if eos.contains(&tok) {
                    break;
                }
                out.push(tok);
                sum += &acts;
                let next_pos = seq.len() + out.len() - 1;
                if out.len() >= max_new || next_pos >= max_pos {
                    break;
                }
                let mut hooks = Hooks {
                    capture_ff: true,
                    capture_kv: true,
                    ..Hooks::default()
                };
                let x = self.embed_ids(&[tok as i64], &[1, 1]);
                let pos = Tensor::from_slice(&[next_pos as i64]).to_device(self.device);
                h = self.step(x, 0, &pos, &kv, None, &mut hooks);
                for (l, (k, v)) in hooks.kv.into_iter().enumerate() {
                    kv[l] = (
                        Tensor::cat(&[&kv[l].0, &k], 2),
                        Tensor::cat(&[&kv[l].1, &v], 2),
                    );
                }
                acts = Tensor::cat(&hooks.ff, 1)
                    .squeeze_dim(0)
                    .to_kind(Kind::Float);
            }
            if out.is_empty() {
                return (out, first_acts, 1);
            }
            let count = out.len();
            (out, sum, count)
        })
    }
}

#[cfg(test)]
mod tape_tests {
    use crate::model::Arch;
    use crate::{HfModel, LoadOptions, ModelSource};
    use tch::Tensor;

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let scale = b.abs().max().double_value(&[]).max(1e-12);
        (a - b).abs().max().double_value(&[]) / scale
    }

    /// The hand-written backward through the last position gives autograd's gradients, for a
    /// left-padded batch of prompts of different lengths and several targets each.
    #[test]
    fn hand_written_backward_equals_autograd() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/models/stories260k"
        );
        assert!(
            std::path::Path::new(dir).join("config.json").exists(),
            "missing {dir}: the real stories260k model from ../shared is needed"
        );
        let model = HfModel::load(&ModelSource::parse(dir), &LoadOptions::default()).unwrap();
        let Arch::Llama(llama) = &model.arch else {
            panic!("stories260k is a Llama")
        };
        let texts = [
            "Once upon a time, there was a little girl named Lily. She",
            "The dog ran",
            "One day, Tom went to the park with his mom and saw a big red",
        ];
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| model.encode(t).unwrap()).collect();
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let targets = vec![vec![264, 29, 350], vec![17, 264, 1], vec![400, 3, 264]];
        let (p_tape, a_tape, g_tape) = llama.gradients_tape(&refs, &targets);
        let (p_auto, a_auto, g_auto) = llama.gradients_autograd(&refs, &targets);
        assert_eq!(g_tape.size(), vec![3, 3, 5, 172]);
        assert!(max_rel(&p_tape, &p_auto) < 1e-5, "probs");
        assert!(max_rel(&a_tape, &a_auto) < 1e-5, "activations");
        let err = max_rel(&g_tape, &g_auto);
        eprintln!(
            "hand-written vs autograd: max relative error {err:e}, max abs grad {:e}",
            g_auto.abs().max().double_value(&[])
        );
        assert!(err < 1e-4, "gradients differ: max relative error {err}");
    }
}
