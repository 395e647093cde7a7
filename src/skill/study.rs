//! What the four studies (`training-size`, `robustness`, `substitutability`, `tree-shape`)
//! share: their arguments, one task's features in one or more contexts, and their report files.
use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Result};
use mceval::TemplateSet;
use mceval::{TaskRegistry, TaskSpec};
use serde::Serialize;

use super::*;
use crate::cli::{ModelArgs, RunArgs};

/// The model, data and prompt selection shared by `skill-probe` and the four studies.
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct SkillArgs {
    /// Model, device, dtype [default model: smollm2-135m-instruct, installed by `cargo xtask
    /// setup`, else the hub].
    #[command(flatten)]
    #[serde(flatten)]
    pub model: ModelArgs,
    /// MCEval8K root, `hub` or `hub:<repo>` [default: <shared>/data/mceval8k, else the hub].
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
    /// Seed of every random choice (prompt selection, re-split, forests, baselines).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prompts per NeurGrad batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Tokens a NeurGrad batch runs, padding included (the prefix its prompts share, once,
    /// plus batch size x the longest prompt's own tokens): bounds the model's working memory,
    /// so the peak is flat in the number of prompts; a longer prompt runs alone. On a GPU a
    /// larger budget gives larger batches (docs/PERFORMANCE.md).
    #[arg(long, default_value_t = DEFAULT_BATCH_TOKENS)]
    pub batch_tokens: usize,
    /// Compute only part i of n of the NeurGrad batches and write a shard to --out (e.g.
    /// `--shard 2/8`); `neg merge` then writes the run's results from all n shards.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

impl SkillArgs {
    /// The NeurGrad batching of `--batch` and `--batch-tokens`.
    pub fn batching(&self) -> Batching {
        Batching {
            prompts: self.batch,
            tokens: self.batch_tokens,
        }
    }

    /// Prompts per split.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            train: self.train_size,
            valid: self.valid_size,
            test: self.test_size,
        }
    }

    /// The defaults with `sizes`, on published splits (tests and tiny runs).
    pub fn tiny(sizes: Sizes) -> Self {
        Self {
            model: ModelArgs::default(),
            data: None,
            shots: ShotMode::Zero,
            splits: SplitMode::Published,
            train_size: sizes.train,
            valid_size: sizes.valid,
            test_size: sizes.test,
            seed: 0,
            batch: 16,
            batch_tokens: DEFAULT_BATCH_TOKENS,
            shard: None,
        }
    }
}

/// Arguments shared by the studies (one task, one model).
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct StudyArgs {
    /// Model, data, prompts and seed.
    #[command(flatten)]
    #[serde(flatten)]
    pub run: SkillArgs,
    /// Task (directory or paper name).
    #[arg(long, default_value = "myriadlama")]
    pub task: String,
    /// Output directory and progress.
    #[command(flatten)]
    #[serde(flatten)]
    pub output: RunArgs,
}

impl StudyArgs {
    /// A tiny configuration on `../shared` for tests: `task`, the given sizes, no progress.
    pub fn tiny(task: &str, sizes: Sizes, out: &Path) -> Self {
        Self {
            run: SkillArgs::tiny(sizes),
            task: task.into(),
            output: RunArgs {
                out: Some(out.to_path_buf()),
                quiet: true,
            },
        }
    }

    /// These arguments with `--out` set to `out/<command>` when it was not given.
    pub fn default_out(mut self, command: &str) -> Self {
        if self.output.out.is_none() {
            self.output.out = Some(self.output.out_dir(command));
        }
        self
    }

