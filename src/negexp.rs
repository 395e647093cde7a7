//! The NEG experiments of the paper's §2-§4 as functions: each takes a model, a
//! [`FactualSet`] and a configuration, computes through `neg_core::analysis`, writes its result
//! files under an output directory and returns a serialisable report. The examples
//! (`linearity`, `neg_estimation`, `knowledge_attribution`, `neg_distribution`,
//! `multi_neuron`) are thin command-line wrappers around them; the integration tests call them
//! directly with tiny configurations.
//!
//! Every result file is written only after all computation succeeded, each atomically, so an
//! error leaves no partial output.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{concatenate, s, Array4, Axis};
use neg_core::analysis::{
    self, AccumulationConfig, AccumulationReport, EstimationQuality, Generality, LinearityConfig,
    NegDistribution, Ranking, TopKConfig, TopKCurve,
};
use neg_core::methods::{self, Method};
use neg_core::neg::{ground_truth_neg, GroundTruth, ShiftMode, SweepConfig};
use neg_core::{sampling, ModelAdapter, NeuronId, TargetedPrompt};
use serde::{Deserialize, Serialize};

use crate::factual::{FactualSet, FactualSummary};
use crate::output::{write_atomic, TensorFile};
use crate::plot::{self, LineSpec, Panel, Series};

// ---------------------------------------------------------------------------------------------
// Shared plumbing

/// The model and prompt set a result was computed on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub model: String,
    pub num_layers: usize,
    pub ff_width: usize,
    pub prompts: FactualSummary,
    /// Wall-clock seconds of the computation (not counting model loading).
    pub runtime_s: f64,
}

impl RunInfo {
    fn new<A: ModelAdapter + ?Sized>(model: &A, set: &FactualSet, started: Instant) -> Self {
        Self {
            model: model.model_id().to_string(),
            num_layers: model.num_layers(),
            ff_width: model.ff_width(),
            prompts: set.summary(),
            runtime_s: started.elapsed().as_secs_f64(),
        }
    }
}

/// Checks that `dir` can hold results before any work is done, without creating it (the
/// result writers create it at the end, so a failed run leaves nothing behind): an existing
/// `dir` must be a writable directory; otherwise its nearest existing ancestor must be. The
/// error names the directory.
pub fn prepare_out(dir: &Path) -> Result<()> {
    let probe_in = |d: &Path| -> Result<()> {
        let probe = d.join(format!(".write-probe-{}", std::process::id()));
        std::fs::write(&probe, b"").with_context(|| {
            format!(
                "cannot create output directory {}: {} is not writable",
                dir.display(),
                d.display()
            )
        })?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    };
    if dir.exists() {
        if !dir.is_dir() {
            bail!(
                "output directory {} exists and is not a directory",
                dir.display()
            );
        }
        return probe_in(dir);
    }
    let mut ancestor = dir.parent();
    while let Some(a) = ancestor {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        if a.exists() {
            if !a.is_dir() {
                bail!(
                    "cannot create output directory {}: {} is not a directory",
                    dir.display(),
                    a.display()
                );
            }
            return probe_in(a);
        }
        ancestor = a.parent();
    }
    bail!("cannot create output directory {}", dir.display())
}

