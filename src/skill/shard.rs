//! Sharded runs for clusters: `--shard i/n` computes the `i`-th of `n` deterministic parts of
//! the NeurGrad batches of a `skill-probe` or study run (or of the prompt blocks of a NEG
//! experiment's run: `linearity`, `estimate`, `attribution`, `distribution`, `multi-neuron`,
//! [`FeatureCache::block_item`]) and writes a self-describing shard; `neg merge --out OUT
//! SHARD...` pools the shards and reruns the command, which then finds every batch already
//! computed and writes exactly the files of the unsharded run.
//!
//! The work items are the run's NeurGrad batches, in the order the unsharded run meets them
//! (tasks, then contexts, then [`super::length_batches`]); batch `b` belongs to shard
//! `b mod n + 1`. Batches are sorted by length within a task, so the strided split gives every
//! shard about the same number of tokens.
//!
//! Why the shards go through the resume cache ([`FeatureCache`]) rather than a file format of
//! their own: an entry is named by the SHA-256 of the model files' contents, dtype, device and
//! the batch's prompts and targets, so a merged run can only take a batch computed for exactly
//! its own computation, and its outputs are byte-identical to an unsharded run's for the same
//! reason a resumed run's are. A shard directory holds `shard.json` ([`ShardManifest`]) and
//! `entries/<sha256>.safetensors`.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::FeatureCache;

/// `--shard i/n`: part `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1..=count.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Whether batch `b` (0-based, in run order) belongs to this shard.
    pub fn owns(&self, b: usize) -> bool {
        b % self.count == self.index - 1
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `i/n` with `1 <= i <= n` (Slurm: `--shard ${SLURM_ARRAY_TASK_ID}/n` with
    /// `--array=1-n`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("`{s}` is not i/n with 1 <= i <= n (e.g. 2/8)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The file that describes a shard directory.
pub const MANIFEST: &str = "shard.json";
const FORMAT: &str = "neg-rs shard v1";

/// What `shard.json` holds: the command that made the shard, so that `neg merge` can check
/// the shards belong together and rerun it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// `neg-rs shard v1`.
    pub format: String,
    /// The subcommand (`skill-probe`, `tree-shape`, ...).
    pub command: String,
    /// Its arguments as given, without `--shard` and `--out`.
    pub args: Vec<String>,
    /// The working directory the relative paths of `args` are relative to.
    pub cwd: PathBuf,
    /// Which part this is.
    pub shard: Shard,
    /// Batches of the whole run, over all shards.
    pub batches_total: usize,
    /// This shard's entries under `entries/`, in run order.
    pub entries: Vec<String>,
}

/// What a shard run reports.
#[derive(Debug, Clone, Serialize)]
pub struct ShardSummary {
    /// Which part was run.
    pub shard: Shard,
    /// Batches this shard holds.
    pub batches: usize,
    /// Batches of the whole run.
    pub batches_total: usize,
    /// The shard directory.
    pub out: PathBuf,
}

impl ShardSummary {
    /// One line for the terminal.
    pub fn line(&self) -> String {
        format!(
            "shard {}: {} of {} batches -> {} (then: neg merge --out OUT <all {} shard directories>)",
            self.shard,
            self.batches,
            self.batches_total,
            self.out.display(),
            self.shard.count
        )
    }
}

static COMMAND_LINE: OnceLock<Vec<String>> = OnceLock::new();
static MERGING: AtomicBool = AtomicBool::new(false);

/// Records the process's command line (`neg <subcommand> ARGS...`), which a shard keeps so
/// that `neg merge` can rerun it. Called by [`crate::cli`]; the first call wins.
pub fn record_command_line(argv: Vec<String>) {
    let _ = COMMAND_LINE.set(argv);
}

/// Whether `neg merge` is rerunning a command in this process (every batch must then come
/// from a shard; [`FeatureCache`] refuses to compute one).
pub fn merging() -> bool {
    MERGING.load(Ordering::SeqCst)
}

/// `argv` (after the program name) split into the subcommand and its arguments without
/// `--shard` and `--out` (either as `--flag value` or `--flag=value`).
fn strip_run_flags(argv: &[String]) -> Result<(String, Vec<String>)> {
    let Some((command, rest)) = argv.split_first() else {
        bail!("no subcommand on the command line");
    };
    let mut args = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        if a == "--shard" || a == "--out" {
            it.next();
        } else if !(a.starts_with("--shard=") || a.starts_with("--out=")) {
            args.push(a.clone());
        }
    }
    Ok((command.clone(), args))
}

