//! `neg robustness`: are skill neurons found in one context skill neurons in another? (the NEG
//! paper's §6.2, Fig. 21).
//!
//! ```text
//! neg robustness
//! neg robustness --task mnli --probe magn --neurons 32 \
//!     --contexts published,builtin,upper-letters,published-few --out out/rob
//! ```
//!
//! The same records of one task are rendered in several contexts: `published` (the
//! published template), `builtin` (our own instruction and question wording),
//! `upper-letters` (published template with options lettered and answered `A`, `B`, ...),
//! and few-shot variants `published-few` / `builtin-few` (long: they rarely fit a 512-token
//! model). A probe fitted on context X (with `--neurons` fixed, the paper's 32, or chosen on
//! valid with `--neurons 0`) is evaluated on context Y's test prompts; the ratio
//! `max(ACC^Y_{N^X} - 1/K, 0) / max(ACC^Y_{N^Y} - 1/K, 0)` is reported for every ordered pair
//! (`neg_probe::studies::robustness`). Writes `robustness.json` and `robustness.svg` under
//! `--out` and prints the accuracy matrix and ratios.
use crate::plot::bar_svg;
use crate::skill::{
    make_probe, print_study, shots_for, study_features, study_shard, with_answer_letters,
    write_study, PromptContext, ShotMode, SplitMode, StudyArgs, StudySource,
};
use anyhow::{bail, Result};
use mceval::{Shots, TemplateSet};
use neg_probe::studies::{robustness, RobustnessMatrix};
use neg_probe::ProbeKind;
use serde::Serialize;

/// The contexts this example can render.
pub const CONTEXTS: [&str; 5] = [
    "published",
    "builtin",
    "upper-letters",
    "published-few",
    "builtin-few",
];

/// Command-line arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(about = "Robustness of skill neurons across prompt contexts (NEG paper §6.2)")]
pub struct Args {
    #[command(flatten)]
    pub study: StudyArgs,
    /// Contexts (at least two of: published, builtin, upper-letters, published-few,
    /// builtin-few).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "published,builtin,upper-letters"
    )]
    pub contexts: Vec<String>,
    /// Probe (polar, magn, act, tree).
    #[arg(long, value_enum, default_value = "polar")]
    pub probe: ProbeKind,
    /// Neurons per probe (the paper: 32); 0 chooses the count on each context's valid split.
    #[arg(long, default_value_t = 32)]
    pub neurons: usize,
    /// Trees of the Tree-Probe.
    #[arg(long, default_value_t = 100)]
    pub trees: usize,
}

/// What `robustness.json` holds.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Model, data, task and settings.
    #[serde(flatten)]
    pub source: StudySource,
    /// Probe.
    pub probe: String,
    /// Answers of each context.
    pub answers: Vec<Vec<String>>,
    /// The pairwise matrix.
    pub matrix: RobustnessMatrix,
}

fn contexts_for(
    names: &[String],
    splits: SplitMode,
) -> impl Fn(&mceval::TaskSpec, &TemplateSet, bool) -> Result<Vec<PromptContext>> + '_ {
    move |spec, templates, from_file| {
        names
            .iter()
            .map(|name| {
                let builtin = TemplateSet::builtin();
                let few = |t: bool| shots_for(ShotMode::Few, splits, spec, t);
                let (templates, shots) = match name.as_str() {
                    "published" => (templates.clone(), Shots::Zero),
                    "builtin" => (builtin, Shots::Zero),
                    "upper-letters" => (
                        with_answer_letters(
                            templates,
                            spec,
                            &["A", "B", "C", "D", "E", "F", "G", "H"],
                        )?,
                        Shots::Zero,
                    ),
                    "published-few" => (templates.clone(), few(from_file)),
                    "builtin-few" => (builtin, few(false)),
                    other => bail!("unknown context `{other}` ({})", CONTEXTS.join(", ")),
                };
                Ok(PromptContext {
                    name: name.clone(),
                    templates,
                    shots,
                })
            })
            .collect()
    }
}

/// Runs the study and writes its files.
/// Checks the study's own arguments (before anything is loaded or computed).
fn check(args: &Args) -> Result<()> {
    if args.contexts.len() < 2 {
        bail!("--contexts needs at least two contexts");
    }
    if let Some(c) = args
        .contexts
        .iter()
        .find(|c| !CONTEXTS.contains(&c.as_str()))
    {
        bail!("unknown context `{c}` ({})", CONTEXTS.join(", "));
    }
    if matches!(args.probe, ProbeKind::Lmprob | ProbeKind::Rand) {
        bail!(
            "--probe must be polar, magn, act or tree, not `{}`",
            args.probe.name()
        );
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<Report> {
    let study = args.study.clone().default_out("robustness");
    check(args)?;
    let f = study_features(&study, &contexts_for(&args.contexts, study.run.splits))?;
    let (seed, trees) = (args.study.run.seed, args.trees);
    let probe = args.probe;
    let make = move || make_probe(probe, seed, trees);
    let pairs: Vec<(&str, &neg_probe::ProbeData)> = f
        .features
        .iter()
        .map(|x| (x.context.as_str(), &x.data))
        .collect();
    let k = (args.neurons > 0 && args.probe != ProbeKind::Tree).then_some(args.neurons);
    let matrix = robustness(&make, &pairs, k)?;
    let bars: Vec<(String, f64)> = matrix
        .cells
        .iter()
        .filter(|c| c.source != c.target)
        .map(|c| (format!("{}→{}", c.source, c.target), c.ratio.unwrap_or(0.0)))
        .collect();
    let svg = bar_svg(
        &format!("Robustness of {} neurons ({})", args.probe.name(), f.task),
        "ratio (0 also when undefined)",
        &bars,
    )?;
    let report = Report {
        source: f.source(&study),
        probe: args.probe.name().to_string(),
        answers: f.features.iter().map(|x| x.answers.clone()).collect(),
        matrix,
    };
    write_study(&study, "robustness", &svg, &report)?;
    Ok(report)
}

/// The printed table: test accuracy of the probe fitted on the row context, evaluated on the
/// column context, and the ratio in brackets.
pub fn table(r: &Report) -> String {
    let ctx = &r.matrix.contexts;
    let mut out = format!("{:<16}", "fitted \\ tested");
    for c in ctx {
        out += &format!(" {c:>18}");
    }
    out.push('\n');
    for x in ctx {
        out += &format!("{x:<16}");
        for y in ctx {
            let cell = r
                .matrix
                .cells
                .iter()
                .find(|c| &c.source == x && &c.target == y);
            let text = match cell {
                Some(c) => format!(
                    "{:.3} ({})",
                    c.accuracy_source_on_target,
                    c.ratio.map_or("n/a".to_string(), |v| format!("{v:.2}"))
                ),
                None => "-".into(),
            };
            out += &format!(" {text:>18}");
        }
        out.push('\n');
    }
    out
}

/// Runs the study and prints its table.
pub fn main(args: &Args) -> Result<()> {
    if args.study.run.shard.is_some() {
        check(args)?;
        let study = args.study.clone().default_out("robustness");
        println!(
            "{}",
            study_shard(&study, &contexts_for(&args.contexts, study.run.splits))?.line()
        );
        return Ok(());
    }
    let r = run(args)?;
    let s = &r.source;
    let heading = format!(
        "{} on {}: {} probe, chance {:.3}; accuracy (ratio)",
        s.model, s.task, r.probe, r.matrix.chance
    );
    print_study(&heading, &table(&r), &s.args);
    Ok(())
}
