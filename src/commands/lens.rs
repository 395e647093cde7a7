//! NeuronLens on an MCEval8K task (`neg lens`): per-class activation ranges of the residual stream (or FF
//! neurons) at the answer position, and range masking versus whole-neuron masking of each
//! class's salient units.
//!
//! ```text
//! neg lens            # stories260k + agnews from ../shared
//! neg lens --task toxicity --site ff --layers 2,3 \
//!     --tau 2 --fraction 0.1 --fit-on correct --out out/lens
//! ```
//!
//! Fits on the train split (correctly answered prompts by default), evaluates on the test
//! split. Writes `<out>/neuronlens.json` (every class's unmasked, range-masked and
//! neuron-masked target/complement accuracy and confidence, ranges and their overlap) and
//! `<out>/neuronlens.svg`, atomically; prints a table. Any error is one line and exit status 1.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use mceval::{Dataset, RenderedItem, Shots, Split, TemplateSet};
use ndarray::Axis;
use neg_core::neuronlens::{
    capture, class_mean_scores, correct_indices, neutral_values, run_classes, top_fraction,
    ClassReport, ClassStats, EvalSet, Tau, UnitSelection,
};
use neg_core::{ModelAdapter, Site, TargetedPrompt};
use neg_hooks::HfModel;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::cli::{ModelArgs, RunArgs};
use crate::plot::{grouped_bar_svg, BarGroups, BarSeries};
use crate::sources::DefaultModel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FitOn {
    /// `correct` when every class has at least two correctly answered train prompts, else
    /// `all` (said in the output): a near-chance model such as stories260k answers some
    /// classes never.
    Auto,
    /// Only train prompts the model answers correctly (the published choice).
    Correct,
    /// Every train prompt of the class.
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Salience {
    /// Top units by mean |activation| on the class (the published choice).
    MeanAbs,
    /// Top units by mean NeurGrad of the gold option on the class's fit prompts (FF only).
    Neurgrad,
}

/// The model, MCEval8K task and prompt selection shared by `lens` and `aux-metrics`.
#[derive(clap::Args, Debug, Clone)]
pub struct TaskArgs {
    /// Model, device, dtype [default model: stories260k from the shared folder].
    #[command(flatten)]
    pub model: ModelArgs,
    /// MCEval8K root (<genre>/<task>/<split>.json), `hub` or `hub:<repo>` [default:
    /// <shared>/data/mceval8k, else the hub].
    #[arg(long)]
    pub data: Option<String>,
    /// MCEval8K task (classes = answer options).
    #[arg(long, default_value = "agnews")]
    pub task: String,
    /// Prompts longer than this many tokens are skipped.
    #[arg(long, default_value_t = 320)]
    pub max_tokens: usize,
    /// Seed of every random choice (balanced prompt order; aux-metrics' permutations and
    /// random neurons).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl TaskArgs {
    /// Loads `--task` from `--data` as published, then `--model` (so a bad task or data
    /// directory fails before the model loads).
    pub fn load(&self, progress: bool) -> Result<(Dataset, HfModel)> {
        let data = load_dataset(self.data.as_deref(), &self.task)?;
        let model = crate::progress::with_spinner("loading model", progress, || {
            self.model.resolve_and_load(DefaultModel::Stories260k)
        })?;
        Ok((data, model))
    }
}

/// Arguments of `neg lens`.
#[derive(clap::Args, Debug, Clone)]
#[command(args_override_self = true)]
pub struct Args {
    #[command(flatten)]
    pub common: TaskArgs,
    /// Units to read and mask: the residual stream (decoder-layer outputs, the original work's
    /// units) or FF neurons (input of the down projection).
    #[arg(long, value_enum, default_value = "residual")]
    pub site: Site,
    /// Layers (comma-separated); default: the middle layer.
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<usize>,
    /// Range half-width in standard deviations (> 0; `inf` = whole-neuron masking).
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    pub tau: f64,
    /// Fraction of units salient per class (top by mean |activation|).
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub fraction: f64,
    /// How salient units are ranked.
    #[arg(long, value_enum, default_value = "mean-abs")]
    pub salience: Salience,
    /// Which train prompts fit the class ranges.
    #[arg(long, value_enum, default_value = "auto")]
    pub fit_on: FitOn,
    /// Train prompts to render (the fit set and the neutral reference set).
    #[arg(long, default_value_t = 200)]
    pub n_fit: usize,
    /// Test prompts to evaluate on.
    #[arg(long, default_value_t = 100)]
    pub n_eval: usize,
    /// Output directory and progress.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Range summary of the units over class pairs.
#[derive(Debug, Serialize)]
pub struct OverlapSummary {
    pub mean: f64,
    pub median: f64,
    /// Units whose class ranges are pairwise disjoint on average (overlap 0).
    pub disjoint_fraction: f64,
    pub per_unit: Vec<f64>,
}

/// One class's result, with the derived drops.
#[derive(Debug, Serialize)]
pub struct ClassRow {
    pub option: String,
    pub n_fit: usize,
    pub range_target_drop: f64,
    pub neuron_target_drop: f64,
    pub range_complement_retained: f64,
    pub neuron_complement_retained: f64,
    #[serde(flatten)]
    pub report: ClassReport,
}

/// Everything the example writes.
#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub task: String,
    pub site: Site,
    pub layers: Vec<usize>,
    pub units: Vec<String>,
    pub tau: f64,
    pub fraction: f64,
    pub salience: Salience,
    pub fit_on: FitOn,
    /// What `fit_on` resolved to.
    pub fit_used: FitOn,
    pub n_fit_rendered: usize,
    pub n_fit_correct: usize,
    pub n_eval: usize,
    pub skipped_long: usize,
    pub fit_accuracy: f64,
    pub classes: Vec<ClassRow>,
    pub overlap: OverlapSummary,
    pub class_mean: Vec<Vec<f64>>,
    pub class_std: Vec<Vec<f64>>,
    pub json: PathBuf,
    pub svg: PathBuf,
}

/// Rendered prompts with the option tokens as targets.
pub struct Items {
    pub prompts: Vec<TargetedPrompt>,
    /// Gold option per prompt.
    pub labels: Vec<usize>,
    /// Option texts (the classes).
    pub options: Vec<String>,
    /// Prompts skipped as too long.
    pub skipped: usize,
}

/// Renders up to `n` zero-shot prompts of `split`, balanced over the gold labels (the
/// published files are sorted by label) in a seeded order, skipping prompts longer than
/// `max_tokens` tokens, with the option tokens as targets.
pub fn load_items(
    model: &HfModel,
    data: &Dataset,
    split: Split,
    n: usize,
    max_tokens: usize,
    seed: u64,
) -> Result<Items> {
    let task = data.task();
    let items: Vec<RenderedItem> = TemplateSet::builtin()
        .render(task, data, split, Shots::Zero, None)
        .with_context(|| format!("cannot render task {} ({})", task.name, split.name()))?;
    let n_options = items.first().map_or(0, |i| i.options.len());
    let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); n_options];
    for (i, item) in items.iter().enumerate() {
        if let Some(group) = by_label.get_mut(item.label) {
            group.push(i);
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for group in &mut by_label {
        group.shuffle(&mut rng);
    }
    // Round-robin over the labels: item r of every label, then item r + 1, ...
    let longest = by_label.iter().map(Vec::len).max().unwrap_or(0);
    let order = (0..longest).flat_map(|r| by_label.iter().filter_map(move |g| g.get(r).copied()));
    let mut prompts = Vec::new();
    let mut labels = Vec::new();
    let mut options = Vec::new();
    let mut skipped = 0;
    for i in order {
        if prompts.len() == n {
            break;
        }
        let item = &items[i];
        // Prompts beyond the model's context are skipped like prompts beyond max_tokens.
        let len = match model.encode(&item.prompt) {
            Ok(ids) => ids.len(),
            Err(neg_hooks::HooksError::PromptTooLong { .. }) => usize::MAX,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot tokenize {} record {}", task.name, item.index)
                })
            }
        };
        if len > max_tokens {
            skipped += 1;
            continue;
        }
        let targets = item
            .options
            .iter()
            .map(|o| model.target_token(&item.prompt, o))
            .collect::<Result<Vec<u32>, _>>()
            .with_context(|| {
                format!(
                    "task {} record {}: an answer option is not a single token",
                    task.name, item.index
                )
            })?;
        if options.is_empty() {
            options = item.options.clone();
        }
        prompts.push(TargetedPrompt::new(item.prompt.clone(), targets));
        labels.push(item.label);
    }
    if prompts.is_empty() {
        bail!(
            "no {} prompt of task {} fits in {max_tokens} tokens ({skipped} skipped)",
            split.name(),
            task.name
        );
    }
    Ok(Items {
        prompts,
        labels,
        options,
        skipped,
    })
}

