//! Helpers shared by the example integration tests (`mod common;` in each test file).
// Each test binary uses only some of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// The workspace root (where `cargo test` runs the root package).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/<rel>`; fails the test with a clear message when the shared data is absent.
pub fn shared(rel: &str) -> PathBuf {
    let p = workspace().join("../shared").join(rel);
    assert!(
        p.exists(),
        "test data missing: expected {} (see ../shared/README.md)",
        p.display()
    );
    p
}

/// Parses a JSON result file, naming the file when it is unreadable or not JSON.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Shape and values of an f32 tensor of a safetensors file.
pub fn f32s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("tensor {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

/// The compiled example binary `name`, which `cargo test` builds next to the test binaries;
/// fails the test (rather than skipping checks) when it is missing.
pub fn example_binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current test binary: {e}"));
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("examples").join(name))
        .unwrap_or_else(|| panic!("{} has no target/<profile> parent", exe.display()));
    assert!(
        path.is_file(),
        "example binary {} is missing: run through `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// How far `ours` is from a reference vector `theirs`.
#[derive(Debug, Clone, Copy)]
pub struct RelErrors {
    /// Largest per-value relative error, against the value or, for values below 1% of the
    /// largest |reference|, against that 1% (a value near zero carries the f32 rounding of
    /// the probabilities it is computed from).
    pub worst: f64,
    /// Index of that value.
    pub at: usize,
    /// ||ours - theirs|| / ||theirs|| (L2).
    pub l2: f64,
    /// Largest |reference| value.
    pub scale: f64,
}

/// [`RelErrors`] of `ours` against `theirs` (same length).
pub fn rel_errors(ours: &[f64], theirs: &[f64]) -> RelErrors {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0.0f64, |w, v| w.max(v.abs()));
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let rel = (a - b).abs() / b.abs().max(1e-2 * scale);
        if rel > worst {
            (worst, at) = (rel, i);
        }
    }
    let l2 = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt()
        / theirs.iter().map(|b| b * b).sum::<f64>().sqrt();
    RelErrors {
        worst,
        at,
        l2,
        scale,
    }
}

/// Every file under `dir`, recursively (none when `dir` is missing).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Every file under `dir`, as (path relative to `dir`, bytes), sorted.
pub fn tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = files_under(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}
