//! Fuzzing of every reader of user files, driven by proptest so that CI runs it briefly and
//! a person runs it for as long as wanted (`NEG_FUZZ_CASES=N` cases per round, default 48;
//! `NEG_FUZZ_SECONDS=S` repeats rounds with new seeds for S seconds per target):
//!
//! ```sh
//! NEG_FUZZ_CASES=1000 NEG_FUZZ_SECONDS=600 cargo test --release --test fuzz -- --nocapture --test-threads 1
//! ```
//!
//! Each target mutates a real, valid seed (byte edits: set, insert, remove, truncate, and
//! splices of boundary values such as `u64::MAX` over length fields; for JSON also structural
//! edits: any node replaced by a boundary value) and feeds it through the whole reader and
//! what consumes its result. A case passes when it returns, whether `Ok` or a typed error
//! naming the file; a panic, an abort or a hang fails it:
//! - `config.json` -> `ModelConfig` -> load with stories260k's weights -> one forward;
//! - a GGUF file (the tiny Llama of `crates/neg-hooks/tests/common/gguf_writer.rs`) ->
//!   `GgufFile::parse` -> every tensor dequantized -> `HfModel::load` -> one forward;
//! - an MCEval8K records file (myriadlama's published test.json, first records) -> records ->
//!   a validated `Dataset` -> zero- and few-shot rendering with the built-in templates;
//! - `templates.json` (the published one) -> `TemplateSet` -> rendering of real records;
//! - a features file (as `skill-probe` writes it) -> `neg probe-features`' reader.
use std::path::{Path, PathBuf};

use mceval::record::parse_json_records;
use mceval::{Dataset, Shots, Split, TaskRegistry, TemplateSet};
use neg_hooks::gguf::GgufFile;
use neg_hooks::{HfModel, LoadOptions, ModelConfig, ModelSource};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

mod common;
use common::shared;

#[path = "../crates/neg-hooks/tests/common/gguf_writer.rs"]
mod gguf_writer;

/// Cases per target: `NEG_FUZZ_CASES`, else 48 (a CI-sized run).
fn cases() -> u32 {
    std::env::var("NEG_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

/// Values that break length fields, counts and offsets.
const BOUNDARY: [u64; 8] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    u64::MAX / 2,
    u64::MAX,
];

/// One byte-level edit; positions are taken modulo the current length.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
    /// Overwrites 8 bytes (little-endian) with a boundary value.
    Splice(usize, u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => any::<usize>().prop_map(Edit::Remove),
        1 => any::<usize>().prop_map(Edit::Truncate),
        3 => (any::<usize>(), prop::sample::select(&BOUNDARY[..])).prop_map(|(i, v)| Edit::Splice(i, v)),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let n = b.len().max(1);
        match *e {
            Edit::Set(i, v) if !b.is_empty() => b[i % n] = v,
            Edit::Insert(i, v) => b.insert(i % (b.len() + 1), v),
            Edit::Remove(i) if !b.is_empty() => {
                b.remove(i % n);
            }
            Edit::Truncate(i) => b.truncate(i % n),
            Edit::Splice(i, v) if b.len() >= 8 => {
                let at = i % (b.len() - 7);
                b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => {}
        }
    }
    b
}

/// JSON values that break fields: wrong types, out-of-range and non-finite-looking numbers.
fn json_boundary() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        Value::Null,
        serde_json::json!(true),
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(1),
        serde_json::json!(2),
        serde_json::json!(0.5),
        serde_json::json!(1e300),
        serde_json::json!(-1e300),
        serde_json::json!(1e12),
        serde_json::json!(u64::MAX),
        serde_json::json!(i64::MIN),
        serde_json::json!(""),
        serde_json::json!("x"),
        serde_json::json!("[MASK]"),
        serde_json::json!([]),
        serde_json::json!([1, 2]),
        serde_json::json!({}),
    ])
}

/// Replaces the `k`-th node (pre-order, modulo the node count) of `v` by `with`.
fn replace_node(v: &mut Value, k: usize, with: Value) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut Value, k: &mut usize, with: &mut Option<Value>) {
        if *k == 0 {
            if let Some(w) = with.take() {
                *v = w;
            }
            return;
        }
        *k -= 1;
        match v {
            Value::Array(a) => a.iter_mut().for_each(|c| walk(c, k, with)),
            Value::Object(o) => o.values_mut().for_each(|c| walk(c, k, with)),
            _ => {}
        }
    }
    let mut k = k % count(v);
    walk(v, &mut k, &mut Some(with));
}

