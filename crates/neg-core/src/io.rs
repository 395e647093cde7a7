//! Reading the examples' input files: prompt sets (JSON Lines) and neuron lists (JSON).
//!
//! A prompt file holds one `{"prompt": "...", "targets": ["...", ...]}` object per line (blank
//! lines are skipped); a neuron file is a JSON array of `[layer, neuron]` pairs. Errors name the
//! file and the line or entry.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::adapter::{AdapterError, ModelAdapter, NeuronId, TargetedPrompt};

/// One line of a prompt file: the prompt and its answers as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    pub prompt: String,
    pub targets: Vec<String>,
}

/// Why an input file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}:{line}: target {answer:?}: {source}")]
    Target {
        path: PathBuf,
        line: usize,
        answer: String,
        source: AdapterError,
    },
}

fn read(path: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a prompt file's text; `path` only names the file in errors. Returns each spec with
/// its 1-based line number. Needs at least one prompt, each with at least one target, all with
/// the same number of targets.
pub fn parse_prompt_lines(path: &Path, text: &str) -> Result<Vec<(usize, PromptSpec)>, InputError> {
    let line_err = |line: usize, reason: String| InputError::Line {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut out: Vec<(usize, PromptSpec)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let spec: PromptSpec = serde_json::from_str(raw).map_err(|e| {
            line_err(
                line,
                format!("expected {{\"prompt\": \"...\", \"targets\": [\"...\"]}}: {e}"),
            )
        })?;
        if spec.targets.is_empty() {
            return Err(line_err(line, "\"targets\" is empty".into()));
        }
        if let Some((first_line, first)) = out.first() {
            if first.targets.len() != spec.targets.len() {
                return Err(line_err(
                    line,
                    format!(
                        "{} targets, but line {first_line} has {}; every prompt needs the same number",
                        spec.targets.len(),
                        first.targets.len()
                    ),
                ));
            }
        }
        out.push((line, spec));
    }
    if out.is_empty() {
        return Err(InputError::File {
            path: path.to_path_buf(),
            reason: "no prompts (the file is empty)".into(),
        });
    }
    Ok(out)
}

/// Reads and parses a prompt file (see [`parse_prompt_lines`]).
pub fn read_prompt_file(path: &Path) -> Result<Vec<(usize, PromptSpec)>, InputError> {
    parse_prompt_lines(path, &read(path)?)
}

/// Token ids of every answer through [`ModelAdapter::target_token`]; an answer that is not
/// exactly one token is an error naming the file, line and answer.
pub fn resolve_targets<A: ModelAdapter + ?Sized>(
    adapter: &A,
    path: &Path,
    specs: &[(usize, PromptSpec)],
) -> Result<Vec<TargetedPrompt>, InputError> {
    specs
        .iter()
        .map(|(line, spec)| {
            let targets = spec
                .targets
                .iter()
                .map(|answer| {
                    adapter
                        .target_token(&spec.prompt, answer)
                        .map_err(|source| InputError::Target {
                            path: path.to_path_buf(),
                            line: *line,
                            answer: answer.clone(),
                            source,
                        })
                })
                .collect::<Result<Vec<u32>, _>>()?;
            Ok(TargetedPrompt::new(spec.prompt.clone(), targets))
        })
        .collect()
}

/// Parses a neuron list `[[layer, neuron], ...]`: non-empty, inside `layers x width`, no
/// duplicates.
pub fn parse_neurons(
    path: &Path,
    text: &str,
    layers: usize,
    width: usize,
) -> Result<Vec<NeuronId>, InputError> {
    let file_err = |reason: String| InputError::File {
        path: path.to_path_buf(),
        reason,
    };
    let pairs: Vec<(usize, usize)> = serde_json::from_str(text).map_err(|e| {
        file_err(format!(
            "expected a JSON array of [layer, neuron] pairs: {e}"
        ))
    })?;
    if pairs.is_empty() {
        return Err(file_err("no neurons (the list is empty)".into()));
    }
    let mut seen = std::collections::HashSet::new();
    pairs
        .into_iter()
        .enumerate()
        .map(|(i, (layer, neuron))| {
            if layer >= layers || neuron >= width {
                return Err(file_err(format!(
                    "entry {i} [{layer}, {neuron}] is outside the model ({layers} layers x {width} neurons)"
                )));
            }
            if !seen.insert((layer, neuron)) {
                return Err(file_err(format!("entry {i} [{layer}, {neuron}] is repeated")));
            }
            Ok(NeuronId::new(layer, neuron))
        })
        .collect()
}

/// Reads and parses a neuron file (see [`parse_neurons`]).
pub fn read_neuron_file(
    path: &Path,
    layers: usize,
    width: usize,
) -> Result<Vec<NeuronId>, InputError> {
    parse_neurons(path, &read(path)?, layers, width)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::AnalyticAdapter;

    #[test]
    fn prompt_files_parse_and_errors_name_the_line() {
        let p = Path::new("p.jsonl");
        let ok = parse_prompt_lines(
            p,
            "{\"prompt\": \"a\", \"targets\": [\"tok1\", \"tok2\"]}\n\n{\"prompt\": \"b\", \"targets\": [\"tok0\", \"tok3\"]}\n",
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].0, 3);
        let m = AnalyticAdapter::new(1, 2, 3, 5, 2);
        let tp = resolve_targets(&m, p, &ok).unwrap();
        assert_eq!(tp[1].targets, vec![0, 3]);
        let bad = parse_prompt_lines(p, "{\"prompt\": \"a\", \"targets\": [\"tok9\"]}").unwrap();
        let err = resolve_targets(&m, p, &bad).unwrap_err().to_string();
        assert!(err.starts_with("p.jsonl:1: target \"tok9\""), "{err}");
        for (text, needle) in [
            ("", "no prompts"),
            ("{\"prompt\": \"a\"}", "p.jsonl:1:"),
            ("{\"prompt\": \"a\", \"targets\": []}", "empty"),
            (
                "{\"prompt\": \"a\", \"targets\": [\"x\"]}\n{\"prompt\": \"b\", \"targets\": [\"x\", \"y\"]}",
                "p.jsonl:2: 2 targets, but line 1 has 1",
            ),
            ("not json", "p.jsonl:1:"),
        ] {
            let err = parse_prompt_lines(p, text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn neuron_files_are_checked_against_the_model() {
        let p = Path::new("n.json");
        assert_eq!(
            parse_neurons(p, "[[0, 1], [1, 2]]", 2, 3).unwrap(),
            vec![NeuronId::new(0, 1), NeuronId::new(1, 2)]
        );
        for (text, needle) in [
            ("[]", "no neurons"),
            ("[[2, 0]]", "entry 0 [2, 0] is outside"),
            ("[[0, 0], [0, 0]]", "repeated"),
            ("{\"a\": 1}", "JSON array"),
        ] {
            let err = parse_neurons(p, text, 2, 3).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
