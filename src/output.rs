//! Output directories and result files, for every command: [`check_out_dir`] before any work,
//! [`RunOutput`] (a run's directory written as a unit under a lock), [`Outputs`] (the files of
//! one run collected, then committed through a [`RunOutput`]), [`write_atomic`] (temporary file,
//! then rename), JSON reports, CSV text and [`TensorFile`] (the tensors and metadata of one
//! safetensors file).
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::{ArrayBase, Data, Dimension};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// Paths (substrings) at which [`write_atomic`] fails part-way, as a full disk or a kill in
/// the middle of writing would: a test-only fault injector ([`fail_writes_to`]).
fn failing_writes() -> std::sync::MutexGuard<'static, Vec<String>> {
    static FAILING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    FAILING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Test support: every later [`write_atomic`] to a path containing `pattern` writes half its
/// bytes and then fails with "injected write failure", as a full disk would. Returns a guard
/// that removes the pattern when dropped. Patterns are matched against whole paths, so tests
/// running in parallel in one process do not disturb each other when each names its own
/// temporary directory.
#[doc(hidden)]
pub fn fail_writes_to(pattern: &str) -> impl Drop {
    struct Guard(String);
    impl Drop for Guard {
        fn drop(&mut self) {
            failing_writes().retain(|p| *p != self.0);
        }
    }
    failing_writes().push(pattern.to_string());
    Guard(pattern.to_string())
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| {
        file.write_all(bytes)?;
        Ok(())
    })
}

/// Writes `path` atomically with `fill`, which writes the whole contents into the (empty)
/// temporary file it is given: for files too large to hold in memory first. The temporary
/// is removed when `fill` fails.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let file_name = path
        .file_name()
        .with_context(|| format!("output path {} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let full = path.to_string_lossy();
        if failing_writes().iter().any(|p| full.contains(p.as_str())) {
            file.write_all(b"partial").ok();
            anyhow::bail!("cannot write {}: injected write failure", tmp.display());
        }
        fill(&mut file).with_context(|| format!("cannot write {}", tmp.display()))?;
        file.sync_all().ok();
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The layout of a safetensors file whose tensors are written one region at a time
/// ([`TensorLayout::write`]), so that no tensor (or the file) has to be in memory whole.
///
/// Why by hand: the `safetensors` crate serialises only from complete in-memory views.
/// The format is simple and checked here against the crate's own reader (tests): an 8-byte
/// little-endian header length, the JSON header (`{name: {dtype, shape, data_offsets}}` and
/// `__metadata__`, keys sorted so that identical contents give identical bytes, padded with
/// spaces to a multiple of 8), then the tensors' bytes back to back in name order.
#[derive(Debug, Default, Clone)]
pub struct TensorLayout {
    tensors: BTreeMap<String, (Dtype, Vec<usize>)>,
    metadata: BTreeMap<String, String>,
}

impl TensorLayout {
    /// Declares the tensor `name` of `dtype` and `shape`.
    pub fn tensor(&mut self, name: &str, dtype: Dtype, shape: &[usize]) {
        self.tensors
            .insert(name.to_string(), (dtype, shape.to_vec()));
    }

    /// Adds a metadata entry.
    pub fn meta(&mut self, key: &str, value: impl Into<String>) {
        self.metadata.insert(key.to_string(), value.into());
    }

    /// Header bytes (length prefix included) and each tensor's absolute byte range.
    fn header(&self) -> Result<(Vec<u8>, ByteRanges)> {
        let mut json = serde_json::Map::new();
        let mut ranges = BTreeMap::new();
        let mut offset = 0u64;
        for (name, (dtype, shape)) in &self.tensors {
            let len = shape.iter().product::<usize>() as u64 * (dtype.bitsize() as u64 / 8);
            json.insert(
                name.clone(),
                serde_json::json!({
                    "dtype": format!("{dtype:?}"),
                    "shape": shape,
                    "data_offsets": [offset, offset + len],
                }),
            );
            ranges.insert(name.clone(), (offset, offset + len));
            offset += len;
        }
        if !self.metadata.is_empty() {
            json.insert("__metadata__".into(), serde_json::to_value(&self.metadata)?);
        }
        // serde_json's map is sorted (no preserve_order feature): canonical key order.
        let mut text = serde_json::to_string(&json)?.into_bytes();
        text.resize(text.len().div_ceil(8) * 8, b' ');
        let start = 8 + text.len() as u64;
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&text);
        let ranges = ranges
            .into_iter()
            .map(|(k, (a, b))| (k, (start + a, start + b)))
            .collect();
        Ok((bytes, ranges))
    }

    /// Writes the file to `path` atomically: the header, then `fill` writes every tensor's
    /// bytes through the [`TensorRegions`] it is given (any order, any number of pieces).
    pub fn write(
        &self,
        path: &Path,
        fill: impl FnOnce(&mut TensorRegions) -> Result<()>,
    ) -> Result<()> {
        let (header, ranges) = self.header()?;
        let end = ranges
            .values()
            .map(|r| r.1)
            .max()
            .unwrap_or(header.len() as u64);
        write_atomic_with(path, |file| {
            file.write_all(&header)?;
            file.set_len(end)?;
            let mut regions = TensorRegions {
                file: std::io::BufWriter::with_capacity(1 << 20, file),
                ranges,
            };
            fill(&mut regions)?;
            regions.file.flush()?;
            Ok(())
        })
    }
}

/// Each tensor's byte range in its file, by name.
type ByteRanges = BTreeMap<String, (u64, u64)>;

/// Where [`TensorLayout::write`]'s `fill` puts tensor bytes.
pub struct TensorRegions<'a> {
    file: std::io::BufWriter<&'a mut std::fs::File>,
    ranges: ByteRanges,
}

