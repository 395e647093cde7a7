//! Construction of MCEval8K-style tasks from raw sources, reproducibly (seeded).
//!
//! Readers: CoNLL-U (UD), CoNLL-2000 (`word POS chunk`), CoNLL-2003 (`word POS chunk ner`),
//! plus the JSON/JSONL/CSV record readers in [`crate::record`]. Option rules follow the paper:
//! POS, CHUNK and NER items offer the gold tag plus three tags drawn by frequency-weighted
//! sampling without replacement; LAMA-style items offer objects of the same relation (also
//! frequency-weighted); TempLAMA items offer years from 2009-2020. The gold option's position
//! cycles through a, b, c, d, so answers are balanced in every split. 8000 records are split
//! 6000/1000/1000, and the splits come from disjoint sentences, so no input crosses splits.
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::record::{non_empty, read_text, Record};
use crate::registry::{TaskRegistry, TaskSpec};

/// One tokenised sentence with one tag per token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaggedSentence {
    /// Surface text (`# text =` of CoNLL-U; tokens joined by spaces otherwise).
    pub text: String,
    /// Word forms.
    pub tokens: Vec<String>,
    /// One tag per token (UPOS, IOB chunk tag or IOB entity tag).
    pub tags: Vec<String>,
}

/// Reads a CoNLL-U file: word lines only (multi-word ranges `1-2` and empty nodes `1.1` are
/// skipped), tag = UPOS (column 4), text from `# text =`.
pub fn read_conllu(path: &Path) -> Result<Vec<TaggedSentence>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    let mut cur = TaggedSentence::default();
    let flush = |cur: &mut TaggedSentence, out: &mut Vec<TaggedSentence>| {
        if !cur.tokens.is_empty() {
            if cur.text.is_empty() {
                cur.text = cur.tokens.join(" ");
            }
            out.push(std::mem::take(cur));
        } else {
            cur.text.clear();
        }
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            flush(&mut cur, &mut out);
        } else if let Some(t) = line.strip_prefix("# text = ") {
            cur.text = t.trim().to_string();
        } else if line.starts_with('#') {
            continue;
        } else {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() != 10 {
                return Err(Error::malformed(
                    path,
                    "CoNLL-U",
                    format!("line {}: {} columns, expected 10", i + 1, cols.len()),
                ));
            }
            if cols[0].contains('-') || cols[0].contains('.') {
                continue;
            }
            cur.tokens.push(cols[1].to_string());
            cur.tags.push(cols[3].to_string());
        }
    }
    flush(&mut cur, &mut out);
    non_empty(path, out)
}

/// Reads whitespace-separated CoNLL columns (one token per line, blank line between
/// sentences, `-DOCSTART-` lines skipped), taking the tag from column `tag_column` (0-based).
pub fn read_conll_columns(
    path: &Path,
    tag_column: usize,
    format: &'static str,
) -> Result<Vec<TaggedSentence>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    let (mut tokens, mut tags) = (Vec::new(), Vec::new());
    let mut flush = |tokens: &mut Vec<String>, tags: &mut Vec<String>| {
        if !tokens.is_empty() {
            out.push(TaggedSentence {
                text: tokens.join(" "),
                tokens: std::mem::take(tokens),
                tags: std::mem::take(tags),
            });
        }
    };
    for (i, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() {
            flush(&mut tokens, &mut tags);
            continue;
        }
        if cols[0] == "-DOCSTART-" {
            flush(&mut tokens, &mut tags);
            continue;
        }
        let tag = cols.get(tag_column).ok_or_else(|| {
            Error::malformed(
                path,
                format,
                format!(
                    "line {}: {} columns, expected at least {}",
                    i + 1,
                    cols.len(),
                    tag_column + 1
                ),
            )
        })?;
        tokens.push(cols[0].to_string());
        tags.push(tag.to_string());
    }
    flush(&mut tokens, &mut tags);
    non_empty(path, out)
}

/// CoNLL-2000 chunking (`word POS chunk`): tag = IOB chunk tag.
pub fn read_conll2000(path: &Path) -> Result<Vec<TaggedSentence>> {
    read_conll_columns(path, 2, "CoNLL-2000")
}

/// CoNLL-2003 NER (`word POS chunk ner`): tag = IOB entity tag.
pub fn read_conll2003(path: &Path) -> Result<Vec<TaggedSentence>> {
    read_conll_columns(path, 3, "CoNLL-2003")
}

