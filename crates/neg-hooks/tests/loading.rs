//! Loading: hub cache (offline), sharded safetensors, dtypes, devices, and every bad input the
//! issue lists as a typed error naming the thing at fault.

mod common;

use std::path::{Path, PathBuf};

use neg_core::{AdapterError, ModelAdapter, NeuronId, Patch, PatchOp, TargetedPrompt};
use neg_hooks::{DType, DeviceSpec, HfModel, HooksError, LoadOptions, ModelSource};
use tch::Tensor;

const FILES: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];

/// A copy of stories260k in a temp dir (so tests can break it).
fn stories_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = common::stories_dir();
    for f in FILES.iter().chain(["model.safetensors"].iter()) {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> HooksError {
    HfModel::load(
        &ModelSource::Dir(dir.to_path_buf()),
        &LoadOptions::default(),
    )
    .unwrap_err()
}

fn prompt(text: &str) -> TargetedPrompt {
    TargetedPrompt::new(text, vec![1, 2])
}

#[test]
fn hub_id_loads_offline_from_an_hf_home_cache() {
    // The only test of this binary that touches HF_HOME / HF_HUB_OFFLINE.
    let home = tempfile::tempdir().unwrap();
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let repo = home.path().join("hub/models--karpathy--stories260k");
    let snap = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    // The cache's refs may end with a newline.
    std::fs::write(repo.join("refs/main"), format!("{rev}\n")).unwrap();
    let src = common::stories_dir();
    for f in FILES.iter().chain(["model.safetensors"].iter()) {
        std::fs::copy(src.join(f), snap.join(f)).unwrap();
    }
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let source = ModelSource::parse("karpathy/stories260k");
    assert_eq!(
        source,
        ModelSource::Hub {
            id: "karpathy/stories260k".into(),
            revision: None
        }
    );
    let hub = HfModel::load(&source, &LoadOptions::default()).unwrap();
    assert_eq!(hub.model_id(), "karpathy/stories260k");
    let local = common::stories();
    let texts = ["Once upon a time", "Lily"];
    assert_eq!(hub.logits(&texts).unwrap(), local.logits(&texts).unwrap());
    // A commit revision resolves the snapshot directly.
    let pinned = HfModel::load(
        &ModelSource::parse(&format!("karpathy/stories260k@{rev}")),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(pinned.model_id(), format!("karpathy/stories260k@{rev}"));
    // A repository that is not cached is an error naming it, not a download attempt.
    let err = HfModel::load(
        &ModelSource::parse("nobody/absent-model"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, HooksError::Hub { id, .. } if id == "nobody/absent-model"),
        "{err}"
    );
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn sharded_checkpoint_equals_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::stories_dir();
    for f in FILES {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let tensors = Tensor::read_safetensors(src.join("model.safetensors")).unwrap();
    let (a, b): (Vec<_>, Vec<_>) = tensors.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let mut map = serde_json::Map::new();
    for (name, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let part: Vec<(String, Tensor)> = part
            .into_iter()
            .map(|(_, (n, t))| (n.clone(), t.shallow_clone()))
            .collect();
        for (n, _) in &part {
            map.insert(n.clone(), serde_json::Value::String(name.into()));
        }
        Tensor::write_safetensors(&part, dir.path().join(name)).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let sharded = common::load(dir.path());
    let single = common::stories();
    let texts = ["Once upon a time", "Lily went"];
    assert_eq!(
        sharded.logits(&texts).unwrap(),
        single.logits(&texts).unwrap()
    );
    // A shard listed in the index but absent is an error naming the file.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = load_err(dir.path());
    assert!(
        matches!(&err, HooksError::Safetensors { path, .. } if path.ends_with("model-00002-of-00002.safetensors")),
        "{err}"
    );
}

#[test]
fn half_precision_on_cpu_is_close_to_f32() {
    let f32m = common::stories();
    let p = TargetedPrompt::new(
        "Once upon a time, there was a little",
        common::top_tokens(&f32m, "Once upon a time, there was a little", 2),
    );
    let reference = f32m.gradients(std::slice::from_ref(&p)).unwrap();
    for dtype in [DType::BF16, DType::F16] {
        let opts = LoadOptions {
            dtype,
            ..LoadOptions::default()
        };
        let m = HfModel::load(&ModelSource::Dir(common::stories_dir()), &opts).unwrap();
        let g = m.gradients(std::slice::from_ref(&p)).unwrap();
        for (x, y) in g.probs.iter().zip(reference.probs.iter()) {
            assert!(
                (x - y).abs() <= 0.05 * y.abs() + 1e-3,
                "{dtype:?}: probability {x} vs f32 {y}"
            );
        }
        let rel = common::rel_err(g.grads.iter(), reference.grads.iter());
        assert!(rel <= 0.1, "{dtype:?}: gradients relative error {rel}");
        let sweep = m
            .patched_probs(
                &p,
                &[
                    vec![],
                    vec![Patch::ff(NeuronId::new(1, 2), PatchOp::Add(1.0))],
                ],
            )
            .unwrap();
        assert!(sweep.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn cuda_matches_cpu_when_available() {
    if !neg_hooks::cuda_available() {
        println!("SKIPPED cuda_matches_cpu_when_available: libtorch reports no CUDA device on this machine");
        return;
    }
    let cpu = common::stories();
    let p = TargetedPrompt::new(
        "Once upon a time, there was a little",
        common::top_tokens(&cpu, "Once upon a time, there was a little", 2),
    );
    let c = cpu.gradients(std::slice::from_ref(&p)).unwrap();
    for dtype in [DType::F32, DType::BF16] {
        let opts = LoadOptions {
            device: DeviceSpec::Cuda(0),
            dtype,
            ..LoadOptions::default()
        };
        let m = HfModel::load(&ModelSource::Dir(common::stories_dir()), &opts).unwrap();
        let g = m.gradients(std::slice::from_ref(&p)).unwrap();
        let (tol_p, tol_g) = if dtype == DType::F32 {
            (1e-4, 1e-3)
        } else {
            (5e-2, 0.1)
        };
        for (x, y) in g.probs.iter().zip(c.probs.iter()) {
            assert!(
                (x - y).abs() <= tol_p * y.abs().max(1e-2),
                "{dtype:?}: {x} vs {y}"
            );
        }
        let rel = common::rel_err(g.grads.iter(), c.grads.iter());
        assert!(rel <= tol_g, "{dtype:?}: gradients relative error {rel}");
        let v = vec![
            vec![],
            vec![Patch::ff(NeuronId::new(2, 3), PatchOp::Add(0.5))],
        ];
        let fast = m.patched_probs(&p, &v).unwrap();
        let naive = m.patched_probs_naive(&p, &v).unwrap();
        let d = fast
            .iter()
            .zip(naive.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            d <= if dtype == DType::F32 { 1e-5 } else { 1e-2 },
            "{dtype:?}: sweep vs naive {d}"
        );
        let gen = m.generate("", 20).unwrap();
        assert_eq!(gen.token_ids.len(), 20);
    }
}

#[test]
fn nonexistent_cuda_device_is_a_typed_error() {
    let opts = LoadOptions {
        device: DeviceSpec::Cuda(97),
        ..LoadOptions::default()
    };
    let err = HfModel::load(&ModelSource::Dir(common::stories_dir()), &opts).unwrap_err();
    assert!(
        matches!(&err, HooksError::Device { spec, .. } if spec == "cuda:97"),
        "{err}"
    );
    assert!(
        matches!(DeviceSpec::parse("gpu"), Err(HooksError::Device { spec, .. }) if spec == "gpu")
    );
    assert_eq!(DeviceSpec::parse("cuda:3").unwrap(), DeviceSpec::Cuda(3));
    assert!(matches!(DType::parse("int8"), Err(HooksError::DType { spec }) if spec == "int8"));
}

/// With `defer_weights`, a load reads config and tokenizer only. Everything that needs no
/// weights (tokens, shapes, batching hints, answer ids) answers as the eagerly loaded model
/// does without reading them; the first call that runs the model reads them, and its numbers
/// are the eager model's, bit for bit.
#[test]
fn deferred_weights_load_at_first_use_and_give_the_eager_numbers() {
    let source = ModelSource::Dir(common::stories_dir());
    let eager = HfModel::load(&source, &LoadOptions::default()).unwrap();
    let lazy = HfModel::load(
        &source,
        &LoadOptions {
            defer_weights: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert!(eager.weights_loaded());
    assert!(!lazy.weights_loaded());
    let story =
        "Once upon a time, there was a little girl named Lily. She liked to play in the park";
    let texts = [
        format!("{story}. One day, she saw a big dog"),
        format!("{story} with her mom"),
    ];
    let texts = [texts[0].as_str(), texts[1].as_str()];
    for t in texts {
        assert_eq!(lazy.encode(t).unwrap(), eager.encode(t).unwrap());
        assert_eq!(lazy.token_count(t), eager.token_count(t));
        assert_eq!(
            lazy.target_token(t, ".").unwrap(),
            eager.target_token(t, ".").unwrap()
        );
    }
    let shared = lazy.shared_prefix_len(&texts);
    assert!(shared > 0, "the two prompts share their first sentences");
    assert_eq!(shared, eager.shared_prefix_len(&texts));
    assert_eq!(
        (
            lazy.num_layers(),
            lazy.ff_width(),
            lazy.kind(),
            lazy.files()
        ),
        (
            eager.num_layers(),
            eager.ff_width(),
            eager.kind(),
            eager.files()
        )
    );
    assert!(!lazy.weights_loaded(), "nothing above runs the model");

    let target = eager.target_token(texts[0], ".").unwrap();
    let prompts: Vec<TargetedPrompt> = texts
        .iter()
        .map(|t| TargetedPrompt::new(*t, vec![target]))
        .collect();
    let got = lazy.gradients(&prompts).unwrap();
    assert!(lazy.weights_loaded());
    let want = eager.gradients(&prompts).unwrap();
    assert_eq!(got.grads, want.grads);
    assert_eq!(got.probs, want.probs);
    assert_eq!(got.activations, want.activations);
}

/// A deferred model on a device this machine lacks still loads (a merge job on a CPU node
/// whose shards ran on GPUs), and the first call that runs it, and every one after, returns
/// the typed device error.
#[test]
fn deferred_weights_on_a_missing_device_fail_at_first_use_with_the_device_error() {
    let opts = LoadOptions {
        device: DeviceSpec::Cuda(97),
        defer_weights: true,
        ..LoadOptions::default()
    };
    let m = HfModel::load(&ModelSource::Dir(common::stories_dir()), &opts).unwrap();
    let text = "Once upon a time";
    assert!(m.encode(text).is_ok());
    let target = m.target_token(text, ",").unwrap();
    let prompt = TargetedPrompt::new(text, vec![target]);
    for _ in 0..2 {
        let err = m.forward(std::slice::from_ref(&prompt)).unwrap_err();
        let hooks = match &err {
            AdapterError::Backend(b) => b.downcast_ref::<HooksError>(),
            _ => None,
        };
        assert!(
            matches!(hooks, Some(HooksError::Device { spec, .. }) if spec == "cuda:97"),
            "{err:?}"
        );
        assert!(!m.weights_loaded());
    }
}

#[test]
fn missing_or_malformed_config_is_a_typed_error() {
    let dir = stories_copy();
    let cfg = dir.path().join("config.json");
    std::fs::remove_file(&cfg).unwrap();
    assert!(matches!(load_err(dir.path()), HooksError::ConfigMissing { path } if path == cfg));

    std::fs::write(&cfg, "{ \"model_type\": \"llama\", ").unwrap();
    assert!(matches!(load_err(dir.path()), HooksError::ConfigParse { path, .. } if path == cfg));

    std::fs::write(&cfg, r#"{"model_type": "llama", "hidden_size": 64}"#).unwrap();
    let err = load_err(dir.path());
    assert!(
        matches!(&err, HooksError::ConfigParse { .. })
            && err.to_string().contains("intermediate_size"),
        "{err}"
    );

    std::fs::write(&cfg, r#"{"model_type": "gpt2", "n_embd": 64}"#).unwrap();
    assert!(
        matches!(load_err(dir.path()), HooksError::UnsupportedModelType { model_type, .. } if model_type == "gpt2")
    );

    let original = std::fs::read_to_string(common::stories_dir().join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
    std::fs::write(&cfg, v.to_string()).unwrap();
    assert!(
        matches!(load_err(dir.path()), HooksError::ConfigField { field, .. } if field == "rope_scaling.rope_type")
    );
    v["rope_scaling"] =
        serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0});
    std::fs::write(&cfg, v.to_string()).unwrap();
    assert!(
        matches!(load_err(dir.path()), HooksError::ConfigField { field, .. } if field == "rope_scaling.high_freq_factor")
    );

    // Sizes and numerics that used to pass: a layer count that aborted on allocation, an eps
    // that only showed later as non-finite probabilities, a zero context.
    for (field, value) in [
        ("num_hidden_layers", serde_json::json!(1_000_000_000_000u64)),
        ("rms_norm_eps", serde_json::json!(1e300)),
        ("rms_norm_eps", serde_json::json!(-1e-5)),
        ("max_position_embeddings", serde_json::json!(0)),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        v[field] = value;
        std::fs::write(&cfg, v.to_string()).unwrap();
        let err = load_err(dir.path());
        assert!(
            matches!(&err, HooksError::ConfigField { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }

    // Fewer layers in the config than in the checkpoint: an error, not a truncated model.
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    let layers = v["num_hidden_layers"].as_u64().unwrap();
    v["num_hidden_layers"] = serde_json::json!(layers - 1);
    std::fs::write(&cfg, v.to_string()).unwrap();
    let err = load_err(dir.path());
    assert!(
        matches!(&err, HooksError::ExtraLayer { layer, num_layers, .. }
            if *layer as u64 == layers - 1 && *num_layers as u64 == layers - 1),
        "{err}"
    );
}

/// Rewrites the copy's weights with `edit` applied to the tensor list.
fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let path: PathBuf = dir.join("model.safetensors");
    let mut tensors = Tensor::read_safetensors(&path).unwrap();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, &path).unwrap();
}

#[test]
fn missing_or_misshapen_weight_is_a_typed_error() {
    let dir = stories_copy();
    edit_weights(dir.path(), |t| {
        t.retain(|(n, _)| n != "model.layers.3.mlp.up_proj.weight")
    });
    assert!(
        matches!(load_err(dir.path()), HooksError::MissingWeight { name, .. } if name == "model.layers.3.mlp.up_proj.weight")
    );

    let dir = stories_copy();
    edit_weights(dir.path(), |t| {
        for (n, w) in t.iter_mut() {
            if n == "model.layers.1.self_attn.k_proj.weight" {
                *w = w.narrow(0, 0, 16);
            }
        }
    });
    let err = load_err(dir.path());
    assert!(
        matches!(&err, HooksError::WeightShape { name, expected, actual } if name == "model.layers.1.self_attn.k_proj.weight" && expected == &[32, 64] && actual == &[16, 64]),
        "{err}"
    );

    // Integer weights of the right shape: not this model's checkpoint (before, they were cast
    // to float and computed with).
    let dir = stories_copy();
    edit_weights(dir.path(), |t| {
        for (n, w) in t.iter_mut() {
            if n == "model.layers.2.mlp.down_proj.weight" {
                *w = w.to_kind(tch::Kind::Int64);
            }
        }
    });
    let err = load_err(dir.path());
    assert!(
        matches!(&err, HooksError::WeightDtype { name, actual, .. } if name == "model.layers.2.mlp.down_proj.weight" && actual == "Int64"),
        "{err}"
    );
    assert!(
        err.to_string().contains("not a floating-point type"),
        "{err}"
    );

    let dir = stories_copy();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    assert!(matches!(load_err(dir.path()), HooksError::NoWeights { .. }));
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    assert!(matches!(
        load_err(dir.path()),
        HooksError::Safetensors { .. }
    ));
}

fn invalid(e: AdapterError, needle: &str) {
    match e {
        AdapterError::InvalidInput(msg) => {
            assert!(msg.contains(needle), "{msg:?} does not name {needle:?}")
        }
        other => panic!("expected InvalidInput naming {needle:?}, got {other:?}"),
    }
}

#[test]
fn bad_causal_inputs_are_errors_naming_the_thing() {
    let m = common::stories();
    let long = "Once upon a time there was a dog. ".repeat(60);
    invalid(
        m.forward(&[prompt(&long)]).unwrap_err(),
        "more than the model's context of 512",
    );
    invalid(
        m.gradients(&[prompt("ok"), prompt(&long)]).unwrap_err(),
        "context",
    );
    let p = prompt("Once upon a time");
    invalid(
        m.patched_probs(
            &p,
            &[vec![Patch::ff(NeuronId::new(5, 0), PatchOp::Add(1.0))]],
        )
        .unwrap_err(),
        "layer 5, index 0",
    );
    invalid(
        m.patched_probs(
            &p,
            &[vec![Patch::ff(NeuronId::new(0, 172), PatchOp::Add(1.0))]],
        )
        .unwrap_err(),
        "layer 0, index 172",
    );
    invalid(
        m.patched_probs_naive(&p, &[vec![Patch::residual(1, 64, PatchOp::Set(0.0))]])
            .unwrap_err(),
        "residual unit (layer 1, index 64)",
    );
    invalid(m.scaled_gradients(&p, &[9], &[1.0]).unwrap_err(), "layer 9");
    invalid(
        m.forward(&[TargetedPrompt::new("x", vec![512])])
            .unwrap_err(),
        "token id 512",
    );
    invalid(
        m.gradients(&[prompt("a"), TargetedPrompt::new("b", vec![1])])
            .unwrap_err(),
        "prompt 1 has 1 targets",
    );
    invalid(
        m.target_token("Once upon a", " princess").unwrap_err(),
        "\" princess\"",
    );
    invalid(
        m.target_token("Once upon a", "").unwrap_err(),
        "not exactly one token",
    );
    // The answer's continuation piece is the target (no leading space in the answer).
    let t = m.target_token("Once upon a", " time").unwrap();
    assert_eq!(m.tokenizer().id_to_token(t).as_deref(), Some("▁time"));
}

#[test]
fn bad_masked_inputs_are_errors_naming_the_thing() {
    let dir = tempfile::tempdir().unwrap();
    common::run_python("make_tiny.py", &[Path::new("bert"), dir.path()]);
    let m = common::load(dir.path());
    let t = vec![5, 6];
    invalid(
        m.forward(&[TargetedPrompt::new(
            "paris is the capital of france",
            t.clone(),
        )])
        .unwrap_err(),
        "has 0 [MASK] tokens",
    );
    invalid(
        m.gradients(&[TargetedPrompt::new(
            "[MASK] is the capital of [MASK]",
            t.clone(),
        )])
        .unwrap_err(),
        "has 2 [MASK] tokens",
    );
    let long = format!("{} [MASK]", "the cat sat on the mat ".repeat(20));
    invalid(
        m.forward(&[TargetedPrompt::new(long, t.clone())])
            .unwrap_err(),
        "context of 64",
    );
    invalid(
        m.target_token("[MASK]", "paris france").unwrap_err(),
        "paris france",
    );
    assert!(matches!(
        m.generate("[MASK]", 3),
        Err(AdapterError::Unsupported { .. })
    ));
}

#[test]
fn a_token_id_outside_the_vocabulary_is_a_typed_error_not_an_abort() {
    // A tokenizer.json that does not belong to the model: an added token past the 512 rows of
    // the embedding (`tokenizers` numbers it 512). libtorch's `embedding` would abort on it.
    let dir = stories_copy();
    let path = dir.path().join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    tok["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": 600, "content": "<zz>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    std::fs::write(&path, tok.to_string()).unwrap();
    let model = common::load(dir.path());
    assert!(model.encode("Once upon a time").is_ok());
    let e = model.encode("Once upon a <zz> time").unwrap_err();
    assert!(
        matches!(
            e,
            HooksError::TokenOutOfVocab {
                token: 512,
                vocab: 512,
                ..
            }
        ),
        "{e}"
    );
    let e = model.logits(&["Once upon a <zz> time"]).unwrap_err();
    assert!(
        e.to_string().contains("outside the model's vocabulary"),
        "{e}"
    );
}
