//! A minimal [`ModelAdapter`]: a toy residual-MLP language model in plain Rust whose FF neurons
//! are read, patched and differentiated through the eight required methods plus the patch
//! primitive [`ModelAdapter::patched_pass`]. Everything else (sweeps, IG) comes from the
//! trait's default methods. The walk-through is `docs/ADAPTER.md`.
//!
//! `cargo run -p neg-core --example minimal_adapter` prints NeurGrad and a NEG sweep;
//! `cargo test -p neg-core --example minimal_adapter` checks both against finite differences.
//!
//! The model, for a prompt whose words embed to `h_0` (mean of word embeddings):
//! for each layer l, `a_l = silu(W_in_l h_{l-1})` (the FF neuron, TransformerLens's
//! `blocks.{l}.mlp.hook_post`) and `h_l = h_{l-1} + W_out_l a_l` (the residual stream);
//! then `P = softmax(U h_L)` over a small word vocabulary.

use ndarray::{Array1, Array2, Array3, Array4, Axis};
use neg_core::{
    methods, neg, AdapterError, Forward, Gradients, ModelAdapter, ModelKind, NeuronId, PassOutputs,
    PatchOp, PatchedPass, Site, TargetedPrompt,
};

const VOCAB: [&str; 8] = ["the", "cat", "dog", "sat", "ran", "on", "mat", "park"];

/// See the module docs. Computes in f64, reports f32 as the trait asks.
struct TinyLm {
    /// [V, H]
    embed: Array2<f64>,
    /// L x [N, H]
    w_in: Vec<Array2<f64>>,
    /// L x [H, N]
    w_out: Vec<Array2<f64>>,
    /// [V, H]
    unembed: Array2<f64>,
}

