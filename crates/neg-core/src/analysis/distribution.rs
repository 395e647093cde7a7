//! NEG distribution: cumulative |NEG| share, histogram, per-layer magnitude (Figs. 4, 11, 12).
use ndarray::Array4;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{NegError, Result};
use crate::validate;

/// Equal-width histogram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// bins + 1 edges.
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// Mean and population variance of |NEG| in one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerMagnitude {
    pub layer: usize,
    pub mean_abs: f64,
    pub var_abs: f64,
}

/// Result of [`neg_distribution`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NegDistribution {
    /// Number of (prompt, target, neuron) values.
    pub count: usize,
    pub mean: f64,
    pub total_abs: f64,
    /// 1, 2, ..., 100.
    pub percentiles: Vec<f64>,
    /// Share of the total |NEG| held by the top q% of values (largest |NEG| first).
    pub cumulative_share: Vec<f64>,
    /// Histogram of the signed NEG values.
    pub histogram: Histogram,
    pub per_layer: Vec<LayerMagnitude>,
}

/// Distribution of NEG estimates `scores` [P, T, L, N] (e.g. NeurGrad for every neuron).
pub fn neg_distribution(scores: &Array4<f32>, bins: usize) -> Result<NegDistribution> {
    validate::finite("scores", scores)?;
    if scores.is_empty() {
        return Err(NegError::NoNeurons);
    }
    if bins == 0 {
        return Err(NegError::InvalidArgument {
            name: "bins",
            reason: "a histogram needs at least one bin".into(),
        });
    }
    let values: Vec<f64> = scores.iter().map(|&v| v as f64).collect();
    let count = values.len();
    let mut mags: Vec<f64> = values.iter().map(|v| v.abs()).collect();
    mags.par_sort_unstable_by(|a, b| b.total_cmp(a));
    let total_abs: f64 = mags.iter().sum();
    let mut prefix = Vec::with_capacity(count);
    let mut acc = 0.0;
    for m in &mags {
        acc += m;
        prefix.push(acc);
    }
    let percentiles: Vec<f64> = (1..=100).map(|q| q as f64).collect();
    let cumulative_share = percentiles
        .iter()
        .map(|q| {
            let m = ((q / 100.0) * count as f64).ceil().max(1.0) as usize;
            if total_abs > 0.0 {
                prefix[m.min(count) - 1] / total_abs
            } else {
                0.0
            }
        })
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let width = if hi > lo {
        (hi - lo) / bins as f64
    } else {
        1.0
    };
    let edges: Vec<f64> = (0..=bins).map(|i| lo + i as f64 * width).collect();
    let mut counts = vec![0u64; bins];
    for v in &values {
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let layers = scores.shape()[2];
    let per_layer = (0..layers)
        .into_par_iter()
        .map(|l| {
            let m: Vec<f64> = scores
                .index_axis(ndarray::Axis(2), l)
                .iter()
                .map(|v| v.abs() as f64)
                .collect();
            let n = m.len().max(1) as f64;
            let mean = m.iter().sum::<f64>() / n;
            let var = m.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            LayerMagnitude {
                layer: l,
                mean_abs: mean,
                var_abs: var,
            }
        })
        .collect();
    Ok(NegDistribution {
        count,
        mean: values.iter().sum::<f64>() / count as f64,
        total_abs,
        percentiles,
        cumulative_share,
        histogram: Histogram { edges, counts },
        per_layer,
    })
}
