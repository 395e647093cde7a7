//! NEG estimates of every FF neuron for a prompt set, exported as safetensors.
//!
//! ```text
//! cargo run --release --example neurgrad -- --model ../shared/models/stories260k \
//!     --prompts prompts.jsonl --method neurgrad --out scores.safetensors
//! ```
//!
//! Each input line is `{"prompt": "...", "targets": ["...", ...]}` (every answer one token, the
//! same number per line). The output holds `probs` [P, T], `activations` [P, L, N] and `scores`
//! [P, T, L, N] (f32; for `--method ig` also `mean_gradient` [P, T, L, N]), with the model id,
//! method, target ids and shapes in the metadata. The file is written atomically: on any error
//! nothing is written and the exit status is 1.
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use neg_core::methods::{self, Method};
use neg_core::ModelAdapter;
use neg_rs::cli::ExportArgs;
use neg_rs::output::TensorFile;

#[derive(Parser, Debug)]
#[command(about = "NeurGrad / CG / IG / LPI scores of every FF neuron, saved as safetensors")]
struct Args {
    #[command(flatten)]
    io: ExportArgs,
    /// neurgrad | cg | ig | lpi
    #[arg(long, default_value = "neurgrad")]
    method: Method,
}

fn run(args: Args) -> Result<()> {
    let (model, specs) = args.io.load()?;
    let prompts = neg_core::io::resolve_targets(&model, &args.io.prompts, &specs)?;
    let mut t = TensorFile::default();
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
    t.meta("method", args.method.name());
    t.meta("num_layers", model.num_layers().to_string());
    t.meta("ff_width", model.ff_width().to_string());
    args.io.write(t, &model, &prompts)?;
    eprintln!(
        "wrote {} ({} prompts, method {})",
        args.io.out.display(),
        prompts.len(),
        args.method
    );
    Ok(())
}

fn main() -> ExitCode {
    neg_rs::cli::run_main(|| run(Args::parse()))
}
