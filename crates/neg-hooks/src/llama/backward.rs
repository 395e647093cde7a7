//! Gradients of target probabilities with respect to every FF neuron at the last position.
//!
//! With at least one target: one no-grad full pass records a [`Tape`] (per layer, the last
//! position's state), then a backward written out by hand runs through that position only,
//! all `T` targets as rows. In bf16/f16 the pass runs in the model's type; the backward keeps
//! the gradient it carries down the layers, and every elementwise step, in f32 (the tape is
//! cast per layer), since a half-precision chain would lose its digits over the layers it sums
//! through, and multiplies by the weights in their own type ([`by_weight`]), each product
//! accumulated in f32 and rounded once.
//!
//! Why by hand: autograd would need the last position re-run with gradients (a second read of
//! every weight, forward and backward: 1.5x a forward for one prompt on a 135M model); this
//! reads each weight once more, transposed. Earlier positions' keys and values do not depend
//! on the last position, so they are constants.
//!
//! Otherwise, and as the reference the tape is tested against: autograd through a no-grad
//! prefix pass and one differentiated one-token pass of `P x T` rows.

use tch::{Kind, Tensor};

use super::block::{matmul_shared, Attention, Block, Kv, Mlp};
use super::passes::{left_pad, KvMode};
use super::rope::{rotate_half, Angles};
use super::Llama;
use crate::hooks::{targets_tensor, Hooks, Record};

/// What the hand-written backward needs of one layer's attention, at the last position.
pub(crate) struct AttentionTape {
    /// The layer's input `[P, 1, H]`.
    pub input: Tensor,
    /// The rotated query `[P, nh, 1, hd]`.
    pub query: Tensor,
    /// The keys and values of the prefix every row shares, `[1, kv_heads, c, hd]`, when the
    /// pass had one: positions `0..c`.
    pub shared: Option<Kv>,
    /// The rows' own keys and values `[P, kv_heads, s, hd]`: positions `c..c + s = S`.
    pub own: Kv,
    /// The last row's attention weights `[P, nh, 1, S]`.
    pub weights: Tensor,
}

/// What the hand-written backward needs of one layer's FF block, at the last position.
pub(crate) struct MlpTape {
    /// The residual entering the FF block (layer input + attention output) `[P, 1, H]`.
    pub residual: Tensor,
    /// Gate and up projections `[P, 1, N]`.
    pub gate: Tensor,
    pub up: Tensor,
}

/// Per layer, in layer order, what a full pass with `Record::tape` recorded.
#[derive(Default)]
pub(crate) struct Tape {
    pub attention: Vec<AttentionTape>,
    pub mlp: Vec<MlpTape>,
}

/// Probabilities `[P, T]`, FF activations `[P, L, N]` and gradients `[P, T, L, N]`, all f32.
pub(crate) struct GradientTensors {
    pub probs: Tensor,
    pub acts: Tensor,
    pub grads: Tensor,
}

/// `t` as f32: itself (shared) when it is f32 already, else a cast copy. The backward's
/// elementwise steps run in f32 whatever the model's type (its weight products: [`by_weight`]).
fn f32(t: &Tensor) -> Tensor {
    if t.kind() == Kind::Float {
        t.shallow_clone()
    } else {
        t.to_kind(Kind::Float)
    }
}

/// `g` (f32) times the weight matrix `w`, as f32. Half-precision weights are multiplied in
/// their own type: libtorch's half matrix products accumulate in f32 and round the product
/// once, while the gradient chain and every elementwise step of the backward stay in f32.
/// Casting `w` to f32 instead reads and writes every weight matrix in every backward (three
/// times its bytes, then an f32 product): on SmolLM2 in bf16 that made NeurGrad about 20%
/// slower on CPU, and on a 7B model, whose backward rows are few, it is most of the backward's
/// memory traffic. What the rounding costs is measured in docs/PERFORMANCE.md ("Half
/// precision"): on SmolLM2, dP/da moves 9e-3 (bf16) and 2e-3 (f16) relative from the f32-weight
/// backward, against the half pass's own 6.8e-2 and 8.9e-3 from f32.
fn by_weight(g: &Tensor, w: &Tensor) -> Tensor {
    if w.kind() == Kind::Float {
        g.matmul(&f32(w))
    } else {
        g.to_kind(w.kind()).matmul(w).to_kind(Kind::Float)
    }
}

impl AttentionTape {
    fn to_f32(&self) -> Self {
        let kv = |kv: &Kv| Kv {
            keys: f32(&kv.keys),
            values: f32(&kv.values),
        };
        AttentionTape {
            input: f32(&self.input),
            query: f32(&self.query),
            shared: self.shared.as_ref().map(kv),
            own: kv(&self.own),
            weights: f32(&self.weights),
        }
    }
}

impl MlpTape {
    fn to_f32(&self) -> Self {
        MlpTape {
            residual: f32(&self.residual),
            gate: f32(&self.gate),
            up: f32(&self.up),
        }
    }
}

