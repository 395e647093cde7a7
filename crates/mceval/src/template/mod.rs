//! Prompt templates and rendering: zero-shot and few-shot prompts with single-token answers.
//!
//! A [`TemplateSet`] has the structure of the published benchmark's
//! `templates.json` (instruction and question per language, an options block, field
//! transforms, label map, answer tokens, default demonstrations). Loading that file with
//! [`TemplateSet::from_file`] reproduces the published prompts character for character;
//! [`TemplateSet::builtin`] is our own wording in the same structure.
//!
//! Files: `schema.rs` (the template types, as in `templates.json`), `fill.rs` (one record
//! into a question and its answer index), `demos.rs` (the few-shot demonstrations block);
//! this file holds [`Shots`], [`TemplateSet`] (loading, variants, `render`) and
//! [`check_single_token`].
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dataset::{Dataset, Split};
use crate::error::{Error, Result};
use crate::registry::TaskSpec;

mod demos;
mod fill;
mod schema;

use fill::{pick, py_strip, Ctx};
use schema::TemplateFile;
pub use schema::{
    FieldTransform, OptionsSpec, PerLang, PromptLanguage, PromptVariant, TaskTemplate,
};

/// How many demonstrations a prompt carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shots {
    /// Instruction and question only.
    Zero,
    /// One demonstration per answer, in answer order, drawn from train with `seed` (per
    /// language for multilingual tasks) exactly as the published code draws them, so the
    /// task's default seed on the published train reproduces the published demonstrations.
    /// The same demo block serves every evaluated record.
    Few {
        /// Seed of the draw.
        seed: u64,
    },
    /// The published default demonstrations (`demo_train_indices` of the template set;
    /// only meaningful with the published train split).
    Published,
    /// The first `k` train records, in order, after the published code's two shuffles:
    /// `train.shuffle(seed)` (the load shuffle with the task seed) then `.shuffle(seed=42)`
    /// again, i.e. rows `p_seed[p_42[j]]` with `p_s = numpy.random.default_rng(s).permutation`.
    /// Each demonstration carries its own record's answer, so the block is not
    /// label-balanced. This is PAWS' published `'<k>-shot'` prompt for k other than 0 and 2
    /// (its `k_shot_rule`; use [`TemplateSet::k_shot`] to get exactly the published choice);
    /// for other tasks it is our extension. Multilingual tasks take the first `k` records of
    /// the prompt language. `k = 0` is [`Shots::Zero`].
    FirstK {
        /// Number of demonstrations.
        k: usize,
        /// Seed of the first (load) shuffle; the task's seed (42 for PAWS) reproduces the
        /// published demonstrations.
        seed: u64,
    },
}

/// The fixed seed of the second shuffle in PAWS' published k-shot demo selection
/// (`dataset.shuffle(seed=42)` in `PAWSDataset.select_demos`, whatever the task seed).
pub const FIRST_K_RESHUFFLE_SEED: u64 = 42;

impl Shots {
    /// Whether prompts carry no demonstrations.
    pub fn is_zero(self) -> bool {
        matches!(self, Shots::Zero | Shots::FirstK { k: 0, .. })
    }
}

impl fmt::Display for Shots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shots::Zero => f.write_str("0-shot"),
            Shots::Few { seed } => write!(f, "few-shot (seed {seed})"),
            Shots::Published => f.write_str("few-shot (published demos)"),
            Shots::FirstK { k, seed } => write!(f, "{k}-shot, first {k} of train (seed {seed})"),
        }
    }
}

/// One rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedItem {
    /// Task name.
    pub task: String,
    /// Index of the record in its split.
    pub index: usize,
    /// The full prompt; the model's next token is scored against `options`.
    pub prompt: String,
    /// Answer tokens, e.g. `["a", "b", "c", "d"]`.
    pub options: Vec<String>,
    /// Index of the gold answer in `options`.
    pub label: usize,
    /// The record's language for multilingual tasks.
    pub lang: Option<String>,
}

impl RenderedItem {
    /// The gold answer token.
    pub fn answer(&self) -> &str {
        &self.options[self.label]
    }
}

