//! Filling a template with one record: field transforms, the options block, the question
//! and the gold answer index.
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::schema::{PromptLanguage, TaskTemplate};
use crate::error::{Error, Result};
use crate::record::{py_str, Record};

/// Where a record comes from, for errors.
pub(super) struct Ctx<'a> {
    pub(super) task: &'a str,
    pub(super) path: &'a Path,
    pub(super) index: usize,
}

impl Ctx<'_> {
    pub(super) fn missing(&self, field: &str) -> Error {
        Error::MissingField {
            path: self.path.into(),
            index: self.index,
            field: field.into(),
        }
    }
    pub(super) fn bad(&self, field: &str, message: String) -> Error {
        Error::BadValue {
            path: self.path.into(),
            index: self.index,
            field: field.into(),
            message,
        }
    }
}

pub(super) fn pick<'a>(map: &'a BTreeMap<String, String>, lang: Option<&str>) -> &'a str {
    // `en` exists (checked at load); languages without their own entry fall back to it.
    lang.and_then(|l| map.get(l))
        .or_else(|| map.get("en"))
        .map(String::as_str)
        .unwrap_or_default()
}

/// Python's `str.strip()`: Unicode whitespace plus the ASCII separators U+001C..U+001F.
pub(super) fn py_strip(s: &str) -> &str {
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
    pub(super) fn body(&self, record: &Record, ctx: &Ctx) -> Result<String> {
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
    pub(super) fn label(&self, record: &Record, ctx: &Ctx) -> Result<usize> {
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
}
