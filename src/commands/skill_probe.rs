//! `neg skill-probe`: the main job. Skill-neuron probing on MCEval8K (the NEG paper's §5.3,
//! Tables 3, 8 and 9): per task, NeurGrad features of every option, six methods trained on
//! train with the neuron count chosen on valid, test accuracy with a bootstrap interval.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mceval::TaskRegistry;
use neg_core::ModelAdapter;
use neg_probe::{Evaluation, Split};
use serde::Serialize;

use crate::cli::RunArgs;
use crate::skill::*;

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
    /// Tokens a NeurGrad batch runs, padding included ([`crate::skill::Batching::tokens`]).
    pub batch_tokens: usize,
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
    /// Compute only this part of the NeurGrad batches and write a shard ([`crate::skill::shard`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

impl SkillProbeConfig {
    /// The NeurGrad batching of `batch` and `batch_tokens`.
    pub fn batching(&self) -> Batching {
        Batching {
            prompts: self.batch,
            tokens: self.batch_tokens,
        }
    }
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
            batch_tokens: DEFAULT_BATCH_TOKENS,
            device: "cpu".into(),
            dtype: "f32".into(),
            compact: false,
            out: PathBuf::from("out/skill-probe"),
            progress: true,
            shard: None,
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
    /// A sharded run's shard (its `tasks` are then empty: the merged run evaluates them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardSummary>,
}

/// The files `skill_probe` writes at the top of `--out` (besides `features/`).
pub const SKILL_PROBE_FILES: [&str; 3] =
    ["results.json", "accuracy_vs_neurons.svg", "timings.json"];

