//! `neg distribution`: how NEG magnitudes are distributed over neurons and layers (paper Figs.
//! 4, 11, 12). Writes `results.json`, `fig4_cumulative.{csv,svg}`, `fig11_histogram.svg`,
//! `fig12_layers.{csv,svg}` and `neurgrad.safetensors` under `--out` (default
//! `out/distribution`).
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use neg_core::analysis::{self, NegDistribution};
use neg_core::methods::Method;
use neg_core::ModelAdapter;
use serde::{Deserialize, Serialize};

use crate::factual::progress as progress_bar;
use crate::factual::{self as common, FactualArgs, FactualSet, RunInfo};
use crate::factual::{attribute_blocks, fmt, join_blocks, Outcome};
use crate::output::{csv, Outputs, TensorFile};
use crate::plot::{self, LineSpec, Panel, Series};
use crate::skill::{FeatureCache, Shard};

/// Parameters of [`run_distribution`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistributionRun {
    pub bins: usize,
}

impl Default for DistributionRun {
    fn default() -> Self {
        Self { bins: 50 }
    }
}

/// Result of [`run_distribution`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistributionResult {
    pub info: RunInfo,
    pub config: DistributionRun,
    pub distribution: NegDistribution,
    /// Share of the total |NEG| held by the top 1%, 10% and 50% of neurons.
    pub top1_share: f64,
    pub top10_share: f64,
    pub top50_share: f64,
    /// Pearson r of per-layer mean and variance of |NEG| (the paper's Fig. 12 remark); `None`
    /// when undefined (fewer than 2 layers or constant values).
    pub layer_mean_var_r: Option<f64>,
}

/// Figs. 4, 11 and 12 from NeurGrad of every neuron on `set`; writes `results.json`,
/// `fig4_cumulative.csv`, `fig12_layers.csv`, the three SVGs and `neurgrad.safetensors`
/// (`scores` [P, T, L, N], `activations` [P, L, N], `probs` [P, T]) under `out`.
pub fn run_distribution<A: ModelAdapter + ?Sized>(
    model: &A,
    set: &FactualSet,
    config: &DistributionRun,
    out: &Path,
    show_progress: bool,
) -> Result<DistributionResult> {
    run_distribution_through(model, set, config, out, show_progress, None)?.into_done()
}

