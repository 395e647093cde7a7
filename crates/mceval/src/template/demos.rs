//! The demonstrations block of a few-shot prompt: which train records it shows and how.
use std::path::Path;

use super::fill::Ctx;
use super::schema::TaskTemplate;
use super::{Shots, FIRST_K_RESHUFFLE_SEED};
use crate::dataset::{Dataset, Split};
use crate::error::{Error, Result};
use crate::record::Record;
use crate::registry::TaskSpec;

impl TaskTemplate {
    /// The demonstrations block for one prompt language.
    pub(super) fn demo_block(
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
        // For errors: " in language xx" for multilingual prompts, else nothing.
        let in_language = lang
            .map(|l| format!(" in language {l}"))
            .unwrap_or_default();
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
                            "{k}-shot needs {k} train records{in_language} but {} has {}",
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
                            message: format!("published demo {i} has not answer `{}`{in_language}: not the published train split; use Shots::Few", self.answer_tokens.get(a).map_or("", String::as_str)),
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
                                    "no train record with answer `{}`{in_language} to use as a demonstration",
                                    self.answer_tokens[a]
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
