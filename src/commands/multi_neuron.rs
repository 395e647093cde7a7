//! `neg multi-neuron`: multi-neuron accumulation (paper Figs. 5, 14): predicted (sum of NEG x
//! shift) vs actual output shifts when many neurons are shifted at once. Writes
//! `results.json`, `fig5_multi_neuron.csv` and `fig5_multi_neuron.svg` under `--out` (default
//! `out/multi-neuron`).
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use neg_core::analysis::{self, AccumulationConfig, AccumulationPlan, AccumulationReport};
use neg_core::methods::Method;
use neg_core::neg::ShiftMode;
use neg_core::ModelAdapter;
use serde::{Deserialize, Serialize};

use crate::factual::progress as progress_bar;
use crate::factual::{self as common, FactualArgs, FactualSet, RunInfo};
use crate::factual::{all_blocks, attribute_blocks, block_work, fmt, Outcome, BLOCK};
use crate::output::{csv, Outputs};
use crate::plot::{self, LineSpec, Panel, Series};
use crate::skill::{FeatureCache, Shard};

/// Parameters of [`run_multi_neuron`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiNeuronRun {
    /// Enhancement ranges [0, R] (Fig. 5: 0.5; Fig. 14: 0.1, 1, 1.5, 2).
    pub ranges: Vec<f32>,
    /// Shift grid step (the paper: 0.01).
    pub step: f32,
    /// Neuron counts 2^0 .. 2^max_log2, capped at the model's neuron count.
    pub max_log2: u32,
    pub mode: ShiftMode,
    pub seed: u64,
}

impl Default for MultiNeuronRun {
    fn default() -> Self {
        Self {
            ranges: vec![0.1, 0.5, 1.0, 1.5, 2.0],
            step: 0.01,
            max_log2: 12,
            mode: ShiftMode::Magnitude,
            seed: 0,
        }
    }
}

/// Result of [`run_multi_neuron`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiNeuronResult {
    pub info: RunInfo,
    pub config: MultiNeuronRun,
    /// One report per range.
    pub reports: Vec<AccumulationReport>,
}

/// Figs. 5 and 14 on `set` (NeurGrad as the NEG estimate); writes `results.json`,
/// `fig5_multi_neuron.csv` and `fig5_multi_neuron.svg` under `out`.
pub fn run_multi_neuron<A: ModelAdapter + ?Sized>(
    model: &A,
    set: &FactualSet,
    config: &MultiNeuronRun,
    out: &Path,
    show_progress: bool,
) -> Result<MultiNeuronResult> {
    run_multi_neuron_through(model, set, config, out, show_progress, None)?.into_done()
}

