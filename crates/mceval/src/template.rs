//! Prompt templates and rendering: zero-shot and few-shot prompts with single-token answers.
//!
//! A [`TemplateSet`] has the structure of the published benchmark's
//! `templates.json` (instruction and question per language, an options block, field
//! transforms, label map, answer tokens, default demonstrations). Loading that file with
//! [`TemplateSet::from_file`] reproduces the published prompts character for character;
//! [`TemplateSet::builtin`] is our own wording in the same structure.
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dataset::{Dataset, Split};
use crate::error::{Error, Result};
use crate::record::{py_str, Record};
use crate::registry::TaskSpec;

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
    fn pick(&self, lang: Option<&str>) -> Option<&T> {
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
    /// number of answers ([`Shots::FirstK`]); the published file describes the rule in words
    /// (PAWS only). Tasks without it reject such `k` in [`TemplateSet::k_shot`], as the
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
struct TemplateFile {
    tasks: BTreeMap<String, TaskTemplate>,
}

/// Templates for all tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSet {
    tasks: BTreeMap<String, TaskTemplate>,
    origin: PathBuf,
}

const BUILTIN: &str = include_str!("builtin_templates.json");
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
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses template JSON; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        if text.trim().is_empty() {
            return Err(Error::Empty {
                path: origin.into(),
            });
        }
        let file: TemplateFile = serde_json::from_str(text).map_err(|e| Error::Malformed {
            path: origin.into(),
            format: "JSON",
            message: e.to_string(),
        })?;
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

/// Where a record comes from, for errors.
struct Ctx<'a> {
    task: &'a str,
    path: &'a Path,
    index: usize,
}

impl Ctx<'_> {
    fn missing(&self, field: &str) -> Error {
        Error::MissingField {
            path: self.path.into(),
            index: self.index,
            field: field.into(),
        }
    }
    fn bad(&self, field: &str, message: String) -> Error {
        Error::BadValue {
            path: self.path.into(),
            index: self.index,
            field: field.into(),
            message,
        }
    }
}

fn pick<'a>(map: &'a BTreeMap<String, String>, lang: Option<&str>) -> &'a str {
    // `en` exists (checked at load); languages without their own entry fall back to it.
    lang.and_then(|l| map.get(l))
        .or_else(|| map.get("en"))
        .map(String::as_str)
        .unwrap_or_default()
}

