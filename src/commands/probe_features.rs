//! `neg probe-features`: trains and evaluates one skill-neuron probe on features computed
//! anywhere (e.g. in Python, or `features/<task>.safetensors` of `neg skill-probe`).
//!
//! ```text
//! neg probe-features --features FILE.safetensors --probe polar|magn|tree|act|lmprob|rand \
//!     [--out DIR] [--trees N --depth D --neurons K --seed S --options K]
//! ```
//!
//! Tensors in FILE.safetensors:
//! - `scores` `[P, K, N]` f32 (NEG per prompt, option, neuron) or `option_index` `[P, N]` u8
//!   (index of the option with the largest NEG; enough for `tree`, `act`, `lmprob`, `rand`);
//! - optional `activations` `[P, N]` f32 (needed by `act`) and `probs` `[P, K]` f32 (needed
//!   by `lmprob`);
//! - `labels` `[P]` i64 (gold option) and `split` `[P]` u8 (0 train, 1 valid, 2 test).
//!
//! With `option_index` only, the number of options is `--options`, else the width of `probs`,
//! else the largest option index or label + 1.
//!
//! `--neurons K` fixes the neuron count of polar/magn/act (default: chosen on valid among
//! 2^0..2^13) and, for `tree`, restricts the forest to the K neurons whose top option agrees
//! with the gold option most consistently on train (default: all neurons). `--trees` (100)
//! and `--depth` (unlimited) shape the forest.
//!
//! `<out>/probe.json` (default `out/probe-features`) holds the test accuracy, the selected
//! neuron count, the validation curve, the fit time and the 64 best-ranked neurons; the
//! directory is written as a unit. Bad input: one error line
//! on stderr and exit status 1.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ndarray::{Array2, Array3};
use neg_probe::{
    evaluate, ActProbe, Evaluation, ForestConfig, MagnProbe, NeuronSubset, PolarProbe, Probe,
    ProbeData, ProbeKind, RandomBaseline, TreeProbe,
};
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

use crate::cli::RunArgs;

/// Command-line arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(about = "Train and evaluate one skill-neuron probe on NEG features")]
pub struct Args {
    /// Input features (.safetensors).
    #[arg(long)]
    pub features: PathBuf,
    /// polar, magn, tree, act, lmprob or rand.
    #[arg(long, value_enum)]
    pub probe: ProbeKind,
    /// Number of trees (tree only).
    #[arg(long)]
    pub trees: Option<usize>,
    /// Maximum tree depth (tree only; default unlimited).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Neuron count (polar/magn/act: fixed k; tree: neuron subset size).
    #[arg(long)]
    pub neurons: Option<usize>,
    /// Seed of the forest / random baseline.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of options when only `option_index` is given.
    #[arg(long)]
    pub options: Option<usize>,
    /// Output directory (`probe.json`) and progress.
    #[command(flatten)]
    pub run: RunArgs,
}

/// What the JSON holds.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Input file.
    pub features: String,
    /// Which feature tensor was used (`scores` or `option_index`).
    pub feature_tensor: String,
    /// Prompts, options, neurons.
    pub n_prompts: usize,
    /// Options per prompt.
    pub n_options: usize,
    /// Neurons.
    pub n_neurons: usize,
    /// Test accuracy at the selected neuron count.
    pub test_accuracy: f64,
    /// Neuron count used (None for tree/lmprob/rand).
    pub selected_neurons: Option<usize>,
    /// Forest settings and neurons used (tree only).
    pub tree: Option<TreeReport>,
    /// Best-ranked neurons (at most 64).
    pub top_neurons: Vec<usize>,
    /// Fit, selection curve and accuracies.
    pub evaluation: Evaluation,
}

/// Tree-Probe details.
#[derive(Debug, Serialize)]
pub struct TreeReport {
    /// Trees.
    pub n_trees: usize,
    /// Depth limit.
    pub max_depth: Option<usize>,
    /// Neurons the forest splits on.
    pub n_used_neurons: Option<usize>,
}

fn f32_tensor(st: &SafeTensors, name: &str, file: &Path) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
    let t = match st.tensor(name) {
        Ok(t) => t,
        Err(_) => return Ok(None),
    };
    let data = t.data();
    let values: Vec<f32> = match t.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        other => bail!(
            "{}: tensor `{name}` has dtype {other:?}, expected F32",
            file.display()
        ),
    };
    Ok(Some((t.shape().to_vec(), values)))
}

fn shape_error(file: &Path, name: &str, expected: &str, found: &[usize]) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: tensor `{name}` has shape {found:?}, expected {expected}",
        file.display()
    )
}

