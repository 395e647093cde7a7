//! [`AnalyticAdapter`]: a small model whose activations, probabilities, gradients, IG paths,
//! patches and LPI are all known in closed form, so that methods can be tested exactly without
//! libtorch. Public so that other crates' tests can use it too.
//!
//! The model: a prompt's text maps to an embedding `e` (a fixed function of its bytes); layer
//! `l`'s FF activations are `a_l = W_l e + c_l` (no layer reads another, so a patch of one
//! neuron changes nothing else); the logits are `z = b + sum_l V_l a_l`; the residual stream
//! after layer `l` is `b + sum_{l' <= l} V_l' a_l'` (hidden size = vocabulary size). With
//! [`Head::Softmax`] the probabilities are `softmax(z)`, so
//! `dP_t/da_{l,n} = P_t (V_l[t,n] - sum_v P_v V_l[v,n])`. With [`Head::Linear`] the
//! "probability" of token t is `z_t` itself (not a distribution): every neuron is exactly
//! linear, so NeurGrad equals the NEG of any sweep and IG is exactly complete.
use ndarray::{s, Array1, Array2, Array3, Array4, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::adapter::{
    AdapterError, Forward, Gradients, ModelAdapter, ModelKind, PassOutputs, Patch, PatchOp,
    PatchedPass, Site, TargetedPrompt,
};

/// How logits become the measured output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// `softmax(z)`: a real probability, nonlinear in the activations.
    Softmax,
    /// `z` itself: exactly linear in the activations.
    Linear,
}

/// See the [module docs](self).
#[derive(Clone, Debug)]
pub struct AnalyticAdapter {
    id: String,
    kind: ModelKind,
    head: Head,
    nan_output: bool,
    /// [L, N, E]
    w: Array3<f64>,
    /// [L, N]
    c: Array2<f64>,
    /// [L, V, N]
    v: Array3<f64>,
    /// [V]
    b: Array1<f64>,
}

impl AnalyticAdapter {
    /// A causal-LM-like analytic model with softmax head and seeded random weights.
    pub fn new(seed: u64, layers: usize, width: usize, vocab: usize, embed_dim: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut uniform = |scale: f64| rng.gen_range(-1.0..1.0) * scale;
        let w = Array3::from_shape_simple_fn((layers, width, embed_dim), || uniform(1.5));
        let c = Array2::from_shape_simple_fn((layers, width), || uniform(1.0));
        let v = Array3::from_shape_simple_fn((layers, vocab, width), || uniform(0.6));
        let b = Array1::from_shape_simple_fn(vocab, || uniform(0.5));
        Self {
            id: format!("analytic(seed={seed},L={layers},N={width},V={vocab},E={embed_dim})"),
            kind: ModelKind::CausalLm,
            head: Head::Softmax,
            nan_output: false,
            w,
            c,
            v,
            b,
        }
    }

    /// Same weights with a different output head.
    pub fn with_head(mut self, head: Head) -> Self {
        self.head = head;
        self
    }

    /// Same weights, reported as another model kind (LPI is unsupported for masked LMs).
    pub fn with_kind(mut self, kind: ModelKind) -> Self {
        self.kind = kind;
        self
    }

    /// A broken model whose every output probability is NaN (to test error handling).
    pub fn with_nan_output(mut self) -> Self {
        self.nan_output = true;
        self
    }

    /// Vocabulary size V (= hidden size).
    pub fn vocab_size(&self) -> usize {
        self.b.len()
    }

    /// The token spelled `tok{i}`.
    pub fn token_name(i: usize) -> String {
        format!("tok{i}")
    }

    /// The prompt embedding `e` (length E): a fixed smooth function of the text's bytes.
    pub fn embedding(&self, text: &str) -> Array1<f64> {
        let e_dim = self.w.shape()[2];
        let bytes = text.as_bytes();
        let norm = ((bytes.len() + 1) as f64).sqrt();
        Array1::from_shape_fn(e_dim, |k| {
            let s: f64 = bytes
                .iter()
                .enumerate()
                .map(|(i, &b)| ((b as f64 + 1.0) * (k as f64 + 1.0) * 0.37 + i as f64 * 0.11).sin())
                .sum();
            s / norm + 0.3
        })
    }

    /// Unpatched activations [L, N] of a prompt text.
    pub fn activations_of(&self, text: &str) -> Array2<f64> {
        let e = self.embedding(text);
        let mut a = self.c.clone();
        for l in 0..self.w.shape()[0] {
            let row = self.w.index_axis(Axis(0), l).dot(&e);
            a.row_mut(l).zip_mut_with(&row, |x, y| *x += y);
        }
        a
    }

