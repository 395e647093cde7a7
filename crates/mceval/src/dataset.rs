//! Loading a task's published splits from a directory or from the Hugging Face hub.
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::record::{parse_json_records, read_text, write_published_json, Record};
use crate::registry::TaskSpec;

/// The hub dataset that mirrors MCEval8K.
pub const HUB_REPO: &str = "iszhaoxin/MCEval8K";

/// A data split. `FromStr` and, with the crate's `clap` feature, `clap::ValueEnum` take
/// `train`, `valid` (also `validation` or `dev`) and `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Split {
    /// `train.json` (few-shot demonstrations come from here).
    Train,
    /// `valid.json`.
    #[cfg_attr(feature = "clap", value(alias = "validation", alias = "dev"))]
    Valid,
    /// `test.json`.
    Test,
}

impl Split {
    /// All splits in file order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// File stem (`train`, `valid`, `test`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "train" => Ok(Split::Train),
            "valid" | "validation" | "dev" => Ok(Split::Valid),
            "test" => Ok(Split::Test),
            other => Err(format!(
                "unknown split `{other}` (expected train, valid or test)"
            )),
        }
    }
}

/// Where task files come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A local root laid out as `<genre>/<task>/<split>.json`.
    Dir(PathBuf),
    /// The hub dataset (same layout), through `hf-hub`.
    Hub(HubSource),
}

/// A hub dataset location. The default is `iszhaoxin/MCEval8K` at `main`, cache from
/// `HF_HOME` (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`), online when the cache misses.
#[derive(Debug, Clone, PartialEq)]
pub struct HubSource {
    /// Dataset repository id.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Hub cache directory (the folder holding `datasets--...`); `None` = from `HF_HOME`.
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network: files must already be in the cache.
    pub offline: bool,
}

impl Default for HubSource {
    fn default() -> Self {
        Self {
            repo: HUB_REPO.into(),
            revision: "main".into(),
            cache_dir: None,
            offline: false,
        }
    }
}

impl HubSource {
    /// The published dataset, offline from the `HF_HOME` cache.
    pub fn offline() -> Self {
        Self {
            offline: true,
            ..Self::default()
        }
    }

    fn cache(&self) -> hf_hub::Cache {
        match &self.cache_dir {
            Some(dir) => hf_hub::Cache::new(dir.clone()),
            None => hf_hub::Cache::from_env(),
        }
    }

    fn repo(&self) -> hf_hub::Repo {
        hf_hub::Repo::with_revision(
            self.repo.clone(),
            hf_hub::RepoType::Dataset,
            self.revision.clone(),
        )
    }

    /// Local path of `file` (downloading it when online and not cached), or `None` when the
    /// repository has no such file.
    fn fetch(&self, file: &str) -> Result<Option<PathBuf>> {
        let cache = self.cache();
        if let Some(path) = cache.repo(self.repo()).get(file) {
            return Ok(Some(path));
        }
        // hf-hub resolves every revision through `refs/<revision>`, but caches written by
        // Python's huggingface_hub have no ref file for a commit revision: its snapshot
        // folder is named by the commit itself.
        if is_commit(&self.revision) {
            let path = cache
                .path()
                .join(self.repo().folder_name())
                .join("snapshots")
                .join(&self.revision)
                .join(file);
            if path.is_file() {
                return Ok(Some(path));
            }
        }
        if self.offline {
            return Ok(None);
        }
        let hub_err = |message: String| Error::Hub {
            repo: self.repo.clone(),
            file: file.into(),
            message,
        };
        let api = hf_hub::api::sync::ApiBuilder::from_cache(self.cache())
            .with_progress(false)
            .build()
            .map_err(|e| hub_err(e.to_string()))?;
        match api.repo(self.repo()).get(file) {
            Ok(path) => Ok(Some(path)),
            // ureq reports a missing file as HTTP status 404; hf-hub does not expose a typed
            // "not found", so the message is the only signal.
            Err(e) if e.to_string().contains("404") => Ok(None),
            Err(e) => Err(hub_err(format!(
                "{e} (set HF_HOME to a populated cache and use offline mode to work without network)"
            ))),
        }
    }
}

/// Whether a revision is a full commit id (40 hex digits) rather than a branch or tag.
fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A task's loaded splits, validated against its schema.
#[derive(Debug, Clone)]
pub struct Dataset {
    task: TaskSpec,
    splits: [Option<SplitData>; 3],
}

#[derive(Debug, Clone)]
struct SplitData {
    path: PathBuf,
    records: Vec<Record>,
}