/// A mutated JSON text: structural edits on the parsed seed, then byte edits.
fn json_case() -> impl Strategy<Value = (Vec<(usize, Value)>, Vec<Edit>)> {
    (
        prop::collection::vec((any::<usize>(), json_boundary()), 0..4),
        prop::collection::vec(edit(), 0..3),
    )
}

fn mutate_json(seed: &Value, (nodes, edits): &(Vec<(usize, Value)>, Vec<Edit>)) -> Vec<u8> {
    let mut v = seed.clone();
    for (k, with) in nodes {
        replace_node(&mut v, *k, with.clone());
    }
    apply(serde_json::to_string_pretty(&v).unwrap().as_bytes(), edits)
}

/// Runs `check` on `cases()` inputs of `strategy` (one round), or, with
/// `NEG_FUZZ_SECONDS=S`, round after round until S seconds have passed; round `r` draws from
/// a ChaCha generator seeded with `r`, so a failure is reproducible. Panics (failing the test,
/// with proptest's shrunk input and the round) on the first case that panics. Prints the
/// number of cases and the time.
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    use proptest::test_runner::{RngAlgorithm, TestRng};
    let budget = std::env::var("NEG_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok());
    let start = std::time::Instant::now();
    let mut round = 0u64;
    loop {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&round.to_le_bytes());
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: cases(),
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
        );
        if let Err(e) = runner.run(&strategy, |v| {
            check(v);
            Ok(())
        }) {
            panic!("fuzz target {name}, round {round}: {e}");
        }
        round += 1;
        if budget.is_none_or(|b| start.elapsed().as_secs_f64() >= b) {
            break;
        }
    }
    println!(
        "fuzz target {name}: {} cases in {round} rounds, no panic, {:.1} s",
        round * cases() as u64,
        start.elapsed().as_secs_f64()
    );
}

/// An error's text must name the file it came from (`file`, or for a dataset any of its
/// split files: a path under `file`'s directory).
fn names_file(e: &dyn std::fmt::Display, file: &Path) {
    let msg = e.to_string();
    let name = file.file_name().unwrap().to_string_lossy();
    let dir = file.parent().unwrap().display().to_string();
    assert!(
        msg.contains(name.as_ref()) || (!dir.is_empty() && msg.contains(&dir)),
        "error does not name {}: {msg}",
        file.display()
    );
}

/// The stories260k directory with its `config.json` replaced (weights and tokenizer linked).
fn stories_with_config(dir: &Path, config: &[u8]) -> PathBuf {
    let src = shared("models/stories260k");
    let model = dir.join("m");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        let link = model.join(f);
        if !link.exists() {
            std::os::unix::fs::symlink(src.join(f), link).unwrap();
        }
    }
    std::fs::write(model.join("config.json"), config).unwrap();
    model
}

