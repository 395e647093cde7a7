//! `neg intervene`: ground-truth NEG of chosen FF neurons by activation-shift sweeps on every
//! prompt and target of a prompt file, saved as `<out>/intervene.safetensors` (`shifts`,
//! `delta_probs`, `neg`, `r`, `base_probs`, `activations`, `neurons`). See docs/SCHEMA.md.
use std::path::PathBuf;

use anyhow::Result;
use ndarray::{Array1, Array2};
use neg_core::neg::{ground_truth_neg, shift_grid, ShiftMode, SweepConfig};
use neg_core::ModelAdapter;

use super::ExportArgs;
use crate::output::TensorFile;

/// Arguments of `neg intervene`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Model, prompts, output.
    #[command(flatten)]
    pub io: ExportArgs,
    /// JSON file of the neurons to sweep: [[layer, neuron], ...].
    #[arg(long)]
    pub neuron_file: PathBuf,
    /// R: shifts span [-R, R].
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    pub range: f32,
    /// s: grid step.
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true)]
    pub step: f32,
    /// magnitude (a -> a + d * sign(a)) or additive (a -> a + d)
    #[arg(long, value_enum, default_value = "magnitude")]
    pub mode: ShiftMode,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Report {
    /// The safetensors file.
    pub file: PathBuf,
    /// Prompts, neurons and shifts swept.
    pub shape: [usize; 3],
}

/// Sweeps every neuron of `--neuron-file` on every prompt and writes the file.
pub fn run(args: &Args) -> Result<Report> {
    // Cheap checks first, so bad arguments fail before the model loads.
    shift_grid(args.range, args.step)?;
    let (model, specs) = args.io.load("intervene")?;
    let neurons =
        neg_core::io::read_neuron_file(&args.neuron_file, model.num_layers(), model.ff_width())?;
    let prompts = neg_core::io::resolve_targets(&model, &args.io.prompts, &specs)?;
    let config = SweepConfig {
        range: args.range,
        step: args.step,
        mode: args.mode,
        ..SweepConfig::default()
    };
    let truth = crate::progress::with_spinner("sweeps", args.io.run.progress(), || {
        ground_truth_neg(&model, &prompts, &neurons, &config)
    })?;
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
    let file = args.io.write("intervene", t, &model, &prompts)?;
    Ok(Report {
        file,
        shape: [prompts.len(), neurons.len(), truth.shifts.len()],
    })
}

/// Runs and says what was written.
pub fn main(args: &Args) -> Result<()> {
    let r = run(args)?;
    let [p, n, s] = r.shape;
    eprintln!(
        "wrote {} ({p} prompts x {n} neurons x {s} shifts)",
        r.file.display()
    );
    Ok(())
}
