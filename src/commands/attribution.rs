//! `neg attribution`: top-K knowledge attribution (paper Fig. 3): the output shift when each
//! method's top-K neurons are enhanced together. Writes `results.json`,
//! `fig3_attribution.csv` and `fig3_attribution.svg` under `--out` (default
//! `out/attribution`).
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ndarray::s;
use neg_core::analysis::{self, Ranking, TopKConfig, TopKCurve};
use neg_core::methods::Method;
use neg_core::ModelAdapter;
use serde::{Deserialize, Serialize};

use crate::factual::progress as progress_bar;
use crate::factual::{self as common, FactualArgs, FactualSet, MethodArgs, RunInfo};
use crate::factual::{
    all_blocks, attribute_blocks, block_work, fmt, unsupported_by_kind, Outcome, BLOCK,
};
use crate::output::{csv, Outputs};
use crate::plot::{self, LineSpec, Panel, Series};
use crate::skill::{FeatureCache, Shard};

/// Parameters of [`run_attribution`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributionRun {
    pub methods: Vec<Method>,
    pub topk: TopKConfig,
}

impl Default for AttributionRun {
    fn default() -> Self {
        Self {
            methods: Method::ALL.to_vec(),
            topk: TopKConfig::default(),
        }
    }
}

/// Result of [`run_attribution`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributionResult {
    pub info: RunInfo,
    pub config: AttributionRun,
    /// One curve per (method, K): mean probability shift of the answer per activation shift.
    pub curves: Vec<TopKCurve>,
    pub unsupported: Vec<(String, String)>,
}

/// Fig. 3 on `set`; writes `results.json`, `fig3_attribution.csv` and
/// `fig3_attribution.svg` under `out`.
pub fn run_attribution<A: ModelAdapter + ?Sized>(
    model: &A,
    set: &FactualSet,
    config: &AttributionRun,
    out: &Path,
    show_progress: bool,
) -> Result<AttributionResult> {
    run_attribution_through(model, set, config, out, show_progress, None)?.into_done()
}

