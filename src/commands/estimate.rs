//! `neg estimate`: NEG estimation (paper Table 2): NeurGrad, CG, IG and LPI against the
//! ground-truth NEG of sampled neurons (Pearson r, Spearman, MAE, seconds per prompt). Writes
//! `results.json`, `table2.csv` and `estimates.safetensors` under `--out` (default
//! `out/estimate`).
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ndarray::{concatenate, Array4, Axis};
use neg_core::analysis::{self, EstimationQuality};
use neg_core::methods::{self, Method};
use neg_core::neg::SweepConfig;
use neg_core::{sampling, ModelAdapter, NeuronId};
use serde::{Deserialize, Serialize};

use crate::factual::progress as progress_bar;
use crate::factual::{self as common, FactualArgs, FactualSet, MethodArgs, RunInfo};
use crate::factual::{fmt, sweep_with_progress};
use crate::output::{csv, Outputs, TensorFile};

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
    let t0 = Instant::now();
    let truth = sweep_with_progress(model, prompts, &neurons, &config.sweep, None, &bar)?
        .context("every block is swept without a shard")?;
    let sweep_seconds_per_prompt = t0.elapsed().as_secs_f64() / prompts.len() as f64;
    let mut named: Vec<(String, Array4<f32>, f64)> = Vec::new();
    let mut unsupported = Vec::new();
    for &m in &config.methods {
        let t0 = Instant::now();
        let result: std::result::Result<(), neg_core::NegError> = (|| {
            if m == Method::Ig {
                let mut mean = Vec::new();
                let mut attr = Vec::new();
                for p in prompts {
                    let ig = methods::integrated_gradients(
                        model,
                        std::slice::from_ref(p),
                        methods::IG_STEPS,
                    )?;
                    mean.push(ig.mean_gradient);
                    attr.push(ig.attribution);
                    bar.inc(1);
                }
                let secs = t0.elapsed().as_secs_f64() / prompts.len() as f64;
                let cat = |v: &[Array4<f32>]| {
                    concatenate(Axis(0), &v.iter().map(|a| a.view()).collect::<Vec<_>>()).map_err(
                        |e| neg_core::NegError::InvalidArgument {
                            name: "ig",
                            reason: e.to_string(),
                        },
                    )
                };
                named.push(("ig".into(), cat(&attr)?, secs));
                named.push(("ig_mean_gradient".into(), cat(&mean)?, secs));
            } else {
                let chunk = if m == Method::Lpi { 1 } else { 16 };
                let mut parts = Vec::new();
                for c in prompts.chunks(chunk) {
                    parts.push(methods::attribute(model, c, m)?.scores);
                    bar.inc(c.len() as u64);
                }
                let scores =
                    concatenate(Axis(0), &parts.iter().map(|a| a.view()).collect::<Vec<_>>())
                        .map_err(|e| neg_core::NegError::InvalidArgument {
                            name: "scores",
                            reason: e.to_string(),
                        })?;
                let secs = t0.elapsed().as_secs_f64() / prompts.len() as f64;
                named.push((m.name().into(), scores, secs));
            }
            Ok(())
        })();
        match result {
            Ok(()) => {}
            Err(neg_core::NegError::Adapter(e @ neg_core::AdapterError::Unsupported { .. })) => {
                bar.inc(prompts.len() as u64);
                unsupported.push((m.name().to_string(), e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    bar.finish_and_clear();
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
    Ok(result)
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
}

/// Checks the inputs, sweeps the ground truth, runs every estimator and writes the files.
pub fn run(args: &Args) -> Result<EstimationResult> {
    let (model, set, out, _lock) = common::setup(&args.common, "estimate", 0)?;
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
    run_estimation(&model, &set, &config, &out, args.common.run.progress())
}

/// Runs and prints Table 2.
pub fn main(args: &Args) -> Result<()> {
    let result = run(args)?;
    common::print_result(
        &estimation_table(&result),
        &args.common,
        "estimate",
        &result.info,
    );
    Ok(())
}
