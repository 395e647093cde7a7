//! The 22 MCEval8K tasks: where their files live, what fields their records carry and how a
//! record's label maps to an answer index.
use std::fmt;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::record::{py_str, Record};

/// The six genres of MCEval8K, named as the published directories are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Genre {
    /// GED, POS, CHUNK, NER.
    Linguistic,
    /// Agnews, Amazon, IMDB.
    Classification,
    /// MyriadLAMA, FEVER, CSQA, TempLAMA (the code calls it "factuality").
    Fact,
    /// PAWS, MNLI, SWAG.
    Nli,
    /// HaluEval, Toxic, Stereoset.
    SelfReflection,
    /// M-Amazon, LTI, mLAMA, XNLI, M-POS (the code calls it "multilinguality").
    Multilingual,
}

impl Genre {
    /// Directory name under the data root.
    pub fn dir(self) -> &'static str {
        match self {
            Genre::Linguistic => "linguistic",
            Genre::Classification => "classification",
            Genre::Fact => "fact",
            Genre::Nli => "nli",
            Genre::SelfReflection => "self-reflection",
            Genre::Multilingual => "multilingual",
        }
    }
}

impl fmt::Display for Genre {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir())
    }
}

/// The languages of the multilingual tasks, in MCEval8K's label order (used by LTI).
pub const LANGUAGES: [&str; 5] = ["en", "fr", "de", "zh", "es"];

/// One task's schema: fields, label rule, answer tokens and option count.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// Task name as in the published directory (`commensenseqa`, sic).
    pub name: &'static str,
    /// Name used in the NEG paper's tables.
    pub paper_name: &'static str,
    /// Genre (first path component).
    pub genre: Genre,
    /// Fields every record must carry (null values are allowed, as in the published files).
    pub fields: &'static [&'static str],
    /// The field holding the gold label.
    pub label_field: &'static str,
    /// `None`: the label is an integer answer index. `Some(keys)`: the answer index is the
    /// position of Python's `str(label)` in `keys` (e.g. `"1.0"`..`"5.0"`, or languages).
    pub label_keys: Option<&'static [&'static str]>,
    /// Default single-token answers, one per option, in label order.
    pub answer_tokens: &'static [&'static str],
    /// The list field holding the options shown in the prompt, when options come from records.
    pub options_field: Option<&'static str>,
    /// Records carry `lang`; re-splits and few-shot demos work per language.
    pub has_lang: bool,
    /// The published task's default seed (demo choice and shuffles in the original code).
    pub seed: u64,
}

impl TaskSpec {
    /// Number of options (= number of answer tokens).
    pub fn n_options(&self) -> usize {
        self.answer_tokens.len()
    }

    /// `<genre>/<task>`, the task's directory relative to a data root.
    pub fn rel_dir(&self) -> String {
        format!("{}/{}", self.genre.dir(), self.name)
    }

    /// The answer index of a record, or a message saying why its label is unusable.
    pub fn label_of(&self, record: &Record) -> std::result::Result<usize, String> {
        let value = record
            .get(self.label_field)
            .ok_or_else(|| format!("missing field `{}`", self.label_field))?;
        let n = self.n_options();
        match self.label_keys {
            None => {
                let idx = match value {
                    Value::Number(num) => match (num.as_u64(), num.as_f64()) {
                        (Some(u), _) => Some(u),
                        // Python's int() truncates floats; accept only whole ones.
                        (None, Some(f)) if f.fract() == 0.0 && f >= 0.0 => Some(f as u64),
                        _ => None,
                    },
                    Value::Bool(b) => Some(u64::from(*b)),
                    _ => None,
                };
                match idx {
                    Some(i) if (i as usize) < n => Ok(i as usize),
                    _ => Err(format!(
                        "unknown label {value} (expected an integer 0..{})",
                        n - 1
                    )),
                }
            }
            Some(keys) => {
                let s = py_str(value);
                keys.iter()
                    .position(|k| *k == s)
                    .ok_or_else(|| format!("unknown label {value} (expected one of {keys:?})"))
            }
        }
    }

