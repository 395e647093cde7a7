//! `neg tree-shape`: Tree-Probe accuracy over forest shapes (the NEG paper's §6.4, Fig. 9).
//!
//! ```text
//! neg tree-shape
//! neg tree-shape --task agnews --max-sum 12 --out out/shape
//! ```
//!
//! Fits forests of `2^N` trees with depth at most `2^M` for all `N + M < --max-sum` (the
//! paper: 12; default 9 to stay fast) on one task's NeurGrad option-index features
//! (`neg_probe::studies::tree_shape_sweep`). Writes `tree_shape.json` and `tree_shape.svg`
//! under `--out` and prints validation / test accuracy per shape.
use crate::plot::{line_svg, LineSpec, Panel, Series};
use crate::skill::{
    default_context, print_study, study_features, study_shard, write_study, StudyArgs, StudySource,
};
use anyhow::{bail, Result};
use neg_probe::studies::{tree_shape_sweep, ShapePoint};
use neg_probe::{ForestConfig, NeuronSubset};
use serde::Serialize;

/// Command-line arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(about = "Tree-Probe accuracy over forest shapes (NEG paper §6.4, Fig. 9)")]
pub struct Args {
    #[command(flatten)]
    pub study: StudyArgs,
    /// Shapes with log2(trees) + log2(depth) below this (2..=22; the paper: 12).
    #[arg(long, default_value_t = 9)]
    pub max_sum: u32,
}

/// What `tree_shape.json` holds.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Model, data, task and settings.
    #[serde(flatten)]
    pub source: StudySource,
    /// `max_sum` used.
    pub max_sum: u32,
    /// One point per shape.
    pub points: Vec<ShapePoint>,
}

/// Runs the study and writes its files.
/// Checks the study's own arguments (before anything is loaded or computed).
fn check(args: &Args) -> Result<()> {
    if !(2..=22).contains(&args.max_sum) {
        bail!("--max-sum must be in 2..=22, not {}", args.max_sum);
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<Report> {
    let study = args.study.clone().default_out("tree-shape");
    check(args)?;
    let f = study_features(&study, &default_context(&study))?;
    let base = ForestConfig {
        seed: args.study.run.seed,
        ..ForestConfig::default()
    };
    let points = tree_shape_sweep(&f.features[0].data, NeuronSubset::All, &base, args.max_sum)?;
    let mut trees: Vec<u32> = points.iter().map(|p| p.log2_trees).collect();
    trees.dedup();
    let series = trees
        .iter()
        .map(|&n| {
            Series::new(
                format!("2^{n} trees"),
                points
                    .iter()
                    .filter(|p| p.log2_trees == n)
                    .map(|p| (p.log2_depth as f64, p.test_accuracy))
                    .collect(),
            )
        })
        .collect();
    let spec = LineSpec {
        y_range: Some((0.0, 1.0)),
        ..LineSpec::new(
            "Tree-Probe test accuracy by forest shape",
            "log2(max depth)",
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
        max_sum: args.max_sum,
        points,
    };
    write_study(&study, "tree_shape", &svg, &report)?;
    Ok(report)
}

/// The printed table: log2(trees) as rows, log2(depth) as columns, test accuracy.
pub fn table(r: &Report) -> String {
    let max_m = r.points.iter().map(|p| p.log2_depth).max().unwrap_or(1);
    let mut out = format!("{:>10}", "N \\ M");
    for m in 1..=max_m {
        out += &format!(" {m:>6}");
    }
    out.push('\n');
    let max_n = r.points.iter().map(|p| p.log2_trees).max().unwrap_or(0);
    for n in 0..=max_n {
        out += &format!("{:>10}", format!("2^{n}"));
        for m in 1..=max_m {
            match r
                .points
                .iter()
                .find(|p| p.log2_trees == n && p.log2_depth == m)
            {
                Some(p) => out += &format!(" {:>6.3}", p.test_accuracy),
                None => out += &format!(" {:>6}", ""),
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
        let study = args.study.clone().default_out("tree-shape");
        println!("{}", study_shard(&study, &default_context(&study))?.line());
        return Ok(());
    }
    let r = run(args)?;
    let s = &r.source;
    let heading = format!(
        "{} on {}: Tree-Probe test accuracy, 2^N trees (rows) of depth <= 2^M (columns)",
        s.model, s.task
    );
    print_study(&heading, &table(&r), &s.args);
    Ok(())
}