/// Loads the features of `file` into a [`ProbeData`].
pub fn load(file: &Path, options: Option<usize>) -> Result<(ProbeData, String)> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", file.display()))?;
    let labels = st
        .tensor("labels")
        .map_err(|_| anyhow::anyhow!("{}: missing tensor `labels` ([P] i64)", file.display()))?;
    let labels: Vec<i64> = match labels.dtype() {
        Dtype::I64 => labels
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect(),
        Dtype::I32 => labels
            .data()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as i64)
            .collect(),
        other => bail!(
            "{}: tensor `labels` has dtype {other:?}, expected I64",
            file.display()
        ),
    };
    let split = st
        .tensor("split")
        .map_err(|_| anyhow::anyhow!("{}: missing tensor `split` ([P] u8)", file.display()))?;
    if split.dtype() != Dtype::U8 {
        bail!(
            "{}: tensor `split` has dtype {:?}, expected U8",
            file.display(),
            split.dtype()
        );
    }
    let split = split.data().to_vec();
    let activations = f32_tensor(&st, "activations", file)?;
    let probs = f32_tensor(&st, "probs", file)?;
    let as2 = |name: &str, t: Option<(Vec<usize>, Vec<f32>)>| -> Result<Option<Array2<f32>>> {
        match t {
            None => Ok(None),
            Some((shape, v)) => {
                if shape.len() != 2 {
                    return Err(shape_error(file, name, "2 dimensions", &shape));
                }
                Ok(Some(Array2::from_shape_vec((shape[0], shape[1]), v)?))
            }
        }
    };
    let activations = as2("activations", activations)?;
    let probs = as2("probs", probs)?;
    let data = if let Some((shape, v)) = f32_tensor(&st, "scores", file)? {
        if shape.len() != 3 {
            return Err(shape_error(file, "scores", "[P, K, N]", &shape));
        }
        let scores = Array3::from_shape_vec((shape[0], shape[1], shape[2]), v)?;
        let d = ProbeData::from_scores(
            scores.view(),
            &labels,
            &split,
            activations.as_ref().map(|a| a.view()),
            probs.as_ref().map(|a| a.view()),
        )
        .with_context(|| format!("{}", file.display()))?;
        (d, "scores".to_string())
    } else if let Ok(oi) = st.tensor("option_index") {
        if oi.dtype() != Dtype::U8 {
            bail!(
                "{}: tensor `option_index` has dtype {:?}, expected U8",
                file.display(),
                oi.dtype()
            );
        }
        if oi.shape().len() != 2 {
            return Err(shape_error(file, "option_index", "[P, N]", oi.shape()));
        }
        let x = ndarray::ArrayView2::from_shape((oi.shape()[0], oi.shape()[1]), oi.data())?;
        let k = options
            .or_else(|| probs.as_ref().map(|p| p.ncols()))
            .unwrap_or_else(|| {
                let max_x = x.iter().copied().max().unwrap_or(0) as usize;
                let max_y = labels.iter().copied().max().unwrap_or(0).max(0) as usize;
                max_x.max(max_y).max(1) + 1
            });
        let d = ProbeData::from_option_index(
            x,
            k,
            &labels,
            &split,
            activations.as_ref().map(|a| a.view()),
            probs.as_ref().map(|a| a.view()),
        )
        .with_context(|| format!("{}", file.display()))?;
        (d, "option_index".to_string())
    } else {
        bail!(
            "{}: needs tensor `scores` ([P, K, N] f32) or `option_index` ([P, N] u8)",
            file.display()
        );
    };
    Ok(data)
}

/// Runs the example for parsed arguments and writes the JSON; returns the report.
pub fn run(args: &Args) -> Result<Report> {
    let kind = args.probe;
    if kind != ProbeKind::Tree && (args.trees.is_some() || args.depth.is_some()) {
        bail!(
            "--trees and --depth apply to --probe tree only, not `{}`",
            kind.name()
        );
    }
    let out = args.run.out_dir("probe-features");
    crate::output::check_out_dir(&out)?;
    let (data, feature_tensor) = load(&args.features, args.options)?;
    let _lock = crate::output::OutLock::acquire(&out)?;
    let mut fixed_k = None;
    let mut probe: Box<dyn Probe> = match kind {
        ProbeKind::Polar => Box::new(PolarProbe::new(None)),
        ProbeKind::Magn => Box::new(MagnProbe::new(None)),
        ProbeKind::Act => Box::new(ActProbe::new(None)),
        ProbeKind::Lmprob | ProbeKind::Rand if args.neurons.is_some() => {
            bail!("--neurons does not apply to --probe {}", kind.name())
        }
        ProbeKind::Lmprob => kind.build(),
        ProbeKind::Rand => Box::new(RandomBaseline { seed: args.seed }),
        ProbeKind::Tree => {
            let forest = ForestConfig {
                n_trees: args.trees.unwrap_or(100),
                max_depth: args.depth,
                seed: args.seed,
                ..ForestConfig::default()
            };
            let subset = args
                .neurons
                .map_or(NeuronSubset::All, NeuronSubset::TopAgreement);
            Box::new(TreeProbe::new(forest, subset))
        }
    };
    if matches!(kind, ProbeKind::Polar | ProbeKind::Magn | ProbeKind::Act) {
        fixed_k = args.neurons;
    }
    let evaluation = crate::progress::with_spinner(
        &format!("fitting {}", kind.name()),
        args.run.progress(),
        || evaluate(probe.as_mut(), &data, fixed_k),
    )?;
    let tree = (kind == ProbeKind::Tree).then(|| TreeReport {
        n_trees: args.trees.unwrap_or(100),
        max_depth: args.depth,
        n_used_neurons: probe.ranked_neurons().map(|r| r.len()),
    });
    let report = Report {
        features: args.features.display().to_string(),
        feature_tensor,
        n_prompts: data.n_prompts(),
        n_options: data.n_options(),
        n_neurons: data.n_neurons(),
        test_accuracy: evaluation.test_accuracy,
        selected_neurons: evaluation.selected_neurons,
        tree,
        top_neurons: probe
            .ranked_neurons()
            .map(|r| r[..r.len().min(64)].to_vec())
            .unwrap_or_default(),
        evaluation,
    };
    let mut files = crate::output::Outputs::default();
    files.json("probe.json", &report)?;
    files.write(&out)?;
    Ok(report)
}

/// Runs and prints the test accuracy.
pub fn main(args: &Args) -> Result<()> {
    let r = run(args)?;
    println!(
        "{}: test accuracy {:.4} ({} neurons), fit {:.3}s -> {}",
        args.probe.name(),
        r.test_accuracy,
        r.selected_neurons
            .map_or("-".to_string(), |k| k.to_string()),
        r.evaluation.fit_seconds,
        args.run
            .out_dir("probe-features")
            .join("probe.json")
            .display()
    );
    Ok(())
}