/// [`run_multi_neuron`] with NeurGrad and each range's patched probabilities computed in
/// blocks of [`BLOCK`] prompts through `cache`: a rerun after an interruption resumes, and
/// with a sharded cache only the shard's blocks are computed and written as a shard. The
/// neurons each prompt shifts are drawn in prompt order from the seed alone
/// ([`AccumulationPlan`]), so every shard draws the same ones.
pub fn run_multi_neuron_through<A: ModelAdapter + ?Sized>(
    model: &A,
    set: &FactualSet,
    config: &MultiNeuronRun,
    out: &Path,
    show_progress: bool,
    cache: Option<&FeatureCache>,
) -> Result<Outcome<MultiNeuronResult>> {
    let started = Instant::now();
    if config.ranges.is_empty() {
        bail!("no enhancement ranges given");
    }
    let prompts = &set.prompts;
    let (l, n) = (model.num_layers(), model.ff_width());
    let bar = progress_bar(
        prompts.len() * (1 + config.ranges.len()),
        "multi-neuron",
        show_progress,
    );
    let grads = attribute_blocks(model, prompts, Method::NeurGrad, cache, &bar)?;
    // Every prompt's NeurGrad, for the reports; `None` in a shard, which makes none.
    let all_scores = grads
        .iter()
        .map(|g| g.as_ref().map(|(ng, _)| ng.scores.view()))
        .collect::<Option<Vec<_>>>()
        .map(|views| ndarray::concatenate(ndarray::Axis(0), &views))
        .transpose()?;
    let mut reports = Some(Vec::new());
    for (i, &range) in config.ranges.iter().enumerate() {
        let acc = AccumulationConfig {
            max_log2: config.max_log2,
            max_shift: range,
            step: config.step,
            // A different but reproducible neuron draw per range.
            seed: config.seed.wrapping_add(i as u64),
            mode: config.mode,
            max_variants_per_call: 4096,
        };
        let plan = AccumulationPlan::new(&acc, prompts.len(), l, n)?;
        let mut blocks = Vec::new();
        for (b, (block, ng)) in prompts.chunks(BLOCK).zip(&grads).enumerate() {
            // A prompt's neurons depend on its position (the draws before it), not only on
            // its text: the key names the block's first position, so that the same prompts
            // elsewhere in another run's set never take these entries.
            let what = format!(
                "multi-neuron accumulation v1 {acc:?} from prompt {}",
                b * BLOCK
            );
            blocks.push(block_work(cache, b, &what, block, &bar, || {
                // Both items of a block belong to one shard: a block computed here has NeurGrad.
                let (ng, _) = ng
                    .as_ref()
                    .context("NeurGrad of a block this process computes")?;
                let mut rows = Vec::with_capacity(block.len());
                for (row, prompt) in block.iter().enumerate() {
                    let p = b * BLOCK + row;
                    rows.push(plan.probs(model, prompt, p, &ng.scores, &ng.activations, row)?);
                }
                let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
                // `[P, 1 + T x sizes x shifts, T]`: each prompt's `AccumulationPlan::probs`.
                Ok(ndarray::stack(ndarray::Axis(0), &views)?)
            })?);
        }
        let Some((blocks, _seconds)) = all_blocks(blocks) else {
            reports = None;
            continue;
        };
        let (Some(done), Some(scores)) = (reports.as_mut(), all_scores.as_ref()) else {
            continue;
        };
        let probs: Vec<ndarray::Array2<f32>> = blocks
            .iter()
            .flat_map(|a: &ndarray::Array3<f32>| a.outer_iter().map(|r| r.to_owned()))
            .collect();
        done.push(plan.report(scores, &probs)?);
    }
    bar.finish_and_clear();
    let Some(reports) = reports else {
        // A shard: its blocks are in the cache; `neg merge` computes the results.
        return crate::factual::shard_outcome(cache, out);
    };
    let result = MultiNeuronResult {
        info: RunInfo::new(model, set, started),
        config: config.clone(),
        reports,
    };
    let mut files = Outputs::default();
    files.json("results.json", &result)?;
    let mut rows = Vec::new();
    for rep in &result.reports {
        for p in &rep.points {
            rows.push(vec![
                rep.config.max_shift.to_string(),
                p.neurons.to_string(),
                p.r_mean.to_string(),
                p.r_pooled.to_string(),
                p.mean_predicted_at_max.to_string(),
                p.mean_actual_at_max.to_string(),
                p.pairs.to_string(),
            ]);
        }
    }
    files.text(
        "fig5_multi_neuron.csv",
        csv(
            &[
                "range",
                "neurons",
                "r_mean",
                "r_pooled",
                "mean_predicted_at_max",
                "mean_actual_at_max",
                "pairs",
            ],
            &rows,
        ),
    );
    let log2 = |n: usize| (n as f64).log2();
    // One line per shift range of `value` against log2 #neurons.
    let panel = |title: &str, value: fn(&analysis::AccumulationPoint) -> f64| Panel {
        title: title.into(),
        series: result
            .reports
            .iter()
            .map(|rep| {
                Series::new(
                    format!("[0, {}]", rep.config.max_shift),
                    rep.points
                        .iter()
                        .map(|p| (log2(p.neurons), value(p)))
                        .collect(),
                )
            })
            .collect(),
    };
    let panels = vec![
        panel("r(predicted, actual output shift)", |p| p.r_mean),
        panel("mean actual output shift at max", |p| p.mean_actual_at_max),
    ];
    let svg = plot::line_svg(
        &LineSpec::new(
            &format!(
                "Figs. 5/14: multi-neuron enhancement ({}, {} prompts)",
                result.info.model, result.info.prompts.used
            ),
            "log2 #neurons",
            "value",
        ),
        &panels,
    )?;
    files.text("fig5_multi_neuron.svg", svg);
    files.write(out)?;
    if let Some(cache) = cache {
        crate::factual::discard_cache(cache, out, "multi-neuron")?;
    }
    Ok(Outcome::Done(Box::new(result)))
}

