//! What the five factual experiments (`linearity`, `estimate`, `attribution`, `distribution`,
//! `multi-neuron`) share: their command-line arguments ([`FactualArgs`], [`MethodArgs`]), the
//! set-up that checks inputs before any work ([`setup`]), the record of what a result was
//! computed on ([`RunInfo`]) and chunked computations that move a progress bar.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use ndarray::{concatenate, Axis};
use neg_core::methods::{self, Method};
use neg_core::neg::{ground_truth_neg, GroundTruth, ShiftMode, SweepConfig};
use neg_core::{ModelAdapter, NeuronId, TargetedPrompt};
use serde::{Deserialize, Serialize};

use crate::cli::{ModelArgs, RunArgs};
use crate::factual::{FactualSet, FactualSummary};
use crate::output::OutLock;
use crate::skill::{BatchFeatures, CachedItem, FeatureCache};
use crate::sources::DefaultModel;

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
    pub fn new<A: ModelAdapter + ?Sized>(model: &A, set: &FactualSet, started: Instant) -> Self {
        Self {
            model: model.model_id().to_string(),
            num_layers: model.num_layers(),
            ff_width: model.ff_width(),
            prompts: set.summary(),
            runtime_s: started.elapsed().as_secs_f64(),
        }
    }
}

/// One array field of every part, concatenated along axis 0 (parts are chunks of prompts).
pub(crate) fn cat_parts<T, D: ndarray::RemoveAxis>(
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

/// What a factual command that can run as a shard returns.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The whole run: its results (written under `--out`).
    Done(Box<T>),
    /// One shard of it (`--shard i/n`): its blocks, written as a shard under `--out`.
    Shard(crate::skill::ShardSummary),
}

/// Why `method` cannot run on `model`, when that follows from the model's kind alone (LPI is
/// defined for causal LMs): known before any block is computed, so that a sharded run and its
/// merge agree without computing anything.
pub fn unsupported_by_kind<A: ModelAdapter + ?Sized>(model: &A, method: Method) -> Option<String> {
    (method == Method::Lpi && model.kind() == neg_core::ModelKind::MaskedLm).then(|| {
        neg_core::AdapterError::Unsupported {
            what: "log-probability increase (LPI), defined for Llama-family causal LMs".into(),
            model: model.model_id().into(),
        }
        .to_string()
    })
}

/// Once a run's results are written: says how many of its blocks' items came from an
/// earlier, interrupted run's cache, and removes the cache.
pub(crate) fn discard_cache(
    cache: &FeatureCache,
    out: &std::path::Path,
    command: &str,
) -> Result<()> {
    if cache.hits() > 0 {
        eprintln!(
            "note: {command}: {} of {} blocks' items resumed from {}",
            cache.hits(),
            cache.batches_seen(),
            FeatureCache::beside(out).display()
        );
    }
    FeatureCache::discard(out)
}

/// The outcome of a shard run whose blocks `cache` holds: writes the shard under `out`
/// ([`crate::skill::shard::write_shard`]).
pub(crate) fn shard_outcome<T>(
    cache: Option<&FeatureCache>,
    out: &std::path::Path,
) -> Result<Outcome<T>> {
    let cache = cache.context("every block is computed without a shard")?;
    let run = crate::output::RunOutput::begin(out)?;
    Ok(Outcome::Shard(crate::skill::shard::write_shard(
        run, out, cache,
    )?))
}

/// A command's results, or `None` after printing the line of the shard it wrote.
pub fn done_or_print_shard<T>(outcome: Outcome<T>) -> Option<Box<T>> {
    match outcome {
        Outcome::Done(r) => Some(r),
        Outcome::Shard(s) => {
            println!("{}", s.line());
            None
        }
    }
}

impl<T> Outcome<T> {
    /// The results of a run made without a sharded cache (which always completes).
    pub fn into_done(self) -> Result<T> {
        match self {
            Outcome::Done(r) => Ok(*r),
            Outcome::Shard(_) => anyhow::bail!("a run without a cache has no shard"),
        }
    }
}

/// The resume cache of a factual command's run on `model` writing `out`, with the model's
/// `--dtype` and `--device` from `args`, computing only `shard`'s blocks when given.
pub(crate) fn run_cache(
    args: &FactualArgs,
    model: &neg_hooks::HfModel,
    out: &std::path::Path,
    shard: Option<crate::skill::Shard>,
) -> Result<FeatureCache> {
    let m = &args.model;
    Ok(FeatureCache::for_run(out, model, &m.dtype, &m.device)?.sharded(shard))
}