impl Dataset {
    /// Loads every split present for `task` from `source` and validates each record
    /// (fields, label, options, language). At least one split must exist.
    pub fn load(source: &DataSource, task: &TaskSpec) -> Result<Dataset> {
        let mut splits: [Option<SplitData>; 3] = [None, None, None];
        for split in Split::ALL {
            let rel = format!("{}/{}.json", task.rel_dir(), split.name());
            let path = match source {
                DataSource::Dir(root) => {
                    let p = root.join(&rel);
                    p.exists().then_some(p)
                }
                DataSource::Hub(hub) => hub.fetch(&rel)?,
            };
            if let Some(path) = path {
                let text = read_text(&path)?;
                let records = parse_json_records(&text, &path)?;
                splits[split.index()] = Some(SplitData { path, records });
            }
        }
        if splits.iter().all(Option::is_none) {
            return Err(Error::MissingSplit {
                task: task.name.into(),
                split: "train/valid/test".into(),
                path: match source {
                    DataSource::Dir(root) => root.join(task.rel_dir()).display().to_string(),
                    DataSource::Hub(hub) => format!("hub {}:{}", hub.repo, task.rel_dir()),
                },
                fix: match source {
                    DataSource::Hub(hub) if hub.offline => {
                        "no train/valid/test.json in the hub cache (offline; set HF_HOME or cache_dir to a populated cache, or allow the network)".into()
                    }
                    _ => "no train/valid/test.json found; check the data root".into(),
                },
            });
        }
        let data = Dataset {
            task: task.clone(),
            splits,
        };
        data.validate()?;
        Ok(data)
    }

    /// A dataset from records in memory (built or re-split); validated like loaded files.
    /// `origin` names the records in errors (e.g. the output directory).
    pub fn from_splits(
        task: &TaskSpec,
        origin: &Path,
        train: Option<Vec<Record>>,
        valid: Option<Vec<Record>>,
        test: Option<Vec<Record>>,
    ) -> Result<Dataset> {
        let make = |split: Split, recs: Option<Vec<Record>>| {
            recs.map(|records| SplitData {
                path: origin
                    .join(task.rel_dir())
                    .join(format!("{}.json", split.name())),
                records,
            })
        };
        let data = Dataset {
            task: task.clone(),
            splits: [
                make(Split::Train, train),
                make(Split::Valid, valid),
                make(Split::Test, test),
            ],
        };
        data.validate()?;
        Ok(data)
    }

    fn validate(&self) -> Result<()> {
        for s in self.splits.iter().flatten() {
            for (i, r) in s.records.iter().enumerate() {
                self.task.validate(r, &s.path, i)?;
            }
        }
        Ok(())
    }

    /// The task these records belong to.
    pub fn task(&self) -> &TaskSpec {
        &self.task
    }

    /// Whether `split` exists.
    pub fn has(&self, split: Split) -> bool {
        self.splits[split.index()].is_some()
    }

    /// The records of `split`, or an error naming the fix when it is missing (the published
    /// imdb and chunking have no train split).
    pub fn split(&self, split: Split) -> Result<&[Record]> {
        match &self.splits[split.index()] {
            Some(s) => Ok(&s.records),
            None => Err(Error::MissingSplit {
                task: self.task.name.into(),
                split: split.name().into(),
                path: format!("{}/{}.json", self.task.rel_dir(), split.name()),
                fix: if self.task.name == "chunking" {
                    "rebuild it from CoNLL-2000 (`mceval build --task chunking`, mceval::build) or re-split the valid/test pool (`mceval resplit`, mceval::resplit)".into()
                } else {
                    "re-split the pooled valid/test records into leak-free train/valid/test (`mceval resplit`, mceval::resplit)".into()
                },
            }),
        }
    }

    /// The file `split` was read from (or would be written to), if the split exists.
    pub fn path(&self, split: Split) -> Option<&Path> {
        self.splits[split.index()]
            .as_ref()
            .map(|s| s.path.as_path())
    }

    /// Answer index of every record of `split`.
    pub fn labels(&self, split: Split) -> Result<Vec<usize>> {
        let recs = self.split(split)?;
        let path = self.path(split).unwrap_or(Path::new(""));
        recs.iter()
            .enumerate()
            .map(|(i, r)| {
                self.task.label_of(r).map_err(|m| Error::BadValue {
                    path: path.into(),
                    index: i,
                    field: self.task.label_field.into(),
                    message: m,
                })
            })
            .collect()
    }

    /// Writes the present splits under `root` in the published layout and format
    /// (`<root>/<genre>/<task>/<split>.json`, pretty JSON arrays), each file atomically.
    /// Returns the files written.
    pub fn write(&self, root: &Path) -> Result<Vec<PathBuf>> {
        let dir = root.join(self.task.rel_dir());
        let mut written = Vec::new();
        for split in Split::ALL {
            if let Some(s) = &self.splits[split.index()] {
                let path = dir.join(format!("{}.json", split.name()));
                write_published_json(&path, &s.records)?;
                written.push(path);
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::Split;

    #[test]
    fn split_names_round_trip_and_aliases_parse() {
        for split in Split::ALL {
            assert_eq!(split.name().parse::<Split>().unwrap(), split);
            assert_eq!(split.to_string(), split.name());
        }
        for alias in ["validation", "dev"] {
            assert_eq!(alias.parse::<Split>().unwrap(), Split::Valid);
        }
        assert!("eval".parse::<Split>().is_err());
    }

    #[cfg(feature = "clap")]
    #[test]
    fn value_enum_accepts_what_from_str_accepts() {
        use clap::ValueEnum;
        assert_eq!(Split::value_variants(), &Split::ALL);
        for split in Split::ALL {
            assert_eq!(split.to_possible_value().unwrap().get_name(), split.name());
        }
        for name in ["train", "valid", "validation", "dev", "test"] {
            let from_clap = <Split as ValueEnum>::from_str(name, false).unwrap();
            assert_eq!(from_clap, name.parse::<Split>().unwrap(), "{name}");
        }
        assert!(<Split as ValueEnum>::from_str("eval", false).is_err());
    }
}