#[test]
fn fuzz_config_json() {
    let seed: Value = serde_json::from_str(
        &std::fs::read_to_string(shared("models/stories260k/config.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    fuzz("config.json", json_case(), |case| {
        let bytes = mutate_json(&seed, &case);
        let path = dir.path().join("config.json");
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Err(e) = ModelConfig::from_json_str(text, &path) {
                names_file(&e, &path);
            }
        }
        let model = stories_with_config(dir.path(), &bytes);
        match HfModel::load(&ModelSource::Dir(model), &LoadOptions::default()) {
            Ok(m) => {
                // A config the weights accept runs, or fails with a typed error.
                let _ = m.logits(&["Once upon a time"]);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    });
}

#[test]
fn fuzz_gguf_file() {
    let seed = gguf_writer::tiny_llama().bytes();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.gguf");
    let strategy = prop::collection::vec(edit(), 1..6);
    fuzz("gguf", strategy, |edits| {
        let bytes = apply(&seed, &edits);
        match GgufFile::parse(&path, bytes.clone()) {
            Ok(file) => {
                for info in &file.tensors {
                    if let Err(e) = file.dequantize(&info.name) {
                        names_file(&e, &path);
                    }
                }
            }
            Err(e) => names_file(&e, &path),
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(m) = HfModel::load(&ModelSource::Gguf(path.clone()), &LoadOptions::default()) {
            let _ = m.logits(&[" the"]);
        }
    });
}

fn myriadlama_seed() -> Value {
    let text = std::fs::read_to_string(shared("data/mceval8k/fact/myriadlama/test.json")).unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    Value::Array(all.into_iter().take(6).collect())
}

#[test]
fn fuzz_mceval_records() {
    let seed = myriadlama_seed();
    let registry = TaskRegistry::builtin();
    let spec = registry.get("myriadlama").unwrap();
    let templates = TemplateSet::builtin();
    let path = PathBuf::from("fuzz/fact/myriadlama/test.json");
    fuzz("mceval records", json_case(), |case| {
        let bytes = mutate_json(&seed, &case);
        let Ok(text) = String::from_utf8(bytes) else {
            return;
        };
        let records = match parse_json_records(&text, &path) {
            Ok(r) => r,
            Err(e) => return names_file(&e, &path),
        };
        let data = match Dataset::from_splits(
            spec,
            Path::new("fuzz"),
            Some(records.clone()),
            None,
            Some(records),
        ) {
            Ok(d) => d,
            Err(e) => return names_file(&e, &path),
        };
        for shots in [Shots::Zero, Shots::Few { seed: 0 }] {
            let _ = templates.render(spec, &data, Split::Test, shots, None);
        }
    });
}

#[test]
fn fuzz_templates_json() {
    let file = shared("data/mceval8k/templates.json");
    let seed: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let registry = TaskRegistry::builtin();
    let spec = registry.get("myriadlama").unwrap();
    let records: Vec<_> = parse_json_records(
        &serde_json::to_string(&myriadlama_seed()).unwrap(),
        Path::new("test.json"),
    )
    .unwrap();
    let data = Dataset::from_splits(
        spec,
        Path::new("fuzz"),
        Some(records.clone()),
        None,
        Some(records),
    )
    .unwrap();
    let path = PathBuf::from("fuzz/templates.json");
    fuzz("templates.json", json_case(), |case| {
        let bytes = mutate_json(&seed, &case);
        let Ok(text) = String::from_utf8(bytes) else {
            return;
        };
        match TemplateSet::parse(&text, &path) {
            Ok(t) => {
                for shots in [Shots::Zero, Shots::Few { seed: 1 }] {
                    let _ = t.render(spec, &data, Split::Test, shots, None);
                }
            }
            Err(e) => names_file(&e, &path),
        }
    });
}

#[test]
fn fuzz_features_file() {
    use ndarray::{Array1, Array2, Array3};
    // A features file as skill-probe writes it: 8 prompts, 2 options, 12 neurons.
    let (p, k, n) = (8usize, 2usize, 12usize);
    let mut t = neg_rs::output::TensorFile::default();
    let scores = Array3::from_shape_fn((p, k, n), |(a, b, c)| {
        ((a * 7 + b * 3 + c) % 11) as f32 - 5.0
    });
    t.add("scores", &scores);
    t.add(
        "option_index",
        &Array2::from_shape_fn((p, n), |(a, c)| ((a + c) % k) as u8),
    );
    t.add("activations", &Array2::from_elem((p, n), 0.5f32));
    t.add("probs", &Array2::from_elem((p, k), 0.5f32));
    t.add("labels", &Array1::from_iter((0..p).map(|i| (i % k) as i64)));
    t.add("split", &Array1::from_iter((0..p).map(|i| (i % 3) as u8)));
    t.meta("task", "fuzz");
    let seed = t.to_bytes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.safetensors");
    neg_rs::commands::probe_features::load(&path, None).unwrap_err();
    std::fs::write(&path, &seed).unwrap();
    neg_rs::commands::probe_features::load(&path, None).unwrap();
    fuzz(
        "features file",
        (
            prop::collection::vec(edit(), 1..6),
            prop::option::of(1usize..5),
        ),
        |(edits, options)| {
            std::fs::write(&path, apply(&seed, &edits)).unwrap();
            if let Err(e) = neg_rs::commands::probe_features::load(&path, options) {
                names_file(&format!("{e:#}"), &path);
            }
        },
    );
}