    /// Builds the label value that [`TaskSpec::label_of`] maps to `index`.
    pub fn label_value(&self, index: usize) -> Value {
        match self.label_keys {
            None => Value::from(index),
            Some(keys) => {
                let key = keys.get(index).copied().unwrap_or_default();
                if let Ok(i) = key.parse::<u64>() {
                    Value::from(i)
                } else if let Ok(f) = key.parse::<f64>() {
                    Value::from(f)
                } else {
                    Value::from(key)
                }
            }
        }
    }

    /// Checks one record against the schema. `path`/`index` only name it in errors.
    pub fn validate(&self, record: &Record, path: &std::path::Path, index: usize) -> Result<()> {
        for field in self.fields {
            if record.get(field).is_none() {
                return Err(Error::MissingField {
                    path: path.into(),
                    index,
                    field: (*field).into(),
                });
            }
        }
        let bad = |field: &str, message: String| Error::BadValue {
            path: path.into(),
            index,
            field: field.into(),
            message,
        };
        self.label_of(record)
            .map_err(|m| bad(self.label_field, m))?;
        if let Some(field) = self.options_field {
            match record.get(field) {
                Some(Value::Array(items)) if items.len() == self.n_options() => {}
                Some(Value::Array(items)) => {
                    return Err(bad(
                        field,
                        format!("{} options, expected {}", items.len(), self.n_options()),
                    ))
                }
                Some(other) => return Err(bad(field, format!("expected a list, found {other}"))),
                // Absent options were reported above: the field is listed in `fields`.
                None => {}
            }
        }
        if self.has_lang {
            match record.get("lang").and_then(Value::as_str) {
                Some(l) if LANGUAGES.contains(&l) => {}
                _ => {
                    return Err(bad(
                        "lang",
                        format!(
                            "unknown language {} (expected one of {LANGUAGES:?})",
                            record.get("lang").cloned().unwrap_or(Value::Null)
                        ),
                    ))
                }
            }
        }
        Ok(())
    }
}

const AD: &[&str] = &["a", "b", "c", "d"];
const AE: &[&str] = &["a", "b", "c", "d", "e"];
const AC: &[&str] = &["a", "b", "c"];
const AB: &[&str] = &["a", "b"];
const NO_YES: &[&str] = &["no", "yes"];
const ONE_FIVE: &[&str] = &["1", "2", "3", "4", "5"];

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    paper_name: &'static str,
    genre: Genre,
    fields: &'static [&'static str],
    label_field: &'static str,
    label_keys: Option<&'static [&'static str]>,
    answer_tokens: &'static [&'static str],
    options_field: Option<&'static str>,
    has_lang: bool,
    seed: u64,
) -> TaskSpec {
    TaskSpec {
        name,
        paper_name,
        genre,
        fields,
        label_field,
        label_keys,
        answer_tokens,
        options_field,
        has_lang,
        seed,
    }
}

use Genre::*;