/// Spans `(start, end, type)` of IOB tags; accepts IOB1 (CoNLL-2003: `I-` opens a span
/// unless it continues one of the same type) and IOB2 (`B-` always opens).
pub fn iob_spans(tags: &[String]) -> Vec<(usize, usize, String)> {
    let mut spans: Vec<(usize, usize, String)> = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, tag) in tags.iter().enumerate() {
        let (prefix, ty) = match tag.split_once('-') {
            Some((p, t)) if p == "B" || p == "I" => (p, t),
            _ => ("O", ""),
        };
        let continues = prefix == "I" && open.as_ref().is_some_and(|(_, t)| t == ty);
        if !continues {
            if let Some((s, t)) = open.take() {
                spans.push((s, i, t));
            }
            if prefix != "O" {
                open = Some((i, ty.to_string()));
            }
        }
    }
    if let Some((s, t)) = open {
        spans.push((s, tags.len(), t));
    }
    spans
}

/// Tag frequencies, the weights of distractor sampling.
pub type Frequencies = BTreeMap<String, usize>;

/// Draws `n` distinct distractors other than `gold`, each with probability proportional to
/// its frequency among those not yet drawn (weighted sampling without replacement).
pub fn weighted_distractors(
    gold: &str,
    freq: &Frequencies,
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Option<Vec<String>> {
    let mut pool: Vec<(&String, usize)> = freq
        .iter()
        .filter(|(k, &c)| k.as_str() != gold && c > 0)
        .map(|(k, &c)| (k, c))
        .collect();
    if pool.len() < n {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let total: usize = pool.iter().map(|p| p.1).sum();
        let mut x = rng.gen_range(0..total);
        let pos = pool
            .iter()
            .position(|p| {
                if x < p.1 {
                    true
                } else {
                    x -= p.1;
                    false
                }
            })
            .unwrap_or(pool.len() - 1);
        out.push(pool.remove(pos).0.clone());
    }
    Some(out)
}

/// TempLAMA's option rule: three other years from 2009-2020, uniformly.
pub fn year_distractors(gold: &str, rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut years: Vec<String> = (2009..=2020)
        .map(|y: u32| y.to_string())
        .filter(|y| y != gold)
        .collect();
    years.shuffle(rng);
    years.truncate(3);
    years
}

/// A candidate item before options are attached: its record fields, gold option, the
/// sentence (or other grouping unit) it comes from, and its group (language).
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Fields other than `options` and `label`.
    pub record: Record,
    /// The gold option text.
    pub gold: String,
    /// Items sharing a unit never go to different splits.
    pub unit: String,
    /// Group (language) for per-group balance; `""` when none.
    pub group: String,
}

/// Split sizes of a built task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Train records.
    pub train: usize,
    /// Valid records.
    pub valid: usize,
    /// Test records.
    pub test: usize,
}

impl Default for Sizes {
    /// MCEval8K's 6000/1000/1000.
    fn default() -> Self {
        Sizes {
            train: 6000,
            valid: 1000,
            test: 1000,
        }
    }
}

/// How distractors are chosen for a candidate (`None`: not enough alternatives).
pub type OptionRule<'a> = dyn Fn(&Candidate, &mut ChaCha8Rng) -> Option<Vec<String>> + 'a;

/// Deals candidates into leak-free, answer-balanced train/valid/test records.
///
/// Per group: units are shuffled and divided into test, valid and train pools holding 1/8,
/// 1/8 and 6/8 of the candidates; each split draws its share of `sizes` (divided equally
/// among groups) from its own pool, without repeating a record. The gold option goes to
/// position `i % n_options` of the i-th record of a split, so answers are balanced.
pub fn assemble(
    task: &TaskSpec,
    candidates: Vec<Candidate>,
    distractors: &OptionRule,
    sizes: Sizes,
    seed: u64,
) -> Result<Dataset> {
    let err = |message: String| Error::Build {
        task: task.name.into(),
        message,
    };
    let n_opt = task.n_options();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut groups: BTreeMap<String, BTreeMap<String, Vec<Candidate>>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for c in candidates {
        if seen.insert(c.record.key()) {
            groups
                .entry(c.group.clone())
                .or_default()
                .entry(c.unit.clone())
                .or_default()
                .push(c);
        }
    }
    let n_groups = groups.len().max(1);
    let share = |n: usize| n / n_groups;
    let mut splits: [Vec<Record>; 3] = [vec![], vec![], vec![]];
    for (group, units) in groups {
        let total: usize = units.values().map(Vec::len).sum();
        let mut units: Vec<Vec<Candidate>> = units.into_values().collect();
        units.shuffle(&mut rng);
        let mut pools: [Vec<Candidate>; 3] = [vec![], vec![], vec![]];
        let mut taken = 0;
        for unit in units {
            // Pool order: test, valid, train; boundaries at 1/8 and 2/8 of the candidates.
            let pool = if taken < total / 8 {
                0
            } else if taken < total / 4 {
                1
            } else {
                2
            };
            taken += unit.len();
            pools[pool].extend(unit);
        }
        let wanted = [share(sizes.test), share(sizes.valid), share(sizes.train)];
        for (p, (mut pool, want)) in pools.into_iter().zip(wanted).enumerate() {
            pool.shuffle(&mut rng);
            let mut made = Vec::with_capacity(want);
            for c in pool {
                if made.len() == want {
                    break;
                }
                let Some(mut opts) = distractors(&c, &mut rng) else {
                    continue;
                };
                opts.truncate(n_opt - 1);
                let label = made.len() % n_opt;
                opts.insert(label, c.gold.clone());
                let mut r = c.record.clone();
                r.set(task.options_field.unwrap_or("options"), Value::from(opts));
                r.set(task.label_field, task.label_value(label));
                // Published multilingual records end with `lang`; keep that order.
                r.move_to_end("lang");
                made.push(r);
            }
            if made.len() < want {
                return Err(err(format!(
                    "group `{group}`: only {} usable candidates for a split needing {want}",
                    made.len()
                )));
            }
            // Pools are test, valid, train; `splits` is train, valid, test.
            splits[2 - p].extend(made);
        }
    }
    for s in splits.iter_mut() {
        s.shuffle(&mut rng);
    }
    let [train, valid, test] = splits;
    Dataset::from_splits(
        task,
        Path::new("<built>"),
        Some(train),
        Some(valid),
        Some(test),
    )
}

