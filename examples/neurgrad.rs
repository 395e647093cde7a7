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
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ndarray::{ArrayBase, Data, Dimension};
use neg_core::methods::{self, Method};
use neg_core::ModelAdapter;
use neg_hooks::{DeviceSpec, HfModel, LoadOptions, ModelSource};
use safetensors::{Dtype, View};

#[derive(Parser, Debug)]
#[command(about = "NeurGrad / CG / IG / LPI scores of every FF neuron, saved as safetensors")]
struct Args {
    /// Model directory or Hugging Face hub id (`id` or `id@revision`).
    #[arg(long)]
    model: String,
    /// JSON Lines file: {"prompt": "...", "targets": ["...", ...]} per line.
    #[arg(long)]
    prompts: PathBuf,
    /// neurgrad | cg | ig | lpi
    #[arg(long, default_value = "neurgrad")]
    method: Method,
    /// Output file (.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// An owned f32 tensor ready for `safetensors::serialize`.
struct F32Tensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl F32Tensor {
    fn new<S: Data<Elem = f32>, D: Dimension>(a: &ArrayBase<S, D>) -> Self {
        Self {
            shape: a.shape().to_vec(),
            bytes: a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl View for &F32Tensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
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
    let specs = neg_core::io::read_prompt_file(&args.prompts)?;
    let device = DeviceSpec::parse(&args.device)?;
    let source = ModelSource::parse(&args.model);
    let options = LoadOptions {
        device,
        ..LoadOptions::default()
    };
    let model = HfModel::load(&source, &options)
        .with_context(|| format!("cannot load model {}", args.model))?;
    let prompts = neg_core::io::resolve_targets(&model, &args.prompts, &specs)?;
    let mut tensors: Vec<(String, F32Tensor)> = Vec::new();
    if args.method == Method::Ig {
        let ig = methods::integrated_gradients(&model, &prompts, methods::IG_STEPS)?;
        tensors.push(("probs".into(), F32Tensor::new(&ig.probs)));
        tensors.push(("activations".into(), F32Tensor::new(&ig.activations)));
        tensors.push(("scores".into(), F32Tensor::new(&ig.attribution)));
        tensors.push(("mean_gradient".into(), F32Tensor::new(&ig.mean_gradient)));
    } else {
        let a = methods::attribute(&model, &prompts, args.method)?;
        tensors.push(("probs".into(), F32Tensor::new(&a.probs)));
        tensors.push(("activations".into(), F32Tensor::new(&a.activations)));
        tensors.push(("scores".into(), F32Tensor::new(&a.scores)));
    }
    let shapes: HashMap<&str, &[usize]> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.shape.as_slice()))
        .collect();
    let targets: Vec<&[u32]> = prompts.iter().map(|p| p.targets.as_slice()).collect();
    let mut metadata = HashMap::from([
        ("model".to_string(), model.model_id().to_string()),
        ("method".to_string(), args.method.name().to_string()),
        ("shapes".to_string(), serde_json::to_string(&shapes)?),
        ("target_ids".to_string(), serde_json::to_string(&targets)?),
        ("num_layers".to_string(), model.num_layers().to_string()),
        ("ff_width".to_string(), model.ff_width().to_string()),
    ]);
    if args.method == Method::Ig {
        metadata.insert(
            "ig".into(),
            format!(
                "alpha = k/m, k = 1..m, m = {}, zero baseline",
                methods::IG_STEPS
            ),
        );
    }
    let bytes =
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
            .context("cannot serialise the results as safetensors")?;
    neg_rs::output::write_atomic(&args.out, &bytes)?;
    eprintln!(
        "wrote {} ({} prompts, method {})",
        args.out.display(),
        prompts.len(),
        args.method
    );
    Ok(())
}

fn main() -> ExitCode {
    neg_rs::cli::run_main(|| run(Args::parse()))
}
