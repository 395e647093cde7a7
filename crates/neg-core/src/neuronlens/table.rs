//! A test model whose FF activations (one layer) are a fixed table, one row per prompt (the
//! prompt text is the row number), and whose option logits are a function of the possibly
//! patched row. Shared by this module's and [`crate::aux_metrics`]'s tests.
use ndarray::{Array1, Array2, Array3, Array4};

use crate::adapter::{
    AdapterError, Forward, Gradients, ModelAdapter, ModelKind, Patch, PatchOp, TargetedPrompt,
};

type Head = fn(&[f64]) -> Vec<f64>;

pub(crate) struct TableAdapter {
    pub acts: Array2<f64>,
    head: Head,
}

impl TableAdapter {
    pub fn new(acts: Array2<f64>, head: Head) -> Self {
        Self { acts, head }
    }

    /// One prompt per row with targets 0..n_options.
    pub fn prompts(&self, n_options: u32) -> Vec<TargetedPrompt> {
        (0..self.acts.nrows())
            .map(|i| TargetedPrompt::new(i.to_string(), (0..n_options).collect()))
            .collect()
    }

    fn row(&self, p: &TargetedPrompt) -> Result<Vec<f64>, AdapterError> {
        p.text
            .parse::<usize>()
            .ok()
            .filter(|&i| i < self.acts.nrows())
            .map(|i| self.acts.row(i).to_vec())
            .ok_or_else(|| AdapterError::InvalidInput(format!("unknown prompt {}", p.text)))
    }

    fn probs(&self, a: &[f64], targets: &[u32]) -> Vec<f32> {
        let z = (self.head)(a);
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        targets
            .iter()
            .map(|&t| (e[t as usize] / s) as f32)
            .collect()
    }
}

impl ModelAdapter for TableAdapter {
    fn model_id(&self) -> &str {
        "table"
    }
    fn kind(&self) -> ModelKind {
        ModelKind::CausalLm
    }
    fn num_layers(&self) -> usize {
        1
    }
    fn ff_width(&self) -> usize {
        self.acts.ncols()
    }
    fn hidden_size(&self) -> usize {
        self.acts.ncols()
    }
    fn target_token(&self, _: &str, _: &str) -> Result<u32, AdapterError> {
        Ok(0)
    }
    fn forward(&self, prompts: &[TargetedPrompt]) -> Result<Forward, AdapterError> {
        let t = prompts.first().map_or(0, |p| p.targets.len());
        let mut probs = Array2::zeros((prompts.len(), t));
        let mut activations = Array3::zeros((prompts.len(), 1, self.acts.ncols()));
        for (i, p) in prompts.iter().enumerate() {
            let a = self.row(p)?;
            probs
                .row_mut(i)
                .assign(&Array1::from(self.probs(&a, &p.targets)));
            for (j, v) in a.iter().enumerate() {
                activations[[i, 0, j]] = *v as f32;
            }
        }
        Ok(Forward { probs, activations })
    }
    fn gradients(&self, _: &[TargetedPrompt]) -> Result<Gradients, AdapterError> {
        Err(AdapterError::Unsupported {
            what: "gradients".into(),
            model: "table".into(),
        })
    }
    fn patched_probs(
        &self,
        prompt: &TargetedPrompt,
        variants: &[Vec<Patch>],
    ) -> Result<Array2<f32>, AdapterError> {
        let base = self.row(prompt)?;
        let mut out = Array2::zeros((variants.len(), prompt.targets.len()));
        for (v, patches) in variants.iter().enumerate() {
            let mut a = base.clone();
            for p in patches {
                let x = a.get_mut(p.index).ok_or_else(|| {
                    AdapterError::InvalidInput(format!("patch index {}", p.index))
                })?;
                match p.op {
                    PatchOp::Set(y) => *x = f64::from(y),
                    PatchOp::Add(d) => *x += f64::from(d),
                }
            }
            out.row_mut(v)
                .assign(&Array1::from(self.probs(&a, &prompt.targets)));
        }
        Ok(out)
    }
    fn scaled_gradients(
        &self,
        _: &TargetedPrompt,
        _: &[usize],
        _: &[f32],
    ) -> Result<Array4<f32>, AdapterError> {
        Err(AdapterError::Unsupported {
            what: "IG".into(),
            model: "table".into(),
        })
    }
}
