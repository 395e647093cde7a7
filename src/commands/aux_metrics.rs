//! Skill neurons from auxiliary metrics (`neg aux-metrics`): every FF neuron's activation correlated with
//! per-prompt metrics (external labels one-vs-rest, the model's gold-option and max-option
//! probability) on an MCEval8K task, and with per-generation metrics on open-ended greedy
//! generations; Student t (default) or permutation p-values with Benjamini-Hochberg
//! correction over all neurons; ablation of the top
//! correlated neurons versus random neurons of the same count.
//!
//! ```text
//! neg aux-metrics            # stories260k + agnews from ../shared
//! neg aux-metrics --task mnli --n 200 --test permutation --permutations 2000 \
//!     --top-k 20 --seeds 10 --max-new-tokens 32 --out out/aux-metrics
//! ```
//!
//! Writes `<out>/aux_metrics.json` and `<out>/aux_metrics.svg` atomically and prints a table.
//! Any error is one line and exit status 1.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::ValueEnum;
use mceval::Split;
use neg_core::aux_metrics::{
    ablation_validation_many, all_neurons, correlate, flatten, generation_activations, one_vs_rest,
    top_units, AblationConfig, AblationResult, AuxError, Confidence, CorrelationConfig,
    SignificanceTest, Spread, Statistic, UnitCorrelation,
};
use neg_core::{ModelAdapter, NeuronId};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::lens as neuronlens;
use crate::cli::RunArgs;
use crate::plot::{bars_beside_lines_svg, BarGroups, BarSeries, LineSpec, Panel, Series};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatArg {
    Pearson,
    Spearman,
}

/// Arguments of `neg aux-metrics`.
#[derive(clap::Args, Debug, Clone)]
#[command(args_override_self = true)]
pub struct Args {
    #[command(flatten)]
    pub common: neuronlens::TaskArgs,
    /// Test prompts (balanced over labels).
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// How each p-value is computed: Student's t (n - 2 degrees of freedom, as scipy's
    /// pearsonr/spearmanr), or permutations of the metric, whose p-values cannot fall below
    /// 1 / (permutations + 1) and so cannot pass Benjamini-Hochberg over tens of thousands of
    /// neurons unless --permutations is in the millions.
    #[arg(long, value_enum, default_value = "student-t")]
    pub test: SignificanceTest,
    /// Permutations per p-value (--test permutation).
    #[arg(long, default_value_t = 1000)]
    pub permutations: usize,
    /// Statistic that ranks neurons for the ablation check.
    #[arg(long, value_enum, default_value = "pearson")]
    pub statistic: StatArg,
    /// Neurons ablated per check (top correlated, and random).
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Random neuron sets / prompt resamples per check.
    #[arg(long, default_value_t = 5)]
    pub seeds: usize,
    /// FDR level for counting significant neurons.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Story openings generated from (built-in set); 0 skips the generation study.
    #[arg(long, default_value_t = 24)]
    pub n_generations: usize,
    /// Tokens per generation.
    #[arg(long, default_value_t = 24)]
    pub max_new_tokens: usize,
    /// Output directory and progress.
    #[command(flatten)]
    pub run: RunArgs,
}

/// One strongly correlated neuron.
#[derive(Debug, Serialize)]
pub struct TopNeuron {
    pub layer: usize,
    pub neuron: usize,
    #[serde(flatten)]
    pub corr: UnitCorrelation,
}

/// The study of one metric.
#[derive(Debug, Serialize)]
pub struct MetricResult {
    pub metric: String,
    /// Neurons with BH q < alpha.
    pub significant_pearson: usize,
    pub significant_spearman: usize,
    /// Calibration check of the test on these very activations: neurons with BH q < alpha
    /// (Pearson, Spearman) when the metric is shuffled across prompts once (seeded). The
    /// shuffle breaks every real association, so anything but about 0 means the test's
    /// assumptions fail for this metric and its counts above are not to be trusted.
    pub null_significant: [usize; 2],
    pub top: Vec<TopNeuron>,
    /// |r| of every neuron, (layer, neuron) order, by the ranking statistic.
    pub abs_r: Vec<f64>,
    /// Top-k vs random ablation (multiple choice only).
    pub ablation: Option<AblationResult>,
    /// Why the metric could not be studied (e.g. constant over the prompts).
    pub skipped: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub task: String,
    pub n_prompts: usize,
    pub options: Vec<String>,
    pub accuracy: f64,
    /// The test behind the p-values.
    pub test: SignificanceTest,
    /// Permutations per p-value (used by `test: permutation` only).
    pub permutations: usize,
    pub statistic: String,
    pub alpha: f64,
    pub multiple_choice: Vec<MetricResult>,
    pub n_generations: usize,
    pub generation_samples: Vec<String>,
    pub generation: Vec<MetricResult>,
    pub generation_note: String,
    pub json: PathBuf,
    pub svg: PathBuf,
}

