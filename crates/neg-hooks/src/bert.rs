//! BERT masked LM (`BertForMaskedLM`) in libtorch: post-LayerNorm encoder and the
//! `cls.predictions` head (transform dense + GELU + LayerNorm, decoder tied to the word
//! embeddings unless the checkpoint has its own, plus a bias).
//!
//! The measured position of each row is its single `[MASK]`. Batches are right-padded (absolute
//! positions, so padding after the tokens changes nothing once its keys are masked).
//! Everything is bidirectional: a patch at layer l changes every position above l, so the sweep
//! path reuses only the hidden states below the lowest patched layer.

use neg_core::Patch;
use tch::{Device, Kind, Tensor};

use crate::llama::{ForwardTensors, GradientTensors};

use crate::config::BertConfig;
use crate::error::Result;
use crate::hooks::{copy_rows, targets_tensor, FfEdits, Focus, Hooks, Record, Replacement};
use crate::loader::Weights;
use crate::nn::{LayerNorm, Linear, MASKED};

/// One encoder layer (post-LayerNorm): self-attention, then the GELU FF block.
struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// A BERT masked LM.
pub struct Bert {
    pub(crate) cfg: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    head_dense: Linear,
    head_norm: LayerNorm,
    decoder: Option<Tensor>,
    decoder_bias: Tensor,
    pub(crate) kind: Kind,
    pub(crate) device: Device,
}

/// A pass over layers `start..` ([`Bert::encode`]).
struct Encoded {
    /// The last layer's output `[B, S, H]`.
    hidden: Tensor,
    /// With `keep_inputs`, each layer's input then the last output (L - start + 1 tensors);
    /// else empty.
    layer_inputs: Vec<Tensor>,
}

/// One prompt's batch and each layer's input over its whole sequence (L + 1 tensors
/// `[1, S, H]`), reused by sweeps and IG.
pub(crate) struct PromptStates {
    pub batch: MaskedBatch,
    pub inputs: Vec<Tensor>,
}

/// A right-padded batch with each row's `[MASK]` position.
pub(crate) struct MaskedBatch {
    ids: Tensor,
    /// `[B, 1, 1, S]` additive key mask.
    mask: Tensor,
    /// `[B, S, 1]` bool, true at the `[MASK]`.
    focus: Tensor,
    /// `[B]` i64 `[MASK]` positions.
    pos: Tensor,
}

impl MaskedBatch {
    /// Where the hooks act: each row's `[MASK]`.
    fn focus(&self) -> Focus<'_> {
        Focus::Masked {
            positions: &self.pos,
            is_mask: &self.focus,
        }
    }

    /// The same rows, each repeated `r` times (row-major: row 0 r times, then row 1, ...).
    fn repeat_rows(&self, r: i64) -> Self {
        let rep = |t: &Tensor| t.repeat_interleave_self_int(r, 0, None::<i64>);
        Self {
            ids: rep(&self.ids),
            mask: rep(&self.mask),
            focus: rep(&self.focus),
            pos: rep(&self.pos),
        }
    }
}

