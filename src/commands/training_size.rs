//! `neg training-size`: probe accuracy vs training-set size (the NEG paper's Fig. 7).
//!
//! ```text
//! neg training-size
//! neg training-size --task agnews --train-size 1000 \
//!     --sizes 50,100,200,500,1000 --probes polar,magn,tree --out out/ts
//! ```
//!
//! Computes NeurGrad features of one task once (`--train-size` training prompts), then fits
//! each probe on nested seeded subsets of the training prompts (`neg_probe::studies::
//! accuracy_vs_train_size`), choosing the neuron count on valid each time. Writes
//! `training_size.json` and `training_size.svg` under `--out` and prints test accuracy per
//! size (rows) and probe (columns). Bad input: one `error:` line, exit status 1, no files.
use crate::plot::{line_svg, LineSpec, Panel, Series};
use crate::skill::{
    default_context, display_name, make_probe, print_study, study_features, study_shard,
    write_study, StudyArgs, StudySource,
};
use anyhow::{bail, Result};
use neg_probe::studies::{accuracy_vs_train_size, TrainSizePoint};
use neg_probe::ProbeKind;
use serde::Serialize;

/// Command-line arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(about = "Skill-probe accuracy vs training-set size (NEG paper Fig. 7)")]
pub struct Args {
    #[command(flatten)]
    pub study: StudyArgs,
    /// Training-set sizes (each at most --train-size).
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128")]
    pub sizes: Vec<usize>,
    /// Probes (rand, lmprob, polar, magn, tree, act).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "polar,magn,tree,act"
    )]
    pub probes: Vec<ProbeKind>,
    /// Trees of the Tree-Probe.
    #[arg(long, default_value_t = 100)]
    pub trees: usize,
}

/// One probe's curve.
#[derive(Debug, Serialize)]
pub struct ProbeCurve {
    /// Probe name.
    pub probe: String,
    /// One point per size.
    pub points: Vec<TrainSizePoint>,
}

/// What `training_size.json` holds.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Model, data, task and settings.
    #[serde(flatten)]
    pub source: StudySource,
    /// Sizes in order.
    pub sizes: Vec<usize>,
    /// One curve per probe.
    pub curves: Vec<ProbeCurve>,
    /// Seconds computing features.
    pub feature_seconds: f64,
}

/// Runs the study and writes its files.
/// Checks the study's own arguments (before anything is loaded or computed).
fn check(args: &Args) -> Result<()> {
    if args.sizes.is_empty() {
        bail!("--sizes is empty");
    }
    if let Some(&s) = args
        .sizes
        .iter()
        .find(|&&s| s == 0 || s > args.study.run.train_size)
    {
        bail!(
            "--sizes: {s} is outside 1..={} (--train-size)",
            args.study.run.train_size
        );
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<Report> {
    let study = args.study.clone().default_out("training-size");
    check(args)?;
    let f = study_features(&study, &default_context(&study))?;
    let feats = &f.features[0];
    let mut curves = Vec::new();
    for &p in &args.probes {
        let (seed, trees) = (args.study.run.seed, args.trees);
        let make = || make_probe(p, seed, trees);
        let points = accuracy_vs_train_size(&make, &feats.data, &args.sizes, seed)?;
        curves.push(ProbeCurve {
            probe: p.name().to_string(),
            points,
        });
    }
    let panel = Panel {
        title: f.task.clone(),
        series: curves
            .iter()
            .map(|c| {
                Series::new(
                    display_name(&c.probe),
                    c.points
                        .iter()
                        .map(|p| (p.n_train as f64, p.evaluation.test_accuracy))
                        .collect(),
                )
            })
            .collect(),
    };
    let spec = LineSpec {
        y_range: Some((0.0, 1.0)),
        ..LineSpec::new(
            "Test accuracy vs training-set size",
            "training prompts",
            "test accuracy",
        )
    };
    let svg = line_svg(&spec, &[panel])?;
    let report = Report {
        source: f.source(&study),
        sizes: args.sizes.clone(),
        curves,
        feature_seconds: feats.seconds,
    };
    write_study(&study, "training_size", &svg, &report)?;
    Ok(report)
}

/// The printed table: sizes as rows, probes as columns.
pub fn table(r: &Report) -> String {
    let mut out = format!("{:>8}", "n_train");
    for c in &r.curves {
        out += &format!(" {:>8}", display_name(&c.probe));
    }
    out.push('\n');
    for (i, size) in r.sizes.iter().enumerate() {
        out += &format!("{size:>8}");
        for c in &r.curves {
            out += &format!(" {:>8.3}", c.points[i].evaluation.test_accuracy);
        }
        out.push('\n');
    }
    out
}

/// Runs the study and prints its table.
pub fn main(args: &Args) -> Result<()> {
    if args.study.run.shard.is_some() {
        check(args)?;
        let study = args.study.clone().default_out("training-size");
        println!("{}", study_shard(&study, &default_context(&study))?.line());
        return Ok(());
    }
    let r = run(args)?;
    let s = &r.source;
    let heading = format!("{} on {} (test accuracy)", s.model, s.task);
    print_study(&heading, &table(&r), &s.args);
    Ok(())
}
