//! Everything that reruns the last position of one prompt under edits: patch sweeps (fast and
//! naive), the patch primitive, IG path gradients, and LPI.

use neg_core::Patch;
use tch::{Kind, Tensor};

use super::passes::{left_pad, KvMode, PromptCache};
use super::Llama;
use crate::hooks::{copy_rows, FfEdits, Hooks, Record, Replacement};

/// One prompt under one patch variant: `[T]` probabilities, `[L, N]` activations after the
/// patches and, when asked, `[T, L, N]` gradients, all f32.
pub(crate) struct PatchedTensors {
    pub probs: Tensor,
    pub acts: Tensor,
    pub grads: Option<Tensor>,
}

impl Llama {
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
                let pass = self.full(&ids, &pads, None, &mut hooks, KvMode::None);
                let h = pass.last_hidden.unwrap_or_else(|| {
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

    /// The patch primitive: one prompt with one variant's patches at its last position, by a
    /// one-token pass of `T` rows (one per target) from the cached prefix; with `grads`, by
    /// autograd through zero leaves added after the patches.
    pub(crate) fn patched_pass(
        &self,
        cache: &PromptCache,
        targets: &[u32],
        patches: &[Patch],
        grads: bool,
    ) -> PatchedTensors {
        let (n, nl) = (self.cfg.intermediate_size as i64, self.blocks.len());
        let rows = (targets.len() as i64).max(1);
        let mut hooks = self.patch_hooks(&[patches], |w| vec![1, 1, w as i64]);
        hooks.record = Record {
            ff: true,
            ..Record::default()
        };
        let leaves: Vec<Tensor> = if grads && !targets.is_empty() {
            (0..nl)
                .map(|_| {
                    Tensor::zeros([1, rows, n], (self.kind, self.device)).set_requires_grad(true)
                })
                .collect()
        } else {
            Vec::new()
        };
        for (l, leaf) in leaves.iter().enumerate() {
            hooks.ff_edits.grad_leaves.insert(l, leaf.shallow_clone());
        }
        let run = |hooks: &mut Hooks| {
            let h0 = cache.inputs[0].expand([1, rows, -1], false);
            let h = self.step(h0, 0, &cache.pos, &cache.kv, None, hooks);
            let tg: Vec<i64> = targets.iter().map(|&x| x as i64).collect();
            let t = tg.len() as i64;
            let tgt = Tensor::from_slice(&tg)
                .to_device(self.device)
                .reshape([1, t, 1]);
            // Row j is target j's (rows = max(T, 1)).
            let logits = self.logits(&h).narrow(1, 0, t); // [1, T, V]
            Self::target_probs(&logits, &tgt).reshape([t])
        };
        let probs = if leaves.is_empty() {
            tch::no_grad(|| run(&mut hooks))
        } else {
            run(&mut hooks)
        };
        // Every row carries the same activations (the leaves are zeros): row 0 of each layer.
        let acts = Tensor::cat(
            &hooks
                .recorded
                .ff
                .iter()
                .map(|a| a.select(1, 0))
                .collect::<Vec<_>>(),
            0,
        )
        .to_kind(Kind::Float); // [L, N]
        let grads = grads.then(|| {
            if leaves.is_empty() {
                return Tensor::zeros([0, nl as i64, n], (Kind::Float, self.device));
            }
            let g = Tensor::run_backward(&[probs.sum(Kind::Float)], &leaves, false, false);
            // Row j of every leaf holds target j's gradient: [T, L, N].
            Tensor::stack(&g, 2).squeeze_dim(0).to_kind(Kind::Float)
        });
        PatchedTensors {
            probs: probs.detach(),
            acts,
            grads,
        }
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
                    ff_edits: FfEdits {
                        replace: Some(Replacement {
                            layer: l,
                            value: leaf.shallow_clone(),
                        }),
                        ..FfEdits::default()
                    },
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
                let wd = self.blocks[l].mlp.down.w.transpose(0, 1); // [N, H]
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
}