/// [`run_attribution`] with each method's scores and each block's top-K enhancements going
/// through `cache` ([`crate::factual::BLOCK`] prompts per entry): a rerun after an
/// interruption resumes, and with a sharded cache only the shard's blocks are computed and
/// written as a shard.
pub fn run_attribution_through<A: ModelAdapter + ?Sized>(
    model: &A,
    set: &FactualSet,
    config: &AttributionRun,
    out: &Path,
    show_progress: bool,
    cache: Option<&FeatureCache>,
) -> Result<Outcome<AttributionResult>> {
    let started = Instant::now();
    if config.methods.is_empty() {
        bail!("no methods to compare");
    }
    let prompts = &set.prompts;
    let bar = progress_bar(
        2 * prompts.len() * config.methods.len(),
        "top-K attribution",
        show_progress,
    );
    let (nk, ns) = (config.topk.ks.len(), config.topk.shifts.len());
    let mut curves = Vec::new();
    let mut unsupported = Vec::new();
    let mut complete = true;
    for &m in &config.methods {
        if let Some(why) = unsupported_by_kind(model, m) {
            unsupported.push((m.name().to_string(), why));
            bar.inc(2 * prompts.len() as u64);
            continue;
        }
        let scored = match attribute_blocks(model, prompts, m, cache, &bar) {
            Ok(a) => a,
            Err(e) => match e.downcast_ref::<neg_core::NegError>() {
                Some(neg_core::NegError::Adapter(
                    u @ neg_core::AdapterError::Unsupported { .. },
                )) => {
                    unsupported.push((m.name().to_string(), u.to_string()));
                    bar.inc(2 * prompts.len() as u64);
                    continue;
                }
                _ => return Err(e),
            },
        };
        let what = format!("top-K attribution v1 {} {:?}", m.name(), config.topk);
        let mut blocks = Vec::new();
        for (b, (block, scored)) in prompts.chunks(BLOCK).zip(&scored).enumerate() {
            blocks.push(block_work(cache, b, &what, block, &bar, || {
                // Both items of a block belong to one shard: a block computed here has scores.
                let (attr, _) = scored
                    .as_ref()
                    .context("the scores of a block this process computes")?;
                let mut values = ndarray::Array3::zeros((block.len(), nk, ns));
                // One prompt per call so the bar moves.
                for (p, prompt) in block.iter().enumerate() {
                    let c = analysis::topk_attribution(
                        model,
                        std::slice::from_ref(prompt),
                        m.name(),
                        &attr.scores.slice(s![p..p + 1, .., .., ..]).to_owned(),
                        &attr.activations.slice(s![p..p + 1, .., ..]).to_owned(),
                        Ranking::for_method(m),
                        &config.topk,
                    )?;
                    for (ki, curve) in c.iter().enumerate() {
                        for (si, v) in curve.mean_output_shift.iter().enumerate() {
                            values[[p, ki, si]] = *v;
                        }
                    }
                    bar.inc(1);
                }
                // Each prompt's curves, `[P, K values, shifts]`, in f64 as
                // `topk_attribution` sums them.
                Ok(values)
            })?);
        }
        let Some((blocks, _seconds)) = all_blocks(blocks) else {
            complete = false;
            continue;
        };
        // The mean over prompts is the mean of the per-prompt means because every prompt has
        // the same number of targets; summed in prompt order, as one prompt at a time would.
        let mut sums = vec![vec![0f64; ns]; nk];
        for (p, values) in blocks
            .iter()
            .flat_map(|v: &ndarray::Array3<f64>| v.outer_iter())
            .enumerate()
        {
            for (ki, sum) in sums.iter_mut().enumerate() {
                for (si, x) in sum.iter_mut().enumerate() {
                    let y = values[[ki, si]];
                    *x = if p == 0 { y } else { *x + y };
                }
            }
        }
        for (ki, sum) in sums.into_iter().enumerate() {
            curves.push(TopKCurve {
                method: m.name().to_string(),
                k: config.topk.ks[ki],
                shifts: config.topk.shifts.clone(),
                mean_output_shift: sum.into_iter().map(|v| v / prompts.len() as f64).collect(),
            });
        }
    }
    if !complete {
        bar.finish_and_clear();
        // A shard: its blocks are in the cache; `neg merge` computes the results.
        return crate::factual::shard_outcome(cache, out);
    }
    bar.finish_and_clear();
    let result = AttributionResult {
        info: RunInfo::new(model, set, started),
        config: config.clone(),
        curves,
        unsupported,
    };
    let mut files = Outputs::default();
    files.json("results.json", &result)?;
    let mut rows = Vec::new();
    for c in &result.curves {
        for (d, v) in c.shifts.iter().zip(&c.mean_output_shift) {
            rows.push(vec![
                c.method.clone(),
                c.k.to_string(),
                d.to_string(),
                v.to_string(),
            ]);
        }
    }
    files.text(
        "fig3_attribution.csv",
        csv(&["method", "k", "shift", "mean_output_shift"], &rows),
    );
    let panels: Vec<Panel> = config
        .topk
        .ks
        .iter()
        .map(|&k| Panel {
            title: format!("top-{k} neurons"),
            series: result
                .curves
                .iter()
                .filter(|c| c.k == k)
                .map(|c| {
                    Series::new(
                        c.method.clone(),
                        c.shifts
                            .iter()
                            .zip(&c.mean_output_shift)
                            .map(|(&d, &v)| (d as f64, v))
                            .collect(),
                    )
                })
                .collect(),
        })
        .collect();
    if result.curves.is_empty() {
        bail!("every method was unsupported for {}", result.info.model);
    }
    let svg = plot::line_svg(
        &LineSpec::new(
            &format!(
                "Fig. 3: enhancing top-K neurons ({}, {} prompts)",
                result.info.model, result.info.prompts.used
            ),
            "activation shift",
            "mean output shift",
        ),
        &panels,
    )?;
    files.text("fig3_attribution.svg", svg);
    files.write(out)?;
    if let Some(cache) = cache {
        crate::factual::discard_cache(cache, out, "attribution")?;
    }
    Ok(Outcome::Done(Box::new(result)))
}

