//! `neg mceval`: audit, re-split, build and render MCEval8K tasks.
//!
//! ```text
//! neg mceval audit --data ../shared/data/mceval8k [--json audit.json]
//! neg mceval resplit --data ../shared/data/mceval8k --out resplit --seed 0
//! neg mceval build --sources ../shared/data/sources --task chunking --out built --seed 0
//! neg mceval render --data ../shared/data/mceval8k --task agnews --split test \
//!     --shots few --templates ../shared/data/mceval8k/templates.json --limit 3
//! neg mceval render --data hub:iszhaoxin/MCEval8K@main --task paws --split test \
//!     --shots 8 --templates ../shared/data/mceval8k/templates.json --limit 3
//! ```
//! `--data` is a local root laid out as `<genre>/<task>/<split>.json`, or
//! `hub:<owner>/<name>[@<revision>]`: the hub dataset through `mceval::DataSource::Hub`, read
//! from the Hugging Face cache (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`) and offline
//! unless `--online` is given.
//! Bad input gives one `error:` line and exit status 1; nothing is written before all inputs
//! have been read and checked, and every file is written atomically.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use mceval::{DataSource, Dataset, HubSource, Shots, Split, TaskRegistry, TemplateSet};

/// Arguments of `neg mceval`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Let `hub:` data download files missing from the cache (default: cache only).
    #[arg(long, global = true)]
    online: bool,
}

/// Parses `--data`: `hub:<owner>/<name>[@<revision>]` or a local directory.
fn parse_data(s: &str) -> std::result::Result<DataSource, String> {
    let s = if s == "hub" {
        format!("hub:{}", mceval::HUB_REPO)
    } else {
        s.to_string()
    };
    let Some(spec) = s.strip_prefix("hub:") else {
        return Ok(DataSource::Dir(PathBuf::from(s)));
    };
    let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let valid_repo = matches!(repo.split_once('/'), Some((owner, name))
        if !owner.is_empty() && !name.is_empty() && !name.contains('/'));
    if !valid_repo || revision.is_empty() {
        return Err(format!(
            "`{s}` is not hub:<owner>/<name>[@<revision>] (e.g. hub:{})",
            mceval::HUB_REPO
        ));
    }
    Ok(DataSource::Hub(HubSource {
        repo: repo.into(),
        revision: revision.into(),
        ..HubSource::offline()
    }))
}

/// `source`, allowed to download when `online` (hub sources only).
fn with_network(source: DataSource, online: bool) -> DataSource {
    match source {
        DataSource::Hub(hub) => DataSource::Hub(HubSource {
            offline: !online,
            ..hub
        }),
        dir => dir,
    }
}

/// `source` for messages.
fn describe(source: &DataSource) -> String {
    match source {
        DataSource::Dir(root) => root.display().to_string(),
        DataSource::Hub(hub) => format!("hub:{}@{}", hub.repo, hub.revision),
    }
}

