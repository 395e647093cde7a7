//! Factual prompt sets for the neuron-intervention experiments (paper §2-§4): the
//! `myriadlama-probing/<model>.jsonl` files (one `{"uuid", "prompt", "tpl", "answer"}` object
//! per line) and a built-in TinyStories set for the stories260k test model.
//!
//! [`resolve`] turns records into [`TargetedPrompt`]s for a model: the target is the single
//! token that `answer_prefix + answer` adds after the prompt ([`ModelAdapter::target_token`]).
//! Answers that are not one token are dropped and counted ([`FactualSet::dropped`]), or, with
//! `strict`, are an error naming the line and the answer.
//!
//! ```
//! use neg_core::testing::AnalyticAdapter;
//! use neg_rs::factual::{parse_records, resolve, ResolveOptions};
//!
//! let text = "{\"uuid\": \"a\", \"prompt\": \"p1\", \"tpl\": \"t\", \"answer\": \"tok1\"}\n\
//!             {\"uuid\": \"b\", \"prompt\": \"p2\", \"tpl\": \"t\", \"answer\": \"tok99\"}\n";
//! let records = parse_records("facts.jsonl", text)?;
//! // The analytic test model knows the tokens tok0..tok4 only.
//! let model = AnalyticAdapter::new(1, 2, 3, 5, 2);
//! let opts = ResolveOptions { answer_prefix: String::new(), ..ResolveOptions::default() };
//! let set = resolve(&model, "facts.jsonl", &records, &opts)?;
//! assert_eq!(set.prompts.len(), 1);
//! assert_eq!(set.dropped.len(), 1);
//! # Ok::<(), neg_rs::factual::FactualError>(())
//! ```
use std::path::{Path, PathBuf};

use neg_core::{AdapterError, ModelAdapter, TargetedPrompt};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One factual prompt: the fields of the published `myriadlama-probing` files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactualRecord {
    /// Fact id (subject-relation-object hash in MyriadLAMA).
    #[serde(default)]
    pub uuid: String,
    /// The prompt text; the model's next token after it is measured.
    pub prompt: String,
    /// Template id (relation and paraphrase).
    #[serde(default)]
    pub tpl: String,
    /// The correct answer as text.
    pub answer: String,
}

/// Why a prompt set could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum FactualError {
    // Causes are part of the message and deliberately not `#[source]`: the examples print
    // error chains on one line, where a source would repeat.
    #[error("cannot read prompt file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{source_name}:{line}: {reason}")]
    Line {
        source_name: String,
        line: usize,
        reason: String,
    },
    #[error("{source_name}: no prompts (the file is empty)")]
    Empty { source_name: String },
    #[error(
        "{source_name}:{line}: answer {answer:?} is not a single token for {model} \
         (the tokenizer says: {cause})"
    )]
    MultiToken {
        source_name: String,
        line: usize,
        answer: String,
        model: String,
        cause: Box<AdapterError>,
    },
    #[error(
        "{source_name}: none of the {total} answers is a single token for {model} \
         (first: line {line}, answer {answer:?}); use a prompt set made for this model"
    )]
    NoSingleToken {
        source_name: String,
        total: usize,
        model: String,
        line: usize,
        answer: String,
    },
    #[error("{source_name}:{line}: cannot tokenize answer {answer:?}: {cause}")]
    Adapter {
        source_name: String,
        line: usize,
        answer: String,
        cause: Box<AdapterError>,
    },
}

/// Parses JSON Lines text (blank lines skipped); `source_name` names the file in errors.
/// Returns each record with its 1-based line number.
pub fn parse_records(
    source_name: &str,
    text: &str,
) -> Result<Vec<(usize, FactualRecord)>, FactualError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        let record: FactualRecord =
            serde_json::from_str(raw).map_err(|e| FactualError::Line {
                source_name: source_name.to_string(),
                line,
                reason: format!(
                    "expected {{\"uuid\": \"...\", \"prompt\": \"...\", \"tpl\": \"...\", \"answer\": \"...\"}}: {e}"
                ),
            })?;
        if record.prompt.is_empty() || record.answer.is_empty() {
            return Err(FactualError::Line {
                source_name: source_name.to_string(),
                line,
                reason: "empty \"prompt\" or \"answer\"".into(),
            });
        }
        out.push((line, record));
    }
    if out.is_empty() {
        return Err(FactualError::Empty {
            source_name: source_name.to_string(),
        });
    }
    Ok(out)
}

