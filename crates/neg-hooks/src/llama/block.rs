//! One decoder layer: [`Attention`], [`Mlp`] and the [`Block`] that joins them with its two
//! RMSNorms and residual adds, in the two pass shapes (full sequence, one token from a cache).

use tch::{Kind, Tensor};

use super::rope::{self, Angles};
use super::{AttentionTape, MlpTape};
use crate::config::LlamaConfig;
use crate::error::Result;
use crate::hooks::{Focus, Hooks};
use crate::loader::Weights;
use crate::nn::{Linear, RmsNorm};

/// Keys and values of one layer, one per key/value head (GQA heads are not repeated: a
/// query head reads its group's): `[B, kv_heads, p, hd]` each.
pub(crate) struct Kv {
    pub keys: Tensor,
    pub values: Tensor,
}

impl Kv {
    /// The same tensors, shared (no copy).
    pub fn shallow_clone(&self) -> Self {
        Kv {
            keys: self.keys.shallow_clone(),
            values: self.values.shallow_clone(),
        }
    }
}

/// Rotated queries `[B, heads, s, hd]`, keys and values `[B, kv_heads, s, hd]`.
pub(crate) struct Qkv {
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
}

/// `a` `[B, G, r, n]` times `b` `[1, G, n, m]` (one matrix per group, the same for every batch
/// element) as `[B, G, r, m]`. The batch is folded into `a`'s rows, so that `b` (a shared
/// prefix's keys or values) is not copied once per element, as a broadcasting matmul would.
pub(crate) fn matmul_shared(a: &Tensor, b: &Tensor) -> Tensor {
    let s = a.size();
    let (bs, g, r, n) = (s[0], s[1], s[2], s[3]);
    let m = b.size()[3];
    a.transpose(0, 1)
        .reshape([g, bs * r, n])
        .matmul(&b.squeeze_dim(0))
        .view([g, bs, r, m])
        .transpose(0, 1)
}

/// Self-attention with rotary embeddings and grouped-query heads.
pub(crate) struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    /// The model's kind: attention weights are computed in f32 and cast back to it.
    kind: Kind,
}

impl Attention {
    fn load(ws: &mut Weights, prefix: &str, cfg: &LlamaConfig, kind: Kind) -> Result<Self> {
        let (h, nh, kvh, hd) = (
            cfg.hidden_size,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
        );
        let p = format!("{prefix}.self_attn");
        Ok(Self {
            q: Linear::load(ws, &format!("{p}.q_proj"), nh * hd, h, cfg.qkv_bias)?,
            k: Linear::load(ws, &format!("{p}.k_proj"), kvh * hd, h, cfg.qkv_bias)?,
            v: Linear::load(ws, &format!("{p}.v_proj"), kvh * hd, h, cfg.qkv_bias)?,
            o: Linear::load(ws, &format!("{p}.o_proj"), h, nh * hd, cfg.o_bias)?,
            num_heads: nh as i64,
            num_kv_heads: kvh as i64,
            head_dim: hd as i64,
            kind,
        })
    }