impl TensorRegions<'_> {
    /// Writes the `[R, C]` matrix `m` into tensor `name` as its transpose `[C, R]`, 64
    /// columns at a time: copying a block reads each of `m`'s rows contiguously, where
    /// iterating `m.t()` would read one element of every row per output row (a page per
    /// element when `m` is a disk-backed data set larger than memory).
    pub fn put_transposed<T: Element>(
        &mut self,
        name: &str,
        m: ndarray::ArrayView2<T>,
    ) -> Result<()> {
        const BLOCK: usize = 64;
        let (rows, cols) = m.dim();
        for c0 in (0..cols).step_by(BLOCK) {
            let c1 = (c0 + BLOCK).min(cols);
            let block = m.slice(ndarray::s![.., c0..c1]).t().to_owned();
            self.put(name, c0 * rows, block.iter().copied())?;
        }
        Ok(())
    }

    /// Writes `values` (little-endian) into tensor `name` from element `at` on.
    pub fn put<T: Element>(
        &mut self,
        name: &str,
        at: usize,
        values: impl IntoIterator<Item = T>,
    ) -> Result<()> {
        use std::io::Seek;
        let &(start, end) = self
            .ranges
            .get(name)
            .with_context(|| format!("no tensor {name} in the file's layout"))?;
        let size = T::DTYPE.bitsize() as u64 / 8;
        let mut pos = start + at as u64 * size;
        self.file.seek(std::io::SeekFrom::Start(pos))?;
        let mut buf = Vec::with_capacity(1 << 16);
        for v in values {
            if pos + size > end {
                anyhow::bail!("tensor {name}: write past its end");
            }
            v.put_le(&mut buf);
            pos += size;
            if buf.len() >= 1 << 16 {
                self.file.write_all(&buf)?;
                buf.clear();
            }
        }
        self.file.write_all(&buf)?;
        Ok(())
    }
}