/// Reads and parses a prompt file (see [`parse_records`]).
pub fn read_records(path: &Path) -> Result<Vec<(usize, FactualRecord)>, FactualError> {
    let text = std::fs::read_to_string(path).map_err(|cause| FactualError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    parse_records(&path.display().to_string(), &text)
}

/// The name [`builtin_stories`] goes by in results and errors.
pub const BUILTIN_NAME: &str = "builtin:tinystories";

/// A built-in set of 32 TinyStories prompts whose answers (after a space) are single tokens of
/// stories260k's 512-token vocabulary; the MyriadLAMA answers almost never are (none of the
/// 1000 llama2-7b-it answers is). The answers are natural continuations (names, "upon",
/// "time", "mom", "play", ...), chosen so that the model's probability of them ranges from
/// about 0.01 to 0.99, as the factual prompts' do for the paper's models.
pub fn builtin_stories() -> Vec<(usize, FactualRecord)> {
    const SET: [(&str, &str); 32] = [
        ("Once upon a time, there was a little girl named", "Lily"),
        ("Once upon a time, there was a little boy named", "Tim"),
        ("Once upon a time, there was a boy named", "Timmy"),
        ("Once upon a", "time"),
        ("Once", "upon"),
        ("They played together all", "day"),
        ("He said, \"Thank", "you"),
        ("Lily smiled and said, \"I love", "you"),
        ("The little girl was very", "happy"),
        ("They were very", "happy"),
        ("Lily and Ben were best", "friend"),
        ("Tim went to the park with his", "mom"),
        ("Lily went to the park with her", "mom"),
        ("One day, Lily went to the park to", "play"),
        ("Tim wanted to", "play"),
        ("Once upon a time, there was a", "little"),
        ("There was a", "big"),
        ("Lily saw a", "big"),
        ("Once upon a time, there was a little girl. She was", "very"),
        ("Tim was sad. His mom", "said"),
        ("One", "day"),
        ("Every", "day"),
        ("Once upon a time, there", "was"),
        ("Tim had a ball. He liked to play with", "his"),
        ("Lily had a doll. She liked to play with", "her"),
        ("Once upon a time, there was a cat", "named"),
        ("One day, a little girl", "named"),
        ("The boy", "was"),
        ("Lily said, \"Can I play", "with"),
        ("Lily was happy. She said, \"Thank", "you"),
        ("She had a", "big"),
        ("The girl and her", "mom"),
    ];
    SET.iter()
        .enumerate()
        .map(|(i, (prompt, answer))| {
            (
                i + 1,
                FactualRecord {
                    uuid: format!("stories-{:02}", i + 1),
                    prompt: (*prompt).to_string(),
                    tpl: "tinystories".into(),
                    answer: (*answer).to_string(),
                },
            )
        })
        .collect()
}

/// How [`resolve`] builds targets and picks prompts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveOptions {
    /// Joined between prompt and answer before tokenization (default one space: the
    /// myriadlama prompts end in "A:" and the answer is a new word).
    pub answer_prefix: String,
    /// A multi-token answer is an error instead of being dropped.
    pub strict: bool,
    /// Keep at most this many prompts (a seeded sample, in file order); `None` keeps all.
    pub max_prompts: Option<usize>,
    pub seed: u64,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self {
            answer_prefix: " ".into(),
            strict: false,
            max_prompts: None,
            seed: 0,
        }
    }
}

/// A record whose answer is not one token for the model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub line: usize,
    pub uuid: String,
    pub answer: String,
}