/// Templates for all tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSet {
    tasks: BTreeMap<String, TaskTemplate>,
    origin: PathBuf,
}

const BUILTIN: &str = include_str!("../builtin_templates.json");
const TRANSFORMS: [&str; 3] = ["join_space", "mask_Y", "remove_spaces"];

impl TemplateSet {
    /// Our own wording, in the published structure (demonstrations are drawn, not fixed).
    pub fn builtin() -> Self {
        // The embedded file is checked by the crate's tests; failing here would be a build bug.
        Self::parse(BUILTIN, Path::new("<builtin templates>"))
            .unwrap_or_else(|e| panic!("built-in templates are invalid: {e}"))
    }

    /// Loads a template file such as `shared/data/mceval8k/templates.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::record::read_text(path)?;
        Self::parse(&text, path)
    }

    /// Parses template JSON; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        if text.trim().is_empty() {
            return Err(Error::Empty {
                path: origin.into(),
            });
        }
        let file: TemplateFile = serde_json::from_str(text)
            .map_err(|e| Error::malformed(origin, "JSON", e.to_string()))?;
        for (name, t) in &file.tasks {
            let bad = |message: String| Error::Template {
                task: name.clone(),
                message: format!("{message} (in {})", origin.display()),
            };
            if t.answer_tokens.is_empty() {
                return Err(bad("no answer tokens".into()));
            }
            if !t.instruction.contains_key("en") || !t.question.contains_key("en") {
                return Err(bad("instruction and question need an `en` entry".into()));
            }
            for tr in &t.field_transforms {
                if !TRANSFORMS.contains(&tr.transform.as_str()) {
                    return Err(bad(format!(
                        "unknown transform `{}` (expected one of {TRANSFORMS:?})",
                        tr.transform
                    )));
                }
            }
            if let Some(o) = &t.options {
                if !["fixed", "field", "fields"].contains(&o.source.as_str()) {
                    return Err(bad(format!("unknown options source `{}`", o.source)));
                }
            }
        }
        Ok(Self {
            tasks: file.tasks,
            origin: origin.into(),
        })
    }

    /// A copy of this set in which `task` uses its prompt variant `variant` (e.g. PAWS `IT1`
    /// from the published templates); an unknown variant is an error listing the known ones.
    pub fn with_variant(&self, task: &TaskSpec, variant: &str) -> Result<TemplateSet> {
        let t = self.template(task)?;
        let variants = t.prompt_variants.as_ref();
        let v = variants
            .and_then(|m| m.get(variant))
            .ok_or_else(|| Error::Template {
                task: task.name.into(),
                message: format!(
                    "no prompt variant `{variant}`; known: {}",
                    variants
                        .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_else(|| "none".into())
                ),
            })?;
        let mut nt = t.clone();
        nt.instruction = BTreeMap::from([("en".to_string(), v.instruction.clone())]);
        nt.question = BTreeMap::from([("en".to_string(), v.question.clone())]);
        nt.options = v.options.clone();
        nt.answer_tokens = v.answer_tokens.clone();
        nt.prompt_language = PromptLanguage::En;
        let mut set = self.clone();
        set.tasks.insert(task.name.to_string(), nt);
        Ok(set)
    }

    /// The demonstrations of the published `'<k>-shot'` prompt type of `task`, with `seed`
    /// the task seed (`task.seed` reproduces the published prompts): `k = 0` is
    /// [`Shots::Zero`]; `k` = the number of answers is the label-balanced [`Shots::Few`];
    /// any other `k` is [`Shots::FirstK`] for a task whose template has a `k_shot_rule`
    /// (PAWS) and an error naming the accepted values for the others.
    pub fn k_shot(&self, task: &TaskSpec, k: usize, seed: u64) -> Result<Shots> {
        let t = self.template(task)?;
        let n = t.answer_tokens.len();
        match k {
            0 => Ok(Shots::Zero),
            k if k == n => Ok(Shots::Few { seed }),
            k if t.k_shot_rule.is_some() => Ok(Shots::FirstK { k, seed }),
            k => Err(Error::Template {
                task: task.name.into(),
                message: format!(
                    "{k}-shot prompts need a k_shot_rule in the template (in {}); this task takes 0 or {n} shots (one per answer)",
                    self.origin.display()
                ),
            }),
        }
    }

    /// The template of `task`.
    pub fn template(&self, task: &TaskSpec) -> Result<&TaskTemplate> {
        self.tasks.get(task.name).ok_or_else(|| Error::Template {
            task: task.name.into(),
            message: format!("no template in {}", self.origin.display()),
        })
    }

    /// Renders the first `limit` records (all when `None`) of `split` of `data`.
    pub fn render(
        &self,
        task: &TaskSpec,
        data: &Dataset,
        split: Split,
        shots: Shots,
        limit: Option<usize>,
    ) -> Result<Vec<RenderedItem>> {
        let t = self.template(task)?;
        let records = data.split(split)?;
        let path = data.path(split).unwrap_or(Path::new("")).to_path_buf();
        let n = limit.map_or(records.len(), |l| l.min(records.len()));
        // Demo blocks are shared by every record of a language, so build each once.
        let mut demo_cache: BTreeMap<Option<String>, String> = BTreeMap::new();
        let mut out = Vec::with_capacity(n);
        for (index, record) in records.iter().take(n).enumerate() {
            let ctx = Ctx {
                task: task.name,
                path: &path,
                index,
            };
            let lang = record.lang().map(str::to_owned);
            let prompt_lang = match t.prompt_language {
                PromptLanguage::En => None,
                PromptLanguage::Record => lang.clone(),
            };
            let body = t.body(record, &ctx)?;
            let label = t.label(record, &ctx)?;
            let instruction = pick(&t.instruction, prompt_lang.as_deref());
            let prompt = if shots.is_zero() {
                format!("{}\n\n{}", py_strip(instruction), py_strip(&body))
            } else {
                let demos = match demo_cache.get(&prompt_lang) {
                    Some(d) => d.clone(),
                    None => {
                        let d = t.demo_block(task, data, prompt_lang.as_deref(), shots)?;
                        demo_cache.insert(prompt_lang.clone(), d.clone());
                        d
                    }
                };
                format!(
                    "{}\n\n{}\n\n{}",
                    py_strip(instruction),
                    py_strip(&demos),
                    py_strip(&body)
                )
            };
            out.push(RenderedItem {
                task: task.name.into(),
                index,
                prompt,
                options: t.answer_tokens.clone(),
                label,
                lang,
            });
        }
        Ok(out)
    }
}