fn frequencies<'a>(tags: impl Iterator<Item = &'a str>) -> Frequencies {
    let mut f = Frequencies::new();
    for t in tags {
        *f.entry(t.to_string()).or_insert(0) += 1;
    }
    f
}

/// POS candidates: every token whose UPOS is known (not `_`).
fn pos_candidates(sents: &[TaggedSentence], lang: Option<&str>) -> Vec<Candidate> {
    let mut out = Vec::new();
    for s in sents {
        for (tok, tag) in s.tokens.iter().zip(&s.tags) {
            if tag == "_" {
                continue;
            }
            let mut r = Record::new()
                .with("text", s.text.as_str())
                .with("tokens", s.tokens.clone())
                .with("target_token", tok.as_str());
            if let Some(l) = lang {
                r.set("lang", l);
            }
            out.push(Candidate {
                record: r,
                gold: tag.clone(),
                unit: s.text.clone(),
                group: lang.unwrap_or("").into(),
            });
        }
    }
    out
}

/// Span candidates (chunks or entities): every IOB span.
fn span_candidates(sents: &[TaggedSentence]) -> (Vec<Candidate>, Frequencies) {
    let mut out = Vec::new();
    let mut types = Vec::new();
    for s in sents {
        let spans = iob_spans(&s.tags);
        let chunks: Vec<Vec<String>> = spans
            .iter()
            .map(|(a, b, _)| s.tokens[*a..*b].to_vec())
            .collect();
        for ((_, _, ty), chunk) in spans.iter().zip(&chunks) {
            types.push(ty.clone());
            out.push(Candidate {
                record: Record::new()
                    .with("text", s.text.as_str())
                    .with("chunks", Value::from(chunks.clone()))
                    .with("target_chunk", chunk.clone()),
                gold: ty.clone(),
                unit: s.text.clone(),
                group: String::new(),
            });
        }
    }
    (out, frequencies(types.iter().map(String::as_str)))
}

fn source_files(dir: &Path, names: &[&str]) -> Result<Vec<std::path::PathBuf>> {
    names
        .iter()
        .map(|n| {
            let p = dir.join(n);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::io(
                    &p,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "source file not found"),
                ))
            }
        })
        .collect()
}

/// A reader of one source file.
type SentenceReader = fn(&Path) -> Result<Vec<TaggedSentence>>;

/// The tasks [`build`] can construct from `data/sources`.
pub const BUILDABLE: [&str; 4] = ["postag", "mpostag", "chunking", "ner"];

/// Builds `task` (postag from UD GUM, mpostag from UD PUD in 5 languages, chunking from
/// CoNLL-2000, ner from CoNLL-2003) from a sources directory laid out like
/// `shared/data/sources`, with the default 6000/1000/1000 sizes.
pub fn build(task: &str, sources: &Path, seed: u64) -> Result<Dataset> {
    build_with(task, sources, seed, Sizes::default())
}

