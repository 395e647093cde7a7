//! The [`neg_core::ModelAdapter`] implementation of [`HfModel`].

use ndarray::{Array, Array2, Array3, Array4, Axis, Dimension, IxDyn};
use neg_core::{
    AdapterError, CaptureOptions, CapturedForward, Forward, Generation, Gradients, ModelAdapter,
    ModelKind, PassOutputs, Patch, PatchedPass, TargetedPrompt,
};
use tch::{Device, Kind, Tensor};

use crate::error::{HooksError, Result};
use crate::guard::libtorch;
use crate::model::{Arch, HfModel};
use crate::tokenize;

/// A tensor as an f32 `ndarray` of dimension `D`.
pub(crate) fn to_array<D: Dimension>(t: &Tensor) -> Result<Array<f32, D>> {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let flat = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view(-1);
    let v = Vec::<f32>::try_from(&flat)?;
    let a = Array::from_shape_vec(IxDyn(&shape), v)
        .map_err(|e| HooksError::Torch(tch::TchError::Shape(format!("tensor to array: {e}"))))?;
    a.into_dimensionality::<D>()
        .map_err(|e| HooksError::Torch(tch::TchError::Shape(format!("tensor to array: {e}"))))
}

/// [`HfModel::forward_impl`]'s answer: the forward pass at each prompt's position.
pub(crate) struct ForwardArrays {
    /// [P, T]
    pub probs: Array2<f32>,
    /// [P, L, N]
    pub activations: Array3<f32>,
    /// [P, L, H], when asked for.
    pub residual: Option<Array3<f32>>,
    /// [P, vocab]
    pub logits: Array2<f32>,
}

/// Row `j` of `chunk` (one chunk's result, in chunk order) into row `rows[j]` of `dst` (the
/// whole call's result, in input order).
fn scatter<D: ndarray::RemoveAxis>(dst: &mut Array<f32, D>, chunk: &Array<f32, D>, rows: &[usize]) {
    for (j, &row) in rows.iter().enumerate() {
        dst.index_axis_mut(Axis(0), row)
            .assign(&chunk.index_axis(Axis(0), j));
    }
}

impl HfModel {
    fn encode_all(&self, prompts: &[TargetedPrompt]) -> Result<Vec<Vec<u32>>> {
        prompts.iter().map(|p| self.encode(&p.text)).collect()
    }

    fn not_bert(&self, what: &str) -> std::result::Result<(), AdapterError> {
        if self.is_causal() {
            Ok(())
        } else {
            Err(AdapterError::Unsupported {
                what: what.into(),
                model: self.id.clone(),
            })
        }
    }