/// A run's output directory, written as a unit and by one run at a time.
///
/// [`RunOutput::begin`] takes an exclusive lock on `<out>.lock` beside the directory (a second
/// run on the same `--out` fails at once, naming the holder's pid), removes staging directories
/// left by dead processes, and opens a fresh staging directory `<out>.staging-<pid>`. Files go
/// there ([`RunOutput::path`]); [`RunOutput::commit`] then replaces `out` by the staging
/// directory with renames, so `out` holds either the earlier run's files or this run's, never a
/// mix (a rerun on fewer tasks leaves no stale file behind). Dropped without a commit (an error,
/// a panic), the staging directory is removed and `out` is untouched.
pub struct RunOutput {
    out: PathBuf,
    staging: PathBuf,
    committed: bool,
    // Held (and so locked) until the run ends; the OS releases it if the process dies. `None`
    // when an [`OutLock`] of this process already holds `out`.
    _lock: Option<std::fs::File>,
}

fn sibling(out: &Path, suffix: &str) -> Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("--out {} has no directory name", out.display()))?;
    Ok(out.with_file_name(format!("{}{suffix}", name.to_string_lossy())))
}

/// The file that marks a directory as a neg run's output: only such a directory (or an empty
/// one) is ever replaced by a later run, so `--out` pointing at a folder of other files (say
/// `--out ~`) is an error instead of a loss.
pub const RUN_MARKER: &str = ".neg-run";