/// The MCEval8K tools.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Per task: split sizes, duplicates and overlaps between splits.
    Audit {
        /// Data root laid out as <genre>/<task>/<split>.json, `hub`, or
        /// hub:<owner>/<name>[@<rev>] [default: <shared>/data/mceval8k].
        #[arg(long, value_parser = parse_data)]
        data: Option<DataSource>,
        /// Also write the audit as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Leak-free, answer-balanced 6:1:1 re-split of every task under --data.
    Resplit {
        /// Data root or hub:<owner>/<name>[@<rev>], as for audit.
        #[arg(long, value_parser = parse_data)]
        data: Option<DataSource>,
        /// Output directory [default: out/mceval-resplit].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed of the re-split.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Build postag, mpostag, chunking or ner from raw sources.
    Build {
        /// Directory laid out like shared/data/sources (ud/, conll2000/, conll2003/)
        /// [default: <shared>/data/sources].
        #[arg(long)]
        sources: Option<PathBuf>,
        /// postag, mpostag, chunking or ner.
        #[arg(long)]
        task: String,
        /// Output directory [default: out/mceval-build].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed of the split.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Print prompts and answer tokens as JSON lines.
    Render {
        /// Data root or hub:<owner>/<name>[@<rev>], as for audit.
        #[arg(long, value_parser = parse_data)]
        data: Option<DataSource>,
        /// Task (directory or paper name).
        #[arg(long)]
        task: String,
        /// train, valid or test.
        #[arg(long, value_enum)]
        split: Split,
        /// 0, few, or a number k. Few-shot draws one demonstration per answer from train
        /// with --seed (default: the task's published seed, which reproduces the published
        /// demos). A number is the published '<k>-shot' prompt: 0, the number of answers
        /// (= few), or for PAWS any k (the first k of the twice-shuffled train).
        #[arg(long)]
        shots: String,
        /// Template JSON (e.g. templates.json); default: built-in templates.
        #[arg(long)]
        templates: Option<PathBuf>,
        /// Seed of the few-shot draw [default: the task's published seed].
        #[arg(long)]
        seed: Option<u64>,
        /// Prompts to print (the first of the split).
        #[arg(long)]
        limit: usize,
    },
}

/// Runs the tool and prints its report on stdout.
pub fn main(args: &Args) -> Result<()> {
    run(args, &mut std::io::stdout().lock())
}

/// `--data`, else `<shared>/data/mceval8k`.
fn data_or_default(data: &Option<DataSource>) -> Result<DataSource> {
    match data {
        Some(d) => Ok(d.clone()),
        None => Ok(DataSource::Dir(crate::sources::shared_path(
            "data/mceval8k",
        )?)),
    }
}

/// Runs one command, writing its report to `out`.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<()> {
    let reg = TaskRegistry::builtin();
    let online = args.online;
    match args.command.clone() {
        Command::Audit { data, json } => {
            let audits: Vec<mceval::TaskAudit> =
                load_all(&with_network(data_or_default(&data)?, online))?
                    .iter()
                    .map(mceval::audit_dataset)
                    .collect();
            for a in &audits {
                let splits: Vec<String> = a
                    .splits
                    .iter()
                    .map(|s| format!("{} {}/{} unique", s.split, s.records, s.unique))
                    .collect();
                let overlaps: Vec<String> = a
                    .overlaps
                    .iter()
                    .filter(|o| o.shared_unique > 0)
                    .map(|o| {
                        let how = if o.identical {
                            "identical"
                        } else if o.contained {
                            "contained"
                        } else {
                            "overlap"
                        };
                        format!("{}~{} {} ({how})", o.first, o.second, o.shared_unique)
                    })
                    .collect();
                let missing = if a.missing.is_empty() {
                    String::new()
                } else {
                    format!(" | missing: {}", a.missing.join(","))
                };
                writeln!(
                    out,
                    "{:<20} {} | {}{missing}",
                    a.task,
                    splits.join(", "),
                    if overlaps.is_empty() {
                        "leak-free".to_string()
                    } else {
                        overlaps.join(", ")
                    }
                )?;
            }
            if let Some(path) = json {
                crate::output::write_json(&path, &audits)?;
            }
        }
        Command::Resplit {
            data,
            out: dir,
            seed,
        } => {
            // Everything is computed before anything is written: no partial output.
            let done = load_all(&with_network(data_or_default(&data)?, online))?
                .iter()
                .map(|d| mceval::resplit(d, seed))
                .collect::<mceval::Result<Vec<_>>>()?;
            // Written as a unit: every task or none, and never beside an earlier run's files.
            let dir = dir.unwrap_or_else(|| PathBuf::from("out/mceval-resplit"));
            crate::output::check_out_dir(&dir)?;
            let run = crate::output::RunOutput::begin(&dir)?;
            for d in &done {
                d.write(&run.path(""))?;
            }
            run.commit()?;
            for d in &done {
                let sizes: Vec<String> = Split::ALL
                    .iter()
                    .map(|s| d.split(*s).map(|r| r.len().to_string()).unwrap_or_default())
                    .collect();
                writeln!(out, "{:<20} {}", d.task().name, sizes.join("/"))?;
            }
        }
        Command::Build {
            sources,
            task,
            out: dir,
            seed,
        } => {
            let sources = match sources {
                Some(s) => s,
                None => crate::sources::shared_path("data/sources")?,
            };
            let dir = dir.unwrap_or_else(|| PathBuf::from("out/mceval-build"));
            crate::output::check_out_dir(&dir)?;
            let d = mceval::build::build(&task, &sources, seed)?;
            let run = crate::output::RunOutput::begin(&dir)?;
            let staging = run.path("");
            let written = d.write(&staging)?;
            run.commit()?;
            for path in written {
                let rel = path.strip_prefix(&staging).unwrap_or(&path);
                writeln!(out, "{}", dir.join(rel).display())?;
            }
        }
        Command::Render {
            data,
            task,
            split,
            shots,
            templates,
            seed,
            limit,
        } => {
            let spec = reg.get(&task)?;
            let set = match &templates {
                Some(p) => TemplateSet::from_file(p)?,
                None => TemplateSet::builtin(),
            };
            let seed = seed.unwrap_or(spec.seed);
            let shots = match (shots.as_str(), shots.parse::<usize>()) {
                ("few", _) => Shots::Few { seed },
                (_, Ok(k)) => set.k_shot(spec, k, seed)?,
                (other, Err(_)) => bail!("--shots must be 0, few or a number k, not `{other}`"),
            };
            let source = with_network(data_or_default(&data)?, online);
            let d = Dataset::load(&source, spec)
                .with_context(|| format!("loading {task} from {}", describe(&source)))?;
            let items = set
                .render(spec, &d, split, shots, Some(limit))
                .with_context(|| format!("rendering {task} {split} ({shots})"))?;
            for item in items {
                let line = serde_json::json!({
                    "task": item.task, "index": item.index, "prompt": item.prompt,
                    "options": item.options, "answer": item.answer(), "label": item.label,
                    "lang": item.lang,
                });
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}

/// Every registry task found in `source`. Tasks absent from a local root, or from the hub
/// repository (offline: from its cache), are skipped; finding none is an error.
fn load_all(source: &DataSource) -> Result<Vec<Dataset>> {
    let mut out = Vec::new();
    for task in TaskRegistry::builtin().tasks() {
        if let DataSource::Dir(root) = source {
            if !root.join(task.rel_dir()).is_dir() {
                continue;
            }
        }
        match Dataset::load(source, task) {
            Ok(d) => out.push(d),
            // Dataset::load reports a task with no split file at all as MissingSplit.
            Err(mceval::Error::MissingSplit { .. }) if matches!(source, DataSource::Hub(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if out.is_empty() {
        bail!(
            "no MCEval8K task found in {} (expected <genre>/<task>/<split>.json files)",
            describe(source)
        );
    }
    Ok(out)
}