/// Writes the shard of a run whose batches `cache` holds into `run` (the run's staging
/// output on `--out`) and commits it.
pub fn write_shard(
    run: crate::output::RunOutput,
    out: &Path,
    cache: &FeatureCache,
) -> Result<ShardSummary> {
    let shard = cache
        .shard()
        .context("write_shard: the cache is not sharded")?;
    let argv = COMMAND_LINE.get().context(
        "a sharded run is started from the `neg` command line (`neg merge` reruns that command)",
    )?;
    let (command, args) = strip_run_flags(&argv[1.min(argv.len())..])?;
    let mut entries = Vec::new();
    for src in cache.owned_entries() {
        let name = src
            .file_name()
            .context("a cache entry without a file name")?
            .to_string_lossy()
            .into_owned();
        let dst = run.path(&format!("entries/{name}"));
        link_or_copy(&src, &dst)?;
        entries.push(name);
    }
    let manifest = ShardManifest {
        format: FORMAT.to_string(),
        command,
        args,
        cwd: std::env::current_dir().context("cannot read the working directory")?,
        shard,
        batches_total: cache.batches_seen(),
        entries,
    };
    crate::output::write_json(&run.path(MANIFEST), &manifest)?;
    run.commit()?;
    FeatureCache::discard(out)?;
    Ok(ShardSummary {
        shard,
        batches: manifest.entries.len(),
        batches_total: manifest.batches_total,
        out: out.to_path_buf(),
    })
}

/// A hard link of `src` at `dst` (same file system), else a copy.
fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if dst.exists() {
        std::fs::remove_file(dst).with_context(|| format!("cannot replace {}", dst.display()))?;
    }
    if std::fs::hard_link(src, dst).is_err() {
        std::fs::copy(src, dst)
            .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    }
    Ok(())
}

/// Reads `dir/shard.json`.
pub fn read_manifest(dir: &Path) -> Result<ShardManifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a shard: cannot read {}",
            dir.display(),
            path.display()
        )
    })?;
    let m: ShardManifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a shard manifest", path.display()))?;
    if m.format != FORMAT {
        bail!(
            "{}: format `{}`, expected `{FORMAT}`",
            path.display(),
            m.format
        );
    }
    if m.shard.index == 0 || m.shard.index > m.shard.count {
        bail!(
            "{}: field shard is {}, not i/n with 1 <= i <= n",
            path.display(),
            m.shard
        );
    }
    Ok(m)
}

/// Checks that `shards` are all `n` parts of one run, each once, with every entry present;
/// returns their manifests in the order given.
pub fn check_shards(shards: &[PathBuf]) -> Result<Vec<ShardManifest>> {
    let Some(first_dir) = shards.first() else {
        bail!("no shard directories given");
    };
    let manifests = shards
        .iter()
        .map(|d| read_manifest(d))
        .collect::<Result<Vec<_>>>()?;
    let first = &manifests[0];
    for (dir, m) in shards.iter().zip(&manifests).skip(1) {
        let differs = |field: &str, a: String, b: String| {
            anyhow::anyhow!(
                "{} and {} are shards of different runs: field {field} is {a} and {b}",
                first_dir.display(),
                dir.display()
            )
        };
        if m.command != first.command {
            return Err(differs("command", first.command.clone(), m.command.clone()));
        }
        if m.args != first.args {
            return Err(differs("args", first.args.join(" "), m.args.join(" ")));
        }
        if m.shard.count != first.shard.count {
            return Err(differs(
                "shard",
                first.shard.to_string(),
                m.shard.to_string(),
            ));
        }
        if m.batches_total != first.batches_total {
            return Err(differs(
                "batches_total",
                first.batches_total.to_string(),
                m.batches_total.to_string(),
            ));
        }
    }
    let n = first.shard.count;
    let mut seen: Vec<Option<&PathBuf>> = vec![None; n];
    for (dir, m) in shards.iter().zip(&manifests) {
        if let Some(earlier) = seen[m.shard.index - 1] {
            bail!(
                "shard {} is given twice: {} and {}",
                m.shard,
                earlier.display(),
                dir.display()
            );
        }
        seen[m.shard.index - 1] = Some(dir);
        for e in &m.entries {
            let p = dir.join("entries").join(e);
            if !p.is_file() {
                bail!("shard {}: entry {} is missing", dir.display(), p.display());
            }
        }
    }
    let missing: Vec<String> = (1..=n)
        .filter(|i| seen[i - 1].is_none())
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        bail!("shards {} are missing (give all {n})", missing.join(", "));
    }
    let held: usize = manifests.iter().map(|m| m.entries.len()).sum();
    if held != first.batches_total {
        bail!(
            "the shards hold {held} batches, but the run has {}",
            first.batches_total
        );
    }
    Ok(manifests)
}