/// Story openings for the generation study: subjects x settings.
pub fn story_prompts(n: usize) -> Vec<String> {
    let who = [
        "a little girl named Lily",
        "a boy named Tom",
        "a big dog named Max",
        "a small cat",
        "an old man",
        "a happy bird",
    ];
    let how = [
        "Once upon a time, there was {}.",
        "One day, {} went to the park.",
        "{} was very sad.",
        "{} found a shiny red ball.",
    ];
    how.iter()
        .flat_map(|h| who.iter().map(move |w| h.replace("{}", w)))
        .map(|s| {
            // Sentence-initial subjects get a capital letter.
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .take(n)
        .collect()
}

/// Share of distinct tokens among the generated ones (lexical diversity).
fn distinct_ratio(ids: &[u32]) -> f64 {
    if ids.is_empty() {
        return 0.0;
    }
    let set: std::collections::HashSet<u32> = ids.iter().copied().collect();
    set.len() as f64 / ids.len() as f64
}

fn study(
    name: String,
    acts: ndarray::ArrayView2<f64>,
    metric: &[f64],
    neurons: &[NeuronId],
    args: &Args,
    stat: Statistic,
) -> Result<(MetricResult, Vec<usize>)> {
    let cfg = CorrelationConfig {
        test: args.test,
        permutations: args.permutations,
        seed: args.common.seed,
    };
    let corrs = match correlate(acts, metric, &cfg) {
        Ok(c) => c,
        // A metric that does not vary over these prompts is reported, not fatal.
        Err(e @ AuxError::ConstantMetric { .. }) => {
            return Ok((
                MetricResult {
                    metric: name,
                    significant_pearson: 0,
                    significant_spearman: 0,
                    null_significant: [0, 0],
                    top: Vec::new(),
                    abs_r: Vec::new(),
                    ablation: None,
                    skipped: Some(e.to_string()),
                },
                Vec::new(),
            ))
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("metric {name}"))),
    };
    let top = top_units(&corrs, args.top_k, stat);
    let count_in = |corrs: &[UnitCorrelation], s: Statistic| {
        corrs.iter().filter(|c| c.q(s) < args.alpha).count()
    };
    let count = |s: Statistic| count_in(&corrs, s);
    let mut shuffled = metric.to_vec();
    shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(
        args.common.seed ^ 0x05ee_d0f5_u64,
    ));
    let null = correlate(acts, &shuffled, &cfg)
        .map_err(|e| anyhow::Error::new(e).context(format!("metric {name}, shuffled")))?;
    let null_significant = [
        count_in(&null, Statistic::Pearson),
        count_in(&null, Statistic::Spearman),
    ];
    Ok((
        MetricResult {
            metric: name,
            significant_pearson: count(Statistic::Pearson),
            significant_spearman: count(Statistic::Spearman),
            null_significant,
            top: top
                .iter()
                .map(|&j| TopNeuron {
                    layer: neurons[j].layer,
                    neuron: neurons[j].neuron,
                    corr: corrs[j].clone(),
                })
                .collect(),
            abs_r: corrs.iter().map(|c| c.r(stat).abs()).collect(),
            ablation: None,
            skipped: None,
        },
        top,
    ))
}

