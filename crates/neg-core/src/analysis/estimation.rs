//! Estimation quality of NEG estimators against ground truth (Table 2).
use ndarray::Array4;
use serde::{Deserialize, Serialize};

use crate::adapter::{AdapterError, ModelAdapter, NeuronId, TargetedPrompt};
use crate::error::{NegError, Result};
use crate::methods::{self, Method};
use crate::neg::{ground_truth_neg, GroundTruth, SweepConfig};
use crate::stats::{self};

/// Agreement of one estimator with ground-truth NEG, pooled over prompts, targets and neurons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodQuality {
    pub name: String,
    pub r: f64,
    pub spearman: f64,
    pub mae: f64,
    pub n: usize,
}

/// Result of [`estimation_quality`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimationQuality {
    pub sweep: SweepConfig,
    pub methods: Vec<MethodQuality>,
    /// Methods the model does not support (e.g. LPI on a masked LM), with the reason.
    pub unsupported: Vec<(String, String)>,
}

/// The estimates [P, T, L, N] at the ground truth's (prompt, target, neuron) cells, flattened
/// in the ground truth's [P, T, K] order.
pub fn gather(truth: &GroundTruth, scores: &Array4<f32>) -> Result<Vec<f64>> {
    let (p, t, _) = truth.neg.dim();
    let s = scores.shape();
    if s[0] != p
        || s[1] != t
        || truth
            .neurons
            .iter()
            .any(|n| n.layer >= s[2] || n.neuron >= s[3])
    {
        return Err(NegError::Shape {
            what: "scores",
            got: s.to_vec(),
            expected: vec![p, t],
        });
    }
    Ok(truth
        .neg
        .indexed_iter()
        .map(|((pi, ti, k), _)| {
            let n = truth.neurons[k];
            scores[[pi, ti, n.layer, n.neuron]] as f64
        })
        .collect())
}

/// r, Spearman and MAE of each named estimate [P, T, L, N] against `truth.neg`.
pub fn estimation_quality(
    truth: &GroundTruth,
    estimates: &[(&str, &Array4<f32>)],
) -> Result<EstimationQuality> {
    let y: Vec<f64> = truth.neg.iter().map(|&v| v as f64).collect();
    let methods = estimates
        .iter()
        .map(|(name, scores)| {
            let x = gather(truth, scores)?;
            Ok(MethodQuality {
                name: name.to_string(),
                r: stats::pearson(&x, &y)?,
                spearman: stats::spearman(&x, &y)?,
                mae: stats::mae(&x, &y)?,
                n: y.len(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EstimationQuality {
        sweep: truth.config.clone(),
        methods,
        unsupported: vec![],
    })
}

/// Ground truth for `neurons` plus each of `methods` on the same prompts, compared. IG is
/// reported twice: `ig` (attribution a x mean gradient) and `ig_mean_gradient`. An
/// unsupported method is listed in `unsupported` instead of failing the comparison.
pub fn compare_methods<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
    neurons: &[NeuronId],
    sweep: &SweepConfig,
    methods_to_compare: &[Method],
) -> Result<(GroundTruth, EstimationQuality)> {
    let truth = ground_truth_neg(adapter, prompts, neurons, sweep)?;
    let mut named: Vec<(String, Array4<f32>)> = Vec::new();
    let mut unsupported = Vec::new();
    for &m in methods_to_compare {
        let result = match m {
            Method::Ig => {
                methods::integrated_gradients(adapter, prompts, methods::IG_STEPS).map(|ig| {
                    named.push(("ig".into(), ig.attribution));
                    named.push(("ig_mean_gradient".into(), ig.mean_gradient));
                })
            }
            other => methods::attribute(adapter, prompts, other)
                .map(|a| named.push((other.name().into(), a.scores))),
        };
        match result {
            Ok(()) => {}
            Err(NegError::Adapter(e @ AdapterError::Unsupported { .. })) => {
                unsupported.push((m.name().to_string(), e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    let refs: Vec<(&str, &Array4<f32>)> = named.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut quality = estimation_quality(&truth, &refs)?;
    quality.unsupported = unsupported;
    Ok((truth, quality))
}