/// Prompts per block: the unit of a factual command's resume cache and of its `--shard`
/// split (block `b` of the run's prompts, `b mod n`-th shard), and the NeurGrad chunk.
pub const BLOCK: usize = 16;

/// A block's sweep as a resume-cache entry holds it ([`GroundTruth`] less what its inputs
/// fix: the configuration and the neurons).
struct SweepArrays {
    shifts: ndarray::Array1<f32>,
    base_probs: ndarray::Array2<f32>,
    activations: ndarray::Array2<f32>,
    delta_probs: ndarray::Array4<f32>,
    neg: ndarray::Array3<f32>,
    r: ndarray::Array3<f32>,
}

impl CachedItem for SweepArrays {
    type Elem = f32;
    const NAMES: &'static [&'static str] = &[
        "shifts",
        "base_probs",
        "activations",
        "delta_probs",
        "neg",
        "r",
    ];

    fn arrays(&self) -> Vec<ndarray::ArrayViewD<'_, f32>> {
        vec![
            self.shifts.view().into_dyn(),
            self.base_probs.view().into_dyn(),
            self.activations.view().into_dyn(),
            self.delta_probs.view().into_dyn(),
            self.neg.view().into_dyn(),
            self.r.view().into_dyn(),
        ]
    }

    fn from_arrays(arrays: Vec<ndarray::ArrayD<f32>>, prompts: usize) -> Option<Self> {
        use ndarray::{Ix1, Ix2, Ix3, Ix4};
        let [shifts, base_probs, activations, delta_probs, neg, r]: [ndarray::ArrayD<f32>; 6] =
            arrays.try_into().ok()?;
        let a = SweepArrays {
            shifts: shifts.into_dimensionality::<Ix1>().ok()?,
            base_probs: base_probs.into_dimensionality::<Ix2>().ok()?,
            activations: activations.into_dimensionality::<Ix2>().ok()?,
            delta_probs: delta_probs.into_dimensionality::<Ix4>().ok()?,
            neg: neg.into_dimensionality::<Ix3>().ok()?,
            r: r.into_dimensionality::<Ix3>().ok()?,
        };
        let (p, t, k, steps) = a.delta_probs.dim();
        (p == prompts
            && steps == a.shifts.len()
            && a.base_probs.dim() == (p, t)
            && a.activations.dim() == (p, k)
            && a.neg.dim() == (p, t, k)
            && a.r.dim() == (p, t, k))
            .then_some(a)
    }
}

/// A factual command's unit of work over one block of prompts, through `cache` when there is
/// one: computed (or, with `cache`, read back from an earlier run's entry), with the seconds
/// its computation took; `None` when another shard owns the block. `bar` ends at
/// `done + prompts` whichever it was.
pub(crate) fn block_work<T: CachedItem>(
    cache: Option<&FeatureCache>,
    block: usize,
    what: &str,
    prompts: &[TargetedPrompt],
    bar: &ProgressBar,
    compute: impl FnOnce() -> Result<T>,
) -> Result<Option<(T, f64)>> {
    let done = bar.position();
    let item = match cache {
        Some(c) => c.block_item(block, what, prompts, compute)?,
        None => {
            let start = Instant::now();
            let value = compute()?;
            Some((value, start.elapsed().as_secs_f64()))
        }
    };
    bar.set_position(done + prompts.len() as u64);
    Ok(item)
}

/// Blocks' results with the seconds their computations took, when every block is there.
pub(crate) fn all_blocks<T>(blocks: Vec<Option<(T, f64)>>) -> Option<(Vec<T>, f64)> {
    let blocks: Vec<(T, f64)> = blocks.into_iter().collect::<Option<_>>()?;
    let seconds = blocks.iter().map(|(_, s)| s).sum();
    Some((blocks.into_iter().map(|(v, _)| v).collect(), seconds))
}

