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
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ndarray::{ArrayBase, Data, Dimension};
use neg_core::neg::{ground_truth_neg, shift_grid, ShiftMode, SweepConfig};
use neg_core::ModelAdapter;
use neg_hooks::{DeviceSpec, HfModel, LoadOptions, ModelSource};
use safetensors::{Dtype, View};

#[derive(Parser, Debug)]
#[command(about = "Ground-truth NEG of chosen FF neurons by activation-shift sweeps")]
struct Args {
    /// Model directory or Hugging Face hub id (`id` or `id@revision`).
    #[arg(long)]
    model: String,
    /// JSON Lines file: {"prompt": "...", "targets": ["...", ...]} per line.
    #[arg(long)]
    prompts: PathBuf,
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
    /// Output file (.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// An owned little-endian tensor ready for `safetensors::serialize`.
struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Tensor {
    fn f32<S: Data<Elem = f32>, D: Dimension>(a: &ArrayBase<S, D>) -> Self {
        Self {
            dtype: Dtype::F32,
            shape: a.shape().to_vec(),
            bytes: a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl View for &Tensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn run(args: Args) -> Result<()> {
    // Cheap checks first, so bad arguments fail before the model loads.
    shift_grid(args.range, args.step)?;
    let specs = neg_core::io::read_prompt_file(&args.prompts)?;
    let device = DeviceSpec::parse(&args.device)?;
    let source = ModelSource::parse(&args.model);
    let options = LoadOptions {
        device,
        ..LoadOptions::default()
    };
    let model = HfModel::load(&source, &options)
        .with_context(|| format!("cannot load model {}", args.model))?;
    let neurons =
        neg_core::io::read_neuron_file(&args.neurons, model.num_layers(), model.ff_width())?;
    let prompts = neg_core::io::resolve_targets(&model, &args.prompts, &specs)?;
    let config = SweepConfig {
        range: args.range,
        step: args.step,
        mode: args.mode,
        ..SweepConfig::default()
    };
    let truth = ground_truth_neg(&model, &prompts, &neurons, &config)?;
    let shifts = ndarray::Array1::from(truth.shifts.clone());
    let ids: Vec<i64> = neurons
        .iter()
        .flat_map(|n| [n.layer as i64, n.neuron as i64])
        .collect();
    let tensors: Vec<(&str, Tensor)> = vec![
        ("shifts", Tensor::f32(&shifts)),
        ("delta_probs", Tensor::f32(&truth.delta_probs)),
        ("neg", Tensor::f32(&truth.neg)),
        ("r", Tensor::f32(&truth.r)),
        ("base_probs", Tensor::f32(&truth.base_probs)),
        ("activations", Tensor::f32(&truth.activations)),
        (
            "neurons",
            Tensor {
                dtype: Dtype::I64,
                shape: vec![neurons.len(), 2],
                bytes: ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
            },
        ),
    ];
    let shapes: HashMap<&str, &[usize]> = tensors
        .iter()
        .map(|(n, t)| (*n, t.shape.as_slice()))
        .collect();
    let targets: Vec<&[u32]> = prompts.iter().map(|p| p.targets.as_slice()).collect();
    let mode = match args.mode {
        ShiftMode::Magnitude => "magnitude",
        ShiftMode::Additive => "additive",
    };
    let metadata = HashMap::from([
        ("model".to_string(), model.model_id().to_string()),
        ("mode".to_string(), mode.to_string()),
        ("range".to_string(), args.range.to_string()),
        ("step".to_string(), args.step.to_string()),
        ("shapes".to_string(), serde_json::to_string(&shapes)?),
        ("target_ids".to_string(), serde_json::to_string(&targets)?),
    ]);
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (*n, t)), Some(metadata))
        .context("cannot serialise the results as safetensors")?;
    neg_rs::output::write_atomic(&args.out, &bytes)?;
    eprintln!(
        "wrote {} ({} prompts x {} neurons x {} shifts)",
        args.out.display(),
        prompts.len(),
        neurons.len(),
        truth.shifts.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    neg_rs::cli::run_main(|| run(Args::parse()))
}