/// [`build`] with explicit split sizes.
pub fn build_with(task: &str, sources: &Path, seed: u64, sizes: Sizes) -> Result<Dataset> {
    let spec = TaskRegistry::builtin().get(task)?;
    let weighted = |freq: Frequencies| {
        move |c: &Candidate, rng: &mut ChaCha8Rng| weighted_distractors(&c.gold, &freq, 3, rng)
    };
    match spec.name {
        "postag" => {
            let mut sents = Vec::new();
            for p in source_files(
                &sources.join("ud"),
                &["en_gum-ud-dev.conllu", "en_gum-ud-test.conllu"],
            )? {
                sents.extend(read_conllu(&p)?);
            }
            let freq = frequencies(sents.iter().flat_map(|s| s.tags.iter().map(String::as_str)).filter(|t| *t != "_"));
            assemble(spec, pos_candidates(&sents, None), &weighted(freq), sizes, seed)
        }
        "mpostag" => {
            let mut cands = Vec::new();
            let mut freqs: BTreeMap<String, Frequencies> = BTreeMap::new();
            for lang in crate::registry::LANGUAGES {
                let file = format!("{lang}_pud-ud-test.conllu");
                let p = source_files(&sources.join("ud"), &[&file])?.remove(0);
                let sents = read_conllu(&p)?;
                freqs.insert(
                    lang.into(),
                    frequencies(sents.iter().flat_map(|s| s.tags.iter().map(String::as_str)).filter(|t| *t != "_")),
                );
                cands.extend(pos_candidates(&sents, Some(lang)));
            }
            // Distractors follow the tag frequencies of the candidate's own language.
            let rule = move |c: &Candidate, rng: &mut ChaCha8Rng| {
                weighted_distractors(&c.gold, freqs.get(&c.group)?, 3, rng)
            };
            assemble(spec, cands, &rule, sizes, seed)
        }
        "chunking" | "ner" => {
            let (dir, names, reader): (_, &[&str], SentenceReader) =
                if spec.name == "chunking" {
                    ("conll2000", &["train.txt", "dev.txt", "test.txt"], read_conll2000)
                } else {
                    ("conll2003", &["eng.train", "eng.testa", "eng.testb"], read_conll2003)
                };
            let mut sents = Vec::new();
            for p in source_files(&sources.join(dir), names)? {
                sents.extend(reader(&p)?);
            }
            let (cands, freq) = span_candidates(&sents);
            assemble(spec, cands, &weighted(freq), sizes, seed)
        }
        other => Err(Error::Build {
            task: other.into(),
            message: format!(
                "no raw-source builder for this task; buildable: {}; for LAMA-style tasks use build_fact",
                BUILDABLE.join(", ")
            ),
        }),
    }
}

/// How a fact task's options are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactRule {
    /// LAMA-style: other objects of the same relation, frequency-weighted.
    SameRelation,
    /// TempLAMA: other years from 2009-2020.
    Years,
}

/// Builds a LAMA-style task (myriadlama, templama, mlama) from raw fact records (e.g. read
/// with [`crate::read_jsonl_records`] or [`crate::read_csv_records`]) with fields
/// `text_field` (a statement with `[Y]` for the object), `object_field` and `relation_field`.
/// Records are grouped by `lang` when the task is multilingual; the unit keeping items in one
/// split is the statement's subject fact (the text).
pub fn build_fact(
    task: &TaskSpec,
    records: &[Record],
    fields: (&str, &str, &str),
    rule: FactRule,
    sizes: Sizes,
    seed: u64,
) -> Result<Dataset> {
    let (text_field, object_field, relation_field) = fields;
    let mut by_rel: BTreeMap<String, Frequencies> = BTreeMap::new();
    let mut cands = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let get = |f: &str| {
            r.get(f)
                .map(crate::record::py_str)
                .ok_or_else(|| Error::MissingField {
                    path: "<fact records>".into(),
                    index: i,
                    field: f.into(),
                })
        };
        let (text, object, relation) = (get(text_field)?, get(object_field)?, get(relation_field)?);
        let lang = if task.has_lang {
            get("lang")?
        } else {
            String::new()
        };
        *by_rel
            .entry(format!("{lang}\u{0}{relation}"))
            .or_default()
            .entry(object.clone())
            .or_insert(0) += 1;
        let mut rec = Record::new().with("text", text.as_str());
        if task.has_lang {
            rec.set("lang", lang.as_str());
        }
        cands.push((
            Candidate {
                record: rec,
                gold: object,
                unit: text,
                group: lang.clone(),
            },
            format!("{lang}\u{0}{relation}"),
        ));
    }
    let rel_of: BTreeMap<String, String> = cands
        .iter()
        .map(|(c, rel)| (c.record.key(), rel.clone()))
        .collect();
    let rule_fn = move |c: &Candidate, rng: &mut ChaCha8Rng| match rule {
        FactRule::Years => Some(year_distractors(&c.gold, rng)),
        FactRule::SameRelation => {
            weighted_distractors(&c.gold, by_rel.get(rel_of.get(&c.record.key())?)?, 3, rng)
        }
    };
    assemble(
        task,
        cands.into_iter().map(|(c, _)| c).collect(),
        &rule_fn,
        sizes,
        seed,
    )
}