/// Loads `task` as published from `data` (`None`: the shared folder's MCEval8K), through
/// [`crate::skill::load_task`].
pub fn load_dataset(data: Option<&str>, task: &str) -> Result<Dataset> {
    let loc = crate::sources::resolve_data(data)?;
    let loaded = crate::skill::load_task(&loc.source, task, crate::skill::SplitMode::Published, 0)
        .with_context(|| format!("cannot load task {task} from {}", loc.label))?;
    Ok(loaded.data)
}

/// Checks the arguments, fits class ranges on train prompts, masks them on test prompts and
/// writes `neuronlens.json` and `neuronlens.svg`.
pub fn run(args: &Args) -> Result<Report> {
    // Cheap checks first, so bad arguments fail before the model loads.
    let tau = Tau::new(args.tau)?;
    if !(args.fraction > 0.0 && args.fraction <= 1.0) {
        bail!("--fraction must be in (0, 1], got {}", args.fraction);
    }
    if args.n_fit < 2 || args.n_eval == 0 {
        bail!("--n-fit must be >= 2 and --n-eval >= 1");
    }
    if args.salience == Salience::Neurgrad && args.site != Site::FeedForward {
        bail!("--salience neurgrad needs --site ff (gradients are defined for FF neurons)");
    }
    crate::output::check_out_dir(&args.run.out_dir("lens"))?;
    let (data, model) = args.common.load(args.run.progress())?;
    let _lock = crate::output::OutLock::acquire(&args.run.out_dir("lens"))?;
    let working = crate::progress::spinner("neuronlens", args.run.progress());
    let layers = if args.layers.is_empty() {
        vec![model.num_layers() / 2]
    } else {
        args.layers.clone()
    };
    let selection = UnitSelection {
        site: args.site,
        layers: layers.clone(),
    };
    let Items {
        prompts: fit_prompts,
        labels: fit_labels,
        options,
        skipped: skip_fit,
    } = load_items(
        &model,
        &data,
        Split::Train,
        args.n_fit,
        args.common.max_tokens,
        args.common.seed,
    )?;
    let Items {
        prompts: eval_prompts,
        labels: eval_labels,
        skipped: skip_eval,
        ..
    } = load_items(
        &model,
        &data,
        Split::Test,
        args.n_eval,
        args.common.max_tokens,
        args.common.seed + 1,
    )?;
    let n_classes = options.len();

    let fit = capture(&model, &fit_prompts, &selection)?;
    let correct = correct_indices(fit.probs.view(), &fit_labels);
    let fit_used = match args.fit_on {
        FitOn::Auto => {
            let enough = (0..n_classes)
                .all(|c| correct.iter().filter(|&&i| fit_labels[i] == c).count() >= 2);
            if enough {
                FitOn::Correct
            } else {
                FitOn::All
            }
        }
        f => f,
    };
    let fit_rows: Vec<usize> = match fit_used {
        FitOn::Correct => correct.clone(),
        _ => (0..fit_prompts.len()).collect(),
    };
    let rows_acts = fit.activations.select(Axis(0), &fit_rows);
    let rows_labels: Vec<usize> = fit_rows.iter().map(|&i| fit_labels[i]).collect();
    let stats = ClassStats::fit_named(rows_acts.view(), &rows_labels, n_classes, Some(&fit.units))
        .with_context(|| {
            let hint = match fit_used {
                FitOn::Correct => "; try --fit-on all or a larger --n-fit",
                _ => "; try a larger --n-fit",
            };
            format!(
                "fitting class ranges of task {} on {} of {} train prompts ({}){hint}",
                args.common.task,
                fit_rows.len(),
                fit_prompts.len(),
                match fit_used {
                    FitOn::Correct => "correctly answered",
                    _ => "all",
                },
            )
        })?;
    // Neutral value: each unit's mean over the whole rendered train set (all classes).
    let neutral = neutral_values(fit.activations.view())?;
    let eval = capture(&model, &eval_prompts, &selection)?;

    let targets = match args.salience {
        Salience::MeanAbs => (0..n_classes)
            .map(|c| Ok((c, stats.salient(c, args.fraction)?)))
            .collect::<Result<Vec<_>>>()?,
        Salience::Neurgrad => {
            let rows: Vec<TargetedPrompt> =
                fit_rows.iter().map(|&i| fit_prompts[i].clone()).collect();
            let attr = neg_core::methods::neurgrad(&model, &rows)?;
            // Score of unit u on example e: NeurGrad of e's gold option.
            let scores = ndarray::Array2::from_shape_fn((rows.len(), fit.units.len()), |(e, u)| {
                let unit = fit.units[u];
                f64::from(attr.scores[[e, rows_labels[e], unit.layer, unit.index]])
            });
            let per_class = class_mean_scores(scores.view(), &rows_labels, n_classes)?;
            (0..n_classes)
                .map(|c| Ok((c, top_fraction(&per_class.row(c).to_vec(), args.fraction)?)))
                .collect::<Result<Vec<_>>>()?
        }
    };
    let set = EvalSet {
        prompts: &eval_prompts,
        labels: &eval_labels,
        units: &eval.units,
        acts: eval.activations.view(),
    };
    let reports = run_classes(&model, set, &stats, neutral.view(), &targets, tau)?;
    let classes: Vec<ClassRow> = reports
        .into_iter()
        .map(|report| ClassRow {
            option: options[report.class].clone(),
            n_fit: stats.counts[report.class],
            range_target_drop: report.range_target_drop(),
            neuron_target_drop: report.neuron_target_drop(),
            range_complement_retained: report.range_complement_retained(),
            neuron_complement_retained: report.neuron_complement_retained(),
            report,
        })
        .collect();
    let per_unit = stats.overlap(tau)?.to_vec();
    let mut sorted = per_unit.clone();
    sorted.sort_by(f64::total_cmp);
    let overlap = OverlapSummary {
        mean: per_unit.iter().sum::<f64>() / per_unit.len() as f64,
        median: sorted[sorted.len() / 2],
        disjoint_fraction: per_unit.iter().filter(|&&v| v == 0.0).count() as f64
            / per_unit.len() as f64,
        per_unit,
    };
    working.finish_and_clear();
    let out = args.run.out_dir("lens");
    let (json, svg) = (out.join("neuronlens.json"), out.join("neuronlens.svg"));
    let report = Report {
        model: model.model_id().to_string(),
        task: args.common.task.clone(),
        site: args.site,
        layers,
        units: fit.units.iter().map(|u| u.name()).collect(),
        tau: args.tau,
        fraction: args.fraction,
        salience: args.salience,
        fit_on: args.fit_on,
        fit_used,
        n_fit_rendered: fit_prompts.len(),
        n_fit_correct: correct.len(),
        n_eval: eval_prompts.len(),
        skipped_long: skip_fit + skip_eval,
        fit_accuracy: correct.len() as f64 / fit_prompts.len() as f64,
        classes,
        overlap,
        class_mean: stats.mean.rows().into_iter().map(|r| r.to_vec()).collect(),
        class_std: stats.std.rows().into_iter().map(|r| r.to_vec()).collect(),
        json: json.clone(),
        svg: svg.clone(),
    };
    let mut files = crate::output::Outputs::default();
    files.json("neuronlens.json", &report)?;
    files.text("neuronlens.svg", plot_svg(&report)?);
    files.write(&out)?;
    Ok(report)
}

