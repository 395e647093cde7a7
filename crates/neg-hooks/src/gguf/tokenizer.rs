//! A `tokenizers::Tokenizer` built from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Two vocabulary types:
//! - `gpt2`: byte-level BPE. The text is split by the pre-tokenizer `tokenizer.ggml.pre` names
//!   (`gpt-2`/`default`: GPT-2's regex; `smollm`: digits one by one, then GPT-2's regex, as
//!   SmolLM's own `tokenizer.json` and llama.cpp do; `llama-bpe`/`llama3`: Llama 3's regex;
//!   `qwen2`: Qwen2's regex), then BPE with the file's merges.
//! - `llama`: SentencePiece BPE with byte fallback (`▁` for spaces, a leading `▁`), merges from
//!   `tokenizer.ggml.merges` or, as transformers does, recovered from the scores.
//!
//! Tokens typed control (3) are special added tokens, user-defined ones (4) plain added tokens;
//! `add_bos_token`/`add_eos_token` decide the post-processor. Anything else, an unknown
//! `tokenizer.ggml.model` or `tokenizer.ggml.pre`, is an error naming it: a silent guess would
//! give wrong ids that nothing downstream could notice. The result is checked id for id against
//! transformers' GGUF tokenizer (tests/gguf_parity.rs).
//!
//! Why build the tokenizer's JSON form: it is the format `tokenizers` documents and users know
//! (`tokenizer.json`), so what we build can be written out and compared with a model's own.

use std::collections::HashMap;

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use super::{GgufError, GgufFile, MetaValue};

/// GPT-2's split (`tokenizers`' ByteLevel `use_regex`).
const BYTE_LEVEL_SPLIT: &str = "gpt2";

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Pre-tokenizer names (`tokenizer.ggml.pre`) this builder knows, and the split each means.
const PRE_TOKENIZERS: &[(&str, &str)] = &[
    ("default", BYTE_LEVEL_SPLIT),
    ("gpt-2", BYTE_LEVEL_SPLIT),
    ("gpt2", BYTE_LEVEL_SPLIT),
    ("smollm", "smollm"),
    ("llama-bpe", LLAMA3_SPLIT),
    ("llama3", LLAMA3_SPLIT),
    ("llama-v3", LLAMA3_SPLIT),
    ("qwen2", QWEN2_SPLIT),
];

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The tokenizer the file describes.
pub fn build(file: &GgufFile) -> Result<Tokenizer, GgufError> {
    let json = tokenizer_json(file)?;
    Tokenizer::from_bytes(json.to_string().as_bytes()).map_err(|e| GgufError::Format {
        path: file.path().to_path_buf(),
        field: "tokenizer.ggml".into(),
        reason: format!("the tokenizer it describes is not valid: {e}"),
    })
}

