//! Ground-truth NEG of chosen neurons by intervention sweep, exported as safetensors.
//!
//! ```text
//! cargo run --release --example intervene -- --model ../shared/models/stories260k \
//!     --prompts prompts.jsonl --neurons neurons.json --range 2 --step 0.2 \
//!     [--mode magnitude|additive] --out sweep.safetensors
//! ```
//!
//! `--neurons` is a JSON array of `[layer, neuron]` pairs. Magnitude mode (the default, the
//! paper's) shifts a -> a + d * sign(a); additive shifts a -> a + d. The output holds `shifts`
//! [S], `delta_probs` [P, T, K, S], `neg` [P, T, K] and `r` [P, T, K] (f32), plus `base_probs`
//! [P, T], `activations` [P, K] and `neurons` [K, 2] (i64), with the model id, mode, range, step
//! and shapes in the metadata. Written atomically; on any error nothing is written and the exit
//! status is 1.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use ndarray::{Array1, Array2};
use neg_core::neg::{ground_truth_neg, shift_grid, ShiftMode, SweepConfig};
use neg_core::ModelAdapter;
use neg_rs::cli::ExportArgs;
use neg_rs::output::TensorFile;

#[derive(Parser, Debug)]
#[command(about = "Ground-truth NEG of chosen FF neurons by activation-shift sweeps")]
struct Args {
    #[command(flatten)]
    io: ExportArgs,
    /// JSON file: [[layer, neuron], ...]
    #[arg(long)]
    neurons: PathBuf,
    /// R: shifts span [-R, R].
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    range: f32,
    /// s: grid step.
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true)]
    step: f32,
    /// magnitude (a -> a + d * sign(a)) or additive (a -> a + d)
    #[arg(long, default_value = "magnitude")]
    mode: ShiftMode,
}

fn run(args: Args) -> Result<()> {
    // Cheap checks first, so bad arguments fail before the model loads.
    shift_grid(args.range, args.step)?;
    let (model, specs) = args.io.load()?;
    let neurons =
        neg_core::io::read_neuron_file(&args.neurons, model.num_layers(), model.ff_width())?;
    let prompts = neg_core::io::resolve_targets(&model, &args.io.prompts, &specs)?;
    let config = SweepConfig {
        range: args.range,
        step: args.step,
        mode: args.mode,
        ..SweepConfig::default()
    };
    let truth = ground_truth_neg(&model, &prompts, &neurons, &config)?;
    let ids = Array2::from_shape_fn((neurons.len(), 2), |(k, j)| {
        let n = &neurons[k];
        if j == 0 {
            n.layer as i64
        } else {
            n.neuron as i64
        }
    });
    let mut t = TensorFile::default();
    t.add("shifts", &Array1::from(truth.shifts.clone()));
    t.add("delta_probs", &truth.delta_probs);
    t.add("neg", &truth.neg);
    t.add("r", &truth.r);
    t.add("base_probs", &truth.base_probs);
    t.add("activations", &truth.activations);
    t.add("neurons", &ids);
    let mode = match args.mode {
        ShiftMode::Magnitude => "magnitude",
        ShiftMode::Additive => "additive",
    };
    t.meta("mode", mode);
    t.meta("range", args.range.to_string());
    t.meta("step", args.step.to_string());
    args.io.write(t, &model, &prompts)?;
    eprintln!(
        "wrote {} ({} prompts x {} neurons x {} shifts)",
        args.io.out.display(),
        prompts.len(),
        neurons.len(),
        truth.shifts.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    neg_rs::cli::run_main(|| run(Args::parse()))
}