    /// `1 / sqrt(head_dim)`.
    pub fn scale(&self) -> f64 {
        (self.head_dim as f64).powf(-0.5)
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> i64 {
        self.num_heads / self.num_kv_heads
    }

    /// Per-query-head rows `[B, heads, r, n]` as per-key/value-head rows
    /// `[B, kv_heads, group * r, n]` (query head `kv * group + j` is kv head `kv`'s rows
    /// `j * r ..`), so that one matmul per kv head serves its whole group, without repeating
    /// its keys and values.
    pub fn grouped(&self, x: &Tensor) -> Tensor {
        let s = x.size();
        x.reshape([s[0], self.num_kv_heads, self.group_size() * s[2], s[3]])
    }

    /// The inverse of [`Self::grouped`]: `[B, kv_heads, group * r, n]` as `[B, heads, r, n]`.
    pub fn ungrouped(&self, x: &Tensor) -> Tensor {
        let s = x.size();
        x.reshape([s[0], self.num_heads, s[2] / self.group_size(), s[3]])
    }

    /// Keys or values `[B, kv_heads, p, hd]` repeated for every query head `[B, heads, p, hd]`
    /// (only for the few rows of a one-token pass).
    pub fn repeated(&self, t: &Tensor) -> Tensor {
        let rep = self.group_size();
        if rep == 1 {
            return t.shallow_clone();
        }
        let s = t.size();
        t.unsqueeze(2)
            .expand([s[0], s[1], rep, s[2], s[3]], false)
            .reshape([s[0], s[1] * rep, s[2], s[3]])
    }

    /// Queries, keys and values of the normed input `x` `[B, s, H]`.
    pub fn qkv(&self, x: &Tensor, angles: &Angles) -> Qkv {
        let (b, s) = (x.size()[0], x.size()[1]);
        let heads = |t: Tensor, n: i64| t.view([b, s, n, self.head_dim]).transpose(1, 2);
        let q = heads(self.q.forward(x), self.num_heads);
        let k = heads(self.k.forward(x), self.num_kv_heads);
        let v = heads(self.v.forward(x), self.num_kv_heads);
        Qkv {
            q: rope::apply(&q, angles),
            k: rope::apply(&k, angles),
            v,
        }
    }

    /// Softmax of unscaled scores `q . k`: scaled in the model's type, then masked and
    /// normalized in f32 and cast back, as transformers' eager attention does. The mask is
    /// added in place: the scores are as large as attention gets (rows x every key), and a
    /// pass that allocates another such tensor costs a few percent of a few-shot pass. (The
    /// scale is not: tch's in-place scalar multiply rounds differently from the out-of-place
    /// one in bf16, by one unit in the last place.)
    fn weights(&self, scores: Tensor, mask: Option<&Tensor>) -> Tensor {
        let mut scores = (scores * self.scale()).to_kind(Kind::Float);
        if let Some(m) = mask {
            scores += m;
        }
        scores.softmax(-1, Kind::Float).to_kind(self.kind)
    }

    /// Full-sequence attention under `mask` `[B, 1, s, p + s]` (in the model's type), after
    /// the `p` positions of `shared` (`[1, kv_heads, p, hd]`) when given: the heads' output
    /// `[B, s, nh * hd]` (before `o`), the last row's attention weights `[B, heads, 1, p + s]`
    /// when `last_weights` (the tape needs them) and the keys and values attended to
    /// (`[B, kv_heads, p + s, hd]`; the prefix's copied into every row only for this call).
    ///
    /// All rows go through libtorch's fused attention (`scaled_dot_product_attention`, flash
    /// attention on CPU and CUDA): it never writes the rows x keys weights out, which for a
    /// few-shot batch (every own token over a 400-odd-token prefix) took 40% longer in eager
    /// matmul-softmax-matmul form. It agrees with the eager form to float rounding (the
    /// parity tests against transformers' eager attention hold at 1e-5). The last row's
    /// weights, one row per prompt, are computed eagerly beside it.
    fn full(
        &self,
        qkv: &Qkv,
        mask: &Tensor,
        shared: Option<&Kv>,
        last_weights: bool,
    ) -> (Tensor, Option<Tensor>, Kv) {
        let (b, s) = (qkv.q.size()[0], qkv.q.size()[2]);
        let (keys, values) = match shared {
            Some(kv) => {
                let along = |past: &Tensor, own: &Tensor| {
                    Tensor::cat(
                        &[past.expand([b, -1, -1, -1], false), own.shallow_clone()],
                        2,
                    )
                };
                (along(&kv.keys, &qkv.k), along(&kv.values, &qkv.v))
            }
            None => (qkv.k.shallow_clone(), qkv.v.shallow_clone()),
        };
        let out = Tensor::scaled_dot_product_attention(
            &qkv.q,
            &keys,
            &values,
            Some(mask),
            0.0,
            false,
            self.scale(),
            self.group_size() > 1,
        )
        .transpose(1, 2)
        .reshape([b, s, -1]);
        let weights = last_weights.then(|| {
            let q_last = qkv.q.narrow(2, s - 1, 1);
            let scores = self.ungrouped(&self.grouped(&q_last).matmul(&keys.transpose(-2, -1)));
            self.weights(scores, Some(&mask.narrow(2, s - 1, 1)))
        });
        (out, weights, Kv { keys, values })
    }

    /// One-token attention: each of the `R` rows of `qkv` attends to the cached `past` keys and
    /// values (`past_mask` `[B, 1, 1, p + 1]` masks their padding) and to itself. `[B, R, nh * hd]`.
    fn step(&self, qkv: &Qkv, past: &Kv, past_mask: Option<&Tensor>) -> Tensor {
        let (b, r) = (qkv.q.size()[0], qkv.q.size()[2]);
        let p = past.keys.size()[2];
        let s_past = self.ungrouped(&self.grouped(&qkv.q).matmul(&past.keys.transpose(-2, -1)));
        let (k_self, v_self) = (self.repeated(&qkv.k), self.repeated(&qkv.v));
        let s_self = (&qkv.q * &k_self).sum_dim_intlist([-1i64].as_slice(), true, None::<Kind>);
        let weights = self.weights(Tensor::cat(&[s_past, s_self], -1), past_mask);
        let from_past =
            self.ungrouped(&self.grouped(&weights.narrow(-1, 0, p)).matmul(&past.values));
        let out = from_past + weights.narrow(-1, p, 1) * &v_self;
        out.transpose(1, 2).reshape([b, r, -1])
    }
}

/// The SwiGLU feed-forward block: `down(SiLU(gate(x)) * up(x))`.
pub(crate) struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

/// The FF neurons of a normed input, with the two projections they are made of.
pub(crate) struct Neurons {
    pub gate: Tensor,
    pub up: Tensor,
    /// SiLU(gate) * up: the FF neuron activations (TransformerLens `blocks.{l}.mlp.hook_post`),
    /// the input of the down projection.
    pub act: Tensor,
}

impl Mlp {
    fn load(ws: &mut Weights, prefix: &str, cfg: &LlamaConfig) -> Result<Self> {
        let (h, n, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        let p = format!("{prefix}.mlp");
        Ok(Self {
            gate: Linear::load(ws, &format!("{p}.gate_proj"), n, h, bias)?,
            up: Linear::load(ws, &format!("{p}.up_proj"), n, h, bias)?,
            down: Linear::load(ws, &format!("{p}.down_proj"), h, n, bias)?,
        })
    }

    /// The FF neurons of `x`: SiLU(gate(x)) * up(x).
    pub fn neurons(&self, x: &Tensor) -> Neurons {
        let (gate, up) = (self.gate.forward(x), self.up.forward(x));
        let act = gate.silu() * &up;
        Neurons { gate, up, act }
    }
}

/// One decoder layer: `h + attention(in_norm(h))`, then `+ mlp(post_norm(.))`.
pub(crate) struct Block {
    pub in_norm: RmsNorm,
    pub attention: Attention,
    pub post_norm: RmsNorm,
    pub mlp: Mlp,
}

/// What a full pass needs at every layer.
pub(crate) struct FullContext<'a> {
    pub angles: Angles,
    /// `[B, 1, s, p + s]` causal + padding mask (`p`: the shared prefix's length, 0 without),
    /// in the model's type.
    pub mask: Tensor,
    /// Per layer, the keys and values of a prefix shared by every row (`[1, kv_heads, p, hd]`),
    /// which the sequence continues.
    pub shared: Option<&'a [Kv]>,
}

/// What a one-token pass needs at every layer.
pub(crate) struct StepContext<'a> {
    pub angles: Angles,
    /// Per layer, the cached keys and values the rows attend to.
    pub past: &'a [Kv],
    pub past_mask: Option<&'a Tensor>,
}

