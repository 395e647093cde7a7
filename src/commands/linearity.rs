//! `neg linearity`: neuron linearity (paper §2.2): Fig. 2 (mean |r| of activation vs output
//! shifts per shift range), Table 1 (linear, positive and negative ratios within +-2) and
//! Table 5 (linearity, layer and prompt generality of each prompt's top-|NeurGrad| neurons).
//! Writes `results.json`, `fig2_linearity.csv`, `fig2_linearity.svg` and
//! `sweeps.safetensors` under `--out` (default `out/linearity`).
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use ndarray::s;
use neg_core::analysis::{self, Generality, LinearityConfig};
use neg_core::methods::Method;
use neg_core::neg::{ground_truth_neg, GroundTruth, ShiftMode, SweepConfig};
use neg_core::{sampling, ModelAdapter, NeuronId, TargetedPrompt};
use serde::{Deserialize, Serialize};

use crate::factual::progress as progress_bar;
use crate::factual::{self as common, FactualArgs, FactualSet, RunInfo};
use crate::factual::{attribute_blocks, block_work, sweep_with_progress, Outcome, BLOCK};
use crate::output::{csv, Outputs, TensorFile};
use crate::plot::{self, LineSpec, Panel, Series};
use crate::skill::{FeatureCache, Shard};

/// Parameters of [`run_linearity`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearityRun {
    /// Randomly sampled neurons swept on every prompt (Fig. 2, Table 1; the paper: 1000 for
    /// Fig. 2, 100 for Table 1).
    pub random_neurons: usize,
    /// Per prompt, this many neurons with the largest |NeurGrad| (Table 5; the paper: 100).
    /// 0 skips Table 5.
    pub top_neurons: usize,
    pub sweep: LinearityConfig,
    pub seed: u64,
}

impl Default for LinearityRun {
    fn default() -> Self {
        Self {
            random_neurons: 100,
            top_neurons: 20,
            sweep: LinearityConfig {
                ranges: vec![0.1, 0.5, 1.0, 2.0, 5.0, 10.0],
                ..LinearityConfig::default()
            },
            seed: 0,
        }
    }
}

/// One point of Fig. 2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangePoint {
    pub range: f32,
    pub step: f32,
    pub mean_abs_r: f64,
    pub linear_ratio: f64,
}

/// Table 5: linearity of each prompt's top-|NeurGrad| neurons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopNeuronLinearity {
    pub neurons_per_prompt: usize,
    pub range: f32,
    pub linear_ratio: f64,
    pub mean_abs_r: f64,
    /// LG (bins = layers).
    pub layer_generality: Generality,
    /// PG (bins = prompts).
    pub prompt_generality: Generality,
}

/// Result of [`run_linearity`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearityResult {
    pub info: RunInfo,
    pub config: LinearityRun,
    pub neurons: Vec<NeuronId>,
    /// Fig. 2: mean |r| and linear ratio per shift range.
    pub fig2: Vec<RangePoint>,
    /// Table 1 at the judging range: linear, positive and negative ratios.
    pub linear_ratio: f64,
    pub positive_ratio: f64,
    pub negative_ratio: f64,
    /// Table 5 applied to the random neurons (LG, PG).
    pub layer_generality: Generality,
    pub prompt_generality: Generality,
    pub table5: Option<TopNeuronLinearity>,
}

/// Fig. 2, Table 1 and Table 5 on `set`; writes `results.json`, `fig2_linearity.csv`,
/// `fig2_linearity.svg` and `sweeps.safetensors` (r per range, NEG and probability shifts at
/// the judging range) under `out`.
pub fn run_linearity<A: ModelAdapter + ?Sized>(
    model: &A,
    set: &FactualSet,
    config: &LinearityRun,
    out: &Path,
    show_progress: bool,
) -> Result<LinearityResult> {
    run_linearity_through(model, set, config, out, show_progress, None)?.into_done()
}

