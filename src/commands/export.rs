//! What `neurgrad` and `intervene` share: they compute something for every line of a prompt
//! file and save it as one safetensors file, `<out>/<command>.safetensors`.
use std::path::PathBuf;

use anyhow::Result;
use neg_core::io::PromptSpec;
use neg_core::{ModelAdapter, TargetedPrompt};
use neg_hooks::HfModel;

use crate::cli::{ModelArgs, RunArgs};
use crate::output::TensorFile;
use crate::sources::DefaultModel;

/// Arguments of the exporters.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// Model, device, dtype.
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSON Lines file: {"prompt": "...", "targets": ["...", ...]} per line.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Output directory and progress.
    #[command(flatten)]
    pub run: RunArgs,
}

impl ExportArgs {
    /// Reads `--prompts`, then loads `--model`, so a bad prompt file fails before the model
    /// loads. The targets are resolved by the caller (`neg_core::io::resolve_targets`), after
    /// any checks that need the model. `--out` is checked before the model loads too.
    pub fn load(&self, command: &str) -> Result<(HfModel, Vec<(usize, PromptSpec)>)> {
        let specs = neg_core::io::read_prompt_file(&self.prompts)?;
        crate::output::check_out_dir(&self.run.out_dir(command))?;
        let model = crate::progress::with_spinner("loading model", self.run.progress(), || {
            self.model.resolve_and_load(DefaultModel::Stories260k)
        })?;
        Ok((model, specs))
    }

    /// Adds the `model`, `dtype`, `device`, `shapes` (every tensor's shape, JSON), `target_ids`
    /// and `prompts` (per prompt, JSON) and `prompts_file` metadata entries to `t` and writes
    /// it to `<out>/<command>.safetensors` (the directory written as a unit); returns that path.
    pub fn write<A: ModelAdapter + ?Sized>(
        &self,
        command: &str,
        mut t: TensorFile,
        model: &A,
        prompts: &[TargetedPrompt],
    ) -> Result<PathBuf> {
        let targets: Vec<&[u32]> = prompts.iter().map(|p| p.targets.as_slice()).collect();
        let texts: Vec<&str> = prompts.iter().map(|p| p.text.as_str()).collect();
        t.meta("model", model.model_id());
        t.meta("dtype", self.model.dtype.clone());
        t.meta("device", self.model.device.clone());
        t.meta("shapes", t.shapes_json()?);
        t.meta("target_ids", serde_json::to_string(&targets)?);
        // Row p of every tensor is prompt p: its text, so rows join back to the input file.
        t.meta("prompts", serde_json::to_string(&texts)?);
        t.meta("prompts_file", self.prompts.display().to_string());
        let name = format!("{command}.safetensors");
        let dir = self.run.out_dir(command);
        let mut files = crate::output::Outputs::default();
        files.tensors(&name, &t)?;
        files.write(&dir)?;
        Ok(dir.join(name))
    }
}