impl Bert {
    pub(crate) fn load(
        cfg: BertConfig,
        ws: &mut Weights,
        kind: Kind,
        device: Device,
    ) -> Result<Self> {
        let (h, v) = (cfg.hidden_size as i64, cfg.vocab_size as i64);
        // BertForMaskedLM prefixes the encoder with `bert.`; a bare BertModel does not.
        let prefixed = ws.contains("bert.embeddings.word_embeddings.weight");
        let p = |name: &str| {
            if prefixed {
                format!("bert.{name}")
            } else {
                name.to_string()
            }
        };
        let eps = cfg.layer_norm_eps;
        let norm = |ws: &mut Weights, name: &str| LayerNorm::load(ws, name, h as usize, eps);
        let (hu, nu) = (cfg.hidden_size, cfg.intermediate_size);
        let word = ws.get(&p("embeddings.word_embeddings.weight"), &[v, h])?;
        let position = ws.get(
            &p("embeddings.position_embeddings.weight"),
            &[cfg.max_position_embeddings as i64, h],
        )?;
        let token_type = ws.get(
            &p("embeddings.token_type_embeddings.weight"),
            &[cfg.type_vocab_size as i64, h],
        )?;
        let emb_norm = norm(ws, &p("embeddings.LayerNorm"))?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let l = p(&format!("encoder.layer.{i}"));
            layers.push(Layer {
                q: Linear::load(ws, &format!("{l}.attention.self.query"), hu, hu, true)?,
                k: Linear::load(ws, &format!("{l}.attention.self.key"), hu, hu, true)?,
                v: Linear::load(ws, &format!("{l}.attention.self.value"), hu, hu, true)?,
                attn_out: Linear::load(ws, &format!("{l}.attention.output.dense"), hu, hu, true)?,
                attn_norm: norm(ws, &format!("{l}.attention.output.LayerNorm"))?,
                inter: Linear::load(ws, &format!("{l}.intermediate.dense"), nu, hu, true)?,
                out: Linear::load(ws, &format!("{l}.output.dense"), hu, nu, true)?,
                out_norm: norm(ws, &format!("{l}.output.LayerNorm"))?,
            });
        }
        let head_dense = Linear::load(ws, "cls.predictions.transform.dense", hu, hu, true)?;
        let head_norm = norm(ws, "cls.predictions.transform.LayerNorm")?;
        // Missing decoder weight: tied to the word embeddings (how transformers saves it).
        let decoder = ws.get_opt(&["cls.predictions.decoder.weight"], &[v, h])?;
        let decoder_bias = ws.get_any(
            &["cls.predictions.bias", "cls.predictions.decoder.bias"],
            &[v],
        )?;
        Ok(Self {
            cfg,
            word,
            position,
            token_type,
            emb_norm,
            layers,
            head_dense,
            head_norm,
            decoder,
            decoder_bias,
            kind,
            device,
        })
    }

    fn gelu(&self, x: &Tensor) -> Tensor {
        gelu(x, self.cfg.gelu_approximate)
    }

    /// Right-pads `seqs`; `mask_pos[b]` is row b's `[MASK]` index.
    pub(crate) fn batch(&self, seqs: &[&[u32]], mask_pos: &[usize]) -> MaskedBatch {
        let s = seqs.iter().map(|x| x.len()).max().unwrap_or(0);
        let b = seqs.len() as i64;
        let mut flat = Vec::with_capacity(seqs.len() * s);
        let mut valid = Vec::with_capacity(seqs.len() * s);
        let mut focus = vec![0u8; seqs.len() * s];
        for (i, x) in seqs.iter().enumerate() {
            flat.extend(x.iter().map(|&t| t as i64));
            flat.extend(std::iter::repeat_n(0i64, s - x.len()));
            valid.extend(std::iter::repeat_n(1.0f32, x.len()));
            valid.extend(std::iter::repeat_n(0.0f32, s - x.len()));
            focus[i * s + mask_pos[i]] = 1;
        }
        let s = s as i64;
        let ids = Tensor::from_slice(&flat)
            .reshape([b, s])
            .to_device(self.device);
        let valid = Tensor::from_slice(&valid).reshape([b, 1, 1, s]);
        let mask = ((valid.ones_like() - &valid) * MASKED).to_device(self.device);
        let focus = Tensor::from_slice(&focus)
            .reshape([b, s, 1])
            .to_kind(Kind::Bool)
            .to_device(self.device);
        let pos: Vec<i64> = mask_pos.iter().map(|&p| p as i64).collect();
        let pos = Tensor::from_slice(&pos).to_device(self.device);
        MaskedBatch {
            ids,
            mask,
            focus,
            pos,
        }
    }

    fn embed(&self, ids: &Tensor) -> Tensor {
        let s = ids.size()[1];
        let positions = Tensor::arange(s, (Kind::Int64, self.device)).unsqueeze(0);
        let e = Tensor::embedding(&self.word, ids, -1, false, false)
            + Tensor::embedding(&self.position, &positions, -1, false, false)
            + self.token_type.get(0);
        self.emb_norm.forward(&e)
    }

    /// The `[B, 1, W]` focus rows of `x` `[B, S, W]`.
    fn focus(x: &Tensor, batch: &MaskedBatch) -> Tensor {
        batch.focus().select(x)
    }

    /// Layers `start..` from `h` (`[B, S, H]`, the input of layer `start`), with every layer's
    /// input kept when `keep_inputs`.
    fn encode(
        &self,
        h: Tensor,
        start: usize,
        batch: &MaskedBatch,
        hooks: &mut Hooks,
        keep_inputs: bool,
    ) -> Encoded {
        let ctx = LayerContext {
            num_heads: self.cfg.num_heads as i64,
            head_dim: (self.cfg.hidden_size / self.cfg.num_heads) as i64,
            kind: self.kind,
            gelu_tanh: self.cfg.gelu_approximate,
            batch,
        };
        let mut h = h;
        let mut inputs = Vec::new();
        for (l, layer) in self.layers.iter().enumerate().skip(start) {
            if keep_inputs {
                inputs.push(h.detach());
            }
            h = layer.forward(l, h, &ctx, hooks);
        }
        if keep_inputs {
            inputs.push(h.detach());
        }
        Encoded {
            hidden: h,
            layer_inputs: inputs,
        }
    }

    /// f32 MLM logits `[B, V]` at the focus of the final hidden states `[B, S, H]`.
    fn logits(&self, h: &Tensor, batch: &MaskedBatch) -> Tensor {
        let x = Self::focus(h, batch).squeeze_dim(1);
        let x = self
            .head_norm
            .forward(&self.gelu(&self.head_dense.forward(&x)));
        x.linear(
            self.decoder.as_ref().unwrap_or(&self.word),
            Some(&self.decoder_bias),
        )
        .to_kind(Kind::Float)
    }

    /// As `Llama::forward_tokens`: probabilities, activations, layer outputs when asked,
    /// logits, at each row's `[MASK]`.
    pub(crate) fn forward_tokens(
        &self,
        seqs: &[&[u32]],
        mask_pos: &[usize],
        targets: &[Vec<u32>],
        want_resid: bool,
    ) -> ForwardTensors {
        tch::no_grad(|| {
            let batch = self.batch(seqs, mask_pos);
            let mut hooks = Hooks::recording(Record {
                ff: true,
                resid: want_resid,
                ..Record::default()
            });
            let h = self
                .encode(self.embed(&batch.ids), 0, &batch, &mut hooks, false)
                .hidden;
            let logits = self.logits(&h, &batch);
            let t = targets.first().map_or(0, |t| t.len()) as i64;
            let tgt = targets_tensor(targets, &[seqs.len() as i64, t], self.device);
            let probs = logits.softmax(-1, Kind::Float).gather(1, &tgt, false);
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

    /// Probabilities `[P, T]`, activations `[P, L, N]`, gradients `[P, T, L, N]`: each prompt
    /// repeated T times in one differentiated batch (the whole sequence is needed: every
    /// position depends on the [MASK]'s activations through attention). `patches` (one variant,
    /// applied to every prompt) are the patch primitive's.
    pub(crate) fn gradients_tokens(
        &self,
        seqs: &[&[u32]],
        mask_pos: &[usize],
        targets: &[Vec<u32>],
        patches: &[Patch],
    ) -> GradientTensors {
        let p = seqs.len() as i64;
        let t = targets.first().map_or(0, |t| t.len()) as i64;
        let (n, nl) = (self.cfg.intermediate_size as i64, self.layers.len() as i64);
        let rows = t.max(1);
        let batch = self.batch(seqs, mask_pos).repeat_rows(rows);
        let leaves: Vec<Tensor> = (0..nl)
            .map(|_| {
                Tensor::zeros([p * rows, 1, n], (self.kind, self.device)).set_requires_grad(true)
            })
            .collect();
        let mut hooks = if patches.is_empty() {
            Hooks::default()
        } else {
            self.patch_hooks(&[patches])
        };
        hooks.record = Record {
            ff: true,
            ..Record::default()
        };
        if t > 0 {
            for (l, leaf) in leaves.iter().enumerate() {
                hooks.ff_edits.grad_leaves.insert(l, leaf.shallow_clone());
            }
        }
        let h = self
            .encode(self.embed(&batch.ids), 0, &batch, &mut hooks, false)
            .hidden;
        let logits = self.logits(&h, &batch); // [P * rows, V]
        let acts = Tensor::cat(&hooks.recorded.ff, 1)
            .view([p, rows, nl, n])
            .select(1, 0)
            .to_kind(Kind::Float);
        if t == 0 {
            return GradientTensors {
                probs: Tensor::zeros([p, 0], (Kind::Float, self.device)),
                acts,
                grads: Tensor::zeros([p, 0, nl, n], (Kind::Float, self.device)),
            };
        }
        let tgt = targets_tensor(targets, &[p * t, 1], self.device);
        let probs = logits.softmax(-1, Kind::Float).gather(1, &tgt, false); // [P*T, 1]
        let grads = Tensor::run_backward(&[probs.sum(Kind::Float)], &leaves, false, false);
        GradientTensors {
            probs: probs.detach().view([p, t]),
            acts,
            grads: Tensor::stack(&grads, 1)
                .view([p, t, nl, n])
                .to_kind(Kind::Float),
        }
    }

    /// Hooks applying the patches of `vars`, one variant per batch row.
    fn patch_hooks(&self, vars: &[&[Patch]]) -> Hooks {
        let v = vars.len() as i64;
        crate::hooks::patch_hooks(
            vars,
            self.cfg.intermediate_size,
            self.cfg.hidden_size,
            self.kind,
            self.device,
            |w| vec![v, 1, w as i64],
        )
    }

    /// Each layer's input for the whole sequence of one prompt.
    pub(crate) fn layer_inputs(&self, seq: &[u32], mask_pos: usize) -> PromptStates {
        tch::no_grad(|| {
            let batch = self.batch(&[seq], &[mask_pos]);
            let encoded = self.encode(
                self.embed(&batch.ids),
                0,
                &batch,
                &mut Hooks::default(),
                true,
            );
            PromptStates {
                batch,
                inputs: encoded.layer_inputs,
            }
        })
    }

    /// Target probabilities `[V, T]` per patch variant. `naive`: every variant from the
    /// embeddings; otherwise from the variant's lowest patched layer, reusing the unpatched
    /// hidden states below it.
    pub(crate) fn sweep(
        &self,
        seq: &[u32],
        mask_pos: usize,
        targets: &[u32],
        variants: &[Vec<Patch>],
        max_batch: usize,
        naive: bool,
    ) -> Tensor {
        let nl = self.layers.len();
        let t = targets.len() as i64;
        let PromptStates { batch, inputs } = self.layer_inputs(seq, mask_pos);
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, v) in variants.iter().enumerate() {
            let low = if naive {
                0
            } else {
                v.iter().map(|p| p.layer).min().unwrap_or(nl)
            };
            groups.entry(low).or_default().push(i);
        }
        let tg: Vec<i64> = targets.iter().map(|&x| x as i64).collect();
        let mut out = Tensor::zeros([variants.len() as i64, t], (Kind::Float, self.device));
        tch::no_grad(|| {
            for (&low, idxs) in &groups {
                for chunk in idxs.chunks(max_batch.max(1)) {
                    let vc = chunk.len() as i64;
                    let rows = batch.repeat_rows(vc);
                    let vars: Vec<&[Patch]> =
                        chunk.iter().map(|&i| variants[i].as_slice()).collect();
                    let mut hooks = self.patch_hooks(&vars);
                    let h0 = if naive {
                        self.embed(&rows.ids)
                    } else {
                        inputs[low].expand([vc, -1, -1], false)
                    };
                    let h = self.encode(h0, low, &rows, &mut hooks, false).hidden;
                    let tgt = Tensor::from_slice(&tg)
                        .to_device(self.device)
                        .expand([vc, t], false);
                    let probs = self
                        .logits(&h, &rows)
                        .softmax(-1, Kind::Float)
                        .gather(1, &tgt, false);
                    copy_rows(&mut out, chunk, &probs, self.device);
                }
            }
        });
        out
    }

    /// IG path gradients `[layers, A, T, N]` (see `Llama::scaled_gradients`).
    pub(crate) fn scaled_gradients(
        &self,
        seq: &[u32],
        mask_pos: usize,
        targets: &[u32],
        layers: &[usize],
        alphas: &[f32],
        max_batch: usize,
    ) -> Tensor {
        let n = self.cfg.intermediate_size as i64;
        let PromptStates { batch, inputs } = self.layer_inputs(seq, mask_pos);
        let acts = tch::no_grad(|| {
            let mut hooks = Hooks::recording(Record {
                ff: true,
                ..Record::default()
            });
            let _ = self.encode(inputs[0].shallow_clone(), 0, &batch, &mut hooks, false);
            hooks.recorded.ff
        });
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
                    .reshape([rc, 1, 1]);
                let leaf = (&acts[l] * al).detach().set_requires_grad(true); // [rc, 1, N]
                let mut hooks = Hooks {
                    ff_edits: FfEdits {
                        replace: Some(Replacement {
                            layer: l,
                            value: leaf.shallow_clone(),
                        }),
                        ..FfEdits::default()
                    },
                    ..Hooks::default()
                };
                let rows_b = batch.repeat_rows(rc);
                let h0 = inputs[l].expand([rc, -1, -1], false);
                let h = self.encode(h0, l, &rows_b, &mut hooks, false).hidden;
                let tgt = Tensor::from_slice(tg)
                    .to_device(self.device)
                    .reshape([rc, 1]);
                let probs = self
                    .logits(&h, &rows_b)
                    .softmax(-1, Kind::Float)
                    .gather(1, &tgt, false);
                let g = Tensor::run_backward(&[probs.sum(Kind::Float)], &[&leaf], false, false);
                g[0].squeeze_dim(1).to_kind(Kind::Float)
            },
        )
    }
}

