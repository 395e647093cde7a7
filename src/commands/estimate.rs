//! `neg estimate`: NEG estimation (paper Table 2): NeurGrad, CG, IG and LPI against the
//! ground-truth NEG of sampled neurons (Pearson r, Spearman, MAE, seconds per prompt). Writes
//! `results.json`, `table2.csv` and `estimates.safetensors` under `--out` (default
//! `out/estimate`).
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use ndarray::Array4;
use neg_core::analysis::{self, EstimationQuality};
use neg_core::methods::{self, Method};
use neg_core::neg::SweepConfig;
use neg_core::{sampling, ModelAdapter, NeuronId};
use serde::{Deserialize, Serialize};

use crate::factual::progress as progress_bar;
use crate::factual::{self as common, FactualArgs, FactualSet, MethodArgs, RunInfo};
use crate::factual::{
    attribute_blocks, block_work, cat_parts, fmt, join_blocks, sweep_with_progress,
    unsupported_by_kind, Outcome, BLOCK,
};
use crate::output::{csv, Outputs, TensorFile};
use crate::skill::{CachedItem, FeatureCache, Shard};

/// Parameters of [`run_estimation`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimationRun {
    /// Random neurons whose ground-truth NEG is swept (the paper: 100).
    pub neurons: usize,
    pub sweep: SweepConfig,
    pub methods: Vec<Method>,
    pub seed: u64,
}

impl Default for EstimationRun {
    fn default() -> Self {
        Self {
            neurons: 100,
            sweep: SweepConfig::default(),
            methods: Method::ALL.to_vec(),
            seed: 0,
        }
    }
}

/// One row of Table 2 (r, MAE and runtime of one estimator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimationRow {
    pub method: String,
    pub r: f64,
    pub spearman: f64,
    pub mae: f64,
    pub n: usize,
    /// Seconds per prompt for all L x N neurons (IG's two variants share one run).
    pub seconds_per_prompt: f64,
}

/// Result of [`run_estimation`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimationResult {
    pub info: RunInfo,
    pub config: EstimationRun,
    pub neurons: Vec<NeuronId>,
    pub rows: Vec<EstimationRow>,
    /// Methods the model does not support, with the reason.
    pub unsupported: Vec<(String, String)>,
    /// Seconds per prompt of the ground-truth sweep of the sampled neurons.
    pub sweep_seconds_per_prompt: f64,
}

/// Table 2 on `set`; writes `results.json`, `table2.csv` and `estimates.safetensors` (ground
/// truth and each estimate at the swept cells, [P, T, K]) under `out`.
pub fn run_estimation<A: ModelAdapter + ?Sized>(
    model: &A,
    set: &FactualSet,
    config: &EstimationRun,
    out: &Path,
    show_progress: bool,
) -> Result<EstimationResult> {
    run_estimation_through(model, set, config, out, show_progress, None)?.into_done()
}

/// IG's two results for a block of prompts, as a resume-cache entry holds them.
struct IgArrays {
    attribution: Array4<f32>,
    mean_gradient: Array4<f32>,
}

impl CachedItem for IgArrays {
    type Elem = f32;
    const NAMES: &'static [&'static str] = &["attribution", "mean_gradient"];

    fn arrays(&self) -> Vec<ndarray::ArrayViewD<'_, f32>> {
        vec![
            self.attribution.view().into_dyn(),
            self.mean_gradient.view().into_dyn(),
        ]
    }

    fn from_arrays(arrays: Vec<ndarray::ArrayD<f32>>, prompts: usize) -> Option<Self> {
        let [a, m]: [ndarray::ArrayD<f32>; 2] = arrays.try_into().ok()?;
        let a = IgArrays {
            attribution: a.into_dimensionality().ok()?,
            mean_gradient: m.into_dimensionality().ok()?,
        };
        (a.attribution.dim().0 == prompts && a.attribution.dim() == a.mean_gradient.dim())
            .then_some(a)
    }
}

