//! Set-up shared by the method benchmarks: which model, which prompts, how many threads.
//!
//! Everything is chosen by environment variables so that `cargo bench --bench methods` works
//! with no arguments (stories260k, 2 threads) and the same binary measures the random
//! ~135M-parameter Llama or any local checkpoint:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `NEG_BENCH_MODEL` | `stories260k` | `stories260k`, `llama-135m` (random, generated on first use) or a checkpoint directory |
//! | `NEG_BENCH_THREADS` | `2` | libtorch intra-op threads (`tch::set_num_threads`) |
//! | `NEG_BENCH_BATCH` | `4` | prompts in the batch benchmarks |
//! | `NEG_BENCH_DEVICE` | `cpu` | `cpu`, `cuda` or `cuda:N` |
//! | `NEG_BENCH_DTYPE` | `f32` | `f32`, `bf16` or `f16` |
//! | `NEG_BENCH_OUT` | `target/bench-models` | where the prompts and paired timings are written |
//! | `NEG_SHARED` | `../shared` | the shared folder (stories260k, MCEval8K) |
//! | `NEG_BENCH_ALL` | unset | `1`: also IG, LPI and the naive sweep in the criterion run on large models |
//!
//! Prompts are MCEval8K myriadlama zero-shot prompts (test split, K = 4 answer letters),
//! rendered from `../shared/data/mceval8k` by the `mceval` crate, keeping the first ones whose
//! tokenization is 60 to 200 tokens long. They are written, with their target ids, to
//! `target/bench-models/prompts-<model>.json` for `scripts/bench/reference_bench.py`.
use std::path::{Path, PathBuf};
use std::process::Command;

use mceval::{DataSource, Dataset, Shots, Split, TaskRegistry, TemplateSet};
use neg_core::{ModelAdapter, TargetedPrompt};
use neg_hooks::{DType, DeviceSpec, HfModel, LoadOptions, ModelSource};

/// Token-length window of a "realistic" prompt.
pub const MIN_TOKENS: usize = 60;
pub const MAX_TOKENS: usize = 200;
/// The MCEval8K task the prompts come from (four single-letter answers).
pub const TASK: &str = "myriadlama";

/// Workspace root (the root package's manifest directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared folder: `$NEG_SHARED` (as for the `neg` binary), else `../shared` beside the
/// workspace.
pub fn shared() -> PathBuf {
    std::env::var_os("NEG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}

/// Where the benchmarks write their files: `$NEG_BENCH_OUT`, else `target/bench-models`.
pub fn bench_out() -> PathBuf {
    std::env::var_os("NEG_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/bench-models"))
}

/// Stops the benchmark with a message that says what to do (a bench has no caller to return
/// an error to).
pub fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("methods bench: error: {msg}");
    std::process::exit(2)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| fail(format!("{name}={v:?} is not a positive integer"))),
        Err(_) => default,
    }
}

/// What a benchmark run measures.
pub struct Setup {
    /// Short name used in benchmark ids and file names (`stories260k`, `llama-135m`, ...).
    pub label: String,
    pub dir: PathBuf,
    pub model: HfModel,
    pub threads: usize,
    /// The single-prompt benchmarks use `prompts[..1]`, the batch ones all of them.
    pub prompts: Vec<TargetedPrompt>,
    /// Token count of each prompt.
    pub lengths: Vec<usize>,
    /// Whether the model is large enough that slow cases need trimming (more than 10M FF-path
    /// parameters, i.e. anything beyond the tiny stories260k).
    pub large: bool,
    /// Run the batch versions of the slow methods even on a large model.
    pub all: bool,
}

/// Directory of the random ~135M Llama, created by `scripts/bench/make_random_llama.py`.
pub fn random_135m_dir() -> PathBuf {
    root().join("target/bench-models/llama-135m-random")
}

fn ensure_random_135m() -> PathBuf {
    let dir = random_135m_dir();
    if dir.join("model.safetensors").is_file() {
        return dir;
    }
    let python = root().join(".venv/bin/python");
    let script = root().join("scripts/bench/make_random_llama.py");
    if !python.is_file() {
        fail(format!(
            "{} is missing and {} (which writes it) needs {}: run the set-up in README.md",
            dir.display(),
            script.display(),
            python.display()
        ));
    }
    eprintln!(
        "methods bench: writing the random 135M Llama to {}",
        dir.display()
    );
    let status = Command::new(&python)
        .arg(&script)
        .arg("--out")
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| fail(format!("cannot run {}: {e}", python.display())));
    if !status.success() {
        fail(format!("{} failed ({status})", script.display()));
    }
    dir
}

fn resolve_model(spec: &str) -> (String, PathBuf) {
    match spec {
        "stories260k" => {
            let dir = shared().join("models/stories260k");
            if !dir.join("config.json").is_file() {
                fail(format!(
                    "{} is missing: the benchmarks read the shared stories260k model there",
                    dir.display()
                ));
            }
            ("stories260k".into(), dir)
        }
        "llama-135m" => ("llama-135m".into(), ensure_random_135m()),
        other => {
            let dir = PathBuf::from(other);
            if !dir.join("config.json").is_file() {
                fail(format!(
                    "NEG_BENCH_MODEL={other:?}: expected stories260k, llama-135m or a checkpoint \
                     directory holding config.json"
                ));
            }
            let label = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into());
            (label, dir)
        }
    }
}

