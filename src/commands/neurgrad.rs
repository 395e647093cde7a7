//! `neg neurgrad`: NeurGrad (dP/da x sign(a)), CG, IG or LPI scores of every FF neuron for
//! every prompt and target of a prompt file, saved as `<out>/neurgrad.safetensors`
//! (`probs` [P, T], `activations` [P, L, F], `scores` [P, T, L, F]; IG adds
//! `mean_gradient`). See docs/SCHEMA.md.
use std::path::PathBuf;

use anyhow::Result;
use neg_core::methods::{self, Method};
use neg_core::ModelAdapter;

use super::ExportArgs;
use crate::output::TensorFile;

/// Arguments of `neg neurgrad`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Model, prompts, output.
    #[command(flatten)]
    pub io: ExportArgs,
    /// neurgrad | cg | ig | lpi
    #[arg(long, value_enum, default_value = "neurgrad")]
    pub method: Method,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Report {
    /// The safetensors file.
    pub file: PathBuf,
    /// Prompts scored.
    pub prompts: usize,
}

/// Scores every prompt of `--prompts` and writes the file.
pub fn run(args: &Args) -> Result<Report> {
    let (model, specs) = args.io.load("neurgrad")?;
    let prompts = neg_core::io::resolve_targets(&model, &args.io.prompts, &specs)?;
    let mut t = TensorFile::default();
    let work = || -> Result<()> {
        if args.method == Method::Ig {
            let ig = methods::integrated_gradients(&model, &prompts, methods::IG_STEPS)?;
            t.add("probs", &ig.probs);
            t.add("activations", &ig.activations);
            t.add("scores", &ig.attribution);
            t.add("mean_gradient", &ig.mean_gradient);
            t.meta(
                "ig",
                format!(
                    "alpha = k/m, k = 1..m, m = {}, zero baseline",
                    methods::IG_STEPS
                ),
            );
        } else {
            let a = methods::attribute(&model, &prompts, args.method)?;
            t.add("probs", &a.probs);
            t.add("activations", &a.activations);
            t.add("scores", &a.scores);
        }
        Ok(())
    };
    let label = format!("{} scores", args.method.name());
    crate::progress::with_spinner(&label, args.io.run.progress(), work)?;
    t.meta("method", args.method.name());
    t.meta("num_layers", model.num_layers().to_string());
    t.meta("ff_width", model.ff_width().to_string());
    let file = args.io.write("neurgrad", t, &model, &prompts)?;
    Ok(Report {
        file,
        prompts: prompts.len(),
    })
}

/// Runs and says what was written.
pub fn main(args: &Args) -> Result<()> {
    let r = run(args)?;
    eprintln!(
        "wrote {} ({} prompts, method {})",
        r.file.display(),
        r.prompts,
        args.method
    );
    Ok(())
}
