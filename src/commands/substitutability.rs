//! `neg substitutability`: accuracy of successive windows of ranked skill neurons (the NEG
//! paper's §6.3, Fig. 8).
//!
//! ```text
//! neg substitutability
//! neg substitutability --task agnews --window 64 --out out/sub
//! ```
//!
//! Fits the Polar- and Magn-Probe on one task's NeurGrad features and evaluates, on test, the
//! vote of each window of `--window` consecutive neurons down each probe's ranking
//! (`neg_probe::studies::substitutability`). Flat curves mean lower-ranked neurons can
//! substitute for the best ones. Writes `substitutability.json` and `substitutability.svg`
//! under `--out` and prints the window accuracies.
use crate::plot::{line_svg, LineSpec, Panel, Series};
use crate::skill::{
    default_context, display_name, print_study, study_features, study_shard, write_study,
    StudyArgs, StudySource,
};
use anyhow::{bail, Result};
use neg_probe::studies::{substitutability, Substitutability};
use neg_probe::{MagnProbe, PolarProbe};
use serde::Serialize;

/// Command-line arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(about = "Substitutability of skill neurons (NEG paper §6.3, Fig. 8)")]
pub struct Args {
    #[command(flatten)]
    pub study: StudyArgs,
    /// Neurons per window (the paper: 64).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// At most this many windows, spread evenly down the ranking (default: all).
    #[arg(long)]
    pub max_windows: Option<usize>,
}

/// What `substitutability.json` holds.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Model, data, task and settings.
    #[serde(flatten)]
    pub source: StudySource,
    /// Chance accuracy (1 / options).
    pub chance: f64,
    /// Polar- and Magn-Probe results.
    pub probes: Vec<Substitutability>,
}

/// Runs the study and writes its files.
/// Checks the study's own arguments (before anything is loaded or computed).
fn check(args: &Args) -> Result<()> {
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<Report> {
    let study = args.study.clone().default_out("substitutability");
    check(args)?;
    let f = study_features(&study, &default_context(&study))?;
    let data = &f.features[0].data;
    let mut probes = vec![
        substitutability(
            &mut PolarProbe::new(None),
            data,
            args.window,
            args.max_windows,
        )?,
        substitutability(
            &mut MagnProbe::new(None),
            data,
            args.window,
            args.max_windows,
        )?,
    ];
    probes.retain(|p| !p.windows.is_empty());
    let chance = 1.0 / data.n_options() as f64;
    let mut series: Vec<Series> = probes
        .iter()
        .map(|p| {
            Series::new(
                display_name(&p.probe),
                p.windows
                    .iter()
                    .map(|w| (w.start_rank as f64, w.test_accuracy))
                    .collect(),
            )
        })
        .collect();
    let last = probes
        .iter()
        .flat_map(|p| p.windows.iter().map(|w| w.start_rank))
        .max()
        .unwrap_or(0) as f64;
    series.push(Series::new("chance", vec![(0.0, chance), (last, chance)]));
    let spec = LineSpec {
        y_range: Some((0.0, 1.0)),
        ..LineSpec::new(
            &format!(
                "Accuracy of {}-neuron windows down the ranking",
                args.window
            ),
            "rank of the window's first neuron",
            "test accuracy",
        )
    };
    let svg = line_svg(
        &spec,
        &[Panel {
            title: f.task.clone(),
            series,
        }],
    )?;
    let report = Report {
        source: f.source(&study),
        chance,
        probes,
    };
    write_study(&study, "substitutability", &svg, &report)?;
    Ok(report)
}

/// The printed table: window start rank as rows, probes as columns.
pub fn table(r: &Report) -> String {
    let mut out = format!("{:>10}", "from rank");
    for p in &r.probes {
        out += &format!(" {:>8}", display_name(&p.probe));
    }
    out.push('\n');
    let rows = r.probes.iter().map(|p| p.windows.len()).max().unwrap_or(0);
    for i in 0..rows {
        let start = r
            .probes
            .iter()
            .find_map(|p| p.windows.get(i))
            .map_or(0, |w| w.start_rank);
        out += &format!("{start:>10}");
        for p in &r.probes {
            match p.windows.get(i) {
                Some(w) => out += &format!(" {:>8.3}", w.test_accuracy),
                None => out += &format!(" {:>8}", "-"),
            }
        }
        out.push('\n');
    }
    out
}

/// Runs the study and prints its table.
pub fn main(args: &Args) -> Result<()> {
    if args.study.run.shard.is_some() {
        check(args)?;
        let study = args.study.clone().default_out("substitutability");
        println!("{}", study_shard(&study, &default_context(&study))?.line());
        return Ok(());
    }
    let r = run(args)?;
    let s = &r.source;
    let heading = format!(
        "{} on {}: test accuracy of {}-neuron windows (chance {:.3})",
        s.model, s.task, args.window, r.chance
    );
    print_study(&heading, &table(&r), &s.args);
    Ok(())
}
