//! Hugging Face `config.json` parsing for the supported architectures.
//!
//! The raw structs mirror the JSON fields (with transformers' defaults); the public structs are
//! the resolved, validated values the model code uses.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{HooksError, Result};

/// A parsed and validated model configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    /// Llama-family decoder (`model_type` `llama` or `qwen2`).
    Llama(LlamaConfig),
    /// BERT masked LM (`model_type` `bert`).
    Bert(BertConfig),
}

impl ModelConfig {
    /// Reads and validates `config.json` at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(HooksError::ConfigMissing {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| HooksError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, path)
    }

    /// Parses config JSON text; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let parse_err = |source| HooksError::ConfigParse {
            path: path.to_path_buf(),
            source,
        };
        let value: Value = serde_json::from_str(text).map_err(parse_err)?;
        let model_type = match value.get("model_type") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(HooksError::ConfigField {
                    path: path.to_path_buf(),
                    field: "model_type".into(),
                    reason: format!("expected a string, found {other}"),
                })
            }
            None => {
                return Err(HooksError::ConfigField {
                    path: path.to_path_buf(),
                    field: "model_type".into(),
                    reason: "missing".into(),
                })
            }
        };
        match model_type.as_str() {
            "llama" | "qwen2" => {
                let family = if model_type == "qwen2" {
                    Family::Qwen2
                } else {
                    Family::Llama
                };
                let raw: RawLlama = serde_json::from_value(value).map_err(parse_err)?;
                Ok(ModelConfig::Llama(LlamaConfig::resolve(raw, family, path)?))
            }
            "bert" => {
                let raw: RawBert = serde_json::from_value(value).map_err(parse_err)?;
                Ok(ModelConfig::Bert(BertConfig::resolve(raw, path)?))
            }
            _ => Err(HooksError::UnsupportedModelType {
                model_type,
                path: path.to_path_buf(),
            }),
        }
    }

    /// The `model_type` string this config was read from.
    pub fn model_type(&self) -> &'static str {
        match self {
            ModelConfig::Llama(c) => match c.family {
                Family::Llama => "llama",
                Family::Qwen2 => "qwen2",
            },
            ModelConfig::Bert(_) => "bert",
        }
    }
}

/// Which Llama-shaped family a decoder belongs to (they differ in biases and defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Llama,
    Qwen2,
}

/// Rotary-embedding frequency scaling.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE (`rope_type` `default` or absent).
    None,
    /// `rope_type` `linear`: every inverse frequency divided by `factor`.
    Linear { factor: f64 },
    /// `rope_type` `llama3` (Llama 3.1+): low frequencies divided by `factor`, high ones kept,
    /// a smooth interpolation between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// Resolved RoPE settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub scaling: RopeScaling,
}