/// The console table of [`run_attribution`]: the output shift at the largest activation shift.
pub fn attribution_table(r: &AttributionResult) -> String {
    let ks: Vec<usize> = r.config.topk.ks.clone();
    let max_shift = r.config.topk.shifts.last().copied().unwrap_or(0.0);
    let mut s = format!(
        "Fig. 3 ({}): mean answer-probability shift at activation shift {max_shift}\n  {:<10}",
        r.info.model, "method"
    );
    for k in &ks {
        s += &format!(" {:>11}", format!("K={k}"));
    }
    s.push('\n');
    let mut methods: Vec<&str> = r.curves.iter().map(|c| c.method.as_str()).collect();
    methods.dedup();
    for m in methods {
        s += &format!("  {m:<10}");
        for k in &ks {
            let v = r
                .curves
                .iter()
                .find(|c| c.method == m && c.k == *k)
                .and_then(|c| c.mean_output_shift.last().copied())
                .unwrap_or(f64::NAN);
            s += &format!(" {:>11}", fmt(v));
        }
        s.push('\n');
    }
    for (m, why) in &r.unsupported {
        s += &format!("  {m:<10} unsupported: {why}\n");
    }
    s
}

/// Arguments of `neg attribution`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Model, prompts, seed, output.
    #[command(flatten)]
    pub common: FactualArgs,
    /// Neuron counts K.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub ks: Vec<usize>,
    /// Largest activation shift; shifts are step, 2 step, ..., max.
    #[arg(long, default_value_t = 1.0)]
    pub max_shift: f32,
    /// Shift step.
    #[arg(long, default_value_t = 0.1)]
    pub step: f32,
    /// Estimators and shift mode.
    #[command(flatten)]
    pub estimators: MethodArgs,
    /// Compute only part i of n of the prompt blocks (16 prompts each: every method's scores
    /// and top-K enhancements) and write a shard to --out (e.g. `--shard 2/8`); `neg merge`
    /// then writes the run's results from all n shards.
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// Checks the inputs, enhances each method's top-K neurons and writes the files (or, with
/// `--shard`, the shard). Every block's results are kept in `<out>.resume` until the results
/// are written, so a rerun after an interruption resumes.
pub fn run(args: &Args) -> Result<Outcome<AttributionResult>> {
    if !(args.step > 0.0 && args.max_shift >= args.step) {
        bail!(
            "--step must be > 0 and --max-shift >= --step (got {} and {})",
            args.step,
            args.max_shift
        );
    }
    let (model, set, out, _lock) = common::setup(&args.common, "attribution", 0)?;
    let n = (args.max_shift / args.step + 1e-4).floor() as usize;
    let config = AttributionRun {
        methods: args.estimators.methods.clone(),
        topk: TopKConfig {
            ks: args.ks.clone(),
            shifts: (1..=n).map(|i| i as f32 * args.step).collect(),
            mode: args.estimators.mode,
            ..TopKConfig::default()
        },
    };
    let cache = common::run_cache(&args.common, &model, &out, args.shard)?;
    run_attribution_through(
        &model,
        &set,
        &config,
        &out,
        args.common.run.progress(),
        Some(&cache),
    )
}

/// Runs and prints Fig. 3's numbers (or the shard's line).
pub fn main(args: &Args) -> Result<()> {
    let Some(result) = crate::factual::done_or_print_shard(run(args)?) else {
        return Ok(());
    };
    common::print_result(
        &attribution_table(&result),
        &args.common,
        "attribution",
        &result.info,
    );
    Ok(())
}