/// A progress bar over `len` steps, hidden when `enabled` is false (tests, pipes).
pub fn progress(len: usize, message: &str, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template(
        "{msg:>24} [{elapsed_precise}] {bar:32} {pos}/{len} (eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message.to_string());
    bar
}

/// Files of one experiment, written together once everything is computed.
#[derive(Default)]
pub struct Outputs {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Outputs {
    pub fn json<T: Serialize>(&mut self, path: PathBuf, value: &T) -> Result<()> {
        let text = serde_json::to_string_pretty(value).context("cannot serialise results")?;
        self.files.push((path, text.into_bytes()));
        Ok(())
    }
    pub fn text(&mut self, path: PathBuf, text: String) {
        self.files.push((path, text.into_bytes()));
    }
    pub fn tensors(&mut self, path: PathBuf, t: &TensorFile) -> Result<()> {
        self.files.push((path, t.to_bytes()?));
        Ok(())
    }
    /// Writes every file atomically; the paths written, in order.
    pub fn write(self) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (path, bytes) in self.files {
            write_atomic(&path, &bytes)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// A CSV document from a header and rows (fields here are numbers and plain names; any comma
/// or quote is quoted per RFC 4180).
pub fn csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let field = |f: &str| {
        if f.contains([',', '"', '\n']) {
            format!("\"{}\"", f.replace('"', "\"\""))
        } else {
            f.to_string()
        }
    };
    let mut out = header
        .iter()
        .map(|h| field(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for row in rows {
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// One array field of every part, concatenated along axis 0 (parts are chunks of prompts).
fn cat_parts<T, D: ndarray::RemoveAxis>(
    parts: &[T],
    field: impl Fn(&T) -> ndarray::ArrayView<f32, D>,
) -> Result<ndarray::Array<f32, D>> {
    Ok(concatenate(
        Axis(0),
        &parts.iter().map(field).collect::<Vec<_>>(),
    )?)
}

fn concat_truths(parts: Vec<GroundTruth>) -> Result<GroundTruth> {
    let first = parts.first().context("no prompts were swept")?;
    Ok(GroundTruth {
        config: first.config.clone(),
        shifts: first.shifts.clone(),
        neurons: first.neurons.clone(),
        base_probs: cat_parts(&parts, |g| g.base_probs.view())?,
        activations: cat_parts(&parts, |g| g.activations.view())?,
        delta_probs: cat_parts(&parts, |g| g.delta_probs.view())?,
        neg: cat_parts(&parts, |g| g.neg.view())?,
        r: cat_parts(&parts, |g| g.r.view())?,
    })
}

/// Ground-truth NEG of `neurons` on every prompt, one prompt at a time so that `bar` moves.
pub fn sweep_with_progress<A: ModelAdapter + ?Sized>(
    model: &A,
    prompts: &[TargetedPrompt],
    neurons: &[NeuronId],
    config: &SweepConfig,
    bar: &ProgressBar,
) -> Result<GroundTruth> {
    let mut parts = Vec::with_capacity(prompts.len());
    for p in prompts {
        parts.push(ground_truth_neg(
            model,
            std::slice::from_ref(p),
            neurons,
            config,
        )?);
        bar.inc(1);
    }
    concat_truths(parts)
}

/// NeurGrad for every prompt, in chunks of 16 prompts so that `bar` moves.
pub fn neurgrad_with_progress<A: ModelAdapter + ?Sized>(
    model: &A,
    prompts: &[TargetedPrompt],
    bar: &ProgressBar,
) -> Result<methods::Attribution> {
    attribute_with_progress(model, prompts, Method::NeurGrad, bar)
}

/// Any method's scores for every prompt, in chunks so that `bar` (one step per prompt) moves.
pub fn attribute_with_progress<A: ModelAdapter + ?Sized>(
    model: &A,
    prompts: &[TargetedPrompt],
    method: Method,
    bar: &ProgressBar,
) -> Result<methods::Attribution> {
    let chunk = if matches!(method, Method::Ig | Method::Lpi) {
        1
    } else {
        16
    };
    let mut parts = Vec::new();
    for c in prompts.chunks(chunk) {
        parts.push(methods::attribute(model, c, method)?);
        bar.inc(c.len() as u64);
    }
    Ok(methods::Attribution {
        method,
        probs: cat_parts(&parts, |a| a.probs.view())?,
        activations: cat_parts(&parts, |a| a.activations.view())?,
        scores: cat_parts(&parts, |a| a.scores.view())?,
    })
}

fn fmt(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e4) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

// ---------------------------------------------------------------------------------------------
// Linearity: Fig. 2, Table 1, Table 5

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
    let started = Instant::now();
    let cfg = &config.sweep;
    if cfg.points_per_side == 0 || cfg.ranges.is_empty() {
        bail!("--points-per-side must be at least 1 and --ranges non-empty");
    }
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
    let bar = progress(
        ranges.len() * prompts.len() + top_steps,
        "linearity sweeps",
        show_progress,
    );
    let mut truths = Vec::new();
    for &range in &ranges {
        let sweep = SweepConfig {
            range,
            step: range / cfg.points_per_side as f32,
            mode: cfg.mode,
            max_variants_per_call: cfg.max_variants_per_call,
            naive: false,
        };
        truths.push(sweep_with_progress(model, prompts, &neurons, &sweep, &bar)?);
    }
    let judged_idx = ranges
        .iter()
        .position(|&r| r == cfg.linear_range)
        .context("judging range missing")?;
    let shown = truths[..cfg.ranges.len()].to_vec();
    let report = analysis::linearity_from(cfg, &shown, &truths[judged_idx], l)?;

    let table5 = if config.top_neurons > 0 {
        Some(top_neuron_linearity(model, prompts, config, &bar)?)
    } else {
        None
    };
    bar.finish_and_clear();

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
    files.json(out.join("results.json"), &result)?;
    files.text(
        out.join("fig2_linearity.csv"),
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
    files.text(out.join("fig2_linearity.svg"), svg);
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
    files.tensors(out.join("sweeps.safetensors"), &t)?;
    files.write()?;
    Ok(result)
}

fn top_neuron_linearity<A: ModelAdapter + ?Sized>(
    model: &A,
    prompts: &[TargetedPrompt],
    config: &LinearityRun,
    bar: &ProgressBar,
) -> Result<TopNeuronLinearity> {
    let cfg = &config.sweep;
    let (l, n) = (model.num_layers(), model.ff_width());
    let k = config.top_neurons.min(l * n);
    let ng = neurgrad_with_progress(model, prompts, bar)?;
    let sweep = SweepConfig {
        range: cfg.linear_range,
        step: cfg.linear_range / cfg.points_per_side as f32,
        mode: cfg.mode,
        max_variants_per_call: cfg.max_variants_per_call,
        naive: false,
    };
    let thr = cfg.linear_threshold;
    let (mut per_layer, mut per_prompt) = (vec![0usize; l], vec![0usize; prompts.len()]);
    let (mut linear, mut total, mut sum_abs_r) = (0usize, 0usize, 0f64);
    for (p, prompt) in prompts.iter().enumerate() {
        // The prompt's top-k neurons by |NeurGrad| of its (first) target.
        let scores = ng.scores.slice(s![p, 0, .., ..]);
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
        let g = ground_truth_neg(model, std::slice::from_ref(prompt), &order, &sweep)?;
        for ((_, _, ki), r) in g.r.indexed_iter() {
            total += 1;
            sum_abs_r += r.abs() as f64;
            if r.abs() >= thr {
                linear += 1;
                per_layer[order[ki].layer] += 1;
                per_prompt[p] += 1;
            }
        }
        bar.inc(1);
    }
    Ok(TopNeuronLinearity {
        neurons_per_prompt: k,
        range: cfg.linear_range,
        linear_ratio: linear as f64 / total.max(1) as f64,
        mean_abs_r: sum_abs_r / total.max(1) as f64,
        layer_generality: analysis::generality(&per_layer),
        prompt_generality: analysis::generality(&per_prompt),
    })
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

// ---------------------------------------------------------------------------------------------
// NEG estimation: Table 2

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
    let bar = progress(
        prompts.len() * (1 + config.methods.len()),
        "NEG estimation",
        show_progress,
    );
    let t0 = Instant::now();
    let truth = sweep_with_progress(model, prompts, &neurons, &config.sweep, &bar)?;
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
    files.json(out.join("results.json"), &result)?;
    files.text(
        out.join("table2.csv"),
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
    files.tensors(out.join("estimates.safetensors"), &t)?;
    files.write()?;
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

// ---------------------------------------------------------------------------------------------
// Knowledge attribution: Fig. 3

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
    let started = Instant::now();
    if config.methods.is_empty() {
        bail!("no methods to compare");
    }
    let prompts = &set.prompts;
    let bar = progress(
        2 * prompts.len() * config.methods.len(),
        "top-K attribution",
        show_progress,
    );
    let mut curves = Vec::new();
    let mut unsupported = Vec::new();
    for &m in &config.methods {
        let attr = match attribute_with_progress(model, prompts, m, &bar) {
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
        // One prompt per call so the bar moves; the mean over prompts is the mean of the
        // per-prompt means because every prompt has the same number of targets.
        let mut sum: Option<Vec<TopKCurve>> = None;
        for (p, prompt) in prompts.iter().enumerate() {
            let c = analysis::topk_attribution(
                model,
                std::slice::from_ref(prompt),
                m.name(),
                &attr.scores.slice(s![p..p + 1, .., .., ..]).to_owned(),
                &attr.activations.slice(s![p..p + 1, .., ..]).to_owned(),
                Ranking::for_method(m),
                &config.topk,
            )?;
            match &mut sum {
                None => sum = Some(c),
                Some(acc) => {
                    for (a, b) in acc.iter_mut().zip(&c) {
                        for (x, y) in a.mean_output_shift.iter_mut().zip(&b.mean_output_shift) {
                            *x += y;
                        }
                    }
                }
            }
            bar.inc(1);
        }
        for mut c in sum.unwrap_or_default() {
            for v in c.mean_output_shift.iter_mut() {
                *v /= prompts.len() as f64;
            }
            curves.push(c);
        }
    }
    bar.finish_and_clear();
    let result = AttributionResult {
        info: RunInfo::new(model, set, started),
        config: config.clone(),
        curves,
        unsupported,
    };
    let mut files = Outputs::default();
    files.json(out.join("results.json"), &result)?;
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
        out.join("fig3_attribution.csv"),
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
    files.text(out.join("fig3_attribution.svg"), svg);
    files.write()?;
    Ok(result)
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

// ---------------------------------------------------------------------------------------------
// NEG distribution: Figs. 4, 11, 12

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
    let started = Instant::now();
    let prompts = &set.prompts;
    let bar = progress(prompts.len(), "NeurGrad", show_progress);
    let ng = neurgrad_with_progress(model, prompts, &bar)?;
    bar.finish_and_clear();
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
    files.json(out.join("results.json"), &result)?;
    files.text(
        out.join("fig4_cumulative.csv"),
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
        out.join("fig12_layers.csv"),
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
    files.text(out.join("fig4_cumulative.svg"), fig4);
    let fig11 = log_histogram_svg(
        &format!("Fig. 11: NEG (NeurGrad) histogram, {title}"),
        "NEG",
        &d.histogram,
    )?;
    files.text(out.join("fig11_histogram.svg"), fig11);
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
    files.text(out.join("fig12_layers.svg"), fig12);
    let mut t = TensorFile::default();
    t.add("scores", &ng.scores);
    t.add("activations", &ng.activations);
    t.add("probs", &ng.probs);
    t.meta("model", result.info.model.clone());
    t.meta("method", "neurgrad");
    let targets: Vec<&[u32]> = prompts.iter().map(|p| p.targets.as_slice()).collect();
    t.meta("target_ids", serde_json::to_string(&targets)?);
    files.tensors(out.join("neurgrad.safetensors"), &t)?;
    files.write()?;
    Ok(result)
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

// ---------------------------------------------------------------------------------------------
// Multi-neuron accumulation: Figs. 5, 14

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
    let started = Instant::now();
    if config.ranges.is_empty() {
        bail!("no enhancement ranges given");
    }
    let prompts = &set.prompts;
    let bar = progress(
        prompts.len() * (1 + config.ranges.len()),
        "multi-neuron",
        show_progress,
    );
    let ng = neurgrad_with_progress(model, prompts, &bar)?;
    let mut reports = Vec::new();
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
        reports.push(analysis::multi_neuron_accumulation(
            model,
            prompts,
            &ng.scores,
            &ng.activations,
            &acc,
        )?);
        bar.inc(prompts.len() as u64);
    }
    bar.finish_and_clear();
    let result = MultiNeuronResult {
        info: RunInfo::new(model, set, started),
        config: config.clone(),
        reports,
    };
    let mut files = Outputs::default();
    files.json(out.join("results.json"), &result)?;
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
        out.join("fig5_multi_neuron.csv"),
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
    files.text(out.join("fig5_multi_neuron.svg"), svg);
    files.write()?;
    Ok(result)
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

// ---------------------------------------------------------------------------------------------
// Command-line plumbing shared by the five examples

/// Arguments every NEG-experiment example takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Model directory or Hugging Face hub id.
    #[arg(long, default_value = "../shared/models/stories260k")]
    pub model: String,
    /// Factual prompt file (JSON Lines: uuid, prompt, tpl, answer), e.g.
    /// ../shared/data/myriadlama-probing/llama2-7b-it.jsonl. Default: the built-in TinyStories
    /// set (its answers are single tokens for stories260k).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Output directory (default out/<example>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use at most this many prompts (a seeded sample); 0 = all. Default: 10 for linearity,
    /// 16 for multi_neuron, all for the others.
    #[arg(long)]
    pub max_prompts: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Text put between prompt and answer before tokenizing the answer.
    #[arg(long, default_value = " ")]
    pub answer_prefix: String,
    /// A multi-token answer is an error instead of being dropped.
    #[arg(long)]
    pub strict: bool,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// The estimators an experiment compares and how it shifts activations (`neg_estimation`,
/// `knowledge_attribution`).
#[derive(clap::Args, Debug, Clone)]
pub struct MethodArgs {
    /// magnitude (a -> a + d sign(a), the paper's) or additive (a -> a + d); top-K
    /// enhancement (Fig. 3) also multiplies d by each neuron's NeurGrad polarity.
    #[arg(long, default_value = "magnitude")]
    pub mode: ShiftMode,
    /// Estimators to compare (neurgrad, cg, ig, lpi).
    #[arg(long, value_delimiter = ',', default_value = "neurgrad,cg,ig,lpi")]
    pub methods: Vec<Method>,
}

/// Everything an example needs before computing: the model, the prompts and a writable output
/// directory. Inputs are checked first (prompt file, model, answers), the output directory
/// last, so a bad input creates nothing.
pub fn setup(
    args: &CommonArgs,
    name: &str,
    default_max_prompts: usize,
) -> Result<(neg_hooks::HfModel, FactualSet, PathBuf)> {
    use crate::factual::{self, ResolveOptions};
    let (source, records) = match &args.prompts {
        Some(path) => (path.display().to_string(), factual::read_records(path)?),
        None => (
            factual::BUILTIN_NAME.to_string(),
            factual::builtin_stories(),
        ),
    };
    let model = crate::cli::load_model(
        &args.model,
        &args.device,
        neg_hooks::LoadOptions::default().max_batch,
    )?;
    let max = args.max_prompts.unwrap_or(default_max_prompts);
    let set = factual::resolve(
        &model,
        &source,
        &records,
        &ResolveOptions {
            answer_prefix: args.answer_prefix.clone(),
            strict: args.strict,
            max_prompts: (max > 0).then_some(max),
            seed: args.seed,
        },
    )?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out").join(name));
    prepare_out(&out)?;
    Ok((model, set, out))
}