/// The console table of [`run_multi_neuron`].
pub fn multi_neuron_table(r: &MultiNeuronResult) -> String {
    let mut s = format!(
        "Figs. 5/14 ({}): r(predicted, actual) and shifts at the range's end\n  {:>6} {:>8} {:>8} {:>9} {:>12} {:>12}\n",
        r.info.model, "range", "neurons", "r_mean", "r_pooled", "predicted", "actual"
    );
    for rep in &r.reports {
        for p in &rep.points {
            s += &format!(
                "  {:>6} {:>8} {:>8.4} {:>9.4} {:>12} {:>12}\n",
                rep.config.max_shift,
                p.neurons,
                p.r_mean,
                p.r_pooled,
                fmt(p.mean_predicted_at_max),
                fmt(p.mean_actual_at_max)
            );
        }
    }
    s
}

/// Arguments of `neg multi-neuron`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Model, prompts, seed, output.
    #[command(flatten)]
    pub common: FactualArgs,
    /// Enhancement ranges [0, R].
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,1,1.5,2")]
    pub ranges: Vec<f32>,
    /// Shift grid step.
    #[arg(long, default_value_t = 0.01)]
    pub step: f32,
    /// Largest neuron count 2^max_log2 (capped at the model's neuron count).
    #[arg(long, default_value_t = 12)]
    pub max_log2: u32,
    /// magnitude (a -> a + d pol sign(a), the paper's) or additive (a -> a + d pol).
    #[arg(long, value_enum, default_value = "magnitude")]
    pub mode: ShiftMode,
    /// Compute only part i of n of the prompt blocks (16 prompts each: their NeurGrad and
    /// shifted neuron sets) and write a shard to --out (e.g. `--shard 2/8`); `neg merge` then
    /// writes the run's results from all n shards.
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// Checks the inputs, shifts growing neuron sets and writes the files (or, with `--shard`,
/// the shard). Every block's results are kept in `<out>.resume` until the results are
/// written, so a rerun after an interruption resumes.
pub fn run(args: &Args) -> Result<Outcome<MultiNeuronResult>> {
    let (model, set, out, _lock) = common::setup(&args.common, "multi-neuron", 16)?;
    let config = MultiNeuronRun {
        ranges: args.ranges.clone(),
        step: args.step,
        max_log2: args.max_log2,
        mode: args.mode,
        seed: args.common.seed,
    };
    let cache = common::run_cache(&args.common, &model, &out, args.shard)?;
    run_multi_neuron_through(
        &model,
        &set,
        &config,
        &out,
        args.common.run.progress(),
        Some(&cache),
    )
}

/// Runs and prints Figs. 5 and 14's numbers (or the shard's line).
pub fn main(args: &Args) -> Result<()> {
    let Some(result) = crate::factual::done_or_print_shard(run(args)?) else {
        return Ok(());
    };
    common::print_result(
        &multi_neuron_table(&result),
        &args.common,
        "multi-neuron",
        &result.info,
    );
    Ok(())
}