/// [`run_distribution`] with NeurGrad computed in blocks of [`crate::factual::BLOCK`] prompts
/// through `cache`: a rerun after an interruption resumes, and with a sharded cache only the
/// shard's blocks are computed and written as a shard.
pub fn run_distribution_through<A: ModelAdapter + ?Sized>(
    model: &A,
    set: &FactualSet,
    config: &DistributionRun,
    out: &Path,
    show_progress: bool,
    cache: Option<&FeatureCache>,
) -> Result<Outcome<DistributionResult>> {
    let started = Instant::now();
    let prompts = &set.prompts;
    let bar = progress_bar(prompts.len(), "NeurGrad", show_progress);
    let blocks = attribute_blocks(model, prompts, Method::NeurGrad, cache, &bar)?;
    bar.finish_and_clear();
    let Some((ng, _seconds)) = join_blocks(Method::NeurGrad, blocks)? else {
        // A shard: its blocks are in the cache; `neg merge` computes the results.
        return crate::factual::shard_outcome(cache, out);
    };
    let dist = analysis::neg_distribution(&ng.scores, config.bins)?;
    let share = |q: usize| {
        dist.cumulative_share
            .get(q - 1)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let means: Vec<f64> = dist.per_layer.iter().map(|l| l.mean_abs).collect();
    let vars: Vec<f64> = dist.per_layer.iter().map(|l| l.var_abs).collect();
    let result = DistributionResult {
        info: RunInfo::new(model, set, started),
        config: config.clone(),
        top1_share: share(1),
        top10_share: share(10),
        top50_share: share(50),
        layer_mean_var_r: neg_core::stats::pearson(&means, &vars).ok(),
        distribution: dist,
    };
    let d = &result.distribution;
    let mut files = Outputs::default();
    files.json("results.json", &result)?;
    files.text(
        "fig4_cumulative.csv",
        csv(
            &["percentile", "cumulative_share"],
            &d.percentiles
                .iter()
                .zip(&d.cumulative_share)
                .map(|(p, c)| vec![p.to_string(), c.to_string()])
                .collect::<Vec<_>>(),
        ),
    );
    files.text(
        "fig12_layers.csv",
        csv(
            &["layer", "mean_abs", "var_abs"],
            &d.per_layer
                .iter()
                .map(|l| {
                    vec![
                        l.layer.to_string(),
                        l.mean_abs.to_string(),
                        l.var_abs.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    );
    let title = format!(
        "{}, {} prompts",
        result.info.model, result.info.prompts.used
    );
    let fig4 = plot::line_svg(
        &LineSpec {
            y_range: Some((0.0, 1.02)),
            ..LineSpec::new(
                "Fig. 4: cumulative share of |NEG| (largest first)",
                "percentile of neurons",
                "share of total |NEG|",
            )
        },
        &[Panel {
            title: title.clone(),
            series: vec![Series::new(
                "NeurGrad",
                d.percentiles
                    .iter()
                    .copied()
                    .zip(d.cumulative_share.iter().copied())
                    .collect(),
            )],
        }],
    )?;
    files.text("fig4_cumulative.svg", fig4);
    let fig11 = log_histogram_svg(
        &format!("Fig. 11: NEG (NeurGrad) histogram, {title}"),
        "NEG",
        &d.histogram,
    )?;
    files.text("fig11_histogram.svg", fig11);
    let layer_series = |label: &str, f: &dyn Fn(f64, f64) -> f64| {
        Series::new(
            label,
            d.per_layer
                .iter()
                .map(|l| (l.layer as f64, f(l.mean_abs, l.var_abs)))
                .collect(),
        )
    };
    let fig12 = plot::line_svg(
        &LineSpec::new(
            "Fig. 12: |NEG| per layer (mean, mean +- std)",
            "layer",
            "|NEG|",
        ),
        &[Panel {
            title,
            series: vec![
                layer_series("mean", &|m, _| m),
                layer_series("mean + std", &|m, v| m + v.sqrt()),
                layer_series("mean - std", &|m, v| m - v.sqrt()),
            ],
        }],
    )?;
    files.text("fig12_layers.svg", fig12);
    let mut t = TensorFile::default();
    t.add("scores", &ng.scores);
    t.add("activations", &ng.activations);
    t.add("probs", &ng.probs);
    t.meta("model", result.info.model.clone());
    t.meta("method", "neurgrad");
    let targets: Vec<&[u32]> = prompts.iter().map(|p| p.targets.as_slice()).collect();
    t.meta("target_ids", serde_json::to_string(&targets)?);
    files.tensors("neurgrad.safetensors", &t)?;
    files.write(out)?;
    if let Some(cache) = cache {
        crate::factual::discard_cache(cache, out, "distribution")?;
    }
    Ok(Outcome::Done(Box::new(result)))
}

/// A histogram with a logarithmic count axis, as in the paper's Figs. 10 and 11 (almost every
/// NEG is near zero, so a linear axis shows one bar). `plot::histogram_svg` has a linear axis
/// and bins its own values, so this draws the already-binned [`analysis::Histogram`].
pub fn log_histogram_svg(title: &str, x_label: &str, h: &analysis::Histogram) -> Result<String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw the histogram: {e}");
    if h.counts.is_empty() || h.edges.len() != h.counts.len() + 1 {
        bail!("nothing to plot: the histogram has no bins");
    }
    let (lo, hi) = (h.edges[0], h.edges[h.counts.len()]);
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let top = h.counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 2.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, (0.5f64..top).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("count (log scale)")
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(
                h.counts
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c > 0)
                    .map(|(i, &c)| {
                        Rectangle::new(
                            [(h.edges[i], 0.5), (h.edges[i + 1], c as f64)],
                            BLUE.mix(0.6).filled(),
                        )
                    }),
            )
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// The console table of [`run_distribution`].
pub fn distribution_table(r: &DistributionResult) -> String {
    let d = &r.distribution;
    let mut s = format!(
        "NEG distribution ({}, {} values): mean {}  total |NEG| {}\n",
        r.info.model,
        d.count,
        fmt(d.mean),
        fmt(d.total_abs)
    );
    s += &format!(
        "Fig. 4: top 1% of neurons hold {:.3}, top 10% {:.3}, top 50% {:.3} of total |NEG|\n",
        r.top1_share, r.top10_share, r.top50_share
    );
    s += "Fig. 12:  layer   mean|NEG|    var|NEG|\n";
    for l in &d.per_layer {
        s += &format!(
            "          {:>5} {:>11} {:>11}\n",
            l.layer,
            fmt(l.mean_abs),
            fmt(l.var_abs)
        );
    }
    if let Some(c) = r.layer_mean_var_r {
        s += &format!("  r(mean, var) across layers: {c:.4}\n");
    }
    s
}

/// Arguments of `neg distribution`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Model, prompts, seed, output.
    #[command(flatten)]
    pub common: FactualArgs,
    /// Histogram bins (Fig. 11).
    #[arg(long, default_value_t = 50)]
    pub bins: usize,
    /// Compute only part i of n of the prompt blocks (16 prompts each: their NeurGrad) and
    /// write a shard to --out (e.g. `--shard 2/8`); `neg merge` then writes the run's results
    /// from all n shards.
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// Checks the inputs, computes NeurGrad on every prompt and writes the files (or, with
/// `--shard`, the shard). Every block's NeurGrad is kept in `<out>.resume` until the results
/// are written, so a rerun after an interruption resumes.
pub fn run(args: &Args) -> Result<Outcome<DistributionResult>> {
    if args.bins == 0 {
        bail!("--bins must be at least 1");
    }
    let (model, set, out, _lock) = common::setup(&args.common, "distribution", 0)?;
    let config = DistributionRun { bins: args.bins };
    let cache = common::run_cache(&args.common, &model, &out, args.shard)?;
    run_distribution_through(
        &model,
        &set,
        &config,
        &out,
        args.common.run.progress(),
        Some(&cache),
    )
}

/// Runs and prints the distribution summary (or the shard's line).
pub fn main(args: &Args) -> Result<()> {
    let Some(result) = crate::factual::done_or_print_shard(run(args)?) else {
        return Ok(());
    };
    common::print_result(
        &distribution_table(&result),
        &args.common,
        "distribution",
        &result.info,
    );
    Ok(())
}
