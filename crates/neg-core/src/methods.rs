//! NEG estimators for every FF neuron at once: NeurGrad, CG, IG and LPI.
use ndarray::{s, Array2, Array3, Array4, Axis, Zip};
use serde::{Deserialize, Serialize};

use crate::adapter::{AdapterError, ModelAdapter, ModelKind, TargetedPrompt};
use crate::error::{NegError, Result};
use crate::validate;

/// An attribution method. Its command-line name ([`Method::name`], `FromStr`, and with the
/// `clap` feature `clap::ValueEnum`) is the lowercase `neurgrad`, `cg`, `ig`, `lpi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// dP/da x sign(a): the slope of magnitude shifts at d = 0.
    #[cfg_attr(feature = "clap", value(name = "neurgrad"))]
    NeurGrad,
    /// Computational gradient dP/da.
    Cg,
    /// Integrated gradients (Dai et al. 2022): a x mean path gradient.
    Ig,
    /// Log-probability increase (Yu & Ananiadou 2024).
    Lpi,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::NeurGrad, Method::Cg, Method::Ig, Method::Lpi];

    /// The lowercase name used on command lines and in result files.
    pub fn name(self) -> &'static str {
        match self {
            Method::NeurGrad => "neurgrad",
            Method::Cg => "cg",
            Method::Ig => "ig",
            Method::Lpi => "lpi",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown method {s:?} (expected neurgrad, cg, ig or lpi)"))
    }
}

/// Scores of one method for every prompt, target and FF neuron.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub method: Method,
    /// [P, T]
    pub probs: Array2<f32>,
    /// [P, L, N]
    pub activations: Array3<f32>,
    /// [P, T, L, N]
    pub scores: Array4<f32>,
}

/// Number of IG steps in Dai et al. 2022.
pub const IG_STEPS: usize = 20;

/// IG's scaling factors: alpha = k / m for k = 1..=m (right Riemann sum; the zero baseline
/// itself, alpha = 0, is not evaluated).
pub fn ig_alphas(steps: usize) -> Result<Vec<f32>> {
    if steps == 0 {
        return Err(NegError::InvalidArgument {
            name: "steps",
            reason: "integrated gradients need at least one step".into(),
        });
    }
    Ok((1..=steps).map(|k| k as f32 / steps as f32).collect())
}

/// Integrated gradients with both the attribution and the mean path gradient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntegratedGradients {
    pub alphas: Vec<f32>,
    /// [P, T]
    pub probs: Array2<f32>,
    /// [P, L, N]
    pub activations: Array3<f32>,
    /// [P, T, L, N] mean over alphas of dP/da at the scaled activation vector: a slope
    /// comparable to NEG.
    pub mean_gradient: Array4<f32>,
    /// [P, T, L, N] a x mean_gradient (Dai et al.'s attribution score).
    pub attribution: Array4<f32>,
}

fn checked_gradients<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
) -> Result<crate::adapter::Gradients> {
    let t = validate::prompts(prompts)?;
    let g = adapter.gradients(prompts)?;
    let (p, l, n) = (prompts.len(), adapter.num_layers(), adapter.ff_width());
    validate::shape("gradients probs", &g.probs, &[p, t])?;
    validate::shape("gradients activations", &g.activations, &[p, l, n])?;
    validate::shape("gradients grads", &g.grads, &[p, t, l, n])?;
    validate::finite("gradients probs", &g.probs)?;
    validate::finite("gradients activations", &g.activations)?;
    validate::finite("gradients grads", &g.grads)?;
    Ok(g)
}

/// CG: dP(target)/da for every FF neuron.
pub fn computational_gradient<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
) -> Result<Attribution> {
    let g = checked_gradients(adapter, prompts)?;
    Ok(Attribution {
        method: Method::Cg,
        probs: g.probs,
        activations: g.activations,
        scores: g.grads,
    })
}

/// NeurGrad: dP(target)/da x sign(a) for every FF neuron (sign(a) = 1 if a > 0 else -1).
pub fn neurgrad<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
) -> Result<Attribution> {
    let g = checked_gradients(adapter, prompts)?;
    let mut scores = g.grads;
    for (p, mut per_prompt) in scores.axis_iter_mut(Axis(0)).enumerate() {
        let acts = g.activations.index_axis(Axis(0), p);
        for mut per_target in per_prompt.axis_iter_mut(Axis(0)) {
            Zip::from(&mut per_target)
                .and(&acts)
                .for_each(|s, &a| *s *= validate::sign(a));
        }
    }
    Ok(Attribution {
        method: Method::NeurGrad,
        probs: g.probs,
        activations: g.activations,
        scores,
    })
}