/// Gradients of one block, for `T` rows per prompt.
struct BlockGradients {
    /// dP/da of the layer's FF neurons `[P, T, N]`.
    neurons: Tensor,
    /// dP/d(layer input) `[P, T, H]`.
    input: Tensor,
}

impl Mlp {
    /// dP/da `[P, T, N]` of the FF neurons given dP/d(block output) `g` `[P, T, H]`: the FF
    /// block adds `down(a)` to the residual, so this is `g W_down`.
    fn neuron_gradient(&self, g: &Tensor) -> Tensor {
        by_weight(g, &self.down.w)
    }

    /// dP/dx of the normed input x given the neurons' gradient `d_act`, through
    /// `a = silu(gate(x)) * up(x)`.
    fn input_gradient(&self, tape: &MlpTape, d_act: &Tensor) -> Tensor {
        let (gate, up) = (&tape.gate, &tape.up);
        let sig = gate.sigmoid();
        let d_gate = d_act * up * (&sig * (gate * (sig.ones_like() - &sig) + 1.0));
        let d_up = d_act * gate.silu();
        by_weight(&d_gate, &self.gate.w) + by_weight(&d_up, &self.up.w)
    }
}

impl Attention {
    /// dP/dx of the normed input x at the last position given dP/d(attention output before
    /// `o`'s residual add) `d_mid` `[P, T, H]`: only the query and the last key/value depend on
    /// this position. `angles`: the last position's, `[P, 1, 1, hd]`.
    fn input_gradient(&self, tape: &AttentionTape, d_mid: &Tensor, angles: &Angles) -> Tensor {
        let (p, t) = (d_mid.size()[0], d_mid.size()[1]);
        let (nh, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let (scale, rep) = (self.scale(), self.group_size());
        let att_p = &tape.weights;
        let d_att = by_weight(d_mid, &self.o.w)
            .view([p, t, nh, hd])
            .transpose(1, 2); // [P, nh, T, hd]

        // Over the positions, in two parts: the shared prefix (one matrix for all rows) and
        // the rows' own; each kv head serves its group of query heads.
        let grouped = self.grouped(&d_att); // [P, kvh, rep * T, hd]
        let own_a = grouped.matmul(&tape.own.values.transpose(-2, -1));
        let d_a = match &tape.shared {
            Some(kv) => Tensor::cat(
                &[matmul_shared(&grouped, &kv.values.transpose(-2, -1)), own_a],
                -1,
            ),
            None => own_a,
        };
        let d_a = self.ungrouped(&d_a); // [P, nh, T, S]
        let d_s =
            att_p * (&d_a - (att_p * &d_a).sum_dim_intlist([-1i64].as_slice(), true, None::<Kind>));
        let s_len = att_p.size()[3];
        let d_s_grouped = self.grouped(&d_s); // [P, kvh, rep * T, S]
        let c = s_len - tape.own.keys.size()[2];
        let own_q = d_s_grouped.narrow(-1, c, s_len - c).matmul(&tape.own.keys);
        let d_q = match &tape.shared {
            Some(kv) => matmul_shared(&d_s_grouped.narrow(-1, 0, c), &kv.keys) + own_q,
            None => own_q,
        };
        let d_q = self.ungrouped(&d_q) * scale; // [P, nh, T, hd]
        let d_k = d_s.narrow(-1, s_len - 1, 1) * &tape.query * scale;
        let d_v = att_p.narrow(-1, s_len - 1, 1) * &d_att;
        // GQA: query heads kv*rep + r share key/value head kv.
        let fold = |x: Tensor| {
            x.view([p, kvh, rep, t, hd])
                .sum_dim_intlist([2i64].as_slice(), false, None::<Kind>)
        };
        let (d_k, d_v) = (fold(d_k), fold(d_v));
        // RoPE is a rotation: its transpose rotates back.
        let unrope = |x: &Tensor| x * &angles.cos - rotate_half(&(x * &angles.sin));
        let flat = |x: Tensor, heads: i64| x.transpose(1, 2).reshape([p, t, heads * hd]);
        by_weight(&flat(unrope(&d_q), nh), &self.q.w)
            + by_weight(&flat(unrope(&d_k), kvh), &self.k.w)
            + by_weight(&flat(d_v, kvh), &self.v.w)
    }
}

impl Block {
    /// Through one layer, top down, given dP/d(layer output) `g`.
    fn backward(
        &self,
        attention: &AttentionTape,
        mlp: &MlpTape,
        g: &Tensor,
        angles: &Angles,
    ) -> BlockGradients {
        // FF block: h_out = h_mid + down(silu(gate) * up).
        let d_act = self.mlp.neuron_gradient(g);
        let d_x2 = self.mlp.input_gradient(mlp, &d_act);
        let d_mid = g + self.post_norm.backward(&mlp.residual, &d_x2);
        // Attention: h_mid = h_in + o(attention(in_norm(h_in))).
        let d_x1 = self.attention.input_gradient(attention, &d_mid, angles);
        BlockGradients {
            neurons: d_act,
            input: &d_mid + self.in_norm.backward(&attention.input, &d_x1),
        }
    }
}

impl Llama {
    /// Probabilities, activations and gradients of every target and FF neuron: by the tape
    /// with at least one target (any dtype; the backward's chain in f32), else by autograd.
    pub(crate) fn gradients_tokens(
        &self,
        seqs: &[&[u32]],
        targets: &[Vec<u32>],
    ) -> GradientTensors {
        let has_targets = targets.first().is_some_and(|t| !t.is_empty());
        let non_empty = seqs.iter().all(|s| !s.is_empty());
        if has_targets && non_empty {
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
    ) -> GradientTensors {
        let p = seqs.len() as i64;
        let t = targets.first().map_or(0, |t| t.len()) as i64;
        let (n, nl) = (self.cfg.intermediate_size as i64, self.blocks.len() as i64);
        let batch = left_pad(seqs, self.device);
        let prefix = self.prefix(&batch);
        let rows = t.max(1);
        let h0 = self
            .embed
            .forward(&prefix.last_ids)
            .expand([p, rows, -1], false);
        let mut hooks = Hooks::recording(Record {
            ff: true,
            ..Record::default()
        });
        let leaves: Vec<Tensor> = (0..nl)
            .map(|_| Tensor::zeros([p, rows, n], (self.kind, self.device)).set_requires_grad(true))
            .collect();
        if t > 0 {
            for (l, leaf) in leaves.iter().enumerate() {
                hooks.ff_edits.grad_leaves.insert(l, leaf.shallow_clone());
            }
        }
        let h = self.step(
            h0,
            0,
            &prefix.pos,
            &prefix.kv,
            Some(&prefix.mask),
            &mut hooks,
        );
        let logits = self.logits(&h); // [P, rows, V]
        let acts = Tensor::stack(
            &hooks
                .recorded
                .ff
                .iter()
                .map(|a| a.select(1, 0))
                .collect::<Vec<_>>(),
            1,
        )
        .to_kind(Kind::Float);
        if t == 0 {
            return GradientTensors {
                probs: Tensor::zeros([p, 0], (Kind::Float, self.device)),
                acts,
                grads: Tensor::zeros([p, 0, nl, n], (Kind::Float, self.device)),
            };
        }
        let tgt = targets_tensor(targets, &[p, t, 1], self.device);
        let probs = Self::target_probs(&logits, &tgt).squeeze_dim(2); // [P, T]
        let grads = Tensor::run_backward(&[probs.sum(Kind::Float)], &leaves, false, false);
        GradientTensors {
            probs: probs.detach(),
            acts,
            grads: Tensor::stack(&grads, 2).to_kind(Kind::Float), // [P, T, L, N]
        }
    }

    /// Gradients by one no-grad full pass that records the [`Tape`], then the hand-written
    /// backward through the last position (see the module docs).
    pub(crate) fn gradients_tape(&self, seqs: &[&[u32]], targets: &[Vec<u32>]) -> GradientTensors {
        tch::no_grad(|| {
            let p = seqs.len() as i64;
            let t = targets.first().map_or(0, |t| t.len()) as i64;
            // A prefix all rows share runs once; each row's own tokens continue it.
            let (shared, own) = self.split_shared(seqs);
            let c = shared.as_ref().map_or(0, |p| p.len);
            let batch = left_pad(&own, self.device);
            let mut hooks = Hooks::recording(Record {
                ff: true,
                tape: true,
                ..Record::default()
            });
            let h_last = self
                .full(
                    &batch.ids,
                    &batch.pads,
                    shared.as_ref(),
                    &mut hooks,
                    KvMode::None,
                )
                .last_hidden
                .expect("non-empty sequences give a last position");
            let acts = Tensor::cat(&hooks.recorded.ff, 1).to_kind(Kind::Float); // [P, L, N]

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
            let d_normed = by_weight(&d_logits, self.lm_head());
            let h_last = f32(&h_last);
            let mut g = self.norm.backward(&h_last, &d_normed); // [P, T, H]

            // Per layer, top down, at each row's last position.
            let pos = (batch.len - 1 + c) - Tensor::from_slice(&batch.pads).to_device(self.device);
            let angles = self.rope.angles(&pos.unsqueeze(1)); // [P, 1, hd]
            let angles = Angles {
                cos: f32(&angles.cos).unsqueeze(1),
                sin: f32(&angles.sin).unsqueeze(1),
            }; // [P, 1, 1, hd]
            let tape = &hooks.recorded.tape;
            let mut grads = Vec::with_capacity(self.blocks.len());
            for (l, blk) in self.blocks.iter().enumerate().rev() {
                let (attention, mlp) = (tape.attention[l].to_f32(), tape.mlp[l].to_f32());
                let layer = blk.backward(&attention, &mlp, &g, &angles);
                grads.push(layer.neurons);
                g = layer.input;
            }
            grads.reverse();
            GradientTensors {
                probs,
                acts,
                grads: Tensor::stack(&grads, 2), // [P, T, L, N]
            }
        })
    }
}