/// Prompts ready for a model, with what was dropped on the way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactualSet {
    /// File path or [`BUILTIN_NAME`].
    pub source: String,
    pub options: ResolveOptions,
    /// Records in the source.
    pub total: usize,
    /// Records whose answer is a single token (before `max_prompts`).
    pub single_token: usize,
    /// Multi-token answers, dropped.
    pub dropped: Vec<Dropped>,
    /// The kept records with their line numbers, aligned with `prompts`.
    pub records: Vec<(usize, FactualRecord)>,
    /// One target (the answer token) per prompt.
    pub prompts: Vec<TargetedPrompt>,
}

/// What results files record about the prompt set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactualSummary {
    pub source: String,
    pub answer_prefix: String,
    pub total: usize,
    pub single_token: usize,
    pub dropped_multi_token: usize,
    /// The first (up to 10) dropped answers.
    pub dropped_examples: Vec<Dropped>,
    pub used: usize,
    pub seed: u64,
}

impl FactualSet {
    /// The summary stored in every result file.
    pub fn summary(&self) -> FactualSummary {
        FactualSummary {
            source: self.source.clone(),
            answer_prefix: self.options.answer_prefix.clone(),
            total: self.total,
            single_token: self.single_token,
            dropped_multi_token: self.dropped.len(),
            dropped_examples: self.dropped.iter().take(10).cloned().collect(),
            used: self.prompts.len(),
            seed: self.options.seed,
        }
    }

    /// One line for the console: how many prompts were used and dropped.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} prompts, {} with a single-token answer ({} multi-token dropped), {} used",
            self.source,
            self.total,
            self.single_token,
            self.dropped.len(),
            self.prompts.len()
        )
    }
}

/// Targets for `records` on `adapter`: answers that are not one token are dropped (or, with
/// `strict`, an error); with none left, an error. `max_prompts` then keeps a seeded sample.
pub fn resolve<A: ModelAdapter + ?Sized>(
    adapter: &A,
    source_name: &str,
    records: &[(usize, FactualRecord)],
    options: &ResolveOptions,
) -> Result<FactualSet, FactualError> {
    if records.is_empty() {
        return Err(FactualError::Empty {
            source_name: source_name.to_string(),
        });
    }
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (line, record) in records {
        let answer = format!("{}{}", options.answer_prefix, record.answer);
        match adapter.target_token(&record.prompt, &answer) {
            Ok(id) => kept.push(((*line, record.clone()), id)),
            // The adapter contract reports "not exactly one token" as InvalidInput; a
            // backend failure is a real error and stops the run.
            Err(cause @ AdapterError::InvalidInput(_)) => {
                if options.strict {
                    return Err(FactualError::MultiToken {
                        source_name: source_name.to_string(),
                        line: *line,
                        answer,
                        model: adapter.model_id().to_string(),
                        cause: Box::new(cause),
                    });
                }
                dropped.push(Dropped {
                    line: *line,
                    uuid: record.uuid.clone(),
                    answer,
                });
            }
            Err(cause) => {
                return Err(FactualError::Adapter {
                    source_name: source_name.to_string(),
                    line: *line,
                    answer,
                    cause: Box::new(cause),
                })
            }
        }
    }
    if kept.is_empty() {
        let (line, answer) = dropped
            .first()
            .map(|d| (d.line, d.answer.clone()))
            .unwrap_or_default();
        return Err(FactualError::NoSingleToken {
            source_name: source_name.to_string(),
            total: records.len(),
            model: adapter.model_id().to_string(),
            line,
            answer,
        });
    }
    let single_token = kept.len();
    if let Some(max) = options.max_prompts {
        if max < kept.len() {
            let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
            let mut idx: Vec<usize> = (0..kept.len()).collect();
            idx.shuffle(&mut rng);
            idx.truncate(max.max(1));
            idx.sort_unstable();
            kept = idx.into_iter().map(|i| kept[i].clone()).collect();
        }
    }
    let prompts = kept
        .iter()
        .map(|((_, r), id)| TargetedPrompt::new(r.prompt.clone(), vec![*id]))
        .collect();
    Ok(FactualSet {
        source: source_name.to_string(),
        options: options.clone(),
        total: records.len(),
        single_token,
        dropped,
        records: kept.into_iter().map(|(r, _)| r).collect(),
        prompts,
    })
}
mod run;
pub use run::*;