/// The tokenizer in `tokenizer.json` form.
pub fn tokenizer_json(file: &GgufFile) -> Result<Value, GgufError> {
    let path = file.path();
    let model = file.str("tokenizer.ggml.model")?;
    let tokens = file
        .array_opt("tokenizer.ggml.tokens", "strings", |v| {
            v.as_str().map(str::to_string)
        })?
        .ok_or_else(|| GgufError::MissingKey {
            path: path.to_path_buf(),
            key: "tokenizer.ggml.tokens".into(),
        })?;
    let types = file
        .array_opt("tokenizer.ggml.token_type", "integers", |v| match v {
            MetaValue::I32(x) => Some(*x as i64),
            other => other.as_u64().map(|x| x as i64),
        })?
        .unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(GgufError::Format {
            path: path.to_path_buf(),
            field: "tokenizer.ggml.token_type".into(),
            reason: format!("{} entries for {} tokens", types.len(), tokens.len()),
        });
    }
    let merges = file.array_opt("tokenizer.ggml.merges", "strings", |v| {
        v.as_str().map(str::to_string)
    })?;
    let special_id = |key: &str| -> Result<Option<u32>, GgufError> {
        let full = format!("tokenizer.ggml.{key}");
        match file.u64_opt(&full)? {
            None => Ok(None),
            Some(id) if (id as usize) < tokens.len() => Ok(Some(id as u32)),
            Some(id) => Err(GgufError::Format {
                path: path.to_path_buf(),
                field: full,
                reason: format!("token id {id} is outside the {} tokens", tokens.len()),
            }),
        }
    };
    let bos = special_id("bos_token_id")?;
    let eos = special_id("eos_token_id")?;
    let unk = special_id("unknown_token_id")?;
    let add_bos = file.bool_opt("tokenizer.ggml.add_bos_token")?;
    let add_eos = file
        .bool_opt("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);

    let (model_json, pre, decoder, spelled, add_bos) = match model {
        "gpt2" => {
            let pre_name = file.str_opt("tokenizer.ggml.pre")?.unwrap_or("default");
            let split = PRE_TOKENIZERS
                .iter()
                .find(|(n, _)| *n == pre_name)
                .map(|(_, s)| *s)
                .ok_or_else(|| GgufError::Unsupported {
                    path: path.to_path_buf(),
                    field: "tokenizer.ggml.pre".into(),
                    value: pre_name.into(),
                    supported: PRE_TOKENIZERS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let table = byte_to_char();
            let spelled: Vec<String> = tokens
                .iter()
                .map(|t| byte_level_spelling(t, &table))
                .collect();
            let merges = merges.ok_or_else(|| GgufError::MissingKey {
                path: path.to_path_buf(),
                key: "tokenizer.ggml.merges".into(),
            })?;
            let model = bpe_json(&spelled, split_merges(file, &merges)?, None, false);
            let decoder = json!({"type": "ByteLevel", "add_prefix_space": true,
                                 "trim_offsets": true, "use_regex": true});
            (
                model,
                byte_level_pre(split),
                decoder,
                spelled,
                add_bos.unwrap_or(false),
            )
        }
        "llama" => {
            let merges = match merges {
                Some(m) => split_merges(file, &m)?,
                None => {
                    let scores = file
                        .array_opt("tokenizer.ggml.scores", "numbers", MetaValue::as_f64)?
                        .ok_or_else(|| GgufError::MissingKey {
                            path: path.to_path_buf(),
                            key: "tokenizer.ggml.scores (or tokenizer.ggml.merges)".into(),
                        })?;
                    if scores.len() != tokens.len() {
                        return Err(GgufError::Format {
                            path: path.to_path_buf(),
                            field: "tokenizer.ggml.scores".into(),
                            reason: format!("{} scores for {} tokens", scores.len(), tokens.len()),
                        });
                    }
                    merges_from_scores(&tokens, &scores)
                }
            };
            let unk_token = unk.map(|i| tokens[i as usize].clone());
            let model = bpe_json(&tokens, merges, unk_token, true);
            let prefix = file
                .bool_opt("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true);
            let pre = json!({"type": "Metaspace", "replacement": "\u{2581}",
                "prepend_scheme": if prefix { "always" } else { "never" }, "split": false});
            let mut steps = vec![
                json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if prefix {
                steps.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            let decoder = json!({"type": "Sequence", "decoders": steps});
            // llama.cpp adds BOS to a SentencePiece vocabulary unless the file says otherwise.
            (model, pre, decoder, tokens.clone(), add_bos.unwrap_or(true))
        }
        other => {
            return Err(GgufError::Unsupported {
                path: path.to_path_buf(),
                field: "tokenizer.ggml.model".into(),
                value: other.into(),
                supported: "gpt2 (byte-level BPE), llama (SentencePiece BPE)".into(),
            })
        }
    };

    let byte_level = model == "gpt2";
    let mut added = Vec::new();
    for (id, t) in types.iter().enumerate() {
        let token = &tokens[id];
        let special = match *t {
            // In a byte-level vocabulary a control token outside the byte alphabet is a
            // llama.cpp mislabel (transformers skips those too).
            CONTROL => !byte_level || spelled[id] == *token,
            USER_DEFINED => false,
            2 if !byte_level => true, // <unk> of a SentencePiece vocabulary
            _ => continue,
        };
        if *t == CONTROL && !special {
            continue;
        }
        added.push(
            json!({"id": id, "content": token, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": special}),
        );
    }
    let post = template(
        &tokens,
        add_bos.then_some(bos).flatten(),
        add_eos.then_some(eos).flatten(),
    );
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": post,
        "decoder": decoder,
        "model": model_json,
    }))
}

fn bpe_json(
    tokens: &[String],
    merges: Vec<(String, String)>,
    unk: Option<String>,
    spm: bool,
) -> Value {
    // Later duplicates must not shadow earlier ids (llama.cpp vocabularies hold a few).
    let mut vocab = serde_json::Map::new();
    for (id, t) in tokens.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(json!(id));
    }
    json!({
        "type": "BPE", "dropout": null, "unk_token": unk,
        "continuing_subword_prefix": if spm { Value::Null } else { json!("") },
        "end_of_word_suffix": if spm { Value::Null } else { json!("") },
        "fuse_unk": spm, "byte_fallback": spm, "ignore_merges": false,
        "vocab": vocab,
        "merges": merges.into_iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
    })
}

fn byte_level_pre(split: &str) -> Value {
    let byte_level = |use_regex: bool| {
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
               "use_regex": use_regex})
    };
    match split {
        BYTE_LEVEL_SPLIT => byte_level(true),
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        regex => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated",
             "invert": false},
            byte_level(false)]}),
    }
}