/// Grouped bars per class: target accuracy drop and complement accuracy retained, for range
/// and neuron masking.
fn plot_svg(report: &Report) -> Result<String> {
    type Getter = fn(&ClassRow) -> f64;
    let series: [(&str, (u8, u8, u8), Getter); 4] = [
        ("target drop, range", (255, 0, 0), |r| r.range_target_drop),
        ("target drop, neuron", (255, 160, 160), |r| {
            r.neuron_target_drop
        }),
        ("complement retained, range", (0, 0, 255), |r| {
            r.range_complement_retained
        }),
        ("complement retained, neuron", (150, 170, 255), |r| {
            r.neuron_complement_retained
        }),
    ];
    let series: Vec<BarSeries> = series
        .iter()
        .map(|&(label, color, get)| BarSeries {
            label: label.into(),
            values: report.classes.iter().map(get).collect(),
            errors: None,
            color: Some(color),
        })
        .collect();
    // Always show the 0..1 band of ratios, plus whatever finite values leave it.
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite())
    };
    let lo = finite().fold(0.0f64, f64::min) - 0.05;
    let hi = finite().fold(1.0f64, f64::max) + 0.05;
    let title = format!(
        "NeuronLens {} ({} L{:?}, tau {}, top {:.0}%)",
        report.task,
        match report.site {
            Site::Residual => "residual",
            Site::FeedForward => "FF",
        },
        report.layers,
        report.tau,
        report.fraction * 100.0
    );
    let bars = BarGroups {
        title,
        y_label: "accuracy change / ratio".into(),
        groups: report
            .classes
            .iter()
            .map(|c| format!("class {}", c.option))
            .collect(),
        series,
        y_range: Some((lo, hi)),
    };
    grouped_bar_svg(&bars, (760, 460))
}

