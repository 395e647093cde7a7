//! `skill_probe`: the main job. Skill-neuron probing on MCEval8K (the NEG paper's §5.3,
//! Tables 3, 8 and 9).
//!
//! ```text
//! cargo run --release --example skill_probe            # SmolLM2, agnews + toxicity, < 5 min
//! cargo run --release --example skill_probe -- --tasks agnews,mnli --shots few \
//!     --splits leak-free --train-size 500 --model Qwen/Qwen2.5-0.5B --out out/qwen
//! ```
//!
//! For every task: render zero- or few-shot prompts of a seeded subset of the published or
//! leak-free splits, compute NeurGrad (dP/da x sign(a)) of every FF neuron for every option's
//! answer token, train Rand, LM-Prob, Polar-, Magn-, Tree- and Act-Probe on train with the
//! neuron count chosen on valid, and report test accuracy. Writes under `--out`:
//! `results.json` (settings, per task and method the accuracies, selected neuron count and
//! the whole valid/test curve), `features/<task>.safetensors` (readable by the
//! `probe_features` example) and `accuracy_vs_neurons.svg`; prints the accuracy table.
//!
//! With no arguments: SmolLM2-135M-Instruct (`smollm2-135m-instruct`, the GGUF file that
//! `cargo xtask setup` installs), `../shared/data/mceval8k`, leak-free re-splits, 256 / 64 /
//! 128 prompts of agnews and toxicity, offline. Without the packaged model, the hub model
//! `HuggingFaceTB/SmolLM2-135M-Instruct`; without `../shared`, the hub dataset
//! `iszhaoxin/MCEval8K` (a note says so). `--splits published` warns that those splits leak. Bad input (unknown task, missing file, an answer
//! that is not one token, unwritable `--out`): one `error:` line, exit status 1, no files.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use neg_rs::skill::{format_table, run_skill_probe, SkillArgs, SkillProbeConfig, SkillProbeReport};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(about = "Skill-neuron probes (Rand, LM-Prob, Polar, Magn, Tree, Act) on MCEval8K")]
pub struct Args {
    /// Model, data, prompts and run settings.
    #[command(flatten)]
    pub run: SkillArgs,
    /// Comma-separated tasks (directory or paper names).
    #[arg(long, value_delimiter = ',', default_value = "agnews,toxicity")]
    pub tasks: Vec<String>,
    /// Trees of the Tree-Probe.
    #[arg(long, default_value_t = 100)]
    pub trees: usize,
    /// Write only compact features (option index, activations, probabilities), no f32 scores.
    #[arg(long)]
    pub compact: bool,
    /// Output directory.
    #[arg(long, default_value = "out/skill_probe")]
    pub out: PathBuf,
}

impl Args {
    /// The library configuration of these arguments.
    pub fn config(&self) -> SkillProbeConfig {
        let run = &self.run;
        SkillProbeConfig {
            model: run.model.clone(),
            data: run.data.clone(),
            tasks: self.tasks.clone(),
            shots: run.shots,
            splits: run.splits,
            sizes: run.sizes(),
            seed: run.seed,
            trees: self.trees,
            batch: run.batch,
            device: run.device.clone(),
            dtype: run.dtype.clone(),
            compact: self.compact,
            out: self.out.clone(),
            progress: !run.quiet,
        }
    }
}

/// Runs the job for parsed arguments.
pub fn run(args: &Args) -> Result<SkillProbeReport> {
    run_skill_probe(&args.config())
}

fn main() -> ExitCode {
    let args = Args::parse();
    neg_rs::cli::run_main(|| {
        let r = run(&args)?;
        println!(
            "{} | {:?} | {:?} splits | {} train / {} valid / {} test prompts per task\n",
            r.model,
            args.run.shots,
            args.run.splits,
            args.run.train_size,
            args.run.valid_size,
            args.run.test_size
        );
        print!("{}", format_table(&r.tasks));
        println!(
            "\ntest accuracy; neuron counts chosen on valid. {:.1}s -> {}",
            r.seconds,
            args.out.display()
        );
        Ok(())
    })
}