/// Deterministic weights in [-scale, scale) from a xorshift generator.
fn weights(state: &mut u64, rows: usize, cols: usize, scale: f64) -> Array2<f64> {
    Array2::from_shape_simple_fn((rows, cols), || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        ((*state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
    })
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn silu_grad(x: f64) -> f64 {
    let s = 1.0 / (1.0 + (-x).exp());
    s * (1.0 + x * (1.0 - s))
}

impl TinyLm {
    fn new(layers: usize, hidden: usize, width: usize) -> Self {
        let mut state = 0x9E37_79B9_7F4A_7C15;
        let v = VOCAB.len();
        Self {
            embed: weights(&mut state, v, hidden, 1.0),
            w_in: (0..layers)
                .map(|_| weights(&mut state, width, hidden, 0.8))
                .collect(),
            w_out: (0..layers)
                .map(|_| weights(&mut state, hidden, width, 0.5))
                .collect(),
            unembed: weights(&mut state, v, hidden, 1.0),
        }
    }

    fn token(word: &str) -> usize {
        VOCAB
            .iter()
            .position(|w| *w == word)
            .unwrap_or(word.len() % VOCAB.len())
    }

    /// The whole model: one prompt, one patch variant, optionally the backward pass.
    fn run(
        &self,
        prompt: &TargetedPrompt,
        patches: &[neg_core::Patch],
        outputs: PassOutputs,
    ) -> Result<PatchedPass, AdapterError> {
        let (layers, width, hidden) = (self.num_layers(), self.ff_width(), self.hidden_size());
        for p in patches {
            let bound = match p.site {
                Site::FeedForward => width,
                Site::Residual => hidden,
            };
            if p.layer >= layers || p.index >= bound {
                return Err(AdapterError::InvalidInput(format!(
                    "patch {p:?} is out of range"
                )));
            }
        }
        if let Some(&t) = prompt.targets.iter().find(|&&t| t as usize >= VOCAB.len()) {
            return Err(AdapterError::InvalidInput(format!(
                "target {t} out of vocabulary"
            )));
        }
        let words: Vec<usize> = prompt.text.split_whitespace().map(Self::token).collect();
        if words.is_empty() {
            return Err(AdapterError::InvalidInput("empty prompt".into()));
        }
        let mut h = Array1::zeros(hidden);
        for &w in &words {
            h += &self.embed.row(w);
        }
        h /= words.len() as f64;
        // Per layer: pre-activation, and which units a `Set` patch cut from what feeds them
        // (their gradient does not flow further down).
        let mut pre = Vec::with_capacity(layers);
        let mut ff_set = Array2::from_elem((layers, width), false);
        let mut resid_set = Array2::from_elem((layers, hidden), false);
        let mut acts = Array2::zeros((layers, width));
        for l in 0..layers {
            let z = self.w_in[l].dot(&h);
            let mut a = z.mapv(silu);
            for p in patches.iter().filter(|p| p.layer == l) {
                let (x, set) = match p.site {
                    Site::FeedForward => (&mut a[p.index], &mut ff_set[[l, p.index]]),
                    Site::Residual => continue,
                };
                match p.op {
                    PatchOp::Add(d) => *x += f64::from(d),
                    PatchOp::Set(v) => (*x, *set) = (f64::from(v), true),
                }
            }
            h = h + self.w_out[l].dot(&a);
            for p in patches
                .iter()
                .filter(|p| p.layer == l && p.site == Site::Residual)
            {
                match p.op {
                    PatchOp::Add(d) => h[p.index] += f64::from(d),
                    PatchOp::Set(v) => (h[p.index], resid_set[[l, p.index]]) = (f64::from(v), true),
                }
            }
            acts.row_mut(l).assign(&a);
            pre.push(z);
        }
        let logits = self.unembed.dot(&h);
        let e = logits.mapv(|z| (z - logits.fold(f64::MIN, |m, &v| m.max(v))).exp());
        let probs = &e / e.sum();
        let grads = (outputs == PassOutputs::Gradients).then(|| {
            let mut grads = Array3::zeros((prompt.targets.len(), layers, width));
            for (j, &t) in prompt.targets.iter().enumerate() {
                let t = t as usize;
                // dP_t/dz_v = P_t (1[v = t] - P_v), then back through the layers.
                let dz = Array1::from_shape_fn(VOCAB.len(), |v| {
                    probs[t] * (f64::from(u8::from(v == t)) - probs[v])
                });
                let mut g = self.unembed.t().dot(&dz); // dP/dh_L
                for l in (0..layers).rev() {
                    g.zip_mut_with(&resid_set.row(l), |g, &cut| *g *= f64::from(u8::from(!cut)));
                    let da = self.w_out[l].t().dot(&g);
                    grads.slice_mut(ndarray::s![j, l, ..]).assign(&da);
                    let d_pre = Array1::from_shape_fn(width, |n| {
                        if ff_set[[l, n]] {
                            0.0
                        } else {
                            da[n] * silu_grad(pre[l][n])
                        }
                    });
                    g = g + self.w_in[l].t().dot(&d_pre);
                }
            }
            grads.mapv(|v| v as f32)
        });
        Ok(PatchedPass {
            probs: prompt
                .targets
                .iter()
                .map(|&t| probs[t as usize] as f32)
                .collect(),
            activations: acts.mapv(|v| v as f32),
            grads,
        })
    }
}

impl ModelAdapter for TinyLm {
    fn model_id(&self) -> &str {
        "tiny-lm"
    }
    fn kind(&self) -> ModelKind {
        ModelKind::CausalLm
    }
    fn num_layers(&self) -> usize {
        self.w_in.len()
    }
    fn ff_width(&self) -> usize {
        self.w_in[0].nrows()
    }
    fn hidden_size(&self) -> usize {
        self.embed.ncols()
    }

    fn target_token(&self, _prompt: &str, answer: &str) -> Result<u32, AdapterError> {
        VOCAB
            .iter()
            .position(|w| *w == answer.trim())
            .map(|i| i as u32)
            .ok_or_else(|| AdapterError::InvalidInput(format!("{answer:?} is not one token")))
    }

    fn forward(&self, prompts: &[TargetedPrompt]) -> Result<Forward, AdapterError> {
        let g = self.batch(prompts, PassOutputs::Probs)?;
        Ok(Forward {
            probs: g.probs,
            activations: g.activations,
        })
    }

    fn gradients(&self, prompts: &[TargetedPrompt]) -> Result<Gradients, AdapterError> {
        self.batch(prompts, PassOutputs::Gradients)
    }

    fn patched_pass(
        &self,
        prompt: &TargetedPrompt,
        patches: &[neg_core::Patch],
        outputs: PassOutputs,
    ) -> Result<PatchedPass, AdapterError> {
        self.run(prompt, patches, outputs)
    }
}

impl TinyLm {
    /// Unpatched passes of every prompt, stacked (a real model would batch them).
    fn batch(
        &self,
        prompts: &[TargetedPrompt],
        outputs: PassOutputs,
    ) -> Result<Gradients, AdapterError> {
        let t = prompts.first().map_or(0, |p| p.targets.len());
        let (p, l, n) = (prompts.len(), self.num_layers(), self.ff_width());
        let mut out = Gradients {
            probs: Array2::zeros((p, t)),
            activations: Array3::zeros((p, l, n)),
            grads: Array4::zeros((p, t, l, n)),
        };
        for (i, prompt) in prompts.iter().enumerate() {
            if prompt.targets.len() != t {
                return Err(AdapterError::InvalidInput("target counts differ".into()));
            }
            let pass = self.run(prompt, &[], outputs)?;
            out.probs.row_mut(i).assign(&pass.probs);
            out.activations
                .index_axis_mut(Axis(0), i)
                .assign(&pass.activations);
            if let Some(g) = pass.grads {
                out.grads.index_axis_mut(Axis(0), i).assign(&g);
            }
        }
        Ok(out)
    }
}

fn prompts(model: &TinyLm) -> Vec<TargetedPrompt> {
    [
        ("the cat sat on the", "mat"),
        ("the dog ran to the", "park"),
    ]
    .iter()
    .map(|(text, answer)| {
        let target = model
            .target_token(text, answer)
            .expect("answers are vocabulary words");
        TargetedPrompt::new(*text, vec![target])
    })
    .collect()
}

fn main() -> Result<(), neg_core::NegError> {
    let model = TinyLm::new(3, 6, 16);
    let prompts = prompts(&model);
    let ng = methods::neurgrad(&model, &prompts)?;
    let neurons = [
        NeuronId::new(0, 3),
        NeuronId::new(1, 7),
        NeuronId::new(2, 11),
    ];
    let truth = neg::ground_truth_neg(&model, &prompts, &neurons, &neg::SweepConfig::default())?;
    for (p, prompt) in prompts.iter().enumerate() {
        println!("{:?}: P(target) = {:.4}", prompt.text, ng.probs[[p, 0]]);
        for (k, n) in neurons.iter().enumerate() {
            println!(
                "  L{}.{}: NeurGrad {:+.5}  NEG (R = 2) {:+.5}  r {:.3}",
                n.layer,
                n.neuron,
                ng.scores[[p, 0, n.layer, n.neuron]],
                truth.neg[[p, 0, k]],
                truth.r[[p, 0, k]]
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use neg_core::Patch;

    /// NeurGrad equals central finite differences of magnitude shifts through the default
    /// `patched_probs` (one `patched_pass` per variant).
    #[test]
    fn neurgrad_matches_finite_differences() {
        let model = TinyLm::new(3, 6, 16);
        let prompts = prompts(&model);
        let ng = methods::neurgrad(&model, &prompts).unwrap();
        let h = 1e-2f32;
        for (p, prompt) in prompts.iter().enumerate() {
            for l in 0..model.num_layers() {
                for n in 0..model.ff_width() {
                    let sign = if ng.activations[[p, l, n]] > 0.0 {
                        1.0
                    } else {
                        -1.0
                    };
                    let shift = |d: f32| vec![Patch::ff(NeuronId::new(l, n), PatchOp::Add(d))];
                    let out = model
                        .patched_probs(prompt, &[shift(h * sign), shift(-h * sign)])
                        .unwrap();
                    let fd = (out[[0, 0]] - out[[1, 0]]) / (2.0 * h);
                    let est = ng.scores[[p, 0, l, n]];
                    assert!(
                        (fd - est).abs() < 2e-5,
                        "L{l}.{n}: fd {fd} vs NeurGrad {est}"
                    );
                }
            }
        }
    }

    /// A sweep over a small range is the derivative: ground-truth NEG equals NeurGrad. IG's
    /// path gradient at alpha = 1 (default `scaled_gradients`) equals the gradient.
    #[test]
    fn small_range_sweep_and_ig_path_match_the_gradient() {
        let model = TinyLm::new(3, 6, 16);
        let prompts = prompts(&model);
        let ng = methods::neurgrad(&model, &prompts).unwrap();
        let neurons: Vec<NeuronId> = (0..model.num_layers())
            .flat_map(|l| (0..4).map(move |n| NeuronId::new(l, 3 * n + l)))
            .collect();
        let config = neg::SweepConfig {
            range: 0.02,
            step: 0.01,
            ..neg::SweepConfig::default()
        };
        let truth = neg::ground_truth_neg(&model, &prompts, &neurons, &config).unwrap();
        for p in 0..prompts.len() {
            for (k, n) in neurons.iter().enumerate() {
                let (sweep, est) = (truth.neg[[p, 0, k]], ng.scores[[p, 0, n.layer, n.neuron]]);
                assert!(
                    (sweep - est).abs() < 5e-5,
                    "{n:?}: NEG {sweep} vs NeurGrad {est}"
                );
            }
        }
        let g = model.gradients(&prompts[..1]).unwrap();
        let path = model
            .scaled_gradients(&prompts[0], &[0, 2], &[1.0])
            .unwrap();
        for (i, &l) in [0, 2].iter().enumerate() {
            for n in 0..model.ff_width() {
                let (a, b) = (path[[i, 0, 0, n]], g.grads[[0, 0, l, n]]);
                assert!((a - b).abs() < 1e-6, "L{l}.{n}: {a} vs {b}");
            }
        }
    }
}