/// A post-processor adding BOS and/or EOS around each sequence.
fn template(tokens: &[String], bos: Option<u32>, eos: Option<u32>) -> Value {
    let mut specials = serde_json::Map::new();
    let mut piece = |id: u32| {
        let t = &tokens[id as usize];
        specials.insert(t.clone(), json!({"id": t, "ids": [id], "tokens": [t]}));
        json!({"SpecialToken": {"id": t, "type_id": 0}})
    };
    let (b, e) = (bos.map(&mut piece), eos.map(&mut piece));
    let seq = |id: &str| json!({"Sequence": {"id": id, "type_id": 0}});
    let wrap = |s: Value| -> Vec<Value> {
        b.iter()
            .cloned()
            .chain([s])
            .chain(e.iter().cloned())
            .collect()
    };
    let single = wrap(seq("A"));
    let mut pair = single.clone();
    pair.extend(wrap(seq("B")));
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
}

/// `"a b"` merge strings as pairs, split at the first space.
fn split_merges(file: &GgufFile, merges: &[String]) -> Result<Vec<(String, String)>, GgufError> {
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| GgufError::Format {
                    path: file.path().to_path_buf(),
                    field: format!("tokenizer.ggml.merges[{i}]"),
                    reason: format!("{m:?} is not two tokens separated by a space"),
                })
        })
        .collect()
}

/// Merges recovered from SentencePiece scores, as transformers' `generate_merges` does: every
/// split of every token into two vocabulary pieces, ordered by the token's score (highest first),
/// then by the pieces' lengths; ties keep vocabulary order.
fn merges_from_scores(tokens: &[String], scores: &[f64]) -> Vec<(String, String)> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        ids.entry(t.as_str()).or_insert(i);
    }
    // Python dict semantics: a repeated token keeps its first position and its last score.
    let mut order: Vec<usize> = Vec::new();
    let mut score_of: HashMap<&str, f64> = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        if score_of.insert(t.as_str(), scores[i]).is_none() {
            order.push(i);
        }
    }
    let mut merges: Vec<(usize, usize, f64, &str, &str)> = Vec::new();
    for &i in &order {
        let t = tokens[i].as_str();
        let score = score_of[t];
        let mut local: Vec<(usize, usize, f64, &str, &str)> = t
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = t.split_at(at);
                Some((*ids.get(l)?, *ids.get(r)?, score, l, r))
            })
            .collect();
        local.sort_by_key(|m| (m.0, m.1));
        merges.extend(local);
    }
    merges.sort_by(|a, b| {
        let key =
            |m: &(usize, usize, f64, &str, &str)| (m.2, m.3.chars().count(), m.4.chars().count());
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0)
            .then(kb.1.cmp(&ka.1))
            .then(kb.2.cmp(&ka.2))
    });
    merges
        .into_iter()
        .map(|m| (m.3.to_string(), m.4.to_string()))
        .collect()
}

/// Bytes GPT-2's alphabet spells as themselves (printable Latin-1).
fn printable(b: u32) -> bool {
    matches!(b, 33..=126 | 161..=172 | 174..=255)
}

/// The other 68 bytes are shifted to U+0100 upwards, in byte order.
const SHIFTED: u32 = 68;

/// GPT-2's byte-to-character table.
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).unwrap()
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap()
        };
    }
    table
}

/// A byte-level token as the vocabulary spells it: unchanged when every character is in the
/// byte alphabet, otherwise its UTF-8 bytes spelled in that alphabet (as transformers does).
fn byte_level_spelling(token: &str, table: &[char; 256]) -> String {
    let in_alphabet = |c: char| printable(c as u32) || (256..256 + SHIFTED).contains(&(c as u32));
    if token.chars().all(in_alphabet) {
        token.to_string()
    } else {
        token.bytes().map(|b| table[b as usize]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_gpt2() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        // Latin-1 letters are in the alphabet and stay; other characters are spelled byte by
        // byte (U+2603 is E2 98 83: 'â' and two shifted control bytes).
        assert_eq!(byte_level_spelling("é", &t), "é");
        assert_eq!(byte_level_spelling("☃", &t), "âĺĥ");
        assert_eq!(byte_level_spelling("Ġhello", &t), "Ġhello");
        // The alphabet is exactly the table's characters.
        let last = t.iter().map(|&c| c as u32).max().unwrap();
        assert_eq!(last, 256 + SHIFTED - 1);
    }

    #[test]
    fn merges_from_scores_order_by_score_then_length() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"]
            .map(String::from)
            .to_vec();
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0];
        let m = merges_from_scores(&tokens, &scores);
        assert_eq!(
            m,
            vec![
                ("a".into(), "b".into()),
                ("b".into(), "c".into()),
                ("ab".into(), "c".into()),
                ("a".into(), "bc".into()),
            ]
        );
    }
}