fn replaceable(dir: &Path) -> bool {
    dir.join(RUN_MARKER).is_file()
        || std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// Takes the exclusive lock `<out>.lock` (its directory must exist), or fails at once
/// naming the process that holds it.
fn lock_file(out: &Path) -> Result<std::fs::File> {
    let lock_path = sibling(out, ".lock")?;
    let mut lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open lock file {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
        anyhow::bail!(
            "--out {} is in use by another run (pid {}); wait for it or choose another --out",
            out.display(),
            holder.trim()
        );
    }
    lock.set_len(0).ok();
    write!(lock, "{}", std::process::id()).ok();
    Ok(lock)
}

/// Output directories this process holds an [`OutLock`] on.
fn held() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static HELD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The lock on `--out` for the whole of a run, taken once its inputs are checked and before
/// the long computation, so that a second run on the same `--out` fails at once instead of
/// when it writes. The run's [`RunOutput`] (or [`Outputs::write`]) on the same path then
/// works under it; dropping the guard releases it.
#[derive(Debug)]
pub struct OutLock {
    out: PathBuf,
    _file: std::fs::File,
}

impl OutLock {
    /// Locks `out` (see [`RunOutput`]); fails at once, naming the holder, if another run has it.
    pub fn acquire(out: &Path) -> Result<Self> {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let file = lock_file(out)?;
        held().push(out.to_path_buf());
        Ok(OutLock {
            out: out.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        let mut h = held();
        if let Some(i) = h.iter().position(|p| *p == self.out) {
            h.remove(i);
        }
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the temporary files [`write_atomic`] leaves in `dir` when its process is killed
/// mid-write (`.<name>.tmp-<pid>` of a process that no longer runs); those of live processes,
/// which may still be writing, stay.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .starts_with('.')
            .then(|| name.rsplit_once(".tmp-"))
            .flatten()
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !process_alive(pid) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl RunOutput {
    /// Locks `out` for this run and opens its staging directory.
    pub fn begin(out: &Path) -> Result<Self> {
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        // Already held by this run (an [`OutLock`] taken at its start): no second lock, which
        // the OS would refuse to the same process.
        let held_here = held().iter().any(|p| p == out);
        let lock = if held_here {
            None
        } else {
            Some(lock_file(out)?)
        };
        // What processes that died (kill -9) left: their staging directories are removed; an
        // earlier run's directory that one had moved aside (`<out>.old-<pid>`, killed between
        // the two renames of its commit) is put back when `out` is missing, else removed; and
        // temporaries of their atomic writes are removed.
        let name = out.file_name().unwrap_or_default().to_string_lossy();
        let (staging_prefix, old_prefix) = (format!("{name}.staging-"), format!("{name}.old-"));
        if let Ok(entries) = std::fs::read_dir(parent) {
            for e in entries.flatten() {
                let entry = e.file_name().to_string_lossy().into_owned();
                let dead = |p: &str| {
                    p.parse::<u32>()
                        .is_ok_and(|pid| pid == std::process::id() || !process_alive(pid))
                };
                if entry.strip_prefix(&staging_prefix).is_some_and(dead) {
                    let _ = std::fs::remove_dir_all(e.path());
                } else if entry.strip_prefix(&old_prefix).is_some_and(dead) {
                    if !out.exists() {
                        let _ = std::fs::rename(e.path(), out);
                    } else {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        remove_stale_temporaries(parent);
        let staging = sibling(out, &format!(".staging-{}", std::process::id()))?;
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        Ok(RunOutput {
            out: out.to_path_buf(),
            staging,
            committed: false,
            _lock: lock,
        })
    }

    /// Where the file `rel` (relative to `--out`) is written during the run.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.staging.join(rel)
    }

    /// Moves this run's files into place: the earlier `out` (if any) is renamed aside, the
    /// staging directory renamed to `out`, and the earlier files removed.
    pub fn commit(mut self) -> Result<()> {
        let old = sibling(&self.out, &format!(".old-{}", std::process::id()))?;
        let had_old = self.out.exists();
        if had_old && !replaceable(&self.out) {
            anyhow::bail!(
                "--out {} holds files that no neg run wrote (no {RUN_MARKER}); choose a new or empty directory",
                self.out.display()
            );
        }
        std::fs::write(
            self.staging.join(RUN_MARKER),
            format!("{}\n", env!("CARGO_PKG_VERSION")),
        )
        .with_context(|| format!("cannot write {}", self.staging.display()))?;
        if had_old {
            std::fs::rename(&self.out, &old)
                .with_context(|| format!("cannot move the earlier {} aside", self.out.display()))?;
        }
        if let Err(e) = std::fs::rename(&self.staging, &self.out) {
            if had_old {
                let _ = std::fs::rename(&old, &self.out);
            }
            return Err(e)
                .with_context(|| format!("cannot move results into {}", self.out.display()));
        }
        self.committed = true;
        if had_old {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(())
    }
}

impl Drop for RunOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// Checks that `dir` can hold results before any work is done, without creating it (the
/// result writers create it at the end, so a failed run leaves nothing behind): an existing
/// `dir` must be a writable directory; otherwise its nearest existing ancestor must be. The
/// error names the directory.
pub fn check_out_dir(dir: &Path) -> Result<()> {
    let probe_in = |d: &Path| -> Result<()> {
        let probe = d.join(format!(".write-probe-{}", std::process::id()));
        std::fs::write(&probe, b"").with_context(|| {
            format!(
                "cannot create output directory {} (--out): {} is not writable",
                dir.display(),
                d.display()
            )
        })?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    };
    if dir.exists() {
        if !dir.is_dir() {
            anyhow::bail!(
                "output directory {} (--out) exists and is not a directory",
                dir.display()
            );
        }
        if !replaceable(dir) {
            anyhow::bail!(
                "--out {} holds files that no neg run wrote (no {RUN_MARKER}); choose a new or empty directory",
                dir.display()
            );
        }
        return probe_in(dir);
    }
    let mut ancestor = dir.parent();
    while let Some(a) = ancestor {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        if a.exists() {
            if !a.is_dir() {
                anyhow::bail!(
                    "cannot create output directory {} (--out): {} is not a directory",
                    dir.display(),
                    a.display()
                );
            }
            return probe_in(a);
        }
        ancestor = a.parent();
    }
    anyhow::bail!("cannot create output directory {} (--out)", dir.display())
}

/// The files of one run, collected in memory once everything is computed and then moved into
/// the output directory as a unit ([`RunOutput`]).
#[derive(Default)]
pub struct Outputs {
    files: Vec<(String, Vec<u8>)>,
}

impl Outputs {
    /// Adds `name` (relative to the output directory) holding `value` as pretty JSON.
    pub fn json<T: serde::Serialize>(&mut self, name: &str, value: &T) -> Result<()> {
        let text = serde_json::to_string_pretty(value).context("cannot serialise results")?;
        self.files.push((name.to_string(), text.into_bytes()));
        Ok(())
    }

    /// Adds `name` holding `value` as pretty JSON without its wall-clock values, and
    /// `timings.json` holding just those ([`split_timings`]): identical runs then write an
    /// identical `name`.
    pub fn json_and_timings<T: serde::Serialize>(&mut self, name: &str, value: &T) -> Result<()> {
        let value = serde_json::to_value(value).context("cannot serialise results")?;
        let (results, timings) = split_timings(value);
        self.json(name, &results)?;
        self.json("timings.json", &timings)
    }

    /// Adds the text file `name`.
    pub fn text(&mut self, name: &str, text: String) {
        self.files.push((name.to_string(), text.into_bytes()));
    }

    /// Adds the safetensors file `name`.
    pub fn tensors(&mut self, name: &str, t: &TensorFile) -> Result<()> {
        self.files.push((name.to_string(), t.to_bytes()?));
        Ok(())
    }

    /// Writes every file into `out` as a unit (replacing an earlier run's files); returns the
    /// paths written, in order.
    pub fn write(self, out: &Path) -> Result<Vec<PathBuf>> {
        let run = RunOutput::begin(out)?;
        for (name, bytes) in &self.files {
            write_atomic(&run.path(name), bytes)?;
        }
        run.commit()?;
        Ok(self.files.iter().map(|(name, _)| out.join(name)).collect())
    }
}

/// A CSV document from a header and rows (fields here are numbers and plain names; any comma
/// or quote is quoted per RFC 4180).
pub fn csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let field = |f: &str| {
        if f.contains([',', '"', '\n']) {
            format!("\"{}\"", f.replace('"', "\"\""))
        } else {
            f.to_string()
        }
    };
    let mut out = header
        .iter()
        .map(|h| field(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for row in rows {
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// Whether the JSON key `key` records how a run went rather than what it found: wall-clock
/// times (`seconds`, `*_seconds`) and `resumed_batches`.
fn run_only_key(key: &str) -> bool {
    key == "seconds" || key.ends_with("_seconds") || key == "resumed_batches"
}

/// Splits a report into what it found and how the run went: the first value is `report`
/// without any wall-clock time or resume count (so identical runs give identical bytes); the
/// second holds exactly those values at the same paths (arrays keep their length, objects
/// keep only the keys that lead to such a value).
pub fn split_timings(report: serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    use serde_json::Value;
    fn split(v: Value) -> (Value, Option<Value>) {
        match v {
            Value::Object(map) => {
                let (mut kept, mut moved) = (serde_json::Map::new(), serde_json::Map::new());
                for (k, v) in map {
                    if run_only_key(&k) {
                        moved.insert(k, v);
                    } else {
                        let (a, b) = split(v);
                        kept.insert(k.clone(), a);
                        if let Some(b) = b {
                            moved.insert(k, b);
                        }
                    }
                }
                let moved = (!moved.is_empty()).then_some(Value::Object(moved));
                (Value::Object(kept), moved)
            }
            Value::Array(items) => {
                let (kept, moved): (Vec<Value>, Vec<Option<Value>>) =
                    items.into_iter().map(split).unzip();
                let any = moved.iter().any(Option::is_some);
                let moved = moved
                    .into_iter()
                    .map(|m| m.unwrap_or(Value::Null))
                    .collect();
                (Value::Array(kept), any.then_some(Value::Array(moved)))
            }
            other => (other, None),
        }
    }
    let (kept, moved) = split(report);
    (kept, moved.unwrap_or(Value::Object(Default::default())))
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot serialise results as JSON")?;
    write_atomic(path, text.as_bytes())
}

/// Writes a result's report as JSON to `json` and its figure to `svg`, each atomically (the
/// figure first, so a report on disk always has its figure).
pub fn write_report<T: serde::Serialize>(
    json: &Path,
    report: &T,
    svg: &Path,
    figure: &str,
) -> Result<()> {
    write_atomic(svg, figure.as_bytes())?;
    write_json(json, report)
}

/// An element type a [`TensorFile`] can store: its safetensors dtype and little-endian bytes.
pub trait Element: Copy {
    /// The safetensors dtype.
    const DTYPE: Dtype;
    /// Appends the little-endian bytes of `self` to `out`.
    fn put_le(self, out: &mut Vec<u8>);
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Element for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Element for i64 {
    const DTYPE: Dtype = Dtype::I64;
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Element for u8 {
    const DTYPE: Dtype = Dtype::U8;
    fn put_le(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}

/// `bytes` (a safetensors file) with its JSON header's keys in sorted order, so identical
/// contents give identical bytes. Why: `safetensors::serialize` takes the metadata as a
/// `HashMap` and writes it in that map's (random) iteration order. The rewritten header has the
/// same length (same keys and values, compact JSON), so the tensor offsets are unchanged.
fn canonical_header(mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    use std::collections::BTreeMap;
    let n =
        u64::from_le_bytes(bytes[..8].try_into().context("safetensors header length")?) as usize;
    let header = &bytes[8..8 + n];
    let text = std::str::from_utf8(header).context("safetensors header is not UTF-8")?;
    let trimmed = text.trim_end();
    let parsed: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(trimmed).context("safetensors header is not a JSON object")?;
    let sorted: BTreeMap<String, serde_json::Value> = parsed
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::Object(m) if k == "__metadata__" => {
                let inner: BTreeMap<String, serde_json::Value> = m.into_iter().collect();
                (k, serde_json::to_value(inner).unwrap_or_default())
            }
            other => (k, other),
        })
        .collect();
    let mut canonical = serde_json::to_string(&sorted)?.into_bytes();
    if canonical.len() > n {
        anyhow::bail!("canonical safetensors header is longer than the original");
    }
    // Keep the original (8-byte aligned) length: pad with spaces as safetensors does.
    canonical.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&canonical);
    Ok(bytes)
}

/// Tensors (row-major, little-endian) and string metadata collected for one safetensors file.
#[derive(Debug, Default)]
pub struct TensorFile {
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    metadata: HashMap<String, String>,
}

impl TensorFile {
    /// Adds the array `a` under `name`, with its shape and element type.
    pub fn add<T: Element, S: Data<Elem = T>, D: Dimension>(
        &mut self,
        name: &str,
        a: &ArrayBase<S, D>,
    ) {
        let mut bytes = Vec::with_capacity(a.len() * T::DTYPE.bitsize() / 8);
        a.iter().for_each(|&v| v.put_le(&mut bytes));
        self.tensors
            .push((name.to_string(), T::DTYPE, a.shape().to_vec(), bytes));
    }

    /// Adds a metadata entry.
    pub fn meta(&mut self, key: &str, value: impl Into<String>) {
        self.metadata.insert(key.to_string(), value.into());
    }

    /// The shapes of the tensors added so far as a JSON object `{"name": [dims], ...}`.
    pub fn shapes_json(&self) -> Result<String> {
        let shapes: BTreeMap<&str, &[usize]> = self
            .tensors
            .iter()
            .map(|(name, _, shape, _)| (name.as_str(), shape.as_slice()))
            .collect();
        serde_json::to_string(&shapes).context("cannot serialise tensor shapes as JSON")
    }

    /// The serialised file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let views = self
            .tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.as_str(), v))
                    .with_context(|| format!("tensor {name}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, Some(self.metadata.clone()))
            .context("cannot serialise tensors as safetensors")?;
        canonical_header(bytes)
    }

    /// Serialises the file and writes it to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_transposed_writes_the_transpose_across_blocks() {
        // 3 x 150: three blocks of columns (64, 64, 22).
        let m = ndarray::Array2::from_shape_fn((3, 150), |(r, c)| (r * 1000 + c) as f32);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let mut l = TensorLayout::default();
        l.tensor("x", Dtype::F32, &[150, 3]);
        l.write(&path, |r| r.put_transposed("x", m.view())).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let got: Vec<f32> = st
            .tensor("x")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let want: Vec<f32> = m.t().iter().copied().collect();
        assert_eq!(got, want);
    }

    #[test]
    fn tensor_layout_writes_a_file_the_safetensors_reader_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let mut l = TensorLayout::default();
        l.tensor("scores", Dtype::F32, &[2, 3]);
        l.tensor("labels", Dtype::I64, &[2]);
        l.tensor("split", Dtype::U8, &[3]);
        l.meta("task", "agnews");
        l.meta("answers", "[\"A\"]");
        // Pieces in any order: row 1 of scores before row 0.
        l.write(&path, |r| {
            r.put("scores", 3, [4f32, 5.0, 6.0])?;
            r.put("labels", 0, [7i64, -8])?;
            r.put("scores", 0, [1f32, 2.0, 3.0])?;
            r.put("split", 0, [0u8, 1, 2])?;
            Ok(())
        })
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let f32s: Vec<f32> = st
            .tensor("scores")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(f32s, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(st.tensor("scores").unwrap().shape(), &[2, 3]);
        assert_eq!(st.tensor("split").unwrap().data(), &[0, 1, 2]);
        let labels = st.tensor("labels").unwrap();
        assert_eq!(labels.dtype(), Dtype::I64);
        assert_eq!(&labels.data()[8..], &(-8i64).to_le_bytes());
        let m = meta.metadata().as_ref().unwrap();
        assert_eq!(m["task"], "agnews");
        assert_eq!(m["answers"], "[\"A\"]");
        // The same contents give the same bytes; writing past a tensor's end is an error and
        // leaves the earlier file as it was.
        let again = dir.path().join("u.safetensors");
        l.write(&again, |r| {
            r.put("split", 0, [0u8, 1, 2])?;
            r.put("labels", 0, [7i64, -8])?;
            r.put("scores", 0, [1f32, 2.0, 3.0, 4.0, 5.0, 6.0])
        })
        .unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), bytes);
        let e = l.write(&path, |r| r.put("split", 2, [1u8, 2])).unwrap_err();
        assert!(
            format!("{e:#}").contains("tensor split: write past its end"),
            "{e:#}"
        );
        let e = l.write(&path, |r| r.put("nope", 0, [1u8])).unwrap_err();
        assert!(format!("{e:#}").contains("no tensor nope"), "{e:#}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn split_timings_moves_exactly_the_run_only_values() {
        let report = serde_json::json!({
            "model": "m",
            "seconds": 12.5,
            "tasks": [
                {"task": "a", "feature_seconds": 1.0, "resumed_batches": 2,
                 "methods": [{"method": "tree", "evaluation": {"fit_seconds": 0.5, "acc": 0.75}}]},
                {"task": "b", "methods": []}
            ],
            "sizes": {"train": 3}
        });
        let (kept, moved) = split_timings(report);
        assert_eq!(
            kept,
            serde_json::json!({
                "model": "m",
                "tasks": [
                    {"task": "a", "methods": [{"method": "tree", "evaluation": {"acc": 0.75}}]},
                    {"task": "b", "methods": []}
                ],
                "sizes": {"train": 3}
            })
        );
        assert_eq!(
            moved,
            serde_json::json!({
                "seconds": 12.5,
                "tasks": [
                    {"feature_seconds": 1.0, "resumed_batches": 2,
                     "methods": [{"evaluation": {"fit_seconds": 0.5}}]},
                    null
                ]
            })
        );
        let (kept, moved) = split_timings(serde_json::json!({"x": [1, 2]}));
        assert_eq!(
            (kept, moved),
            (serde_json::json!({"x": [1, 2]}), serde_json::json!({}))
        );
    }

    #[test]
    fn stale_temporaries_and_a_half_committed_run_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        // A process (pid 0: never alive) killed between the two renames of its commit: the
        // earlier results sit in `run.old-0` and `run` is missing; one killed mid-write left a
        // temporary.
        let old = dir.path().join("run.old-0");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("results.json"), b"earlier").unwrap();
        std::fs::write(old.join(RUN_MARKER), b"0.1.0").unwrap();
        let tmp = dir.path().join(".notes.json.tmp-0");
        std::fs::write(&tmp, b"half").unwrap();
        let live = dir
            .path()
            .join(format!(".mine.json.tmp-{}", std::process::id()));
        std::fs::write(&live, b"writing").unwrap();
        {
            let _run = RunOutput::begin(&out).unwrap();
            assert_eq!(std::fs::read(out.join("results.json")).unwrap(), b"earlier");
            assert!(!old.exists() && !tmp.exists());
            assert!(live.exists(), "a live process's temporary was removed");
        }
        // With `run` present, a dead process's `.old-` copy is simply removed.
        std::fs::create_dir_all(&old).unwrap();
        let _run = RunOutput::begin(&out).unwrap();
        assert!(!old.exists());
        assert_eq!(std::fs::read(out.join("results.json")).unwrap(), b"earlier");
    }

    #[test]
    fn a_run_lock_taken_at_start_excludes_others_and_covers_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let lock = OutLock::acquire(&out).unwrap();
        // Another holder (a second run) fails at once, naming this process.
        let e = OutLock::acquire(&out).unwrap_err().to_string();
        assert!(
            e.contains("in use by another run") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        // The run itself still writes its files as a unit under its lock.
        let mut files = Outputs::default();
        files.text("a.txt", "x".into());
        files.write(&out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "x");
        drop(lock);
        let again = OutLock::acquire(&out);
        assert!(again.is_ok(), "released on drop");
    }

    #[test]
    fn out_dir_check_rejects_a_file_parent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_out_dir(&file.join("sub")).is_err());
        assert!(check_out_dir(&dir.path().join("new/deeper")).is_ok());
        assert!(
            !dir.path().join("new").exists(),
            "the check creates nothing"
        );
    }

    #[test]
    fn identical_contents_give_identical_bytes() {
        let make = || {
            let mut t = TensorFile::default();
            t.add("b", &ndarray::arr1(&[1.0f32, 2.0]));
            t.add("a", &ndarray::arr2(&[[1u8, 2], [3, 4]]));
            for k in [
                "model", "dtype", "task", "seed", "shapes", "zeta", "alpha", "answers",
            ] {
                t.meta(k, format!("value of {k}"));
            }
            t.to_bytes().unwrap()
        };
        let first = make();
        for _ in 0..20 {
            assert_eq!(make(), first, "HashMap order must not reach the bytes");
        }
        // Still a valid file with the same contents.
        let st = safetensors::SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.tensor("a").unwrap().shape(), &[2, 2]);
        let (_, meta) = safetensors::SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["zeta"], "value of zeta");
        let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&first[8..8 + n]).unwrap();
        assert!(header.find("\"alpha\"").unwrap() < header.find("\"zeta\"").unwrap());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/result.json");
        write_json(&path, &serde_json::json!({"a": 1})).unwrap();
        write_json(&path, &serde_json::json!({"a": 2})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"a\": 2"));
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1, "only the result file remains");
    }

    #[test]
    fn unwritable_destination_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = write_atomic(&blocker.join("out.json"), b"{}").unwrap_err();
        assert!(format!("{err:#}").contains("file"), "{err:#}");
    }

    #[test]
    fn tensor_file_round_trips_dtypes_shapes_and_metadata() {
        let mut t = TensorFile::default();
        t.add("x", &ndarray::array![[1.5f32, -2.0], [0.25, 4.0]]);
        t.add("ids", &ndarray::array![3i64, -7]);
        t.add("mask", &ndarray::array![[1u8], [0], [2]]);
        t.meta("model", "m");
        assert_eq!(
            t.shapes_json().unwrap(),
            r#"{"ids":[2],"mask":[3,1],"x":[2,2]}"#
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        t.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let x = st.tensor("x").unwrap();
        assert_eq!((x.dtype(), x.shape()), (Dtype::F32, &[2usize, 2][..]));
        assert_eq!(&x.data()[4..8], &(-2.0f32).to_le_bytes());
        let ids = st.tensor("ids").unwrap();
        assert_eq!(ids.dtype(), Dtype::I64);
        assert_eq!(&ids.data()[8..16], &(-7i64).to_le_bytes());
        let mask = st.tensor("mask").unwrap();
        assert_eq!((mask.dtype(), mask.data()), (Dtype::U8, &[1u8, 0, 2][..]));
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["model"], "m");
    }
}