    /// Index of the `[MASK]` in each (already validated) sequence; 0 for causal LMs.
    fn mask_positions(&self, seqs: &[&[u32]]) -> Vec<usize> {
        seqs.iter()
            .map(|s| {
                self.mask_id
                    .and_then(|m| s.iter().position(|&t| t == m))
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Prompt chunks whose rows (prompts x `rows_per_prompt`) fit `max_batch`.
    fn chunk_len(&self, rows_per_prompt: usize) -> usize {
        (self.opts.max_batch / rows_per_prompt.max(1)).max(1)
    }

    /// The prompts' indices in chunks of `step`, shortest sequences first, so that each
    /// left-padded chunk holds sequences of similar length (few padding tokens). Ties keep
    /// input order, so the chunking is deterministic; results go back to input order.
    fn length_chunks(seqs: &[Vec<u32>], step: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| seqs[i].len());
        order.chunks(step.max(1)).map(<[usize]>::to_vec).collect()
    }

    /// f32 logits `[P, vocab]` at each prompt's measured position (last token, or the
    /// `[MASK]`), from the same batched pass as [`ModelAdapter::forward`].
    pub fn logits(&self, prompts: &[&str]) -> Result<Array2<f32>> {
        let tp: Vec<TargetedPrompt> = prompts
            .iter()
            .map(|p| TargetedPrompt::new(*p, vec![]))
            .collect();
        Ok(libtorch("forward", || self.forward_impl(&tp, false))?.logits)
    }

    /// One batched no-grad pass per chunk of prompts, recording the residual stream too when
    /// `want_resid`.
    pub(crate) fn forward_impl(
        &self,
        prompts: &[TargetedPrompt],
        want_resid: bool,
    ) -> Result<ForwardArrays> {
        let t = self.check_targets(prompts)?;
        let seqs = self.encode_all(prompts)?;
        let (l, n, h) = (self.layers(), self.width(), self.hidden());
        let p = prompts.len();
        let mut probs = Array2::zeros((p, t));
        let mut acts = Array3::zeros((p, l, n));
        let mut resid = Array3::zeros((p, l, h));
        let mut logits = Array2::zeros((p, self.vocab_size()));
        for rows in Self::length_chunks(&seqs, self.chunk_len(1)) {
            let s: Vec<&[u32]> = rows.iter().map(|&i| seqs[i].as_slice()).collect();
            let targets: Vec<Vec<u32>> = rows.iter().map(|&i| prompts[i].targets.clone()).collect();
            let out = match self.arch()? {
                Arch::Llama(m) => m.forward_tokens(&s, &targets, want_resid),
                Arch::Bert(m) => {
                    m.forward_tokens(&s, &self.mask_positions(&s), &targets, want_resid)
                }
            };
            scatter(&mut probs, &to_array::<ndarray::Ix2>(&out.probs)?, &rows);
            scatter(&mut acts, &to_array::<ndarray::Ix3>(&out.acts)?, &rows);
            scatter(&mut logits, &to_array::<ndarray::Ix2>(&out.logits)?, &rows);
            if let Some(re) = out.resid {
                scatter(&mut resid, &to_array::<ndarray::Ix3>(&re)?, &rows);
            }
        }
        Ok(ForwardArrays {
            probs,
            activations: acts,
            residual: want_resid.then_some(resid),
            logits,
        })
    }

    fn gradients_impl(&self, prompts: &[TargetedPrompt]) -> Result<Gradients> {
        let t = self.check_targets(prompts)?;
        let seqs = self.encode_all(prompts)?;
        let (l, n) = (self.layers(), self.width());
        let p = prompts.len();
        let mut probs = Array2::zeros((p, t));
        let mut acts = Array3::zeros((p, l, n));
        let mut grads = Array4::zeros((p, t, l, n));
        for rows in Self::length_chunks(&seqs, self.chunk_len(t)) {
            let s: Vec<&[u32]> = rows.iter().map(|&i| seqs[i].as_slice()).collect();
            let targets: Vec<Vec<u32>> = rows.iter().map(|&i| prompts[i].targets.clone()).collect();
            let out = match self.arch()? {
                Arch::Llama(m) => m.gradients_tokens(&s, &targets),
                Arch::Bert(m) => m.gradients_tokens(&s, &self.mask_positions(&s), &targets, &[]),
            };
            scatter(&mut probs, &to_array::<ndarray::Ix2>(&out.probs)?, &rows);
            scatter(&mut acts, &to_array::<ndarray::Ix3>(&out.acts)?, &rows);
            scatter(&mut grads, &to_array::<ndarray::Ix4>(&out.grads)?, &rows);
        }
        Ok(Gradients {
            probs,
            activations: acts,
            grads,
        })
    }

    fn patched_impl(
        &self,
        prompt: &TargetedPrompt,
        variants: &[Vec<Patch>],
        naive: bool,
    ) -> Result<Array2<f32>> {
        self.check_targets(std::slice::from_ref(prompt))?;
        self.check_patches(variants)?;
        let seq = self.encode(&prompt.text)?;
        let out = match self.arch()? {
            Arch::Llama(m) => {
                if naive {
                    m.sweep_naive(&seq, &prompt.targets, variants, self.opts.max_batch)
                } else {
                    let cache = m.prompt_cache(&seq);
                    m.sweep(&cache, &prompt.targets, variants, self.opts.max_batch)
                }
            }
            Arch::Bert(m) => {
                let pos = self.mask_positions(&[&seq])[0];
                m.sweep(
                    &seq,
                    pos,
                    &prompt.targets,
                    variants,
                    self.opts.max_batch,
                    naive,
                )
            }
        };
        to_array(&out)
    }

    /// The patch primitive: one prompt under one variant. Llama: a one-token pass of T rows
    /// from the prompt's cached prefix (autograd leaves when gradients are asked for). BERT:
    /// the differentiated batch of the gradient path with the patches added (probabilities
    /// alone pay for the backward too; the fast sweeps do not go through here).
    fn patched_pass_impl(
        &self,
        prompt: &TargetedPrompt,
        patches: &[Patch],
        outputs: PassOutputs,
    ) -> Result<PatchedPass> {
        self.check_targets(std::slice::from_ref(prompt))?;
        self.check_patches(&[patches.to_vec()])?;
        let seq = self.encode(&prompt.text)?;
        let want_grads = outputs == PassOutputs::Gradients;
        let (probs, acts, grads) = match self.arch()? {
            Arch::Llama(m) => {
                let cache = m.prompt_cache(&seq);
                let out = m.patched_pass(&cache, &prompt.targets, patches, want_grads);
                (out.probs, out.acts, out.grads)
            }
            Arch::Bert(m) => {
                let pos = self.mask_positions(&[&seq]);
                let targets = [prompt.targets.clone()];
                let out = m.gradients_tokens(&[&seq], &pos, &targets, patches);
                let grads = want_grads.then(|| out.grads.squeeze_dim(0));
                (out.probs.squeeze_dim(0), out.acts.squeeze_dim(0), grads)
            }
        };
        Ok(PatchedPass {
            probs: to_array(&probs)?,
            activations: to_array(&acts)?,
            grads: grads.map(|g| to_array(&g)).transpose()?,
        })
    }

    fn scaled_impl(
        &self,
        prompt: &TargetedPrompt,
        layers: &[usize],
        alphas: &[f32],
    ) -> Result<Array4<f32>> {
        self.check_targets(std::slice::from_ref(prompt))?;
        for &l in layers {
            self.check_layer(l)?;
        }
        let seq = self.encode(&prompt.text)?;
        let out = match self.arch()? {
            Arch::Llama(m) => {
                let cache = m.prompt_cache(&seq);
                m.scaled_gradients(&cache, &prompt.targets, layers, alphas, self.opts.max_batch)
            }
            Arch::Bert(m) => {
                let pos = self.mask_positions(&[&seq])[0];
                m.scaled_gradients(
                    &seq,
                    pos,
                    &prompt.targets,
                    layers,
                    alphas,
                    self.opts.max_batch,
                )
            }
        };
        to_array(&out)
    }

    fn target_token_impl(&self, prompt: &str, answer: &str) -> Result<u32> {
        let (base, full) = if self.is_causal() {
            (
                tokenize::encode(&self.tokenizer, prompt, true)?,
                tokenize::encode(&self.tokenizer, &format!("{prompt}{answer}"), true)?,
            )
        } else {
            (
                Vec::new(),
                tokenize::encode(&self.tokenizer, answer, false)?,
            )
        };
        let common = base.iter().zip(&full).take_while(|(a, b)| a == b).count();
        if common == base.len() && full.len() == base.len() + 1 {
            return Ok(full[base.len()]);
        }
        Err(HooksError::AnswerNotOneToken {
            prompt: prompt.into(),
            answer: answer.into(),
            tokens: tokenize::pieces(&self.tokenizer, &full[common..]),
        })
    }
}

impl ModelAdapter for HfModel {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> ModelKind {
        if self.is_causal() {
            ModelKind::CausalLm
        } else {
            ModelKind::MaskedLm
        }
    }

    fn num_layers(&self) -> usize {
        self.layers()
    }

    fn ff_width(&self) -> usize {
        self.width()
    }

    fn hidden_size(&self) -> usize {
        self.hidden()
    }

    fn target_token(&self, prompt: &str, answer: &str) -> std::result::Result<u32, AdapterError> {
        Ok(self.target_token_impl(prompt, answer)?)
    }

    fn forward(&self, prompts: &[TargetedPrompt]) -> std::result::Result<Forward, AdapterError> {
        let out = libtorch("forward", || self.forward_impl(prompts, false))?;
        Ok(Forward {
            probs: out.probs,
            activations: out.activations,
        })
    }

    /// One pass records the residual stream along with the probabilities and activations.
    fn forward_with(
        &self,
        prompts: &[TargetedPrompt],
        capture: CaptureOptions,
    ) -> std::result::Result<CapturedForward, AdapterError> {
        let out = libtorch("forward", || self.forward_impl(prompts, capture.residual))?;
        Ok(CapturedForward {
            probs: out.probs,
            activations: out.activations,
            residual: out.residual,
        })
    }

    fn max_context(&self) -> Option<usize> {
        Some(HfModel::max_context(self))
    }

    fn token_count(&self, prompt: &str) -> Option<usize> {
        self.encode(prompt).ok().map(|ids| ids.len())
    }

    fn shared_prefix_len(&self, prompts: &[&str]) -> usize {
        // From the tokenizer alone: a model whose weights are deferred plans batches too.
        if !self.is_causal() || !self.share_prefix {
            return 0;
        }
        // A prompt that does not encode shares nothing; its error comes from the pass itself.
        let Ok(seqs) = prompts
            .iter()
            .map(|p| self.encode(p))
            .collect::<Result<Vec<_>>>()
        else {
            return 0;
        };
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        crate::llama::shared_prefix_len(&refs)
    }

    fn patched_pass(
        &self,
        prompt: &TargetedPrompt,
        patches: &[Patch],
        outputs: PassOutputs,
    ) -> std::result::Result<PatchedPass, AdapterError> {
        Ok(libtorch("patched pass", || {
            self.patched_pass_impl(prompt, patches, outputs)
        })?)
    }

    fn gradients(
        &self,
        prompts: &[TargetedPrompt],
    ) -> std::result::Result<Gradients, AdapterError> {
        Ok(libtorch("gradients", || self.gradients_impl(prompts))?)
    }

    fn patched_probs(
        &self,
        prompt: &TargetedPrompt,
        variants: &[Vec<Patch>],
    ) -> std::result::Result<Array2<f32>, AdapterError> {
        Ok(libtorch("patched forward", || {
            self.patched_impl(prompt, variants, false)
        })?)
    }

    fn patched_probs_naive(
        &self,
        prompt: &TargetedPrompt,
        variants: &[Vec<Patch>],
    ) -> std::result::Result<Array2<f32>, AdapterError> {
        Ok(libtorch("patched forward", || {
            self.patched_impl(prompt, variants, true)
        })?)
    }

    fn scaled_gradients(
        &self,
        prompt: &TargetedPrompt,
        layers: &[usize],
        alphas: &[f32],
    ) -> std::result::Result<Array4<f32>, AdapterError> {
        Ok(libtorch("scaled gradients", || {
            self.scaled_impl(prompt, layers, alphas)
        })?)
    }

    fn log_prob_increase(
        &self,
        prompt: &TargetedPrompt,
    ) -> std::result::Result<Array3<f32>, AdapterError> {
        self.not_bert("log-probability increase (LPI)")?;
        self.check_targets(std::slice::from_ref(prompt))?;
        let seq = self.encode(&prompt.text)?;
        Ok(libtorch("log-probability increase", || {
            let Arch::Llama(m) = self.arch()? else {
                unreachable!("checked by not_bert")
            };
            let cache = m.prompt_cache(&seq);
            to_array(&m.log_prob_increase(&cache, &prompt.targets))
        })?)
    }

    fn residual(
        &self,
        prompts: &[TargetedPrompt],
    ) -> std::result::Result<Array3<f32>, AdapterError> {
        let out = libtorch("forward", || self.forward_impl(prompts, true))?;
        out.residual
            .ok_or_else(|| AdapterError::InvalidInput("no residual stream captured".into()))
    }

    fn generate(
        &self,
        prompt: &str,
        max_new_tokens: usize,
    ) -> std::result::Result<Generation, AdapterError> {
        self.not_bert("generation")?;
        let seq = self.encode(prompt)?;
        let (ids, mean) = libtorch("generation", || {
            let Arch::Llama(m) = self.arch()? else {
                unreachable!("checked by not_bert")
            };
            let generated = m.generate(&seq, max_new_tokens, &self.eos);
            let mean =
                to_array::<ndarray::Ix2>(&generated.act_sum)? / generated.positions.max(1) as f32;
            Ok((generated.tokens, mean))
        })?;
        let text = self
            .tokenizer
            .decode(&ids, true)
            .map_err(|e| HooksError::Tokenize {
                text: format!("{ids:?}"),
                message: e.to_string(),
            })?;
        Ok(Generation {
            token_ids: ids,
            text,
            mean_activations: mean,
        })
    }
}
