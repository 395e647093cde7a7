//! Command-line plumbing shared by the examples: the `main` wrapper, model loading, and the
//! arguments and output file of the single-file exporters (`neurgrad`, `intervene`).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use neg_core::io::PromptSpec;
use neg_core::{ModelAdapter, TargetedPrompt};
use neg_hooks::{DeviceSpec, HfModel, LoadOptions, ModelSource};

use crate::output::TensorFile;

/// Runs an example's body: on error prints one line `error: ...` (the whole context chain;
/// newlines inside messages, e.g. from multi-line prompts, are escaped as `\n` so the error
/// stays on one line) and exits with status 1.
pub fn run_main(body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', "\\n"));
            ExitCode::FAILURE
        }
    }
}

/// Loads `model` (a directory or hub id, `id@revision`) on `device` (`cpu`, `cuda`, `cuda:N`)
/// in f32, running at most `max_batch` prompts per forward pass (at least 1). The error names
/// the model.
pub fn load_model(model: &str, device: &str, max_batch: usize) -> Result<HfModel> {
    load_model_as(model, device, "f32", max_batch)
}

/// [`load_model`] in `dtype` (`f32`, `bf16`, `f16`).
pub fn load_model_as(model: &str, device: &str, dtype: &str, max_batch: usize) -> Result<HfModel> {
    let opts = LoadOptions {
        device: DeviceSpec::parse(device)?,
        dtype: neg_hooks::DType::parse(dtype)?,
        max_batch: max_batch.max(1),
    };
    HfModel::load(&ModelSource::parse(model), &opts)
        .with_context(|| format!("cannot load model {model}"))
}

/// Arguments of the examples that compute something for every line of a prompt file and save
/// it as one safetensors file (`neurgrad`, `intervene`).
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// Model directory or Hugging Face hub id (`id` or `id@revision`).
    #[arg(long)]
    pub model: String,
    /// JSON Lines file: {"prompt": "...", "targets": ["...", ...]} per line.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Output file (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl ExportArgs {
    /// Reads `--prompts`, then loads `--model` on `--device`, so a bad prompt file fails before
    /// the model loads. The targets are resolved by the caller
    /// (`neg_core::io::resolve_targets`), after any checks that need the model.
    pub fn load(&self) -> Result<(HfModel, Vec<(usize, PromptSpec)>)> {
        let specs = neg_core::io::read_prompt_file(&self.prompts)?;
        let model = load_model(&self.model, &self.device, LoadOptions::default().max_batch)?;
        Ok((model, specs))
    }

    /// Adds the `model`, `dtype`, `device`, `shapes` (every tensor's shape, JSON), `target_ids`
    /// and `prompts` (per prompt, JSON) and `prompts_file` metadata entries to `t` and writes
    /// it to `--out` atomically.
    pub fn write<A: ModelAdapter + ?Sized>(
        &self,
        mut t: TensorFile,
        model: &A,
        prompts: &[TargetedPrompt],
    ) -> Result<()> {
        let targets: Vec<&[u32]> = prompts.iter().map(|p| p.targets.as_slice()).collect();
        let texts: Vec<&str> = prompts.iter().map(|p| p.text.as_str()).collect();
        t.meta("model", model.model_id());
        t.meta("dtype", "f32");
        t.meta("device", self.device.clone());
        t.meta("shapes", t.shapes_json()?);
        t.meta("target_ids", serde_json::to_string(&targets)?);
        // Row p of every tensor is prompt p: its text, so rows join back to the input file.
        t.meta("prompts", serde_json::to_string(&texts)?);
        t.meta("prompts_file", self.prompts.display().to_string());
        t.write(&self.out)
    }
}