    /// Logits [V] given activations [L, N].
    pub fn logits(&self, acts: &Array2<f64>) -> Array1<f64> {
        let mut z = self.b.clone();
        for l in 0..acts.nrows() {
            z = z + self.v.index_axis(Axis(0), l).dot(&acts.row(l));
        }
        z
    }

    /// The measured output over the vocabulary given logits.
    pub fn head_output(&self, z: &Array1<f64>) -> Array1<f64> {
        if self.nan_output {
            return Array1::from_elem(z.len(), f64::NAN);
        }
        match self.head {
            Head::Linear => z.clone(),
            Head::Softmax => softmax(z),
        }
    }

    /// Closed-form `dP_target / da` [L, N] at activations `acts`.
    pub fn true_gradient(&self, acts: &Array2<f64>, target: usize) -> Array2<f64> {
        let (layers, width) = acts.dim();
        match self.head {
            Head::Linear => self.v.slice(s![.., target, ..]).to_owned(),
            Head::Softmax => {
                let p = softmax(&self.logits(acts));
                let mut g = Array2::zeros((layers, width));
                for l in 0..layers {
                    let vl = self.v.index_axis(Axis(0), l);
                    let mean = p.dot(&vl); // [N]: sum_v p_v V_l[v, n]
                    for n in 0..width {
                        g[[l, n]] = p[target] * (vl[[target, n]] - mean[n]);
                    }
                }
                if self.nan_output {
                    g.fill(f64::NAN);
                }
                g
            }
        }
    }

    fn check_targets(&self, prompt: &TargetedPrompt) -> Result<(), AdapterError> {
        if let Some(t) = prompt
            .targets
            .iter()
            .find(|&&t| t as usize >= self.vocab_size())
        {
            return Err(AdapterError::InvalidInput(format!(
                "target token id {t} of prompt {:?} is outside the vocabulary of {} tokens",
                prompt.text,
                self.vocab_size()
            )));
        }
        Ok(())
    }

    fn check_batch(&self, prompts: &[TargetedPrompt]) -> Result<usize, AdapterError> {
        let t = prompts.first().map_or(0, |p| p.targets.len());
        for (i, p) in prompts.iter().enumerate() {
            self.check_targets(p)?;
            if p.targets.len() != t {
                return Err(AdapterError::InvalidInput(format!(
                    "prompt {i} has {} targets, prompt 0 has {t}",
                    p.targets.len()
                )));
            }
        }
        Ok(t)
    }

    /// Output over the vocabulary after applying one patch variant.
    fn patched_output(
        &self,
        base: &Array2<f64>,
        patches: &[Patch],
    ) -> Result<Array1<f64>, AdapterError> {
        Ok(self.head_output(&self.patched_state(base, patches)?.logits))
    }

    /// Activations, logits and logit Jacobian mask after applying one patch variant.
    fn patched_state(
        &self,
        base: &Array2<f64>,
        patches: &[Patch],
    ) -> Result<PatchedState, AdapterError> {
        let (layers, width, hidden) = (self.num_layers(), self.ff_width(), self.hidden_size());
        let mut acts = base.clone();
        let mut residual: Vec<&Patch> = Vec::new();
        for p in patches {
            let bound = match p.site {
                Site::FeedForward => width,
                Site::Residual => hidden,
            };
            if p.layer >= layers || p.index >= bound {
                return Err(AdapterError::InvalidInput(format!(
                    "patch {:?} at layer {} index {} is outside the model ({layers} layers x {bound})",
                    p.site, p.layer, p.index
                )));
            }
            match p.site {
                Site::FeedForward => {
                    let a = &mut acts[[p.layer, p.index]];
                    match p.op {
                        PatchOp::Add(d) => *a += d as f64,
                        PatchOp::Set(x) => *a = x as f64,
                    }
                }
                Site::Residual => residual.push(p),
            }
        }
        let mut z = self.logits(&acts);
        // Residual patches in layer order: a later layer's stream includes earlier patches.
        residual.sort_by_key(|p| p.layer);
        let mut offset = Array1::<f64>::zeros(hidden);
        // live[[l, v]]: logit v still reads layer l's activations (no residual Set of
        // dimension v at layer l or above cut it off).
        let mut live = Array2::from_elem((layers, hidden), true);
        for p in residual {
            match p.op {
                PatchOp::Add(d) => offset[p.index] += d as f64,
                PatchOp::Set(x) => {
                    let mut stream = self.b[p.index] + offset[p.index];
                    for l in 0..=p.layer {
                        stream += self.v.slice(s![l, p.index, ..]).dot(&acts.row(l));
                        live[[l, p.index]] = false;
                    }
                    offset[p.index] += x as f64 - stream;
                }
            }
        }
        z += &offset;
        Ok(PatchedState {
            acts,
            logits: z,
            live,
        })
    }