/// Checks that every answer token of `items` is a single token.
///
/// `encode(prompt, answer)` returns the token ids of `answer` as the model will see it after
/// `prompt` (for most tokenizers: the answer encoded alone, without special tokens). Returns,
/// per item, the id of each option; any answer that is not exactly one token is an error
/// naming the task and the answer.
pub fn check_single_token<F, E>(items: &[RenderedItem], mut encode: F) -> Result<Vec<Vec<u32>>>
where
    F: FnMut(&str, &str) -> std::result::Result<Vec<u32>, E>,
    E: fmt::Display,
{
    let mut seen: BTreeMap<(String, String), u32> = BTreeMap::new();
    items
        .iter()
        .map(|item| {
            item.options
                .iter()
                .map(|answer| {
                    let key = (item.task.clone(), answer.clone());
                    if let Some(&id) = seen.get(&key) {
                        return Ok(id);
                    }
                    let err = |message: String| Error::NotSingleToken {
                        task: item.task.clone(),
                        answer: answer.clone(),
                        message,
                    };
                    let ids = encode(&item.prompt, answer).map_err(|e| err(e.to_string()))?;
                    match ids.as_slice() {
                        [id] => {
                            seen.insert(key, *id);
                            Ok(*id)
                        }
                        other => Err(err(format!("encodes to {} tokens {other:?}", other.len()))),
                    }
                })
                .collect()
        })
        .collect()
}