pub fn run(args: &Args) -> Result<Report> {
    if args.permutations == 0 || args.seeds == 0 || args.top_k == 0 {
        bail!("--permutations, --seeds and --top-k must be at least 1");
    }
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        bail!("--alpha must be in (0, 1), got {}", args.alpha);
    }
    if args.n < 3 {
        bail!(
            "--n must be at least 3 prompts to correlate, got {}",
            args.n
        );
    }
    // Checked before any work (it used to fail only after the whole label study).
    if (1..3).contains(&story_prompts(args.n_generations).len()) {
        bail!(
            "--n-generations must be 0 or at least 3, got {}",
            args.n_generations
        );
    }
    let stat = match args.statistic {
        StatArg::Pearson => Statistic::Pearson,
        StatArg::Spearman => Statistic::Spearman,
    };
    crate::output::check_out_dir(&args.run.out_dir("aux-metrics"))?;
    let (data, model) = args.common.load(args.run.progress())?;
    let _lock = crate::output::OutLock::acquire(&args.run.out_dir("aux-metrics"))?;
    let working = crate::progress::spinner("auxiliary metrics", args.run.progress());
    let neurons = all_neurons(model.num_layers(), model.ff_width());
    if neurons.len() < 2 * args.top_k {
        bail!(
            "--top-k {} leaves too few random neurons among {}",
            args.top_k,
            neurons.len()
        );
    }
    let neuronlens::Items {
        prompts,
        labels,
        options,
        ..
    } = neuronlens::load_items(
        &model,
        &data,
        Split::Test,
        args.n,
        args.common.max_tokens,
        args.common.seed,
    )?;
    let fwd = model.forward(&prompts)?;
    let acts = flatten(&fwd.activations);
    let probs = fwd.probs.mapv(f64::from);
    let preds = neg_core::neuronlens::correct_indices(probs.view(), &labels);

    // Multiple choice: confidence metrics and one-vs-rest labels.
    let mut metrics: Vec<(String, Vec<f64>, Confidence)> = vec![
        (
            "gold_prob".into(),
            Confidence::Gold.of_all(probs.view(), &labels)?,
            Confidence::Gold,
        ),
        (
            "max_prob".into(),
            Confidence::Max.of_all(probs.view(), &labels)?,
            Confidence::Max,
        ),
    ];
    for (c, o) in options.iter().enumerate() {
        metrics.push((
            format!("label={o}"),
            one_vs_rest(&labels, c),
            Confidence::Option(c),
        ));
    }
    let mut mc = Vec::new();
    let mut checks = Vec::new();
    let mut check_of = Vec::new();
    for (name, metric, conf) in &metrics {
        let (res, top) = study(name.clone(), acts.view(), metric, &neurons, args, stat)?;
        if !top.is_empty() {
            check_of.push(mc.len());
            checks.push((*conf, top));
        }
        mc.push(res);
    }
    if !checks.is_empty() {
        let abl = ablation_validation_many(
            &model,
            &prompts,
            &labels,
            &neurons,
            acts.view(),
            &checks,
            &AblationConfig {
                seeds: args.seeds,
                seed: args.common.seed,
                ..AblationConfig::default()
            },
        )?;
        for (i, a) in check_of.into_iter().zip(abl) {
            mc[i].ablation = Some(a);
        }
    }

    // Open-ended generation: mean activations over generated tokens, a metric per generation.
    let mut generation = Vec::new();
    let mut samples = Vec::new();
    let gen_prompts = story_prompts(args.n_generations);
    let n_gen = gen_prompts.len();
    if n_gen > 0 {
        if n_gen < 3 {
            bail!("--n-generations must be 0 or at least 3, got {n_gen}");
        }
        let (gacts, gens) = generation_activations(&model, &gen_prompts, args.max_new_tokens)?;
        samples = gen_prompts
            .iter()
            .zip(&gens)
            .take(3)
            .map(|(p, g)| format!("{p} => {}", g.text))
            .collect();
        let diversity: Vec<f64> = gens.iter().map(|g| distinct_ratio(&g.token_ids)).collect();
        let mentions_she: Vec<f64> = gens
            .iter()
            .map(|g| {
                let t = format!(" {} ", g.text.to_lowercase());
                f64::from(u8::from(t.contains(" she ") || t.contains(" her ")))
            })
            .collect();
        for (name, metric) in [
            ("distinct_token_ratio", diversity),
            ("mentions_she_her", mentions_she),
        ] {
            generation.push(study(name.into(), gacts.view(), &metric, &neurons, args, stat)?.0);
        }
    }

    working.finish_and_clear();
    let out = args.run.out_dir("aux-metrics");
    let (json, svg) = (out.join("aux_metrics.json"), out.join("aux_metrics.svg"));
    let report = Report {
        model: model.model_id().to_string(),
        task: args.common.task.clone(),
        n_prompts: prompts.len(),
        options,
        accuracy: preds.len() as f64 / prompts.len() as f64,
        test: args.test,
        permutations: args.permutations,
        statistic: format!("{stat:?}").to_lowercase(),
        alpha: args.alpha,
        multiple_choice: mc,
        n_generations: n_gen,
        generation_samples: samples,
        generation,
        generation_note: "generation metrics are correlated only: ablation needs patched \
                          generation, which ModelAdapter::generate does not take"
            .into(),
        json: json.clone(),
        svg: svg.clone(),
    };
    let mut files = crate::output::Outputs::default();
    files.json("aux_metrics.json", &report)?;
    files.text("aux_metrics.svg", plot_svg(&report)?);
    files.write(&out)?;
    Ok(report)
}