    /// `dP_target / da` [L, N] at logits `z`, where logit v reads layer l only if
    /// `live[[l, v]]`.
    fn gradient_at(&self, z: &Array1<f64>, live: &Array2<bool>, target: usize) -> Array2<f64> {
        let (layers, width) = (self.num_layers(), self.ff_width());
        // dP_t/dz_v: the head's Jacobian row.
        let dz: Array1<f64> = match self.head {
            Head::Linear => Array1::from_shape_fn(z.len(), |v| f64::from(u8::from(v == target))),
            Head::Softmax => {
                let p = softmax(z);
                Array1::from_shape_fn(z.len(), |v| {
                    p[target] * (f64::from(u8::from(v == target)) - p[v])
                })
            }
        };
        let mut g = Array2::zeros((layers, width));
        for l in 0..layers {
            for n in 0..width {
                g[[l, n]] = (0..z.len())
                    .filter(|&v| live[[l, v]])
                    .map(|v| dz[v] * self.v[[l, v, n]])
                    .sum();
            }
        }
        if self.nan_output {
            g.fill(f64::NAN);
        }
        g
    }
}

/// One patch variant applied to the analytic model.
struct PatchedState {
    /// [L, N]
    acts: Array2<f64>,
    /// [V]
    logits: Array1<f64>,
    /// [L, V]
    live: Array2<bool>,
}

fn softmax(z: &Array1<f64>) -> Array1<f64> {
    let max = z.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    let e = z.mapv(|v| (v - max).exp());
    let sum = e.sum();
    e / sum
}

fn log_softmax_at(z: &Array1<f64>, t: usize) -> f64 {
    let max = z.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    let lse = z.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
    z[t] - lse
}

impl ModelAdapter for AnalyticAdapter {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> ModelKind {
        self.kind
    }
    fn num_layers(&self) -> usize {
        self.w.shape()[0]
    }
    fn ff_width(&self) -> usize {
        self.w.shape()[1]
    }
    fn hidden_size(&self) -> usize {
        self.vocab_size()
    }

    /// The answer must be a vocabulary word `tok{i}` (surrounding whitespace ignored).
    fn target_token(&self, _prompt: &str, answer: &str) -> Result<u32, AdapterError> {
        answer
            .trim()
            .strip_prefix("tok")
            .and_then(|i| i.parse::<u32>().ok())
            .filter(|&i| (i as usize) < self.vocab_size())
            .ok_or_else(|| {
                AdapterError::InvalidInput(format!(
                    "answer {answer:?} is not one token of the analytic vocabulary (tok0..tok{})",
                    self.vocab_size() - 1
                ))
            })
    }

    fn forward(&self, prompts: &[TargetedPrompt]) -> Result<Forward, AdapterError> {
        let t = self.check_batch(prompts)?;
        let (layers, width) = (self.num_layers(), self.ff_width());
        let mut probs = Array2::zeros((prompts.len(), t));
        let mut activations = Array3::zeros((prompts.len(), layers, width));
        for (i, p) in prompts.iter().enumerate() {
            let a = self.activations_of(&p.text);
            let out = self.head_output(&self.logits(&a));
            for (j, &tok) in p.targets.iter().enumerate() {
                probs[[i, j]] = out[tok as usize] as f32;
            }
            activations
                .index_axis_mut(Axis(0), i)
                .assign(&a.mapv(|v| v as f32));
        }
        Ok(Forward { probs, activations })
    }

    fn gradients(&self, prompts: &[TargetedPrompt]) -> Result<Gradients, AdapterError> {
        let f = self.forward(prompts)?;
        let t = f.probs.ncols();
        let (layers, width) = (self.num_layers(), self.ff_width());
        let mut grads = Array4::zeros((prompts.len(), t, layers, width));
        for (i, p) in prompts.iter().enumerate() {
            let a = self.activations_of(&p.text);
            for (j, &tok) in p.targets.iter().enumerate() {
                let g = self.true_gradient(&a, tok as usize);
                grads
                    .slice_mut(s![i, j, .., ..])
                    .assign(&g.mapv(|v| v as f32));
            }
        }
        Ok(Gradients {
            probs: f.probs,
            activations: f.activations,
            grads,
        })
    }

