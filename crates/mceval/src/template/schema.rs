//! The template schema: the structure of the published `templates.json`, task by task.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether instructions follow the record's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptLanguage {
    /// The English instruction and question for every record.
    En,
    /// Chosen by `record["lang"]`; demonstrations per language.
    Record,
}

/// A list, or lists by language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerLang<T> {
    /// The same for every language.
    All(T),
    /// Keyed by language code.
    ByLang(BTreeMap<String, T>),
}

impl<T> PerLang<T> {
    pub(super) fn pick(&self, lang: Option<&str>) -> Option<&T> {
        match self {
            PerLang::All(v) => Some(v),
            PerLang::ByLang(m) => lang.and_then(|l| m.get(l)).or_else(|| m.get("en")),
        }
    }
}

/// The options block of a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionsSpec {
    /// `fixed` (values), `field` (a list field) or `fields` (several fields).
    pub source: String,
    /// Fixed option texts (source `fixed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<PerLang<Vec<String>>>,
    /// The list field (source `field`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The fields (source `fields`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Letter shown before each option.
    pub letters: Vec<String>,
    /// Format of one option: `{letter}` and `{value}` placeholders.
    pub item_format: String,
    /// Separator between options.
    pub joiner: String,
}

/// A transform applied to a field before it fills the question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldTransform {
    /// The field.
    pub field: String,
    /// `join_space`, `mask_Y` or `remove_spaces`.
    pub transform: String,
    /// Only for these languages (`None` = always).
    #[serde(default)]
    pub langs: Option<Vec<String>>,
}

/// How one task turns a record into a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskTemplate {
    /// Language of the instruction and question.
    pub prompt_language: PromptLanguage,
    /// Field holding the gold label.
    pub label_field: String,
    /// `None`: answer = `answer_tokens[int(label)]`; else answer = `label_map[str(label)]`.
    #[serde(default)]
    pub label_map: Option<BTreeMap<String, String>>,
    /// Single-token answers in label order.
    pub answer_tokens: Vec<String>,
    /// Instruction per language.
    pub instruction: BTreeMap<String, String>,
    /// Question per language, with `{field}` and `{options}` placeholders.
    pub question: BTreeMap<String, String>,
    /// The options block, if any.
    #[serde(default)]
    pub options: Option<OptionsSpec>,
    /// Field transforms, applied in order.
    #[serde(default)]
    pub field_transforms: Vec<FieldTransform>,
    /// Replace `"\n\n"` by `"\n"` once over the filled question.
    #[serde(default)]
    pub collapse_double_newlines: bool,
    /// The task's default seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Published default demonstrations: train indices in answer order.
    #[serde(default)]
    pub demo_train_indices: Option<PerLang<Vec<usize>>>,
    /// Present when the task accepts `'<k>-shot'` prompts with `k` other than 0 and the
    /// number of answers ([`Shots::FirstK`](super::Shots::FirstK)); the published file describes the rule in words
    /// (PAWS only). Tasks without it reject such `k` in [`TemplateSet::k_shot`](super::TemplateSet::k_shot), as the
    /// published code raises for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_shot_rule: Option<String>,
    /// Alternative instructions (PAWS' IT0-IT4 in the published file), by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_variants: Option<BTreeMap<String, PromptVariant>>,
}

/// An alternative instruction/question/options/answers for a task (same records, same demo
/// choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptVariant {
    /// English instruction.
    pub instruction: String,
    /// English question template.
    pub question: String,
    /// Options block, if any.
    #[serde(default)]
    pub options: Option<OptionsSpec>,
    /// Answer tokens in label order.
    pub answer_tokens: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct TemplateFile {
    pub(super) tasks: BTreeMap<String, TaskTemplate>,
}