/// Ground-truth NEG of `neurons` on every prompt, one prompt at a time so that `bar` moves,
/// in blocks of [`BLOCK`] prompts through `cache` ([`FeatureCache::block_item`]), with the
/// seconds the sweeps took (summed over blocks, wherever they were computed). `None` when
/// `cache` is a shard's and other shards own some blocks.
pub fn sweep_with_progress<A: ModelAdapter + ?Sized>(
    model: &A,
    prompts: &[TargetedPrompt],
    neurons: &[NeuronId],
    config: &SweepConfig,
    cache: Option<&FeatureCache>,
    bar: &ProgressBar,
) -> Result<Option<(GroundTruth, f64)>> {
    let what = format!("ground-truth NEG v1 {config:?} of {neurons:?}");
    let mut blocks = Vec::new();
    for (b, block) in prompts.chunks(BLOCK).enumerate() {
        blocks.push(block_work(cache, b, &what, block, bar, || {
            let mut swept = Vec::with_capacity(block.len());
            for p in block {
                swept.push(ground_truth_neg(
                    model,
                    std::slice::from_ref(p),
                    neurons,
                    config,
                )?);
                bar.inc(1);
            }
            let g = concat_truths(swept)?;
            Ok(SweepArrays {
                shifts: ndarray::Array1::from(g.shifts),
                base_probs: g.base_probs,
                activations: g.activations,
                delta_probs: g.delta_probs,
                neg: g.neg,
                r: g.r,
            })
        })?);
    }
    let Some((parts, seconds)) = all_blocks(blocks) else {
        return Ok(None);
    };
    let first = parts.first().context("no prompts were swept")?;
    let truth = GroundTruth {
        config: config.clone(),
        shifts: first.shifts.to_vec(),
        neurons: neurons.to_vec(),
        base_probs: cat_parts(&parts, |a| a.base_probs.view())?,
        activations: cat_parts(&parts, |a| a.activations.view())?,
        delta_probs: cat_parts(&parts, |a| a.delta_probs.view())?,
        neg: cat_parts(&parts, |a| a.neg.view())?,
        r: cat_parts(&parts, |a| a.r.view())?,
    };
    Ok(Some((truth, seconds)))
}

/// NeurGrad for every prompt, in chunks of [`BLOCK`] prompts so that `bar` moves.
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
    let blocks = attribute_blocks(model, prompts, method, None, bar)?;
    let (attribution, _) =
        join_blocks(method, blocks)?.context("every block is computed without a shard")?;
    Ok(attribution)
}

/// `method`'s scores of each block of [`BLOCK`] prompts (IG and LPI one prompt per call, the
/// others a block per call), through `cache`, with the seconds each took; a block another
/// shard owns is `None`.
pub fn attribute_blocks<A: ModelAdapter + ?Sized>(
    model: &A,
    prompts: &[TargetedPrompt],
    method: Method,
    cache: Option<&FeatureCache>,
    bar: &ProgressBar,
) -> Result<Vec<Option<(BatchFeatures, f64)>>> {
    let chunk = if matches!(method, Method::Ig | Method::Lpi) {
        1
    } else {
        BLOCK
    };
    let what = format!("attribution v1 {}", method.name());
    prompts
        .chunks(BLOCK)
        .enumerate()
        .map(|(b, block)| {
            block_work(cache, b, &what, block, bar, || {
                let mut parts = Vec::new();
                for c in block.chunks(chunk) {
                    parts.push(methods::attribute(model, c, method)?);
                    bar.inc(c.len() as u64);
                }
                Ok(BatchFeatures {
                    probs: cat_parts(&parts, |a| a.probs.view())?,
                    activations: cat_parts(&parts, |a| a.activations.view())?,
                    scores: cat_parts(&parts, |a| a.scores.view())?,
                })
            })
        })
        .collect()
}

/// The blocks of [`attribute_blocks`] as one attribution, with the seconds they took
/// together; `None` when a block is missing.
pub fn join_blocks(
    method: Method,
    blocks: Vec<Option<(BatchFeatures, f64)>>,
) -> Result<Option<(methods::Attribution, f64)>> {
    let Some((parts, seconds)) = all_blocks(blocks) else {
        return Ok(None);
    };
    let attribution = methods::Attribution {
        method,
        probs: cat_parts(&parts, |a| a.probs.view())?,
        activations: cat_parts(&parts, |a| a.activations.view())?,
        scores: cat_parts(&parts, |a| a.scores.view())?,
    };
    Ok(Some((attribution, seconds)))
}