    fn patched_pass(
        &self,
        prompt: &TargetedPrompt,
        patches: &[Patch],
        outputs: PassOutputs,
    ) -> Result<PatchedPass, AdapterError> {
        self.check_targets(prompt)?;
        let state = self.patched_state(&self.activations_of(&prompt.text), patches)?;
        let out = self.head_output(&state.logits);
        let probs = prompt.targets.iter().map(|&t| out[t as usize] as f32);
        let grads = (outputs == PassOutputs::Gradients).then(|| {
            let (layers, width) = (self.num_layers(), self.ff_width());
            let mut g = Array3::zeros((prompt.targets.len(), layers, width));
            for (j, &tok) in prompt.targets.iter().enumerate() {
                let gj = self.gradient_at(&state.logits, &state.live, tok as usize);
                g.index_axis_mut(Axis(0), j).assign(&gj.mapv(|v| v as f32));
            }
            g
        });
        Ok(PatchedPass {
            probs: probs.collect(),
            activations: state.acts.mapv(|v| v as f32),
            grads,
        })
    }

    /// Closed form, overriding the default one [`ModelAdapter::patched_pass`] per variant.
    fn patched_probs(
        &self,
        prompt: &TargetedPrompt,
        variants: &[Vec<Patch>],
    ) -> Result<Array2<f32>, AdapterError> {
        self.check_targets(prompt)?;
        let base = self.activations_of(&prompt.text);
        let mut out = Array2::zeros((variants.len(), prompt.targets.len()));
        for (i, v) in variants.iter().enumerate() {
            let o = self.patched_output(&base, v)?;
            for (j, &tok) in prompt.targets.iter().enumerate() {
                out[[i, j]] = o[tok as usize] as f32;
            }
        }
        Ok(out)
    }

    /// Closed form, overriding the default built on [`ModelAdapter::patched_pass`].
    fn scaled_gradients(
        &self,
        prompt: &TargetedPrompt,
        layers: &[usize],
        alphas: &[f32],
    ) -> Result<Array4<f32>, AdapterError> {
        self.check_targets(prompt)?;
        let base = self.activations_of(&prompt.text);
        let width = self.ff_width();
        let mut out = Array4::zeros((layers.len(), alphas.len(), prompt.targets.len(), width));
        for (li, &l) in layers.iter().enumerate() {
            if l >= self.num_layers() {
                return Err(AdapterError::InvalidInput(format!(
                    "layer {l} is outside the model ({} layers)",
                    self.num_layers()
                )));
            }
            for (ai, &alpha) in alphas.iter().enumerate() {
                let mut a = base.clone();
                a.row_mut(l).mapv_inplace(|v| v * alpha as f64);
                for (j, &tok) in prompt.targets.iter().enumerate() {
                    let g = self.true_gradient(&a, tok as usize);
                    out.slice_mut(s![li, ai, j, ..])
                        .assign(&g.row(l).mapv(|v| v as f32));
                }
            }
        }
        Ok(out)
    }

    /// LPI with the analytic model's residual stream: `r` = `b + sum_{l' < l} V_l' a_l'`,
    /// `LPI = log softmax(r + a_n V_l[:, n])_t - log softmax(r)_t` (no final norm here).
    fn log_prob_increase(&self, prompt: &TargetedPrompt) -> Result<Array3<f32>, AdapterError> {
        if self.kind == ModelKind::MaskedLm {
            return Err(AdapterError::Unsupported {
                what: "log-probability increase (LPI)".into(),
                model: self.id.clone(),
            });
        }
        self.check_targets(prompt)?;
        let a = self.activations_of(&prompt.text);
        let (layers, width) = (self.num_layers(), self.ff_width());
        let mut out = Array3::zeros((prompt.targets.len(), layers, width));
        let mut r = self.b.clone();
        for l in 0..layers {
            let vl = self.v.index_axis(Axis(0), l);
            for (j, &tok) in prompt.targets.iter().enumerate() {
                let base = log_softmax_at(&r, tok as usize);
                for n in 0..width {
                    let z = &r + &vl.column(n).mapv(|x| x * a[[l, n]]);
                    out[[j, l, n]] = (log_softmax_at(&z, tok as usize) - base) as f32;
                }
            }
            r = r + vl.dot(&a.row(l));
        }
        Ok(out)
    }

    fn residual(&self, prompts: &[TargetedPrompt]) -> Result<Array3<f32>, AdapterError> {
        let (layers, hidden) = (self.num_layers(), self.hidden_size());
        let mut out = Array3::zeros((prompts.len(), layers, hidden));
        for (i, p) in prompts.iter().enumerate() {
            let a = self.activations_of(&p.text);
            let mut r = self.b.clone();
            for l in 0..layers {
                r = r + self.v.index_axis(Axis(0), l).dot(&a.row(l));
                out.slice_mut(s![i, l, ..]).assign(&r.mapv(|v| v as f32));
            }
        }
        Ok(out)
    }
}
