//! Tokenization with the `tokenizers` crate from `tokenizer.json`.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{HooksError, Result};

pub(crate) fn load(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(HooksError::Tokenizer {
            path: path.to_path_buf(),
            message: "file not found".into(),
        });
    }
    Tokenizer::from_file(path).map_err(|e| HooksError::Tokenizer {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Token ids of `text`, with the tokenizer's special tokens (BOS for Llama, [CLS]/[SEP] for
/// BERT) when `special` is set.
pub(crate) fn encode(tok: &Tokenizer, text: &str, special: bool) -> Result<Vec<u32>> {
    tok.encode(text, special)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| HooksError::Tokenize {
            text: text.into(),
            message: e.to_string(),
        })
}

/// Token strings of ids, for error messages.
pub(crate) fn pieces(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| tok.id_to_token(i).unwrap_or_else(|| format!("<{i}>")))
        .collect()
}
