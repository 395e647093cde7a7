//! Leak audit of published splits and a deterministic, leak-free, answer-balanced re-split.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::dataset::{DataSource, Dataset, Split};
use crate::error::{Error, Result};
use crate::record::Record;
use crate::registry::{TaskRegistry, TaskSpec, LANGUAGES};

/// Size and duplicates of one split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitAudit {
    /// The split.
    pub split: String,
    /// Number of records.
    pub records: usize,
    /// Number of distinct records.
    pub unique: usize,
    /// `records - unique`.
    pub duplicates: usize,
}

/// Overlap of split `first` with split `second` (records compared as whole JSON objects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overlap {
    /// The split looked up.
    pub first: String,
    /// The split looked in.
    pub second: String,
    /// Records of `first` (with repeats) that also occur in `second`.
    pub first_in_second: usize,
    /// Distinct records occurring in both.
    pub shared_unique: usize,
    /// Every distinct record of `first` occurs in `second`.
    pub contained: bool,
    /// The two files hold the same records in the same order.
    pub identical: bool,
}

/// The audit of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskAudit {
    /// Task name.
    pub task: String,
    /// Splits present.
    pub splits: Vec<SplitAudit>,
    /// Splits absent (e.g. the published imdb/chunking train).
    pub missing: Vec<String>,
    /// Overlaps valid/train, test/train and valid/test (for the pairs present).
    pub overlaps: Vec<Overlap>,
}

impl TaskAudit {
    /// No duplicates inside a split and no record shared between splits.
    pub fn is_leak_free(&self) -> bool {
        self.splits.iter().all(|s| s.duplicates == 0)
            && self.overlaps.iter().all(|o| o.shared_unique == 0)
    }

    /// The split audit of `split`, if present.
    pub fn split(&self, split: Split) -> Option<&SplitAudit> {
        self.splits.iter().find(|s| s.split == split.name())
    }

    /// The overlap of `first` within `second`, if both are present.
    pub fn overlap(&self, first: Split, second: Split) -> Option<&Overlap> {
        self.overlaps
            .iter()
            .find(|o| o.first == first.name() && o.second == second.name())
    }
}

/// Audits one loaded task.
pub fn audit_dataset(data: &Dataset) -> TaskAudit {
    let keys: BTreeMap<Split, Vec<String>> = Split::ALL
        .iter()
        .filter_map(|&s| {
            data.split(s)
                .ok()
                .map(|recs| (s, recs.iter().map(Record::key).collect()))
        })
        .collect();
    let splits = keys
        .iter()
        .map(|(s, k)| {
            let unique = k.iter().collect::<HashSet<_>>().len();
            SplitAudit {
                split: s.name().into(),
                records: k.len(),
                unique,
                duplicates: k.len() - unique,
            }
        })
        .collect();
    let mut overlaps = Vec::new();
    for (a, b) in [
        (Split::Valid, Split::Train),
        (Split::Test, Split::Train),
        (Split::Valid, Split::Test),
    ] {
        let (Some(ka), Some(kb)) = (keys.get(&a), keys.get(&b)) else {
            continue;
        };
        let set_b: HashSet<&String> = kb.iter().collect();
        let set_a: HashSet<&String> = ka.iter().collect();
        let shared_unique = set_a.intersection(&set_b).count();
        overlaps.push(Overlap {
            first: a.name().into(),
            second: b.name().into(),
            first_in_second: ka.iter().filter(|k| set_b.contains(k)).count(),
            shared_unique,
            contained: shared_unique == set_a.len(),
            identical: ka == kb,
        });
    }
    TaskAudit {
        task: data.task().name.into(),
        splits,
        missing: Split::ALL
            .iter()
            .filter(|s| !data.has(**s))
            .map(|s| s.name().into())
            .collect(),
        overlaps,
    }
}