/// A resolved Llama / Qwen2 configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub family: Family,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope: RopeConfig,
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v projections (Qwen2 always; Llama when `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama `attention_bias`).
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub eos_token_ids: Vec<u32>,
}

#[derive(Clone, Debug, Deserialize)]
struct RawRope {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    rope_theta: Option<f64>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<usize>,
}

#[derive(Clone, Debug, Deserialize)]
struct RawLlama {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<RawRope>,
    /// transformers v5 folds `rope_theta` and `rope_scaling` into this.
    rope_parameters: Option<RawRope>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    eos_token_id: Option<Value>,
}

fn field_err(path: &Path, field: &str, reason: impl Into<String>) -> HooksError {
    HooksError::ConfigField {
        path: path.to_path_buf(),
        field: field.into(),
        reason: reason.into(),
    }
}

/// Upper bounds on the sizes a config may claim, far above any released model (Llama 3 405B:
/// hidden 16384, FF 53248, 126 layers, 128 heads, vocab 128256; context 131072): a value past
/// them is a typo or a hostile file, and would otherwise reach libtorch as an allocation that
/// aborts the process instead of returning an error.
const MAX_SIZES: [(&str, usize); 7] = [
    ("hidden_size", 1 << 17),
    ("intermediate_size", 1 << 19),
    ("num_hidden_layers", 1 << 10),
    ("num_attention_heads", 1 << 10),
    ("vocab_size", 1 << 22),
    ("max_position_embeddings", 1 << 24),
    ("head_dim", 1 << 12),
];

/// Fails naming the first of `fields` (name, value) that is zero or above its [`MAX_SIZES`]
/// bound. Both architectures need the same dimensions positive before any other check divides
/// by them.
fn require_positive<const N: usize>(path: &Path, fields: [(&str, usize); N]) -> Result<()> {
    for (name, v) in fields {
        if v == 0 {
            return Err(field_err(path, name, "must be positive"));
        }
        if let Some((_, max)) = MAX_SIZES.iter().find(|(n, _)| *n == name) {
            if v > *max {
                return Err(field_err(
                    path,
                    name,
                    format!("{v} is larger than any supported model (at most {max})"),
                ));
            }
        }
    }
    Ok(())
}

/// A normalisation epsilon: finite, > 0 and at most 0.1 (larger would swamp the variance it
/// stabilises; released models use 1e-12 .. 1e-5).
fn check_eps(path: &Path, field: &str, eps: f64) -> Result<f64> {
    if eps.is_finite() && eps > 0.0 && eps <= 0.1 {
        Ok(eps)
    } else {
        Err(field_err(path, field, format!("{eps} must be in (0, 0.1]")))
    }
}

/// A RoPE scaling factor: finite and > 0 (it divides frequencies).
fn check_factor(path: &Path, field: String, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(field_err(path, &field, format!("{v} must be > 0")))
    }
}

fn token_ids(v: &Option<Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().map(|x| x as u32))
            .collect(),
        _ => Vec::new(),
    }
}

impl LlamaConfig {
    fn resolve(raw: RawLlama, family: Family, path: &Path) -> Result<Self> {
        require_positive(
            path,
            [
                ("hidden_size", raw.hidden_size),
                ("intermediate_size", raw.intermediate_size),
                ("num_hidden_layers", raw.num_hidden_layers),
                ("num_attention_heads", raw.num_attention_heads),
                ("vocab_size", raw.vocab_size),
            ],
        )?;
        if let Some(act) = &raw.hidden_act {
            if act != "silu" && act != "swish" {
                return Err(field_err(
                    path,
                    "hidden_act",
                    format!("{act:?} is not supported (only silu)"),
                ));
            }
        }
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if num_kv_heads == 0 || !raw.num_attention_heads.is_multiple_of(num_kv_heads) {
            return Err(field_err(
                path,
                "num_key_value_heads",
                format!(
                    "{num_kv_heads} does not divide num_attention_heads {}",
                    raw.num_attention_heads
                ),
            ));
        }
        let head_dim = match raw.head_dim {
            Some(d) if d > 0 => d,
            Some(_) => return Err(field_err(path, "head_dim", "must be positive")),
            None => {
                if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
                    return Err(field_err(
                        path,
                        "hidden_size",
                        format!(
                            "{} is not divisible by num_attention_heads {}",
                            raw.hidden_size, raw.num_attention_heads
                        ),
                    ));
                }
                raw.hidden_size / raw.num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(field_err(path, "head_dim", "must be even for RoPE"));
        }
        require_positive(
            path,
            [
                ("head_dim", head_dim),
                (
                    "max_position_embeddings",
                    raw.max_position_embeddings.unwrap_or(2048),
                ),
            ],
        )?;
        let rope = resolve_rope(&raw, path)?;
        let default_eps = match family {
            Family::Llama => 1e-6,
            Family::Qwen2 => 1e-6,
        };
        let rms_norm_eps = check_eps(
            path,
            "rms_norm_eps",
            raw.rms_norm_eps.unwrap_or(default_eps),
        )?;
        Ok(LlamaConfig {
            family,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads,
            head_dim,
            vocab_size: raw.vocab_size,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            rms_norm_eps,
            rope,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            qkv_bias: family == Family::Qwen2 || raw.attention_bias.unwrap_or(false),
            o_bias: family == Family::Llama && raw.attention_bias.unwrap_or(false),
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            eos_token_ids: token_ids(&raw.eos_token_id),
        })
    }
}

fn resolve_rope(raw: &RawLlama, path: &Path) -> Result<RopeConfig> {
    let params = raw.rope_parameters.as_ref();
    let theta = params
        .and_then(|p| p.rope_theta)
        .or(raw.rope_theta)
        .unwrap_or(10000.0);
    if !(theta.is_finite() && theta > 0.0) {
        return Err(field_err(
            path,
            "rope_theta",
            format!("{theta} must be > 0"),
        ));
    }
    // v5 puts the scaling inside `rope_parameters`; older configs use `rope_scaling`.
    let (field, scaling) = match (&raw.rope_scaling, params) {
        (Some(s), _) => ("rope_scaling", Some(s)),
        (None, Some(p)) => ("rope_parameters", Some(p)),
        (None, None) => ("rope_scaling", None),
    };
    let scaling = match scaling {
        None => RopeScaling::None,
        Some(s) => {
            let kind = s.rope_type.as_deref().unwrap_or("default");
            let need = |name: &str, v: Option<f64>| {
                let v = v.ok_or_else(|| field_err(path, &format!("{field}.{name}"), "missing"))?;
                check_factor(path, format!("{field}.{name}"), v)
            };
            match kind {
                "default" => RopeScaling::None,
                "linear" => RopeScaling::Linear {
                    factor: need("factor", s.factor)?,
                },
                "llama3" => {
                    let low = need("low_freq_factor", s.low_freq_factor)?;
                    let high = need("high_freq_factor", s.high_freq_factor)?;
                    if high <= low {
                        return Err(field_err(
                            path,
                            &format!("{field}.high_freq_factor"),
                            format!("{high} must exceed low_freq_factor {low}"),
                        ));
                    }
                    RopeScaling::Llama3 {
                        factor: need("factor", s.factor)?,
                        low_freq_factor: low,
                        high_freq_factor: high,
                        original_max_position_embeddings: s
                            .original_max_position_embeddings
                            .ok_or_else(|| {
                                field_err(
                                    path,
                                    &format!("{field}.original_max_position_embeddings"),
                                    "missing",
                                )
                            })?,
                    }
                }
                other => {
                    return Err(field_err(
                        path,
                        &format!("{field}.rope_type"),
                        format!("{other:?} is not supported (default, linear, llama3)"),
                    ))
                }
            }
        }
    };
    Ok(RopeConfig { theta, scaling })
}

/// A resolved BERT configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    /// `gelu` (exact, erf) or `gelu_new`/`gelu_pytorch_tanh` (tanh approximation).
    pub gelu_approximate: bool,
}

#[derive(Clone, Debug, Deserialize)]
struct RawBert {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
}

impl BertConfig {
    fn resolve(raw: RawBert, path: &Path) -> Result<Self> {
        require_positive(
            path,
            [
                ("hidden_size", raw.hidden_size),
                ("intermediate_size", raw.intermediate_size),
                ("num_hidden_layers", raw.num_hidden_layers),
                ("num_attention_heads", raw.num_attention_heads),
                ("vocab_size", raw.vocab_size),
            ],
        )?;
        if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
            return Err(field_err(
                path,
                "hidden_size",
                format!(
                    "{} is not divisible by num_attention_heads {}",
                    raw.hidden_size, raw.num_attention_heads
                ),
            ));
        }
        require_positive(
            path,
            [(
                "max_position_embeddings",
                raw.max_position_embeddings.unwrap_or(512),
            )],
        )?;
        let layer_norm_eps =
            check_eps(path, "layer_norm_eps", raw.layer_norm_eps.unwrap_or(1e-12))?;
        let gelu_approximate = match raw.hidden_act.as_deref().unwrap_or("gelu") {
            "gelu" => false,
            "gelu_new" | "gelu_pytorch_tanh" => true,
            other => {
                return Err(field_err(
                    path,
                    "hidden_act",
                    format!("{other:?} is not supported (gelu, gelu_new)"),
                ))
            }
        };
        Ok(BertConfig {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(512),
            type_vocab_size: raw.type_vocab_size.unwrap_or(2),
            layer_norm_eps,
            gelu_approximate,
        })
    }
}

/// Where `config.json` lives for a model directory.
pub(crate) fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ModelConfig> {
        ModelConfig::from_json_str(json, Path::new("test/config.json"))
    }

    const BASE: &str = r#""model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100"#;

    fn llama(extra: &str) -> LlamaConfig {
        match parse(&format!("{{{BASE}{extra}}}")).unwrap() {
            ModelConfig::Llama(c) => c,
            other => panic!("expected llama, got {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_transformers() {
        let c = llama("");
        assert_eq!(c.num_kv_heads, 4);
        assert_eq!(c.head_dim, 16);
        assert_eq!(
            c.rope,
            RopeConfig {
                theta: 10000.0,
                scaling: RopeScaling::None
            }
        );
        assert!(!c.tie_word_embeddings && !c.qkv_bias && !c.o_bias);
        assert_eq!(c.rms_norm_eps, 1e-6);
    }

    #[test]
    fn llama3_scaling_in_legacy_and_v5_forms_agree() {
        let legacy = llama(
            r#", "rope_theta": 500000.0, "head_dim": 32, "num_key_value_heads": 2,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}"#,
        );
        let v5 = llama(
            r#", "head_dim": 32, "num_key_value_heads": 2,
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}"#,
        );
        assert_eq!(legacy, v5);
        assert_eq!(v5.rope.theta, 500000.0);
        assert_eq!(v5.head_dim, 32);
        assert!(matches!(v5.rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 32.0));
        // Old configs spell the kind `type`.
        let typed = llama(r#", "rope_scaling": {"type": "linear", "factor": 2.0}"#);
        assert_eq!(typed.rope.scaling, RopeScaling::Linear { factor: 2.0 });
        // v5 default form.
        let plain = llama(r#", "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}"#);
        assert_eq!(
            plain.rope,
            RopeConfig {
                theta: 1e6,
                scaling: RopeScaling::None
            }
        );
    }

    #[test]
    fn qwen2_has_qkv_biases_and_no_o_bias() {
        let json = format!("{{{}}}", BASE.replace("\"llama\"", "\"qwen2\""));
        let ModelConfig::Llama(c) = parse(&json).unwrap() else {
            panic!("expected qwen2")
        };
        assert_eq!(c.family, Family::Qwen2);
        assert!(c.qkv_bias && !c.o_bias);
    }

    #[test]
    fn invalid_fields_are_named() {
        let err = |extra: &str| parse(&format!("{{{BASE}{extra}}}")).unwrap_err();
        let field = |e: HooksError| match e {
            HooksError::ConfigField { field, .. } => field,
            other => panic!("expected ConfigField, got {other}"),
        };
        assert_eq!(
            field(err(r#", "num_key_value_heads": 3"#)),
            "num_key_value_heads"
        );
        assert_eq!(field(err(r#", "hidden_act": "gelu""#)), "hidden_act");
        assert_eq!(
            field(err(
                r#", "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}"#
            )),
            "rope_scaling.rope_type"
        );
        assert_eq!(
            field(err(
                r#", "rope_parameters": {"rope_type": "llama3", "factor": 8.0}"#
            )),
            "rope_parameters.low_freq_factor"
        );
        assert_eq!(field(err(r#", "rope_theta": -1.0"#)), "rope_theta");
        // Bounds that keep a typo or a hostile file away from libtorch's allocator, and
        // numerics that would only show later as non-finite probabilities.
        for (extra, name) in [
            (r#", "rms_norm_eps": 1e300"#, "rms_norm_eps"),
            (r#", "rms_norm_eps": -1e-6"#, "rms_norm_eps"),
            (r#", "rms_norm_eps": 0.0"#, "rms_norm_eps"),
            (
                r#", "max_position_embeddings": 0"#,
                "max_position_embeddings",
            ),
            (
                r#", "rope_scaling": {"rope_type": "linear", "factor": 0.0}"#,
                "rope_scaling.factor",
            ),
            (
                r#", "rope_scaling": {"rope_type": "linear", "factor": -2.0}"#,
                "rope_scaling.factor",
            ),
        ] {
            assert_eq!(field(err(extra)), name, "{extra}");
        }
        let huge = parse(&format!(
            "{{{}}}",
            BASE.replace(
                r#""num_hidden_layers": 2"#,
                r#""num_hidden_layers": 1000000000000"#
            )
        ))
        .unwrap_err();
        assert_eq!(field(huge), "num_hidden_layers");
        assert!(
            matches!(parse(r#"{"hidden_size": 3}"#), Err(HooksError::ConfigField { field, .. }) if field == "model_type")
        );
        assert!(
            matches!(parse(r#"{"model_type": "t5"}"#), Err(HooksError::UnsupportedModelType { model_type, .. }) if model_type == "t5")
        );
        let e = parse(r#"{"model_type": "llama", "hidden_size": "wide"}"#).unwrap_err();
        assert!(
            matches!(&e, HooksError::ConfigParse { path, .. } if path.ends_with("config.json"))
        );
        assert!(
            e.to_string().contains("hidden_size") || e.to_string().contains("invalid type"),
            "{e}"
        );
    }

    #[test]
    fn bert_config_reads_activation_and_defaults() {
        let c = parse(
            r#"{"model_type": "bert", "vocab_size": 30, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 128}"#,
        )
        .unwrap();
        let ModelConfig::Bert(b) = c else {
            panic!("expected bert")
        };
        assert_eq!(
            (
                b.max_position_embeddings,
                b.type_vocab_size,
                b.layer_norm_eps
            ),
            (512, 2, 1e-12)
        );
        assert!(!b.gelu_approximate);
        let e = parse(
            r#"{"model_type": "bert", "vocab_size": 30, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 128, "hidden_act": "relu"}"#,
        );
        assert!(matches!(e, Err(HooksError::ConfigField { field, .. }) if field == "hidden_act"));
    }
}