/// Left: top-k vs random ablation (mean per-prompt |change|, +- std over seeds) per metric.
/// Right: sorted |r| of all neurons per metric (how fast correlation decays with rank).
fn plot_svg(report: &Report) -> Result<String> {
    let rows: Vec<(&str, &AblationResult)> = report
        .multiple_choice
        .iter()
        .filter_map(|m| m.ablation.as_ref().map(|a| (m.metric.as_str(), a)))
        .collect();
    // From 0 to above the highest whisker: every value here is a mean absolute change.
    let hi = rows
        .iter()
        .map(|(_, a)| {
            (a.top_abs_delta.mean + a.top_abs_delta.std)
                .max(a.random_abs_delta.mean + a.random_abs_delta.std)
        })
        .fold(1e-6f64, f64::max)
        * 1.15;
    let bar = |label: &str, color, pick: fn(&AblationResult) -> &Spread| BarSeries {
        label: label.into(),
        values: rows.iter().map(|(_, a)| pick(a).mean).collect(),
        errors: Some(rows.iter().map(|(_, a)| pick(a).std).collect()),
        color: Some(color),
    };
    let bars = BarGroups {
        title: format!(
            "{}: ablate top-{} vs random",
            report.task,
            report.multiple_choice.first().map_or(0, |m| m.top.len())
        ),
        y_label: "mean |metric change|".into(),
        groups: rows.iter().map(|(m, _)| m.to_string()).collect(),
        series: vec![
            bar("top correlated", (214, 39, 40), |a| &a.top_abs_delta),
            bar("random", (127, 127, 127), |a| &a.random_abs_delta),
        ],
        y_range: Some((0.0, hi)),
    };
    let curves = Panel {
        title: format!("sorted |{}| per metric", report.statistic),
        series: report
            .multiple_choice
            .iter()
            .chain(&report.generation)
            .filter(|m| !m.abs_r.is_empty())
            .map(|m| {
                let mut v = m.abs_r.clone();
                v.sort_by(|a, b| b.total_cmp(a));
                let points = v
                    .iter()
                    .enumerate()
                    .map(|(k, &r)| ((k + 1) as f64, r))
                    .collect();
                Series::new(m.metric.as_str(), points)
            })
            .collect(),
    };
    let spec = LineSpec {
        y_range: Some((0.0, 1.0)),
        markers: false,
        ..LineSpec::new("", "neuron rank", "|r|")
    };
    bars_beside_lines_svg(&bars, &spec, &curves, (1100, 460), 560)
}

/// Runs and prints the table.
pub fn main(args: &Args) -> Result<()> {
    print_table(&run(args)?);
    Ok(())
}

/// Prints the table of `r`.
pub fn print_table(r: &Report) {
    println!(
        "aux metrics  model {}  task {}  {} prompts (accuracy {:.3})  {}, BH q < {}",
        r.model,
        r.task,
        r.n_prompts,
        r.accuracy,
        match r.test {
            SignificanceTest::StudentT => "Student t p-values".to_string(),
            SignificanceTest::Permutation => format!("{} permutations", r.permutations),
        },
        r.alpha
    );
    println!(
        "{:<22} {:>6} {:>6} {:>9} {:>14} {:>7} {:>16} {:>16} {:>5}",
        "metric",
        "sig_r",
        "sig_rho",
        "shuffled",
        "best neuron",
        "r",
        "top |d| (sd)",
        "random |d| (sd)",
        "top>"
    );
    let rows = r
        .multiple_choice
        .iter()
        .map(|m| ("mc", m))
        .chain(r.generation.iter().map(|m| ("gen", m)));
    for (kind, m) in rows {
        let name = format!("{kind}:{}", m.metric);
        if let Some(why) = &m.skipped {
            println!("{name:<22} skipped: {why}");
            continue;
        }
        let best = m.top.first();
        let (abl_top, abl_rand, more) = match &m.ablation {
            Some(a) => (
                format!("{:.4} ({:.4})", a.top_abs_delta.mean, a.top_abs_delta.std),
                format!(
                    "{:.4} ({:.4})",
                    a.random_abs_delta.mean, a.random_abs_delta.std
                ),
                if a.top_moves_more() { "yes" } else { "no" }.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{name:<22} {:>6} {:>6} {:>9} {:>14} {:>7.3} {:>16} {:>16} {:>5}",
            m.significant_pearson,
            m.significant_spearman,
            format!("{}/{}", m.null_significant[0], m.null_significant[1]),
            best.map_or("-".into(), |b| format!("L{}.{}", b.layer, b.neuron)),
            best.map_or(f64::NAN, |b| b.corr.r(Statistic::Pearson)),
            abl_top,
            abl_rand,
            more
        );
    }
    if let Some(s) = r.generation_samples.first() {
        println!("generation sample: {s:?}");
    }
    println!("note: {}", r.generation_note);
    println!("wrote {} and {}", r.json.display(), r.svg.display());
}