    /// The output directory (`out` when none was set).
    pub fn out_dir(&self) -> &Path {
        self.output.out.as_deref().unwrap_or(Path::new("out"))
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
    /// Warnings printed while loading (e.g. leaking published splits).
    pub warnings: Vec<String>,
    /// The lock on `--out`, held until the study has written its files.
    _lock: crate::output::OutLock,
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
    /// Warnings printed during the run (e.g. leaking published splits).
    pub warnings: Vec<String>,
}

impl StudyFeatures {
    /// The report header of these features, computed with `args`.
    pub fn source(&self, args: &StudyArgs) -> StudySource {
        StudySource {
            model: self.model.clone(),
            data: self.data.clone(),
            task: self.task.clone(),
            args: args.clone(),
            warnings: self.warnings.clone(),
        }
    }
}

/// Writes a study's figure `<name>.svg`, report `<name>.json` and its wall-clock times
/// `timings.json` into `args.out_dir()` as a unit, once everything is computed.
pub fn write_study<T: Serialize>(
    args: &StudyArgs,
    name: &str,
    svg: &str,
    report: &T,
) -> Result<()> {
    let mut files = crate::output::Outputs::default();
    files.json_and_timings(&format!("{name}.json"), report)?;
    files.text(&format!("{name}.svg"), svg.to_string());
    files.write(args.out_dir())?;
    // The results are in place: the features kept for a resume are no longer needed.
    FeatureCache::discard(args.out_dir())
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
/// `args.task` in every context `contexts` makes, each batch kept in the resume cache
/// `<out>.resume` ([`FeatureCache`]) until [`write_study`] has written the results. A sharded
/// run (`args.run.shard`) is [`study_shard`]'s, not this function's.
pub fn study_features(args: &StudyArgs, contexts: &ContextMaker) -> Result<StudyFeatures> {
    if let Some(s) = args.run.shard {
        bail!("--shard {s}: a shard of a study is run by `study_shard`, the study by `neg merge`");
    }
    let plan = study_plan(args, contexts)?;
    let mut features = Vec::with_capacity(plan.sets.len());
    for set in &plan.sets {
        let bar = progress_bar(
            set.items.len(),
            &format!("{} {}", set.task, set.context),
            args.output.progress(),
        );
        features.push(compute_features(
            &plan.model,
            set,
            args.run.batching(),
            false,
            Some(&plan.cache),
            &neg_probe::Storage::Disk(plan.cache.dir().to_path_buf()),
            &bar,
        )?);
        bar.finish_and_clear();
    }
    Ok(StudyFeatures {
        model: plan.model_id,
        data: plan.data,
        task: plan.task,
        features,
        selection: plan.selection,
        warnings: plan.warnings,
        _lock: plan.lock,
    })
}

/// A study's shard (`--shard i/n`): the batches of its features that fall to the shard, written
/// to `--out` as a shard directory for `neg merge` ([`super::shard`]).
pub fn study_shard(args: &StudyArgs, contexts: &ContextMaker) -> Result<ShardSummary> {
    let plan = study_plan(args, contexts)?;
    for set in &plan.sets {
        let bar = progress_bar(
            set.items.len(),
            &format!("{} {}", set.task, set.context),
            args.output.progress(),
        );
        compute_shard(&plan.model, set, args.run.batching(), &plan.cache, &bar)?;
        bar.finish_and_clear();
    }
    let run = crate::output::RunOutput::begin(args.out_dir())?;
    super::shard::write_shard(run, args.out_dir(), &plan.cache)
}

/// Everything a study computes features from: the loaded model, the prompt sets of its
/// contexts, the lock on `--out` and the (possibly sharded) resume cache.
struct StudyPlan {
    model: neg_hooks::HfModel,
    model_id: String,
    data: String,
    task: String,
    sets: Vec<PromptSet>,
    selection: SelectionStats,
    warnings: Vec<String>,
    cache: FeatureCache,
    lock: crate::output::OutLock,
}

fn study_plan(args: &StudyArgs, contexts: &ContextMaker) -> Result<StudyPlan> {
    let spec = TaskRegistry::builtin().get(&args.task)?;
    args.run.batching().check()?;
    crate::output::check_out_dir(args.out_dir())?;
    let run = &args.run;
    let sources = resolve_sources(run.model.model.as_deref(), run.data.as_deref())?;
    if let Some(note) = &sources.note {
        eprintln!("note: {note}");
    }
    let templates = sources.data.template_set()?;
    let task = load_task(&sources.data.source, spec.name, run.splits, run.seed)?;
    let ctx = contexts(spec, &templates, sources.data.templates.is_some())?;
    let mut warnings: Vec<String> = warn_if_leaking(&task, run.splits).into_iter().collect();
    let model = crate::progress::with_spinner("loading model", args.output.progress(), || {
        run.model.load(&sources.model, run.batch * 8)
    })?;
    let fits = |prompt: &str| model.encode(prompt).is_ok();
    let (sets, selection) = select_prompts(&task, &ctx, run.sizes(), run.seed, &fits)?;
    let lock = crate::output::OutLock::acquire(args.out_dir())?;
    let cache = FeatureCache::for_run(args.out_dir(), &model, &run.model.dtype, &run.model.device)?
        .sharded(run.shard);
    if let Some(first) = sets.first() {
        warnings.extend(warn_selection(first, run.sizes()));
    }
    Ok(StudyPlan {
        model,
        model_id: sources.model,
        data: sources.data.label,
        task: spec.name.to_string(),
        sets,
        selection,
        warnings,
        cache,
        lock,
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