/// Runs and prints the per-class table.
pub fn main(args: &Args) -> Result<()> {
    print_table(&run(args)?);
    Ok(())
}

/// Prints the per-class table of `r`.
pub fn print_table(r: &Report) {
    println!(
        "NeuronLens  model {}  task {}  {:?} layers {:?}  tau {}  salient {:.0}%  fit on {:?} ({} of {} train correct)",
        r.model,
        r.task,
        r.site,
        r.layers,
        r.tau,
        r.fraction * 100.0,
        r.fit_used,
        r.n_fit_correct,
        r.n_fit_rendered
    );
    println!(
        "{:>6} {:>5} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>9}",
        "class",
        "n_fit",
        "base_acc",
        "drop_rng",
        "drop_neu",
        "compl_rng",
        "compl_neu",
        "conf_base",
        "conf_rng"
    );
    for c in &r.classes {
        println!(
            "{:>6} {:>5} {:>9.3} {:>9.3} {:>9.3} {:>10.3} {:>10.3} {:>10.3} {:>9.3}",
            c.option,
            c.n_fit,
            c.report.base.target_accuracy,
            c.range_target_drop,
            c.neuron_target_drop,
            c.range_complement_retained,
            c.neuron_complement_retained,
            c.report.base.target_confidence,
            c.report.range.target_confidence
        );
    }
    println!(
        "range overlap per unit: mean {:.3}, median {:.3}, disjoint {:.1}%",
        r.overlap.mean,
        r.overlap.median,
        r.overlap.disjoint_fraction * 100.0
    );
    println!("wrote {} and {}", r.json.display(), r.svg.display());
}