/// Python's `str.strip()`: Unicode whitespace plus the ASCII separators U+001C..U+001F.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Fills `{name}` placeholders; `lookup` gives each name's text.
fn fill(template: &str, mut lookup: impl FnMut(&str) -> Result<String>) -> Result<String> {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                out.push_str(&lookup(&after[..end])?);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

impl TaskTemplate {
    fn field_text(&self, record: &Record, field: &str, ctx: &Ctx) -> Result<String> {
        let value = record.get(field).ok_or_else(|| ctx.missing(field))?;
        let lang = record.lang();
        let mut current: Option<String> = None;
        for tr in self.field_transforms.iter().filter(|t| t.field == field) {
            let applies = match &tr.langs {
                None => true,
                Some(ls) => lang.is_some_and(|l| ls.iter().any(|x| x == l)),
            };
            if !applies {
                continue;
            }
            current = Some(match tr.transform.as_str() {
                "join_space" => match (&current, value) {
                    (None, Value::Array(items)) => {
                        items.iter().map(py_str).collect::<Vec<_>>().join(" ")
                    }
                    (None, other) => {
                        return Err(ctx.bad(field, format!("expected a token list, found {other}")))
                    }
                    (Some(s), _) => s.clone(),
                },
                "mask_Y" => current
                    .take()
                    .unwrap_or_else(|| py_str(value))
                    .replace("[Y]", "[MASK]"),
                // remove_spaces (the only other name accepted at load time)
                _ => current
                    .take()
                    .unwrap_or_else(|| py_str(value))
                    .replace(' ', ""),
            });
        }
        Ok(current.unwrap_or_else(|| py_str(value)))
    }

    fn options_block(&self, record: &Record, ctx: &Ctx) -> Result<String> {
        let Some(spec) = &self.options else {
            return Err(Error::Template {
                task: ctx.task.into(),
                message: "question uses {options} but the template has no options".into(),
            });
        };
        let values: Vec<String> = match spec.source.as_str() {
            "fixed" => spec
                .values
                .as_ref()
                .and_then(|v| v.pick(record.lang()))
                .cloned()
                .ok_or_else(|| Error::Template {
                    task: ctx.task.into(),
                    message: "fixed options without values".into(),
                })?,
            "field" => {
                let field = spec.field.as_deref().unwrap_or("options");
                match record.get(field) {
                    Some(Value::Array(items)) => items.iter().map(py_str).collect(),
                    Some(other) => {
                        return Err(ctx.bad(field, format!("expected a list, found {other}")))
                    }
                    None => return Err(ctx.missing(field)),
                }
            }
            _ => spec
                .fields
                .iter()
                .flatten()
                .map(|f| self.field_text(record, f, ctx))
                .collect::<Result<_>>()?,
        };
        if values.len() > spec.letters.len() {
            return Err(ctx.bad(
                spec.field.as_deref().unwrap_or("options"),
                format!(
                    "{} options but only {} letters",
                    values.len(),
                    spec.letters.len()
                ),
            ));
        }
        let items: Vec<String> = values
            .iter()
            .zip(&spec.letters)
            .map(|(v, l)| {
                spec.item_format
                    .replace("{letter}", l)
                    .replace("{value}", v)
            })
            .collect();
        Ok(items.join(&spec.joiner))
    }

    /// The filled question of `record` (no answer appended).
    fn body(&self, record: &Record, ctx: &Ctx) -> Result<String> {
        let lang = match self.prompt_language {
            PromptLanguage::En => None,
            PromptLanguage::Record => record.lang(),
        };
        let question = pick(&self.question, lang);
        let body = fill(question, |name| {
            if name == "options" {
                self.options_block(record, ctx)
            } else {
                self.field_text(record, name, ctx)
            }
        })?;
        Ok(if self.collapse_double_newlines {
            body.replace("\n\n", "\n")
        } else {
            body
        })
    }

    /// The gold answer index of `record`.
    fn label(&self, record: &Record, ctx: &Ctx) -> Result<usize> {
        let field = self.label_field.as_str();
        let value = record.get(field).ok_or_else(|| ctx.missing(field))?;
        match &self.label_map {
            None => {
                let idx = value
                    .as_u64()
                    .or_else(|| {
                        value
                            .as_f64()
                            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                            .map(|f| f as u64)
                    })
                    .or_else(|| value.as_bool().map(u64::from));
                match idx {
                    Some(i) if (i as usize) < self.answer_tokens.len() => Ok(i as usize),
                    _ => Err(ctx.bad(
                        field,
                        format!(
                            "unknown label {value} (expected 0..{})",
                            self.answer_tokens.len() - 1
                        ),
                    )),
                }
            }
            Some(map) => {
                let key = py_str(value);
                let token = map
                    .get(&key)
                    .ok_or_else(|| ctx.bad(field, format!("unknown label {value}")))?;
                self.answer_tokens
                    .iter()
                    .position(|t| t == token)
                    .ok_or_else(|| Error::Template {
                        task: ctx.task.into(),
                        message: format!("label_map gives `{token}`, not an answer token"),
                    })
            }
        }
    }

    /// The demonstrations block for one prompt language.
    fn demo_block(
        &self,
        task: &TaskSpec,
        data: &Dataset,
        lang: Option<&str>,
        shots: Shots,
    ) -> Result<String> {
        let train = data.split(Split::Train)?;
        let path = data
            .path(Split::Train)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let ctx_at = |index| Ctx {
            task: task.name,
            path: &path,
            index,
        };
        let in_lang = |r: &Record| lang.is_none() || r.lang() == lang;
        let picks: Vec<usize> = match shots {
            Shots::Zero | Shots::FirstK { k: 0, .. } => return Ok(String::new()),
            Shots::FirstK { k, seed } => {
                // HF `shuffle(seed)` then `shuffle(seed=42)`: row j of the result is
                // train[first[second[j]]].
                let first = crate::pyrng::numpy_permutation(seed, train.len());
                let second = crate::pyrng::numpy_permutation(FIRST_K_RESHUFFLE_SEED, train.len());
                let picks: Vec<usize> = second
                    .iter()
                    .map(|&j| first[j])
                    .filter(|&i| in_lang(&train[i]))
                    .take(k)
                    .collect();
                if picks.len() < k {
                    return Err(Error::Template {
                        task: task.name.into(),
                        message: format!(
                            "{k}-shot needs {k} train records{} but {} has {}",
                            lang.map(|l| format!(" in language {l}"))
                                .unwrap_or_default(),
                            path.display(),
                            picks.len()
                        ),
                    });
                }
                picks
            }
            Shots::Published => {
                let idx = self
                    .demo_train_indices
                    .as_ref()
                    .and_then(|d| d.pick(lang))
                    .ok_or_else(|| Error::Template {
                        task: task.name.into(),
                        message: "the template set has no published demonstrations for this task; use Shots::Few".into(),
                    })?;
                for (a, &i) in idx.iter().enumerate() {
                    let r = train.get(i).ok_or_else(|| Error::Template {
                        task: task.name.into(),
                        message: format!("published demo index {i} is beyond train ({} records): not the published train split", train.len()),
                    })?;
                    if self.label(r, &ctx_at(i))? != a || !in_lang(r) {
                        return Err(Error::Template {
                            task: task.name.into(),
                            message: format!("published demo {i} has not answer `{}`{}: not the published train split; use Shots::Few", self.answer_tokens.get(a).map_or("", String::as_str), lang.map(|l| format!(" in language {l}")).unwrap_or_default()),
                        });
                    }
                }
                idx.clone()
            }
            Shots::Few { seed } => {
                // The published procedure: train in `datasets`' shuffle(seed) order, filtered
                // to the prompt language; per answer, the pool of its records in that order;
                // `random.seed(seed)` before each `random.choice(pool)`.
                let order = crate::pyrng::numpy_permutation(seed, train.len());
                let mut pools: Vec<Vec<usize>> = vec![Vec::new(); self.answer_tokens.len()];
                for &i in &order {
                    let r = &train[i];
                    if in_lang(r) {
                        pools[self.label(r, &ctx_at(i))?].push(i);
                    }
                }
                pools
                    .iter()
                    .enumerate()
                    .map(|(a, pool)| {
                        if pool.is_empty() {
                            return Err(Error::Template {
                                task: task.name.into(),
                                message: format!(
                                    "no train record with answer `{}`{} to use as a demonstration",
                                    self.answer_tokens[a],
                                    lang.map(|l| format!(" in language {l}"))
                                        .unwrap_or_default()
                                ),
                            });
                        }
                        Ok(pool[crate::pyrng::PyRandom::new(seed).below(pool.len())])
                    })
                    .collect::<Result<_>>()?
            }
        };
        // Each demo ends with its own record's answer (for Published and Few that is the
        // answer order they were picked in).
        let demos = picks
            .iter()
            .map(|&i| {
                let body = self.body(&train[i], &ctx_at(i))?;
                let answer = self.label(&train[i], &ctx_at(i))?;
                Ok(format!("{body}{}", self.answer_tokens[answer]))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(demos.join("\n\n"))
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
