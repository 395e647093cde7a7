//! `--model HuggingFaceTB/SmolLM2-135M-Instruct` (safetensors from the hub) through an offline
//! HF_HOME cache. The cached snapshot is made from the packaged GGUF file by transformers' own
//! GGUF loader (`parity/gguf_to_hf.py`), so the hub path and the GGUF path must agree exactly.
//! The only test of this binary: it sets HF_HOME and HF_HUB_OFFLINE for the process.

mod common;

use neg_hooks::{HfModel, LoadOptions, ModelSource};

#[test]
fn smollm2_hub_id_loads_offline_and_equals_the_gguf_file() {
    let gguf = common::smollm2_gguf();
    let home = tempfile::tempdir().unwrap();
    let rev = "12fd25f77366fa6b3b4b768ec3050bf629380bac";
    let repo = home
        .path()
        .join("hub/models--HuggingFaceTB--SmolLM2-135M-Instruct");
    let snap = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), rev).unwrap();
    common::run_python("gguf_to_hf.py", &[&gguf, &snap]);
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let source = ModelSource::parse("HuggingFaceTB/SmolLM2-135M-Instruct");
    assert!(matches!(source, ModelSource::Hub { .. }));
    let hub = HfModel::load(&source, &LoadOptions::default()).unwrap();
    let file = HfModel::load(&ModelSource::Gguf(gguf), &LoadOptions::default()).unwrap();
    let texts = ["The capital of France is", "Question: 2 + 2 =", "café ☃"];
    for t in texts {
        assert_eq!(hub.encode(t).unwrap(), file.encode(t).unwrap(), "{t:?}");
    }
    let a = hub.logits(&texts).unwrap();
    let b = file.logits(&texts).unwrap();
    let d = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    println!("hub safetensors vs GGUF: logits max |diff| {d:e}");
    assert!(d <= 1e-5, "logits differ by {d}");
}
