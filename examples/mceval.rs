//! `mceval`: audit, re-split, build and render MCEval8K tasks.
//!
//! ```text
//! cargo run --release --example mceval -- audit --data ../shared/data/mceval8k [--json audit.json]
//! cargo run --release --example mceval -- resplit --data ../shared/data/mceval8k --out resplit --seed 0
//! cargo run --release --example mceval -- build --sources ../shared/data/sources --task chunking --out built --seed 0
//! cargo run --release --example mceval -- render --data ../shared/data/mceval8k --task agnews --split test \
//!     --shots few --templates ../shared/data/mceval8k/templates.json --limit 3
//! ```
//! Bad input gives one `error:` line and exit status 1; nothing is written before all inputs
//! have been read and checked, and every file is written atomically.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use mceval::{DataSource, Dataset, Shots, Split, TaskRegistry, TemplateSet};

#[derive(Parser, Debug)]
#[command(
    name = "mceval",
    about = "MCEval8K: audit, re-split, build and render tasks"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Per task: split sizes, duplicates and overlaps between splits.
    Audit {
        /// Data root laid out as <genre>/<task>/<split>.json.
        #[arg(long)]
        data: PathBuf,
        /// Also write the audit as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Leak-free, answer-balanced 6:1:1 re-split of every task under --data.
    Resplit {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        seed: u64,
    },
    /// Build postag, mpostag, chunking or ner from raw sources.
    Build {
        /// Directory laid out like shared/data/sources (ud/, conll2000/, conll2003/).
        #[arg(long)]
        sources: PathBuf,
        #[arg(long)]
        task: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        seed: u64,
    },
    /// Print prompts and answer tokens as JSON lines.
    Render {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        task: String,
        /// train, valid or test.
        #[arg(long)]
        split: String,
        /// 0 or few. Few-shot draws one demonstration per answer from train with --seed
        /// (default: the task's published seed, which reproduces the published demos).
        #[arg(long)]
        shots: String,
        /// Template JSON (e.g. templates.json); default: built-in templates.
        #[arg(long)]
        templates: Option<PathBuf>,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        limit: usize,
    },
}

fn main() -> ExitCode {
    match Cli::try_parse() {
        Err(e) => {
            let _ = e.print();
            ExitCode::from(2)
        }
        Ok(cli) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match run(cli, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // One line: the whole context chain, newlines flattened.
                    eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs one command, writing its report to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let reg = TaskRegistry::builtin();
    match cli.command {
        Command::Audit { data, json } => {
            let audits = mceval::audit(&data)?;
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
                neg_rs::output::write_json(&path, &audits)?;
            }
        }
        Command::Resplit {
            data,
            out: dir,
            seed,
        } => {
            // Everything is computed before anything is written: no partial output.
            let mut done = Vec::new();
            for task in reg.tasks() {
                if !data.join(task.rel_dir()).is_dir() {
                    continue;
                }
                let d = Dataset::load(&DataSource::Dir(data.clone()), task)?;
                done.push(mceval::resplit(&d, seed)?);
            }
            if done.is_empty() {
                bail!("no MCEval8K task found under {}", data.display());
            }
            for d in &done {
                d.write(&dir)?;
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
            let d = mceval::build::build(&task, &sources, seed)?;
            for path in d.write(&dir)? {
                writeln!(out, "{}", path.display())?;
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
            let split: Split = split.parse().map_err(anyhow::Error::msg)?;
            let set = match &templates {
                Some(p) => TemplateSet::from_file(p)?,
                None => TemplateSet::builtin(),
            };
            let shots = match shots.as_str() {
                "0" => Shots::Zero,
                "few" => Shots::Few {
                    seed: seed.unwrap_or(spec.seed),
                },
                other => bail!("--shots must be 0 or few, not `{other}`"),
            };
            let d = load(&data, spec)?;
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

fn load(data: &Path, spec: &mceval::TaskSpec) -> Result<Dataset> {
    Ok(Dataset::load(&DataSource::Dir(data.into()), spec)?)
}