/// Renders the benchmark prompts for `model`: myriadlama zero-shot, test split, in file order,
/// the first `count` whose token length lies in [`MIN_TOKENS`, `MAX_TOKENS`] and whose four
/// answers are single tokens.
pub fn build_prompts(model: &HfModel, count: usize) -> (Vec<TargetedPrompt>, Vec<usize>) {
    let data_root = shared().join("data/mceval8k");
    let task = TaskRegistry::builtin()
        .get(TASK)
        .unwrap_or_else(|e| fail(format!("task {TASK}: {e}")));
    let data = Dataset::load(&DataSource::Dir(data_root.clone()), task).unwrap_or_else(|e| {
        fail(format!(
            "cannot load MCEval8K {TASK} from {} (the shared data must be there): {e}",
            data_root.display()
        ))
    });
    let items = TemplateSet::builtin()
        .render(task, &data, Split::Test, Shots::Zero, Some(400))
        .unwrap_or_else(|e| fail(format!("rendering {TASK}: {e}")));
    let mut prompts = Vec::new();
    let mut lengths = Vec::new();
    for item in &items {
        let Ok(ids) = model.encode(&item.prompt) else {
            continue;
        };
        if !(MIN_TOKENS..=MAX_TOKENS).contains(&ids.len()) {
            continue;
        }
        let targets: Result<Vec<u32>, _> = item
            .options
            .iter()
            .map(|o| model.target_token(&item.prompt, o))
            .collect();
        let Ok(targets) = targets else { continue };
        prompts.push(TargetedPrompt::new(item.prompt.clone(), targets));
        lengths.push(ids.len());
        if prompts.len() == count {
            break;
        }
    }
    if prompts.len() < count {
        fail(format!(
            "only {} of the first {} {TASK} test prompts are {MIN_TOKENS}-{MAX_TOKENS} tokens \
             long with single-token answers for this tokenizer; {count} needed",
            prompts.len(),
            items.len()
        ));
    }
    (prompts, lengths)
}

/// Reads the environment, loads the model, sets the thread count and renders the prompts.
pub fn setup() -> Setup {
    let (label, dir) = resolve_model(&env_or("NEG_BENCH_MODEL", "stories260k"));
    let threads = env_usize("NEG_BENCH_THREADS", 2);
    let batch = env_usize("NEG_BENCH_BATCH", 4);
    let device = DeviceSpec::parse(&env_or("NEG_BENCH_DEVICE", "cpu"))
        .unwrap_or_else(|e| fail(format!("NEG_BENCH_DEVICE: {e}")));
    let dtype = DType::parse(&env_or("NEG_BENCH_DTYPE", "f32"))
        .unwrap_or_else(|e| fail(format!("NEG_BENCH_DTYPE: {e}")));
    tch::set_num_threads(threads as i32);
    let opts = LoadOptions {
        device,
        dtype,
        ..LoadOptions::default()
    };
    let model = HfModel::load(&ModelSource::Dir(dir.clone()), &opts)
        .unwrap_or_else(|e| fail(format!("loading {}: {e}", dir.display())));
    let (prompts, lengths) = build_prompts(&model, batch);
    let ff_params = model.num_layers() * model.ff_width() * model.hidden_size() * 3;
    Setup {
        label,
        dir,
        threads,
        prompts,
        lengths,
        large: ff_params > 10_000_000,
        all: std::env::var("NEG_BENCH_ALL").is_ok_and(|v| v == "1"),
        model,
    }
}

/// Rust's probabilities and NeurGrad of the first prompt at 16 sampled neurons, which the
/// Python reference compares with its own (so both sides are known to compute the same thing).
fn check_values(setup: &Setup) -> serde_json::Value {
    let model = &setup.model;
    let neurons = neg_core::sampling::sample_neurons(model.num_layers(), model.ff_width(), 16, 1)
        .unwrap_or_else(|e| fail(format!("sampling check neurons: {e}")));
    let ng = neg_core::methods::neurgrad(model, &setup.prompts[..1])
        .unwrap_or_else(|e| fail(format!("NeurGrad of the first prompt: {e}")));
    let t = setup.prompts[0].targets.len();
    serde_json::json!({
        "neurons": neurons.iter().map(|n| [n.layer, n.neuron]).collect::<Vec<_>>(),
        "probs": (0..t).map(|j| ng.probs[[0, j]]).collect::<Vec<_>>(),
        "neurgrad": (0..t)
            .map(|j| neurons.iter().map(|n| ng.scores[[0, j, n.layer, n.neuron]]).collect())
            .collect::<Vec<Vec<f32>>>(),
    })
}

/// JSON of the prompts for the Python reference (`scripts/bench/reference_bench.py`).
pub fn prompts_json(setup: &Setup) -> serde_json::Value {
    serde_json::json!({
        "check": check_values(setup),
        "model": setup.label,
        "model_dir": setup.dir.display().to_string(),
        "threads": setup.threads,
        "task": TASK,
        "prompts": setup.prompts.iter().zip(&setup.lengths).map(|(p, &n)| serde_json::json!({
            "text": p.text,
            "targets": p.targets,
            "tokens": n,
        })).collect::<Vec<_>>(),
    })
}

/// Writes [`prompts_json`] to `target/bench-models/prompts-<label>.json`.
pub fn write_prompts(setup: &Setup) -> PathBuf {
    let path = bench_out().join(format!("prompts-{}.json", setup.label));
    if let Err(e) = neg_rs::output::write_json(&path, &prompts_json(setup)) {
        fail(format!("writing {}: {e}", path.display()));
    }
    path
}

/// The path relative to the workspace root when it lies inside it (for messages).
pub fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}