/// Integrated gradients over every layer with `steps` scaling factors (see [`ig_alphas`]).
pub fn integrated_gradients<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
    steps: usize,
) -> Result<IntegratedGradients> {
    let t = validate::prompts(prompts)?;
    let alphas = ig_alphas(steps)?;
    let forward = adapter.forward(prompts)?;
    let (l, n) = (adapter.num_layers(), adapter.ff_width());
    validate::shape("forward probs", &forward.probs, &[prompts.len(), t])?;
    validate::shape(
        "forward activations",
        &forward.activations,
        &[prompts.len(), l, n],
    )?;
    validate::finite("forward probs", &forward.probs)?;
    validate::finite("forward activations", &forward.activations)?;
    let layers: Vec<usize> = (0..l).collect();
    let mut mean_gradient = Array4::zeros((prompts.len(), t, l, n));
    for (p, prompt) in prompts.iter().enumerate() {
        let g = adapter.scaled_gradients(prompt, &layers, &alphas)?;
        validate::shape("scaled_gradients", &g, &[l, alphas.len(), t, n])?;
        validate::finite("scaled_gradients", &g)?;
        // [L, A, T, N] -> mean over A -> [L, T, N] -> [T, L, N]
        let mean = g
            .mean_axis(Axis(1))
            .unwrap_or_else(|| Array3::zeros((l, t, n)));
        mean_gradient
            .slice_mut(s![p, .., .., ..])
            .assign(&mean.permuted_axes([1, 0, 2]));
    }
    let mut attribution = mean_gradient.clone();
    for (p, mut per_prompt) in attribution.axis_iter_mut(Axis(0)).enumerate() {
        let acts = forward.activations.index_axis(Axis(0), p);
        for mut per_target in per_prompt.axis_iter_mut(Axis(0)) {
            per_target *= &acts;
        }
    }
    Ok(IntegratedGradients {
        alphas,
        probs: forward.probs,
        activations: forward.activations,
        mean_gradient,
        attribution,
    })
}

/// LPI for every prompt, target and neuron (delegates to the adapter). Masked LMs give
/// [`AdapterError::Unsupported`] without calling the adapter.
pub fn log_prob_increase<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
) -> Result<Attribution> {
    let t = validate::prompts(prompts)?;
    if adapter.kind() == ModelKind::MaskedLm {
        return Err(AdapterError::Unsupported {
            what: "log-probability increase (LPI), defined for Llama-family causal LMs".into(),
            model: adapter.model_id().into(),
        }
        .into());
    }
    let forward = adapter.forward(prompts)?;
    let (l, n) = (adapter.num_layers(), adapter.ff_width());
    validate::finite("forward probs", &forward.probs)?;
    let mut scores = Array4::zeros((prompts.len(), t, l, n));
    for (p, prompt) in prompts.iter().enumerate() {
        let lpi = adapter.log_prob_increase(prompt)?;
        validate::shape("log_prob_increase", &lpi, &[t, l, n])?;
        validate::finite("log_prob_increase", &lpi)?;
        scores.slice_mut(s![p, .., .., ..]).assign(&lpi);
    }
    Ok(Attribution {
        method: Method::Lpi,
        probs: forward.probs,
        activations: forward.activations,
        scores,
    })
}

/// Any method's scores; IG uses [`IG_STEPS`] and reports its attribution (a x mean gradient).
pub fn attribute<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
    method: Method,
) -> Result<Attribution> {
    match method {
        Method::NeurGrad => neurgrad(adapter, prompts),
        Method::Cg => computational_gradient(adapter, prompts),
        Method::Lpi => log_prob_increase(adapter, prompts),
        Method::Ig => {
            let ig = integrated_gradients(adapter, prompts, IG_STEPS)?;
            Ok(Attribution {
                method,
                probs: ig.probs,
                activations: ig.activations,
                scores: ig.attribution,
            })
        }
    }
}