/// Audits every task found under `data_dir` (`<genre>/<task>/<split>.json`). Tasks whose
/// directory is absent are skipped; finding none at all is an error.
pub fn audit(data_dir: &Path) -> Result<Vec<TaskAudit>> {
    let mut out = Vec::new();
    for task in TaskRegistry::builtin().tasks() {
        if !data_dir.join(task.rel_dir()).is_dir() {
            continue;
        }
        let data = Dataset::load(&DataSource::Dir(data_dir.into()), task)?;
        out.push(audit_dataset(&data));
    }
    if out.is_empty() {
        return Err(Error::MissingSplit {
            task: "any".into(),
            split: "train/valid/test".into(),
            path: data_dir.display().to_string(),
            fix: "expected <genre>/<task>/<split>.json files (MCEval8K layout)".into(),
        });
    }
    Ok(out)
}

/// The published size of MCEval8K tasks (6000 + 1000 + 1000).
pub const DEFAULT_TOTAL: usize = 8000;

/// A record's identity without its label: two records with the same input are one item for
/// the re-split, whatever their labels, so that no input is seen in two splits.
pub fn input_key(task: &TaskSpec, record: &Record) -> String {
    let mut r = Record::new();
    for (k, v) in record.fields() {
        if k != task.label_field {
            r.set(k, v.clone());
        }
    }
    r.key()
}

/// [`resplit_with`] with the published total of 8000 records.
pub fn resplit(data: &Dataset, seed: u64) -> Result<Dataset> {
    resplit_with(data, seed, DEFAULT_TOTAL)
}

/// Pools the distinct inputs of every split present, and deals them into disjoint
/// train/valid/test at 6:1:1 with equal numbers per answer (and per language for multilingual
/// tasks) in every split; at most `total` records, fewer when the smallest (language, answer)
/// cell is too small. Deterministic in `seed`.
pub fn resplit_with(data: &Dataset, seed: u64, total: usize) -> Result<Dataset> {
    let task = data.task();
    let mut seen = HashSet::new();
    // (language rank, answer) -> records, in pool order.
    let mut cells: BTreeMap<(usize, usize), Vec<Record>> = BTreeMap::new();
    for split in Split::ALL {
        let Ok(recs) = data.split(split) else {
            continue;
        };
        let labels = data.labels(split)?;
        for (r, label) in recs.iter().zip(labels) {
            if !seen.insert(input_key(task, r)) {
                continue;
            }
            let lang = if task.has_lang {
                r.lang()
                    .and_then(|l| LANGUAGES.iter().position(|x| *x == l))
                    .unwrap_or(LANGUAGES.len())
            } else {
                0
            };
            cells.entry((lang, label)).or_default().push(r.clone());
        }
    }
    let n_cells = cells.len();
    let smallest = cells.values().map(Vec::len).min().unwrap_or(0);
    let k = smallest.min(total / n_cells.max(1));
    let n_eval = (k + 4) / 8;
    if k < 3 || n_eval == 0 {
        return Err(Error::Build {
            task: task.name.into(),
            message: format!(
                "cannot re-split: the smallest (language, answer) cell has {smallest} distinct records"
            ),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for recs in cells.values_mut() {
        recs.shuffle(&mut rng);
        let mut it = recs.drain(..k);
        test.extend(it.by_ref().take(n_eval));
        valid.extend(it.by_ref().take(n_eval));
        train.extend(it);
    }
    train.shuffle(&mut rng);
    valid.shuffle(&mut rng);
    test.shuffle(&mut rng);
    Dataset::from_splits(
        task,
        Path::new("<resplit>"),
        Some(train),
        Some(valid),
        Some(test),
    )
}

/// Counts of each answer index in `labels`.
pub fn answer_counts(labels: &[usize], n_options: usize) -> Vec<usize> {
    let mut counts = vec![0; n_options];
    for &l in labels {
        if let Some(c) = counts.get_mut(l) {
            *c += 1;
        }
    }
    counts
}

/// Records per language.
pub fn language_counts(records: &[Record]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in records {
        *m.entry(r.lang().unwrap_or("").to_string()).or_insert(0) += 1;
    }
    m
}