/// `neg merge`: checks `shards` ([`check_shards`]), pools their entries into the resume cache
/// of `out` and reruns their command with `--out out` from the directory it was first run in.
/// The rerun computes no NeurGrad (a batch missing from every shard is an error) and writes
/// exactly the files of the unsharded run; the shards are left as they are.
pub fn merge(out: &Path, shards: &[PathBuf]) -> Result<()> {
    let manifests = check_shards(shards)?;
    let first = &manifests[0];
    // `--out` as given when the command reruns where the shards ran (so results.json names it
    // as the unsharded run would), else made absolute before the rerun changes directory.
    let here = std::env::current_dir().context("cannot read the working directory")?;
    let out = if first.cwd == here || out.is_absolute() {
        out.to_path_buf()
    } else {
        here.join(out)
    };
    crate::output::check_out_dir(&out)?;
    let cache = FeatureCache::beside(&out);
    for (dir, m) in shards.iter().zip(&manifests) {
        for e in &m.entries {
            link_or_copy(&dir.join("entries").join(e), &cache.join(e))?;
        }
    }
    let mut argv = vec!["neg".to_string(), first.command.clone()];
    argv.extend(first.args.iter().cloned());
    argv.push("--out".into());
    argv.push(out.display().to_string());
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(&argv)
        .with_context(|| format!("the shards' command `{}` does not parse", argv.join(" ")))?;
    if !cli.command.shardable() {
        bail!("`{}` is not a command that runs in shards", first.command);
    }
    if first.cwd.is_dir() {
        std::env::set_current_dir(&first.cwd)
            .with_context(|| format!("cannot enter {}", first.cwd.display()))?;
    } else {
        eprintln!(
            "note: the shards were made in {}, which is not here; relative paths are taken from {}",
            first.cwd.display(),
            std::env::current_dir().unwrap_or_default().display()
        );
    }
    MERGING.store(true, Ordering::SeqCst);
    let result = cli.command.execute();
    MERGING.store(false, Ordering::SeqCst);
    result
}

/// Arguments of `neg merge`.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// Where the merged run's files go (as `--out` of the unsharded run).
    #[arg(long)]
    pub out: PathBuf,
    /// The shard directories (every `--shard i/n` of one run, any order).
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parses_and_splits_batches_evenly_and_completely() {
        let s: Shard = "2/3".parse().unwrap();
        assert_eq!(s, Shard { index: 2, count: 3 });
        assert_eq!(s.to_string(), "2/3");
        for bad in ["0/3", "4/3", "1", "a/3", "1/0", "", "1/2/3"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        // Every batch to exactly one of n shards.
        for n in 1..6 {
            for b in 0..50 {
                let owners = (1..=n)
                    .filter(|&i| Shard { index: i, count: n }.owns(b))
                    .count();
                assert_eq!(owners, 1, "batch {b} of {n} shards");
            }
        }
    }

    #[test]
    fn run_flags_are_stripped_in_both_spellings() {
        let argv: Vec<String> = [
            "skill-probe",
            "--tasks",
            "agnews",
            "--shard",
            "1/2",
            "--out=x",
            "--shard=1/2",
            "--out",
            "y",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (c, a) = strip_run_flags(&argv).unwrap();
        assert_eq!(c, "skill-probe");
        assert_eq!(a, vec!["--tasks", "agnews", "--quiet"]);
    }

    fn manifest(dir: &Path, index: usize, count: usize, entries: &[&str], args: &[&str]) {
        std::fs::create_dir_all(dir.join("entries")).unwrap();
        for e in entries {
            std::fs::write(dir.join("entries").join(e), b"x").unwrap();
        }
        let m = ShardManifest {
            format: FORMAT.into(),
            command: "skill-probe".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: dir.to_path_buf(),
            shard: Shard { index, count },
            batches_total: 3,
            entries: entries.iter().map(|s| s.to_string()).collect(),
        };
        crate::output::write_json(&dir.join(MANIFEST), &m).unwrap();
    }

    #[test]
    fn shards_of_one_run_are_checked_for_completeness_and_agreement() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        manifest(&a, 1, 2, &["e0", "e2"], &["--tasks", "agnews"]);
        manifest(&b, 2, 2, &["e1"], &["--tasks", "agnews"]);
        manifest(&c, 2, 2, &["e1"], &["--tasks", "toxicity"]);
        assert_eq!(check_shards(&[b.clone(), a.clone()]).unwrap().len(), 2);
        let msg = |r: Result<Vec<ShardManifest>>| format!("{:#}", r.unwrap_err());
        let m = msg(check_shards(std::slice::from_ref(&a)));
        assert!(m.contains("shards 2/2 are missing"), "{m}");
        let m = msg(check_shards(&[a.clone(), a.clone()]));
        assert!(m.contains("shard 1/2 is given twice"), "{m}");
        let m = msg(check_shards(&[a.clone(), c.clone()]));
        assert!(m.contains("field args") && m.contains("toxicity"), "{m}");
        let m = msg(check_shards(&[a.clone(), d.path().join("nothing")]));
        assert!(m.contains("is not a shard") && m.contains("nothing"), "{m}");
        std::fs::remove_file(a.join("entries/e2")).unwrap();
        let m = msg(check_shards(&[a.clone(), b.clone()]));
        assert!(
            m.contains("entry") && m.contains("e2") && m.contains("missing"),
            "{m}"
        );
        std::fs::write(a.join(MANIFEST), "{\"format\": 3}").unwrap();
        let m = msg(check_shards(&[a, b]));
        assert!(m.contains("not a shard manifest"), "{m}");
    }
}
