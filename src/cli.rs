//! The `neg` command line: one binary with a subcommand per experiment and tool, and the
//! flags that mean the same in every subcommand (`--model`, `--device`, `--dtype` in
//! [`ModelArgs`]; `--out`, `--quiet` in [`RunArgs`]; `--data`, `--seed` with the same help
//! everywhere). `examples/*.rs` are thin mains that run one subcommand through [`main_as`].
//!
//! ```
//! use clap::Parser;
//! use neg_rs::cli::{Cli, Command};
//! let cli = Cli::try_parse_from(["neg", "linearity", "--neurons", "4", "--quiet"]).unwrap();
//! assert!(matches!(cli.command, Command::Linearity(_)));
//! assert_eq!(cli.command.name(), "linearity");
//! ```
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use neg_hooks::HfModel;
use serde::Serialize;

use crate::commands::*;
use crate::sources::{self, DefaultModel, ResolvedModel};

/// `--model`, `--device` and `--dtype`: which model runs where, in which precision.
#[derive(clap::Args, Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModelArgs {
    /// Model: a directory, a `.gguf` file, a packaged name (smollm2-135m-instruct) or a hub id
    /// (`id` or `id@revision`) [default: $NEG_MODEL, else the command's default model].
    #[arg(long)]
    pub model: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: String,
    /// Weights and activations.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16", "f16"])]
    pub dtype: String,
}

impl Default for ModelArgs {
    fn default() -> Self {
        Self {
            model: None,
            device: "cpu".into(),
            dtype: "f32".into(),
        }
    }
}

impl ModelArgs {
    /// `--model` resolved ([`sources::resolve_model`]); prints the fallback note, if any.
    pub fn resolve(&self, default: DefaultModel) -> Result<ResolvedModel> {
        let m = sources::resolve_model(self.model.as_deref(), default)?;
        if let Some(note) = &m.note {
            eprintln!("note: {note}");
        }
        Ok(m)
    }

    /// Loads `spec` (a resolved `--model`) on `--device` in `--dtype`.
    pub fn load(&self, spec: &str, max_batch: usize) -> Result<HfModel> {
        sources::load_model(spec, &self.device, &self.dtype, max_batch)
    }

    /// Resolves and loads the model with the default batch size.
    pub fn resolve_and_load(&self, default: DefaultModel) -> Result<HfModel> {
        let m = self.resolve(default)?;
        self.load(&m.spec, neg_hooks::LoadOptions::default().max_batch)
    }
}

/// `--device`, checked when parsed (the library's [`neg_hooks::DeviceSpec`]) and kept as typed.
fn parse_device(s: &str) -> std::result::Result<String, String> {
    neg_hooks::DeviceSpec::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// `--out` and `--quiet`: where results go and whether progress is drawn.
#[derive(clap::Args, Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RunArgs {
    /// Output directory [default: out/<command>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl RunArgs {
    /// `--out`, else `out/<command>`.
    pub fn out_dir(&self, command: &str) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| Path::new("out").join(command))
    }

    /// Whether to draw progress bars.
    pub fn progress(&self) -> bool {
        !self.quiet
    }
}

/// The `neg` command line.
#[derive(Parser, Debug)]
#[command(
    name = "neg",
    version,
    propagate_version = true,
    about = "Neuron empirical gradients (NEG), NeurGrad and skill neurons of transformer LMs"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every experiment and tool.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Skill-neuron probes (Rand, LM-Prob, Polar, Magn, Tree, Act) on MCEval8K: the main job.
    SkillProbe(skill_probe::Args),
    /// Skill-probe accuracy vs training-set size (Fig. 7).
    TrainingSize(training_size::Args),
    /// Robustness of skill neurons across prompt contexts (§6.2).
    Robustness(robustness::Args),
    /// Substitutability of skill neurons down the ranking (§6.3, Fig. 8).
    Substitutability(substitutability::Args),
    /// Tree-Probe accuracy over forest shapes (§6.4, Fig. 9).
    TreeShape(tree_shape::Args),
    /// Linearity of FF neurons under activation shifts (Fig. 2, Tables 1 and 5).
    Linearity(linearity::Args),
    /// NeurGrad, CG, IG and LPI against ground-truth NEG (Table 2).
    Estimate(estimate::Args),
    /// Output shifts when enhancing each method's top-K neurons (Fig. 3).
    Attribution(attribution::Args),
    /// How NEG magnitudes are distributed over neurons and layers (Figs. 4, 11, 12).
    Distribution(distribution::Args),
    /// Predicted vs actual output shifts of many neurons at once (Figs. 5, 14).
    MultiNeuron(multi_neuron::Args),
    /// NeurGrad / CG / IG / LPI scores of every FF neuron for a prompt file (safetensors).
    Neurgrad(neurgrad::Args),
    /// Ground-truth NEG of chosen FF neurons by activation-shift sweeps (safetensors).
    Intervene(intervene::Args),
    /// NeuronLens: range masking vs neuron masking of class-salient units.
    Lens(lens::Args),
    /// Skill neurons from auxiliary metrics (labels, confidence, generations).
    AuxMetrics(aux_metrics::Args),
    /// Train and evaluate one skill-neuron probe on a features file.
    ProbeFeatures(probe_features::Args),
    /// MCEval8K: audit, re-split, build and render tasks.
    Mceval(mceval::Args),
    /// Combine the shards of a `--shard i/n` run into the unsharded run's results.
    Merge(crate::skill::shard::MergeArgs),
}