/// [`run_linearity`] with every sweep and NeurGrad block going through `cache`
/// ([`crate::factual::BLOCK`] prompts per entry): a rerun after an interruption resumes, and
/// with a sharded cache only the shard's blocks are computed and written as a shard
/// ([`crate::skill::shard`]) instead of the results.
pub fn run_linearity_through<A: ModelAdapter + ?Sized>(
    model: &A,
    set: &FactualSet,
    config: &LinearityRun,
    out: &Path,
    show_progress: bool,
    cache: Option<&FeatureCache>,
) -> Result<Outcome<LinearityResult>> {
    let started = Instant::now();
    let cfg = &config.sweep;
    if cfg.points_per_side == 0 || cfg.ranges.is_empty() {
        bail!("--points-per-side must be at least 1 and --ranges non-empty");
    }
    cfg.check_grids()
        .map_err(|e| anyhow::anyhow!("--ranges/--step: {e}"))?;
    let (l, n) = (model.num_layers(), model.ff_width());
    let neurons = sampling::sample_neurons(l, n, config.random_neurons, config.seed)?;
    let mut ranges = cfg.ranges.clone();
    if !ranges.contains(&cfg.linear_range) {
        ranges.push(cfg.linear_range);
    }
    let prompts = &set.prompts;
    let top_steps = if config.top_neurons > 0 {
        2 * prompts.len()
    } else {
        0
    };
    let bar = progress_bar(
        ranges.len() * prompts.len() + top_steps,
        "linearity sweeps",
        show_progress,
    );
    let mut truths = Vec::new();
    for &range in &ranges {
        let sweep = SweepConfig {
            range,
            step: cfg.step_for(range)?,
            mode: cfg.mode,
            max_variants_per_call: cfg.max_variants_per_call,
            naive: false,
        };
        truths.push(sweep_with_progress(
            model, prompts, &neurons, &sweep, cache, &bar,
        )?);
    }
    // `None` when this is a shard that computed only its part; `Some(None)` without Table 5.
    let table5 = if config.top_neurons > 0 {
        top_neuron_linearity(model, prompts, config, cache, &bar)?.map(Some)
    } else {
        Some(None)
    };
    bar.finish_and_clear();
    let truths: Option<Vec<GroundTruth>> = truths
        .into_iter()
        .map(|t| t.map(|(truth, _seconds)| truth))
        .collect();
    let (Some(truths), Some(table5)) = (truths, table5) else {
        // A shard: its blocks are in the cache; `neg merge` computes the results.
        return crate::factual::shard_outcome(cache, out);
    };
    let judged_idx = ranges
        .iter()
        .position(|&r| r == cfg.linear_range)
        .context("judging range missing")?;
    let shown = truths[..cfg.ranges.len()].to_vec();
    let report = analysis::linearity_from(cfg, &shown, &truths[judged_idx], l)?;

    let fig2: Vec<RangePoint> = report
        .per_range
        .iter()
        .map(|r| RangePoint {
            range: r.range,
            step: r.step,
            mean_abs_r: r.mean_abs_r,
            linear_ratio: r.linear_ratio,
        })
        .collect();
    let result = LinearityResult {
        info: RunInfo::new(model, set, started),
        config: config.clone(),
        neurons: neurons.clone(),
        fig2: fig2.clone(),
        linear_ratio: report.linear_ratio,
        positive_ratio: report.positive_ratio,
        negative_ratio: report.negative_ratio,
        layer_generality: report.layer_generality.clone(),
        prompt_generality: report.prompt_generality.clone(),
        table5,
    };

    let mut files = Outputs::default();
    files.json("results.json", &result)?;
    files.text(
        "fig2_linearity.csv",
        csv(
            &["range", "step", "mean_abs_r", "linear_ratio"],
            &fig2
                .iter()
                .map(|p| {
                    vec![
                        p.range.to_string(),
                        p.step.to_string(),
                        p.mean_abs_r.to_string(),
                        p.linear_ratio.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    );
    let svg = plot::line_svg(
        &LineSpec {
            y_range: Some((0.0, 1.05)),
            ..LineSpec::new(
                &format!(
                    "Fig. 2: |r| of activation vs output shifts ({})",
                    result.info.model
                ),
                "shift range R (activation in [-R, R])",
                "value",
            )
        },
        &[Panel {
            title: format!(
                "{} prompts x {} random neurons",
                prompts.len(),
                neurons.len()
            ),
            series: vec![
                Series::new(
                    "mean |r|",
                    fig2.iter()
                        .map(|p| (p.range as f64, p.mean_abs_r))
                        .collect(),
                ),
                Series::new(
                    "linear ratio (|r| >= thr)",
                    fig2.iter()
                        .map(|p| (p.range as f64, p.linear_ratio))
                        .collect(),
                ),
            ],
        }],
    )?;
    files.text("fig2_linearity.svg", svg);
    let mut t = TensorFile::default();
    for (g, &range) in truths.iter().zip(&ranges) {
        t.add(&format!("r_range_{range}"), &g.r);
    }
    let judged = &truths[judged_idx];
    t.add("neg", &judged.neg);
    t.add("delta_probs", &judged.delta_probs);
    t.add("base_probs", &judged.base_probs);
    t.meta("model", result.info.model.clone());
    t.meta("neurons", serde_json::to_string(&neurons)?);
    t.meta("shifts", serde_json::to_string(&judged.shifts)?);
    t.meta(
        "layout",
        "r_range_R, neg: [P, T, K]; delta_probs: [P, T, K, S] at the judging range",
    );
    files.tensors("sweeps.safetensors", &t)?;
    files.write(out)?;
    if let Some(cache) = cache {
        crate::factual::discard_cache(cache, out, "linearity")?;
    }
    Ok(Outcome::Done(Box::new(result)))
}

/// The `k` neurons with the largest |NeurGrad| of prompt `p`'s (first) target in `scores`
/// (`[P, T, L, N]`), in `NeuronId` order.
fn top_neurons(scores: &ndarray::Array4<f32>, p: usize, k: usize) -> Vec<NeuronId> {
    let scores = scores.slice(s![p, 0, .., ..]);
    let (l, n) = scores.dim();
    let mut order: Vec<NeuronId> = (0..l)
        .flat_map(|li| (0..n).map(move |ni| NeuronId::new(li, ni)))
        .collect();
    order.sort_by(|a, b| {
        scores[[b.layer, b.neuron]]
            .abs()
            .total_cmp(&scores[[a.layer, a.neuron]].abs())
    });
    order.truncate(k);
    order.sort();
    order
}

/// Table 5 by blocks of prompts: each block's NeurGrad, then the sweep of each of its prompts'
/// top neurons, through `cache`. `None` when another shard owns some blocks. The counts add
/// up in the order of the unblocked loop (prompts, targets, neurons), so the numbers are the
/// same.
fn top_neuron_linearity<A: ModelAdapter + ?Sized>(
    model: &A,
    prompts: &[TargetedPrompt],
    config: &LinearityRun,
    cache: Option<&FeatureCache>,
    bar: &ProgressBar,
) -> Result<Option<TopNeuronLinearity>> {
    let cfg = &config.sweep;
    let (l, n) = (model.num_layers(), model.ff_width());
    let k = config.top_neurons.min(l * n);
    let grads = attribute_blocks(model, prompts, Method::NeurGrad, cache, bar)?;
    let sweep = SweepConfig {
        range: cfg.linear_range,
        step: cfg.step_for(cfg.linear_range)?,
        mode: cfg.mode,
        max_variants_per_call: cfg.max_variants_per_call,
        naive: false,
    };
    let what = format!("top-|NeurGrad| linearity v1 k={k} {sweep:?}");
    let mut rs = Vec::new();
    for (b, (block, ng)) in prompts.chunks(BLOCK).zip(&grads).enumerate() {
        rs.push(block_work(cache, b, &what, block, bar, || {
            // Both items of a block belong to one shard: a block computed here has NeurGrad.
            let (ng, _) = ng
                .as_ref()
                .context("NeurGrad of a block this process computes")?;
            let mut r = ndarray::Array3::zeros((block.len(), block[0].targets.len(), k));
            for (p, prompt) in block.iter().enumerate() {
                let order = top_neurons(&ng.scores, p, k);
                let g = ground_truth_neg(model, std::slice::from_ref(prompt), &order, &sweep)?;
                r.slice_mut(s![p, .., ..]).assign(&g.r.slice(s![0, .., ..]));
                bar.inc(1);
            }
            // The Pearson r of each prompt's own top neurons, `[P, T, K]`.
            Ok(r)
        })?);
    }
    let Some((rs, _seconds)) = crate::factual::all_blocks(rs) else {
        return Ok(None);
    };
    let thr = cfg.linear_threshold;
    let (mut per_layer, mut per_prompt) = (vec![0usize; l], vec![0usize; prompts.len()]);
    let (mut linear, mut total, mut sum_abs_r) = (0usize, 0usize, 0f64);
    for (b, (r, ng)) in rs.iter().zip(&grads).enumerate() {
        let (ng, _) = ng.as_ref().context("a block without NeurGrad")?;
        for p in 0..r.dim().0 {
            let order = top_neurons(&ng.scores, p, k);
            for ((_, ki), r) in r.slice(s![p, .., ..]).indexed_iter() {
                total += 1;
                sum_abs_r += r.abs() as f64;
                if r.abs() >= thr {
                    linear += 1;
                    per_layer[order[ki].layer] += 1;
                    per_prompt[b * BLOCK + p] += 1;
                }
            }
        }
    }
    Ok(Some(TopNeuronLinearity {
        neurons_per_prompt: k,
        range: cfg.linear_range,
        linear_ratio: linear as f64 / total.max(1) as f64,
        mean_abs_r: sum_abs_r / total.max(1) as f64,
        layer_generality: analysis::generality(&per_layer),
        prompt_generality: analysis::generality(&per_prompt),
    }))
}

/// The console table of [`run_linearity`].
pub fn linearity_table(r: &LinearityResult) -> String {
    let mut s = format!("Fig. 2 ({}):\n  range   mean|r|  linear\n", r.info.model);
    for p in &r.fig2 {
        s += &format!(
            "  {:>5}   {:.4}   {:.4}\n",
            p.range, p.mean_abs_r, p.linear_ratio
        );
    }
    s += &format!(
        "Table 1 (R = {}, |r| >= {}): linear {:.4}  positive {:.4}  negative {:.4}\n",
        r.config.sweep.linear_range,
        r.config.sweep.linear_threshold,
        r.linear_ratio,
        r.positive_ratio,
        r.negative_ratio
    );
    s += &format!(
        "  random neurons: LG {:.4}  PG {:.4}\n",
        r.layer_generality.generality, r.prompt_generality.generality
    );
    if let Some(t) = &r.table5 {
        s += &format!(
            "Table 5 (top {} |NeurGrad| neurons per prompt): linear {:.4}  LG {:.4}  PG {:.4}\n",
            t.neurons_per_prompt,
            t.linear_ratio,
            t.layer_generality.generality,
            t.prompt_generality.generality
        );
    }
    s
}

/// Arguments of `neg linearity`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Model, prompts, seed, output.
    #[command(flatten)]
    pub common: FactualArgs,
    /// Randomly sampled neurons swept on every prompt (Fig. 2, Table 1).
    #[arg(long, default_value_t = 100)]
    pub neurons: usize,
    /// Top-|NeurGrad| neurons per prompt for Table 5 (0 skips it).
    #[arg(long, default_value_t = 20)]
    pub top_neurons: usize,
    /// Shift ranges R of Fig. 2 (each swept over [-R, R]).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,1,2,5,10")]
    pub ranges: Vec<f32>,
    /// Grid points per side: step = R / points.
    #[arg(long, default_value_t = 10)]
    pub points_per_side: usize,
    /// One grid step for every range instead (the paper's Fig. 2: 0.2); each range must be a
    /// whole multiple of it.
    #[arg(long, conflicts_with = "points_per_side")]
    pub step: Option<f32>,
    /// The range at which Table 1 and Table 5 judge linearity.
    #[arg(long, default_value_t = 2.0)]
    pub linear_range: f32,
    /// |r| at or above this marks a linear neuron.
    #[arg(long, default_value_t = 0.95)]
    pub threshold: f32,
    /// magnitude (a -> a + d sign(a), the paper's) or additive (a -> a + d).
    #[arg(long, value_enum, default_value = "magnitude")]
    pub mode: ShiftMode,
    /// Compute only part i of n of the prompt blocks (16 prompts each: their sweeps and
    /// NeurGrad) and write a shard to --out (e.g. `--shard 2/8`); `neg merge` then writes the
    /// run's results from all n shards.
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// Checks the inputs, runs the sweeps and writes the files (or, with `--shard`, the shard).
/// Every block's sweeps and NeurGrad are kept in `<out>.resume` until the results are
/// written, so a rerun after an interruption resumes.
pub fn run(args: &Args) -> Result<Outcome<LinearityResult>> {
    let (model, set, out, _lock) = common::setup(&args.common, "linearity", 10)?;
    let cache = common::run_cache(&args.common, &model, &out, args.shard)?;
    let config = LinearityRun {
        random_neurons: args.neurons,
        top_neurons: args.top_neurons,
        sweep: LinearityConfig {
            ranges: args.ranges.clone(),
            points_per_side: args.points_per_side,
            fixed_step: args.step,
            linear_threshold: args.threshold,
            linear_range: args.linear_range,
            mode: args.mode,
            ..LinearityConfig::default()
        },
        seed: args.common.seed,
    };
    run_linearity_through(
        &model,
        &set,
        &config,
        &out,
        args.common.run.progress(),
        Some(&cache),
    )
}

/// Runs and prints Fig. 2 and Tables 1 and 5 (or the shard's line).
pub fn main(args: &Args) -> Result<()> {
    let Some(result) = crate::factual::done_or_print_shard(run(args)?) else {
        return Ok(());
    };
    common::print_result(
        &linearity_table(&result),
        &args.common,
        "linearity",
        &result.info,
    );
    Ok(())
}