/// The `skill_probe` job: checks every input first (tasks, model, data, `--out`), locks `--out`
/// ([`crate::output::RunOutput`]), computes features and evaluates every method per task, then
/// writes `results.json`, `timings.json`, `features/<task>.{safetensors,rows.jsonl}` and
/// `accuracy_vs_neurons.svg` and moves them into `out` as a unit. Each batch's NeurGrad is
/// kept in `<out>.resume` ([`FeatureCache`]) until then, so a rerun after an interruption
/// resumes; the outputs of identical runs are byte-identical, resumed or not.
pub fn run_skill_probe(cfg: &SkillProbeConfig) -> Result<SkillProbeReport> {
    let start = Instant::now();
    if cfg.tasks.is_empty() {
        bail!("no tasks given");
    }
    cfg.batching().check()?;
    let registry = TaskRegistry::builtin();
    for t in &cfg.tasks {
        registry.get(t)?;
    }
    crate::output::check_out_dir(&cfg.out)?;
    let sources = resolve_sources(cfg.model.as_deref(), cfg.data.as_deref())?;
    if let Some(note) = &sources.note {
        eprintln!("note: {note}");
    }
    let templates = sources.data.template_set()?;
    let mut loaded = Vec::new();
    let mut warnings = Vec::new();
    for t in &cfg.tasks {
        let task = load_task(&sources.data.source, t, cfg.splits, cfg.seed)?;
        warnings.extend(warn_if_leaking(&task, cfg.splits));
        loaded.push(task);
    }
    // One run per `--out` at a time; locked before the long part, released when the run ends.
    let output = crate::output::RunOutput::begin(&cfg.out)?;
    let model = crate::progress::with_spinner("loading model", cfg.progress, || {
        crate::sources::load_model(&sources.model, &cfg.device, &cfg.dtype, cfg.batch * 8)
    })?;
    // Each batch's NeurGrad is kept beside `--out` until the results are committed, so an
    // interrupted run continues where it stopped (keyed by the model files' contents).
    let cache =
        FeatureCache::for_run(&cfg.out, &model, &cfg.dtype, &cfg.device)?.sharded(cfg.shard);
    let fits = |prompt: &str| model.encode(prompt).is_ok();
    let provenance = |context: &str| -> Vec<(&'static str, String)> {
        vec![
            ("dtype", cfg.dtype.clone()),
            ("device", cfg.device.clone()),
            ("data", sources.data.label.clone()),
            (
                "templates",
                sources
                    .data
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
    let mut panels = Vec::new();
    for task in &loaded {
        let context = PromptContext {
            name: format!("{:?}-shot", cfg.shots).to_lowercase(),
            templates: templates.clone(),
            shots: shots_for(
                cfg.shots,
                cfg.splits,
                task.spec,
                sources.data.templates.is_some(),
            ),
        };
        let (sets, selection) = select_prompts(task, &[context], cfg.sizes, cfg.seed, &fits)?;
        let set = &sets[0];
        warnings.extend(warn_selection(set, cfg.sizes));
        let bar = progress_bar(set.items.len(), task.spec.name, cfg.progress);
        if cfg.shard.is_some() {
            // A shard only computes its batches; `neg merge` evaluates the probes.
            compute_shard(&model, set, cfg.batching(), &cache, &bar)?;
            bar.finish_and_clear();
            continue;
        }
        let hits_before = cache.hits();
        let features = compute_features(
            &model,
            set,
            cfg.batching(),
            !cfg.compact,
            Some(&cache),
            // The features stay on disk beside `--out`: the run's memory is the model's
            // working set, not its data (docs/PERFORMANCE.md, "Memory of a skill-probe run").
            &neg_probe::Storage::Disk(cache.dir().to_path_buf()),
            &bar,
        )?;
        bar.finish_and_clear();
        let resumed_batches = cache.hits() - hits_before;
        if resumed_batches > 0 {
            eprintln!(
                "note: {}: {resumed_batches} of {} batches resumed from {}",
                task.spec.name,
                features.tokens.batches,
                FeatureCache::beside(&cfg.out).display()
            );
        }
        let probe_start = Instant::now();
        let fitting = crate::progress::spinner(&format!("{} probes", task.spec.name), cfg.progress);
        let evals = evaluate_methods_with_neurons(
            &features.data,
            &METHODS,
            cfg.seed,
            cfg.trees,
            features.ff_width,
        )
        .with_context(|| format!("task {}", task.spec.name))?;
        fitting.finish_and_clear();
        let probe_seconds = probe_start.elapsed().as_secs_f64();
        let only_evals: Vec<&Evaluation> = evals.iter().map(|o| &o.evaluation).collect();
        panels.push(curve_panel(task.spec.name, &only_evals));
        // The task's files go to the staging directory now (committed with the rest at the
        // end), so that memory holds one task's features at a time, never a run's.
        let features_file = format!("features/{}.safetensors", task.spec.name);
        write_features_file(
            &output.path(&features_file),
            &features,
            &provenance(&set.context),
        )?;
        crate::output::write_atomic(
            &output.path(&format!("features/{}.rows.jsonl", task.spec.name)),
            &feature_rows_jsonl(&features)?,
        )?;
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
            resumed_batches,
            tokens: features.tokens,
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
    let report = |tasks, shard| SkillProbeReport {
        model: sources.model.clone(),
        data: sources.data.label.clone(),
        templates: sources
            .data
            .templates
            .as_ref()
            .map(|p| p.display().to_string()),
        config: cfg.clone(),
        n_layers: model.num_layers(),
        ff_width: model.ff_width(),
        tasks,
        warnings: warnings.clone(),
        seconds: start.elapsed().as_secs_f64(),
        shard,
    };
    if cfg.shard.is_some() {
        let summary = crate::skill::shard::write_shard(output, &cfg.out, &cache)?;
        return Ok(report(Vec::new(), Some(summary)));
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
    let report = report(rows, None);
    // Everything is computed: write the run's files into a staging directory, then move them
    // into `--out` as a unit (the earlier run's files stay intact if anything fails).
    crate::plot::write_svg(&output.path(SKILL_PROBE_FILES[1]), &svg)?;
    // Wall-clock times go to timings.json, so that results.json (like every other file) is
    // byte-identical between identical runs, resumed or not.
    let (results, timings) = crate::output::split_timings(serde_json::to_value(&report)?);
    crate::output::write_json(&output.path(SKILL_PROBE_FILES[0]), &results)?;
    crate::output::write_json(&output.path(SKILL_PROBE_FILES[2]), &timings)?;
    output.commit()?;
    FeatureCache::discard(&cfg.out)?;
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

/// Arguments of `neg skill-probe`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Model, data, prompts and seed.
    #[command(flatten)]
    pub skill: SkillArgs,
    /// Comma-separated tasks (directory or paper names).
    #[arg(long, value_delimiter = ',', default_value = "agnews,toxicity")]
    pub tasks: Vec<String>,
    /// Trees of the Tree-Probe.
    #[arg(long, default_value_t = 100)]
    pub trees: usize,
    /// Write only compact features (option index, activations, probabilities), no f32 scores.
    #[arg(long)]
    pub compact: bool,
    /// Output directory and progress.
    #[command(flatten)]
    pub run: RunArgs,
}

impl Args {
    /// The library configuration of these arguments.
    pub fn config(&self) -> SkillProbeConfig {
        let s = &self.skill;
        SkillProbeConfig {
            model: s.model.model.clone(),
            data: s.data.clone(),
            tasks: self.tasks.clone(),
            shots: s.shots,
            splits: s.splits,
            sizes: s.sizes(),
            seed: s.seed,
            trees: self.trees,
            batch: s.batch,
            batch_tokens: s.batch_tokens,
            device: s.model.device.clone(),
            dtype: s.model.dtype.clone(),
            compact: self.compact,
            out: self.run.out_dir("skill-probe"),
            progress: self.run.progress(),
            shard: s.shard,
        }
    }
}

/// Runs the job for parsed arguments.
pub fn run(args: &Args) -> Result<SkillProbeReport> {
    run_skill_probe(&args.config())
}

/// Runs the job and prints the accuracy table.
pub fn main(args: &Args) -> Result<()> {
    let r = run(args)?;
    if let Some(shard) = &r.shard {
        println!("{}", shard.line());
        return Ok(());
    }
    let s = &args.skill;
    println!(
        "{} | {:?} | {:?} splits | {} train / {} valid / {} test prompts per task requested\n",
        r.model, s.shots, s.splits, s.train_size, s.valid_size, s.test_size
    );
    print!("{}", format_table(&r.tasks));
    println!(
        "\ntest accuracy; neuron counts chosen on valid. {:.1}s -> {}",
        r.seconds,
        r.config.out.display()
    );
    Ok(())
}