impl Command {
    /// The subcommand's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SkillProbe(_) => "skill-probe",
            Self::TrainingSize(_) => "training-size",
            Self::Robustness(_) => "robustness",
            Self::Substitutability(_) => "substitutability",
            Self::TreeShape(_) => "tree-shape",
            Self::Linearity(_) => "linearity",
            Self::Estimate(_) => "estimate",
            Self::Attribution(_) => "attribution",
            Self::Distribution(_) => "distribution",
            Self::MultiNeuron(_) => "multi-neuron",
            Self::Neurgrad(_) => "neurgrad",
            Self::Intervene(_) => "intervene",
            Self::Lens(_) => "lens",
            Self::AuxMetrics(_) => "aux-metrics",
            Self::ProbeFeatures(_) => "probe-features",
            Self::Mceval(_) => "mceval",
            Self::Merge(_) => "merge",
        }
    }

    /// Whether the command takes `--shard i/n` (and so can be merged by `neg merge`).
    pub fn shardable(&self) -> bool {
        matches!(
            self,
            Self::SkillProbe(_)
                | Self::Linearity(_)
                | Self::Estimate(_)
                | Self::Attribution(_)
                | Self::Distribution(_)
                | Self::MultiNeuron(_)
                | Self::TrainingSize(_)
                | Self::Robustness(_)
                | Self::Substitutability(_)
                | Self::TreeShape(_)
        )
    }

    /// Runs the subcommand and prints its result on stdout.
    pub fn execute(&self) -> Result<()> {
        match self {
            Self::SkillProbe(a) => skill_probe::main(a),
            Self::TrainingSize(a) => training_size::main(a),
            Self::Robustness(a) => robustness::main(a),
            Self::Substitutability(a) => substitutability::main(a),
            Self::TreeShape(a) => tree_shape::main(a),
            Self::Linearity(a) => linearity::main(a),
            Self::Estimate(a) => estimate::main(a),
            Self::Attribution(a) => attribution::main(a),
            Self::Distribution(a) => distribution::main(a),
            Self::MultiNeuron(a) => multi_neuron::main(a),
            Self::Neurgrad(a) => neurgrad::main(a),
            Self::Intervene(a) => intervene::main(a),
            Self::Lens(a) => lens::main(a),
            Self::AuxMetrics(a) => aux_metrics::main(a),
            Self::ProbeFeatures(a) => probe_features::main(a),
            Self::Mceval(a) => mceval::main(a),
            Self::Merge(a) => {
                crate::skill::shard::merge(&a.out, &a.shards)?;
                println!("merged {} shards -> {}", a.shards.len(), a.out.display());
                Ok(())
            }
        }
    }
}

/// Runs a command body: on error prints one line `error: ...` (the whole context chain;
/// newlines inside messages, e.g. from multi-line prompts, are escaped as `\n` so the error
/// stays on one line) and exits with status 1.
pub fn run_main(body: impl FnOnce() -> Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', "\\n"));
            ExitCode::FAILURE
        }
    }
}

/// The `neg` binary: parses the command line (usage errors exit with status 2) and runs it.
pub fn main() -> ExitCode {
    crate::skill::shard::record_command_line(std::env::args().collect());
    let cli = Cli::parse();
    run_main(|| cli.command.execute())
}

/// An example's main: `neg <subcommand>` with the example's own arguments after it.
pub fn main_as(subcommand: &str) -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    args.insert(1.min(args.len()), subcommand.into());
    crate::skill::shard::record_command_line(
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    );
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| e.exit());
    run_main(|| cli.command.execute())
}