/// [`run_estimation`] with the sweeps and every estimator's blocks going through `cache`
/// ([`crate::factual::BLOCK`] prompts per entry): a rerun after an interruption resumes, and
/// with a sharded cache only the shard's blocks are computed and written as a shard.
pub fn run_estimation_through<A: ModelAdapter + ?Sized>(
    model: &A,
    set: &FactualSet,
    config: &EstimationRun,
    out: &Path,
    show_progress: bool,
    cache: Option<&FeatureCache>,
) -> Result<Outcome<EstimationResult>> {
    let started = Instant::now();
    if config.methods.is_empty() {
        bail!("no methods to compare");
    }
    let prompts = &set.prompts;
    let (l, n) = (model.num_layers(), model.ff_width());
    let neurons = sampling::sample_neurons(l, n, config.neurons, config.seed)?;
    let bar = progress_bar(
        prompts.len() * (1 + config.methods.len()),
        "NEG estimation",
        show_progress,
    );
    // Seconds are the computations' own, summed over blocks (stored with each block), so a
    // resumed or merged run reports what the methods cost where they ran.
    let per_prompt = |seconds: f64| seconds / prompts.len() as f64;
    let truth = sweep_with_progress(model, prompts, &neurons, &config.sweep, cache, &bar)?;
    // `None` scores: a shard's part only.
    let mut named: Vec<(String, Option<Array4<f32>>, f64)> = Vec::new();
    let mut unsupported = Vec::new();
    for &m in &config.methods {
        if let Some(why) = unsupported_by_kind(model, m) {
            bar.inc(prompts.len() as u64);
            unsupported.push((m.name().to_string(), why));
            continue;
        }
        let result: Result<()> = (|| {
            if m == Method::Ig {
                let what = format!("integrated gradients v1 steps={}", methods::IG_STEPS);
                let mut blocks = Vec::new();
                for (b, block) in prompts.chunks(BLOCK).enumerate() {
                    blocks.push(block_work(cache, b, &what, block, &bar, || {
                        let (mut mean, mut attr) = (Vec::new(), Vec::new());
                        for p in block {
                            let ig = methods::integrated_gradients(
                                model,
                                std::slice::from_ref(p),
                                methods::IG_STEPS,
                            )?;
                            mean.push(ig.mean_gradient);
                            attr.push(ig.attribution);
                            bar.inc(1);
                        }
                        Ok(IgArrays {
                            attribution: cat_parts(&attr, |a| a.view())?,
                            mean_gradient: cat_parts(&mean, |a| a.view())?,
                        })
                    })?);
                }
                let (attr, mean, secs) = match crate::factual::all_blocks(blocks) {
                    Some((parts, seconds)) => (
                        Some(cat_parts(&parts, |p| p.attribution.view())?),
                        Some(cat_parts(&parts, |p| p.mean_gradient.view())?),
                        per_prompt(seconds),
                    ),
                    None => (None, None, 0.0),
                };
                named.push(("ig".into(), attr, secs));
                named.push(("ig_mean_gradient".into(), mean, secs));
            } else {
                let blocks = attribute_blocks(model, prompts, m, cache, &bar)?;
                let (scores, secs) = match join_blocks(m, blocks)? {
                    Some((a, seconds)) => (Some(a.scores), per_prompt(seconds)),
                    None => (None, 0.0),
                };
                named.push((m.name().into(), scores, secs));
            }
            Ok(())
        })();
        if let Err(e) = result {
            match e.downcast_ref::<neg_core::NegError>() {
                Some(neg_core::NegError::Adapter(
                    u @ neg_core::AdapterError::Unsupported { .. },
                )) => {
                    bar.inc(prompts.len() as u64);
                    unsupported.push((m.name().to_string(), u.to_string()));
                }
                _ => return Err(e),
            }
        }
    }
    let named: Option<Vec<(String, Array4<f32>, f64)>> = named
        .into_iter()
        .map(|(name, scores, secs)| scores.map(|s| (name, s, secs)))
        .collect();
    let (Some((truth, sweep_seconds)), Some(named)) = (truth, named) else {
        bar.finish_and_clear();
        // A shard: its blocks are in the cache; `neg merge` computes the results.
        return crate::factual::shard_outcome(cache, out);
    };
    bar.finish_and_clear();
    let sweep_seconds_per_prompt = per_prompt(sweep_seconds);
    let refs: Vec<(&str, &Array4<f32>)> = named.iter().map(|(n, s, _)| (n.as_str(), s)).collect();
    let quality: EstimationQuality = analysis::estimation_quality(&truth, &refs)?;
    let rows: Vec<EstimationRow> = quality
        .methods
        .iter()
        .zip(&named)
        .map(|(q, (_, _, secs))| EstimationRow {
            method: q.name.clone(),
            r: q.r,
            spearman: q.spearman,
            mae: q.mae,
            n: q.n,
            seconds_per_prompt: *secs,
        })
        .collect();
    let result = EstimationResult {
        info: RunInfo::new(model, set, started),
        config: config.clone(),
        neurons: neurons.clone(),
        rows,
        unsupported,
        sweep_seconds_per_prompt,
    };
    let mut files = Outputs::default();
    files.json("results.json", &result)?;
    files.text(
        "table2.csv",
        csv(
            &["method", "r", "spearman", "mae", "n", "seconds_per_prompt"],
            &result
                .rows
                .iter()
                .map(|r| {
                    vec![
                        r.method.clone(),
                        r.r.to_string(),
                        r.spearman.to_string(),
                        r.mae.to_string(),
                        r.n.to_string(),
                        r.seconds_per_prompt.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    );
    let mut t = TensorFile::default();
    t.add("ground_truth", &truth.neg);
    t.add("r", &truth.r);
    for (name, scores, _) in &named {
        let gathered = analysis::gather(&truth, scores)?;
        let arr = ndarray::Array3::from_shape_vec(
            truth.neg.dim(),
            gathered.iter().map(|&v| v as f32).collect(),
        )?;
        t.add(name, &arr);
    }
    t.meta("model", result.info.model.clone());
    t.meta("neurons", serde_json::to_string(&neurons)?);
    t.meta("layout", "every tensor [P, T, K] at the sampled neurons");
    files.tensors("estimates.safetensors", &t)?;
    files.write(out)?;
    if let Some(cache) = cache {
        crate::factual::discard_cache(cache, out, "estimate")?;
    }
    Ok(Outcome::Done(Box::new(result)))
}

/// The console table of [`run_estimation`].
pub fn estimation_table(r: &EstimationResult) -> String {
    let mut s = format!(
        "Table 2 ({}, {} prompts x {} neurons, R = {}, s = {}):\n  {:<18} {:>8} {:>9} {:>10} {:>12}\n",
        r.info.model,
        r.info.prompts.used,
        r.neurons.len(),
        r.config.sweep.range,
        r.config.sweep.step,
        "method",
        "r",
        "spearman",
        "MAE",
        "s/prompt"
    );
    for row in &r.rows {
        s += &format!(
            "  {:<18} {:>8.4} {:>9.4} {:>10} {:>12}\n",
            row.method,
            row.r,
            row.spearman,
            fmt(row.mae),
            fmt(row.seconds_per_prompt)
        );
    }
    for (m, why) in &r.unsupported {
        s += &format!("  {m:<18} unsupported: {why}\n");
    }
    s += &format!(
        "  ground-truth sweep: {} s/prompt\n",
        fmt(r.sweep_seconds_per_prompt)
    );
    s
}

/// Arguments of `neg estimate`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Model, prompts, seed, output.
    #[command(flatten)]
    pub common: FactualArgs,
    /// Randomly sampled neurons whose ground-truth NEG is swept.
    #[arg(long, default_value_t = 100)]
    pub neurons: usize,
    /// Shift range R of the ground-truth sweep.
    #[arg(long, default_value_t = 2.0)]
    pub range: f32,
    /// Grid step s.
    #[arg(long, default_value_t = 0.2)]
    pub step: f32,
    /// Estimators and shift mode.
    #[command(flatten)]
    pub estimators: MethodArgs,
    /// Compute only part i of n of the prompt blocks (16 prompts each: their sweeps and every
    /// estimator) and write a shard to --out (e.g. `--shard 2/8`); `neg merge` then writes the
    /// run's results from all n shards.
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// Checks the inputs, sweeps the ground truth, runs every estimator and writes the files (or,
/// with `--shard`, the shard). Every block's results are kept in `<out>.resume` until the
/// results are written, so a rerun after an interruption resumes.
pub fn run(args: &Args) -> Result<Outcome<EstimationResult>> {
    let (model, set, out, _lock) = common::setup(&args.common, "estimate", 0)?;
    let cache = common::run_cache(&args.common, &model, &out, args.shard)?;
    let config = EstimationRun {
        neurons: args.neurons,
        sweep: SweepConfig {
            range: args.range,
            step: args.step,
            mode: args.estimators.mode,
            ..SweepConfig::default()
        },
        methods: args.estimators.methods.clone(),
        seed: args.common.seed,
    };
    run_estimation_through(
        &model,
        &set,
        &config,
        &out,
        args.common.run.progress(),
        Some(&cache),
    )
}

/// Runs and prints Table 2 (or the shard's line).
pub fn main(args: &Args) -> Result<()> {
    let Some(result) = crate::factual::done_or_print_shard(run(args)?) else {
        return Ok(());
    };
    common::print_result(
        &estimation_table(&result),
        &args.common,
        "estimate",
        &result.info,
    );
    Ok(())
}