/// What every layer of one pass needs besides its weights.
struct LayerContext<'a> {
    num_heads: i64,
    head_dim: i64,
    /// The model's kind: attention weights are computed in f32 and cast back to it.
    kind: Kind,
    /// GELU with the tanh approximation (`gelu_new`/`gelu_pytorch_tanh`) instead of erf.
    gelu_tanh: bool,
    batch: &'a MaskedBatch,
}

fn gelu(x: &Tensor, tanh: bool) -> Tensor {
    x.gelu(if tanh { "tanh" } else { "none" })
}

impl Layer {
    /// Layer `l` over the whole sequence `h` `[B, S, H]`; the hooks act at each row's `[MASK]`.
    fn forward(&self, l: usize, h: Tensor, ctx: &LayerContext, hooks: &mut Hooks) -> Tensor {
        let (b, s) = (h.size()[0], h.size()[1]);
        let (nh, hd) = (ctx.num_heads, ctx.head_dim);
        let scale = (hd as f64).powf(-0.5);
        let focus = ctx.batch.focus();
        hooks.layer_input(&h, &focus);
        let split = |t: Tensor| t.view([b, s, nh, hd]).transpose(1, 2);
        let q = split(self.q.forward(&h));
        let k = split(self.k.forward(&h));
        let v = split(self.v.forward(&h));
        let scores =
            (q.matmul(&k.transpose(-2, -1)) * scale).to_kind(Kind::Float) + &ctx.batch.mask;
        let probs = scores.softmax(-1, Kind::Float).to_kind(ctx.kind);
        let att = probs.matmul(&v).transpose(1, 2).reshape([b, s, -1]);
        let h1 = self.attn_norm.forward(&(self.attn_out.forward(&att) + &h));
        hooks.pre_ff(&h1, &focus);
        // The FF neuron (`blocks.{l}.mlp.hook_post`): GELU(intermediate(h1)), captured or
        // patched by `Hooks::ff`.
        let act = gelu(&self.inter.forward(&h1), ctx.gelu_tanh);
        let act = hooks.ff(l, act, &focus);
        let h = self.out_norm.forward(&(self.out.forward(&act) + &h1));
        hooks.resid(l, h, &focus)
    }
}