/// A number for the printed tables: 4 decimals, or scientific notation when tiny or huge.
pub fn fmt(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e4) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// Arguments every factual experiment takes.
#[derive(clap::Args, Debug, Clone)]
pub struct FactualArgs {
    /// Model, device, dtype [default model: stories260k from the shared folder].
    #[command(flatten)]
    pub model: ModelArgs,
    /// Factual prompt file (JSON Lines: uuid, prompt, tpl, answer) [default: with stories260k
    /// the built-in TinyStories set (its answers are single tokens for it); with any other
    /// model <shared>/data/myriadlama-probing/llama2-7b-it.jsonl, keeping the prompts whose
    /// answer is one token].
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Use at most this many prompts (a seeded sample); 0 = all. Default: 10 for linearity,
    /// 16 for multi-neuron, all for the others.
    #[arg(long)]
    pub max_prompts: Option<usize>,
    /// Seed of every random choice (prompt sample, neuron draws).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Text put between prompt and answer before tokenizing the answer.
    #[arg(long, default_value = " ")]
    pub answer_prefix: String,
    /// A multi-token answer is an error instead of being dropped.
    #[arg(long)]
    pub strict: bool,
    /// Output directory and progress.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The estimators an experiment compares and how it shifts activations (`estimate`,
/// `attribution`).
#[derive(clap::Args, Debug, Clone)]
pub struct MethodArgs {
    /// magnitude (a -> a + d sign(a), the paper's) or additive (a -> a + d); top-K
    /// enhancement (Fig. 3) also multiplies d by each neuron's NeurGrad polarity.
    #[arg(long, value_enum, default_value = "magnitude")]
    pub mode: ShiftMode,
    /// Estimators to compare (neurgrad, cg, ig, lpi).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "neurgrad,cg,ig,lpi"
    )]
    pub methods: Vec<Method>,
}

/// The MyriadLAMA prompt set of the shared folder, relative to it.
pub const MYRIADLAMA: &str = "data/myriadlama-probing/llama2-7b-it.jsonl";

/// Everything a factual experiment needs before computing: the model, the prompts, a
/// writable output directory and the lock on it; prints what the prompt set holds. Inputs
/// are checked first (prompt file,
/// model, answers), the output directory before the model loads, so a bad input creates
/// nothing; the lock is taken last, so a second run on the same `--out` fails before the
/// computation.
pub fn setup(
    args: &FactualArgs,
    command: &str,
    default_max_prompts: usize,
) -> Result<(neg_hooks::HfModel, FactualSet, PathBuf, OutLock)> {
    use crate::factual::{self, ResolveOptions};
    let model_spec = args.model.resolve(DefaultModel::Stories260k)?;
    let prompts = match &args.prompts {
        Some(p) => Some(p.clone()),
        None if is_stories260k(&model_spec.spec) => None,
        None => Some(
            crate::sources::shared_path(MYRIADLAMA)
                .context("the default prompts of a model other than stories260k: pass --prompts")?,
        ),
    };
    let (source, records) = match &prompts {
        Some(path) => (path.display().to_string(), factual::read_records(path)?),
        None => (
            factual::BUILTIN_NAME.to_string(),
            factual::builtin_stories(),
        ),
    };
    let out = args.run.out_dir(command);
    crate::output::check_out_dir(&out)?;
    let model = crate::progress::with_spinner("loading model", args.run.progress(), || {
        args.model.load(
            &model_spec.spec,
            neg_hooks::LoadOptions::default().max_batch,
        )
    })?;
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
    eprintln!("{}", set.describe());
    let lock = OutLock::acquire(&out)?;
    Ok((model, set, out, lock))
}

/// The progress bar of a factual experiment: `len` steps (prompts, or prompt-sweeps).
pub fn progress(len: usize, message: &str, show: bool) -> ProgressBar {
    crate::progress::bar(len, "steps", message, show)
}

/// Whether `spec` names the stories260k test model (a directory called `stories260k`), whose
/// default prompts are the built-in TinyStories set.
fn is_stories260k(spec: &str) -> bool {
    std::path::Path::new(spec).file_name() == Some(std::ffi::OsStr::new("stories260k"))
}

/// Prints a factual experiment's `table` on stdout and where its files went on stderr.
pub fn print_result(table: &str, args: &FactualArgs, command: &str, info: &RunInfo) {
    print!("{table}");
    let out = args.run.out_dir(command);
    eprintln!("wrote {} in {:.1} s", out.display(), info.runtime_s);
}