/// A layer's output and its keys and values.
pub(crate) struct BlockOutput {
    pub hidden: Tensor,
    pub kv: Kv,
}

impl Block {
    pub fn load(ws: &mut Weights, layer: usize, cfg: &LlamaConfig, kind: Kind) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let p = format!("model.layers.{layer}");
        Ok(Self {
            in_norm: RmsNorm::load(ws, &format!("{p}.input_layernorm.weight"), h, eps)?,
            post_norm: RmsNorm::load(ws, &format!("{p}.post_attention_layernorm.weight"), h, eps)?,
            attention: Attention::load(ws, &p, cfg, kind)?,
            mlp: Mlp::load(ws, &p, cfg)?,
        })
    }

    /// Keys and values of this layer for input `h` (a prefix pass needs nothing else).
    pub fn keys_values(&self, h: &Tensor, angles: &Angles) -> Kv {
        let qkv = self.attention.qkv(&self.in_norm.forward(h), angles);
        Kv {
            keys: qkv.k,
            values: qkv.v,
        }
    }

    /// Layer `layer` over a whole left-padded sequence `h` `[B, s, H]` (continuing the shared
    /// prefix of `ctx`, when given); the hooks act at the last position. The keys and values
    /// returned include the shared prefix's.
    pub fn forward_full(
        &self,
        layer: usize,
        h: Tensor,
        ctx: &FullContext,
        hooks: &mut Hooks,
    ) -> BlockOutput {
        let s = h.size()[1];
        hooks.layer_input(&h, &Focus::LastPosition);
        let qkv = self.attention.qkv(&self.in_norm.forward(&h), &ctx.angles);
        let shared = ctx.shared.map(|kv| &kv[layer]);
        let (attended, weights, kv) =
            self.attention
                .full(&qkv, &ctx.mask, shared, hooks.record.tape);
        if let Some(weights) = weights {
            // The prefix and the rows' own keys and values apart: the rows' copies of the
            // prefix (most of a few-shot prompt) are dropped with this layer.
            hooks.recorded.tape.attention.push(AttentionTape {
                input: h.narrow(1, s - 1, 1),
                query: qkv.q.narrow(2, s - 1, 1),
                shared: shared.map(Kv::shallow_clone),
                own: Kv {
                    keys: qkv.k.shallow_clone(),
                    values: qkv.v.shallow_clone(),
                },
                weights,
            });
        }
        let h = h + self.attention.o.forward(&attended);
        BlockOutput {
            hidden: self.feed_forward(layer, h, hooks, &Focus::LastPosition),
            kv,
        }
    }

    /// Layer `layer` for `R` rows `h` `[B, R, H]` at one position each, attending to the cache
    /// in `ctx` and to themselves; the hooks act on every row.
    pub fn forward_step(
        &self,
        layer: usize,
        h: Tensor,
        ctx: &StepContext,
        hooks: &mut Hooks,
    ) -> Tensor {
        hooks.layer_input(&h, &Focus::AllRows);
        let qkv = self.attention.qkv(&self.in_norm.forward(&h), &ctx.angles);
        let attended = self.attention.step(&qkv, &ctx.past[layer], ctx.past_mask);
        if hooks.record.kv {
            hooks.recorded.kv.push(Kv {
                keys: qkv.k,
                values: qkv.v,
            });
        }
        let h = h + self.attention.o.forward(&attended);
        self.feed_forward(layer, h, hooks, &Focus::AllRows)
    }

    /// The FF half: `h + down(hooks.ff(SiLU(gate(x)) * up(x)))` with `x = post_norm(h)`, then
    /// the residual hook. Where a Llama FF neuron is computed, and captured or patched.
    fn feed_forward(&self, layer: usize, h: Tensor, hooks: &mut Hooks, focus: &Focus) -> Tensor {
        hooks.pre_ff(&h, focus);
        let neurons = self.mlp.neurons(&self.post_norm.forward(&h));
        if hooks.record.tape {
            hooks.recorded.tape.mlp.push(MlpTape {
                residual: focus.select(&h),
                gate: focus.select(&neurons.gate),
                up: focus.select(&neurons.up),
            });
        }
        let act = hooks.ff(layer, neurons.act, focus);
        let h = h + self.mlp.down.forward(&act);
        hooks.resid(layer, h, focus)
    }
}