static TASKS: [TaskSpec; 22] = [
    spec(
        "clang8",
        "GED",
        Linguistic,
        &["sentence1", "sentence2", "acceptable"],
        "acceptable",
        None,
        AB,
        None,
        false,
        100,
    ),
    spec(
        "postag",
        "POS",
        Linguistic,
        &["text", "tokens", "target_token", "options", "label"],
        "label",
        None,
        AD,
        Some("options"),
        false,
        100,
    ),
    spec(
        "chunking",
        "CHUNK",
        Linguistic,
        &["text", "chunks", "target_chunk", "options", "label"],
        "label",
        None,
        AD,
        Some("options"),
        false,
        100,
    ),
    spec(
        "ner",
        "NER",
        Linguistic,
        &["text", "chunks", "target_chunk", "options", "label"],
        "label",
        None,
        AD,
        Some("options"),
        false,
        100,
    ),
    spec(
        "agnews",
        "Agnews",
        Classification,
        &["text", "label"],
        "label",
        None,
        AD,
        None,
        false,
        42,
    ),
    spec(
        "amazon-reviews",
        "Amazon",
        Classification,
        &["text", "label"],
        "label",
        Some(&["1.0", "2.0", "3.0", "4.0", "5.0"]),
        ONE_FIVE,
        None,
        false,
        42,
    ),
    spec(
        "imdb",
        "IMDB",
        Classification,
        &["text", "label"],
        "label",
        None,
        &["bad", "good"],
        None,
        false,
        42,
    ),
    spec(
        "myriadlama",
        "MyriadLAMA",
        Fact,
        &["text", "options", "label"],
        "label",
        None,
        AD,
        Some("options"),
        false,
        42,
    ),
    spec(
        "fever",
        "FEVER",
        Fact,
        &["claim", "label"],
        "label",
        None,
        &["False", "True"],
        None,
        false,
        100,
    ),
    spec(
        "commensenseqa",
        "CSQA",
        Fact,
        &["text", "options", "label"],
        "label",
        None,
        AE,
        Some("options"),
        false,
        42,
    ),
    spec(
        "templama",
        "TempLAMA",
        Fact,
        &["text", "options", "label"],
        "label",
        None,
        AD,
        Some("options"),
        false,
        42,
    ),
    spec(
        "paws",
        "PAWS",
        Nli,
        &["sentence1", "sentence2", "label"],
        "label",
        None,
        NO_YES,
        None,
        false,
        42,
    ),
    spec(
        "mnli",
        "MNLI",
        Nli,
        &["premise", "hypothesis", "label"],
        "label",
        None,
        AC,
        None,
        false,
        42,
    ),
    spec(
        "swag",
        "SWAG",
        Nli,
        &["text", "options", "label"],
        "label",
        None,
        AD,
        Some("options"),
        false,
        42,
    ),
    spec(
        "halueval",
        "HaluEval",
        SelfReflection,
        &["knowledge", "dialogue", "response", "hallucination"],
        "hallucination",
        None,
        NO_YES,
        None,
        false,
        42,
    ),
    spec(
        "toxicity",
        "Toxic",
        SelfReflection,
        &["text", "toxic"],
        "toxic",
        None,
        NO_YES,
        None,
        false,
        42,
    ),
    spec(
        "stereoset",
        "Stereoset",
        SelfReflection,
        &[
            "context",
            "sentences",
            "stereotype",
            "anti-stereotype",
            "non-stereotype",
        ],
        "non-stereotype",
        None,
        AC,
        Some("sentences"),
        false,
        100,
    ),
    spec(
        "amazon-review-multi",
        "M-Amazon",
        Multilingual,
        &["review", "label", "lang"],
        "label",
        Some(ONE_FIVE),
        ONE_FIVE,
        None,
        true,
        100,
    ),
    spec(
        "lti",
        "LTI",
        Multilingual,
        &["text", "lang"],
        "lang",
        Some(&LANGUAGES),
        AE,
        None,
        true,
        100,
    ),
    spec(
        "mlama",
        "mLAMA",
        Multilingual,
        &["uuid", "text", "options", "label", "lang"],
        "label",
        None,
        AD,
        Some("options"),
        true,
        100,
    ),
    spec(
        "xnli",
        "XNLI",
        Multilingual,
        &["index", "premise", "hypothesis", "label", "lang"],
        "label",
        None,
        AC,
        None,
        true,
        42,
    ),
    spec(
        "mpostag",
        "M-POS",
        Multilingual,
        &["text", "tokens", "target_token", "options", "label", "lang"],
        "label",
        None,
        AD,
        Some("options"),
        true,
        100,
    ),
];

/// The registry of MCEval8K tasks.
#[derive(Debug, Clone)]
pub struct TaskRegistry {
    tasks: &'static [TaskSpec],
}

impl TaskRegistry {
    /// The 22 published tasks in 6 genres.
    pub fn builtin() -> Self {
        Self { tasks: &TASKS }
    }

    /// All tasks, in genre order.
    pub fn tasks(&self) -> &'static [TaskSpec] {
        self.tasks
    }

    /// The task called `name` (directory name; the code's `commonsenseqa` and paper names
    /// such as `CSQA` are accepted too). Unknown names give an error listing the valid ones.
    pub fn get(&self, name: &str) -> Result<&'static TaskSpec> {
        let lower = name.to_ascii_lowercase();
        self.tasks
            .iter()
            .find(|t| {
                t.name == lower
                    || t.paper_name.eq_ignore_ascii_case(name)
                    || (t.name == "commensenseqa" && lower == "commonsenseqa")
            })
            .ok_or_else(|| Error::UnknownTask {
                name: name.into(),
                valid: self
                    .tasks
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}
