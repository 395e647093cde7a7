//! The resume cache of NeurGrad features: one file per batch of prompts, so that a run killed
//! part-way (`kill -9`, a power cut, a failed later task) continues where it stopped.
//!
//! An entry is named by the SHA-256 of everything that determines its numbers: the format
//! version, the contents of the model's files ([`neg_hooks::HfModel::files`]), dtype, device,
//! and each prompt of the batch with its target ids (which fixes the task, split, template,
//! shots, seed and sizes that chose and rendered them) in batch order. So an entry is only ever
//! reused for exactly the computation that made it, and a reused entry holds the very bytes
//! that computation returned: the outputs of a resumed run are byte-identical to those of an
//! uninterrupted one.
//!
//! The cache sits beside `--out` (`<out>.resume/`) and is used under the run's lock on `--out`;
//! a run that commits its results removes it. Entries are written atomically (temporary file,
//! then rename); a temporary left by a killed process is removed when the cache is opened; an
//! unreadable or misshapen entry is recomputed and rewritten.
use std::cell::{Cell, RefCell};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::{Array2, Array3, Array4, ArrayD, ArrayViewD};
use neg_core::TargetedPrompt;
use neg_hooks::HfModel;
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

use super::shard::Shard;
use crate::output::TensorFile;

/// Bumped whenever what an entry holds, or how it is computed, changes.
/// v2: fused attention in full passes (numbers differ from v1 by float rounding).
/// v3: half-precision models' backward multiplies by the weights in their own type (bf16/f16
/// numbers differ from v2 by rounding; f32 ones do not, but one version serves all).
const FORMAT: &str = "neg-rs feature cache v3";

/// NeurGrad of one batch, as `neg_core::methods::neurgrad` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchFeatures {
    /// `[P, T, L, N]` NeurGrad.
    pub scores: Array4<f32>,
    /// `[P, L, N]` activations.
    pub activations: Array3<f32>,
    /// `[P, T]` target probabilities.
    pub probs: Array2<f32>,
}

/// SHA-256 (hex) of the contents of `files`, each prefixed by its length, in order.
pub fn files_digest(files: &[PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut file =
            std::fs::File::open(f).with_context(|| format!("cannot read {}", f.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("cannot read {}", f.display()))?
            .len();
        h.update(len.to_le_bytes());
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", f.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// A directory of cached batches for one model, dtype and device.
#[derive(Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    base: String,
    hits: Cell<usize>,
    misses: Cell<usize>,
    /// The part of the run's batches this process computes (`--shard`), if any.
    shard: Option<Shard>,
    /// Batches of the run met so far ([`FeatureCache::claim`]), in run order.
    batches_seen: Cell<usize>,
    /// Entries of the batches this shard owns, in run order.
    owned: RefCell<Vec<PathBuf>>,
    /// Set while `neg merge` reruns a command: every batch must come from a shard.
    cached_only: bool,
}

impl FeatureCache {
    /// The cache's directory. A run also keeps its data sets' matrices there, in unlinked
    /// files ([`neg_probe::Storage::Disk`]): the run's output goes to the same disk.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (creating it) the cache `dir` for a model whose files hash to `model_digest`, run
    /// in `dtype` on `device`, and removes temporaries that dead processes left in it.
    pub fn open(dir: &Path, model_digest: &str, dtype: &str, device: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create resume cache {}", dir.display()))?;
        crate::output::remove_stale_temporaries(dir);
        Ok(FeatureCache {
            dir: dir.to_path_buf(),
            base: format!("{FORMAT}\n{model_digest}\n{dtype}\n{device}\n"),
            hits: Cell::new(0),
            misses: Cell::new(0),
            shard: None,
            batches_seen: Cell::new(0),
            owned: RefCell::new(Vec::new()),
            cached_only: super::shard::merging(),
        })
    }

    /// This cache for a run of which only the batches of `shard` are computed
    /// ([`FeatureCache::claim`]); `None` leaves it whole.
    pub fn sharded(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// The shard this cache computes for, if any.
    pub fn shard(&self) -> Option<Shard> {
        self.shard
    }

    /// Counts the run's next batch and says whether this process computes it: always without
    /// a shard, else when the batch's index in run order falls to this shard
    /// ([`Shard::owns`]).
    pub fn claim(&self) -> bool {
        let b = self.batches_seen.get();
        self.batches_seen.set(b + 1);
        self.shard.is_none_or(|s| s.owns(b))
    }

    /// Batches of the run counted by [`FeatureCache::claim`] so far.
    pub fn batches_seen(&self) -> usize {
        self.batches_seen.get()
    }

    /// The entries of the batches stored by [`FeatureCache::store_owned`], in run order.
    pub fn owned_entries(&self) -> Vec<PathBuf> {
        self.owned.borrow().clone()
    }

    /// Makes sure the entry of `batch` exists (computing it with `compute` unless an earlier,
    /// interrupted shard run stored it) and records it as one of this shard's entries.
    pub fn store_owned(
        &self,
        batch: &[TargetedPrompt],
        compute: impl FnOnce() -> Result<BatchFeatures>,
    ) -> Result<()> {
        self.get_or_compute(batch, compute)?;
        self.owned.borrow_mut().push(self.entry(batch));
        Ok(())
    }

    /// The cache beside `out`: `<out>.resume`.
    pub fn beside(out: &Path) -> PathBuf {
        let name = out.file_name().unwrap_or_default().to_string_lossy();
        out.with_file_name(format!("{name}.resume"))
    }

    /// The cache of a run that writes `out` with `model` in `dtype` on `device`: `<out>.resume`,
    /// keyed by the contents of the model's files.
    pub fn for_run(out: &Path, model: &HfModel, dtype: &str, device: &str) -> Result<Self> {
        Self::open(
            &Self::beside(out),
            &files_digest(model.files())?,
            dtype,
            device,
        )
    }

    /// Removes the cache of the run that writes `out`, once its results are committed
    /// (nothing to do when there is none).
    pub fn discard(out: &Path) -> Result<()> {
        let dir = Self::beside(out);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove resume cache {}", dir.display()))?;
        }
        Ok(())
    }

    /// Where the entry of `batch` lives.
    pub fn entry(&self, batch: &[TargetedPrompt]) -> PathBuf {
        self.item_entry("", batch)
    }

    /// Where the entry of a work item lives: `what` says what is computed over `batch` besides
    /// NeurGrad (the method and every setting that changes its numbers: a sweep's range, step,
    /// mode and neurons); `""` is a skill-probe NeurGrad batch ([`FeatureCache::entry`]).
    pub fn item_entry(&self, what: &str, batch: &[TargetedPrompt]) -> PathBuf {
        let mut h = Sha256::new();
        h.update(self.base.as_bytes());
        // Only a named item hashes a name, so that NeurGrad batches keep their v3 keys.
        if !what.is_empty() {
            h.update(b"item\n");
            h.update((what.len() as u64).to_le_bytes());
            h.update(what.as_bytes());
        }
        for p in batch {
            h.update((p.text.len() as u64).to_le_bytes());
            h.update(p.text.as_bytes());
            h.update((p.targets.len() as u64).to_le_bytes());
            for t in &p.targets {
                h.update(t.to_le_bytes());
            }
        }
        self.dir.join(format!("{:x}.safetensors", h.finalize()))
    }

    /// The cached NeurGrad of `batch`, else `compute()` (stored before it is returned).
    pub fn get_or_compute(
        &self,
        batch: &[TargetedPrompt],
        compute: impl FnOnce() -> Result<BatchFeatures>,
    ) -> Result<BatchFeatures> {
        let path = self.entry(batch);
        let targets = batch.first().map_or(0, |p| p.targets.len());
        if let Some(found) = read_entry(&path, batch.len(), targets) {
            self.hits.set(self.hits.get() + 1);
            return Ok(found);
        }
        if self.cached_only {
            anyhow::bail!(
                "merge: a batch of {} prompts (the first: `{}`) is in none of the shards; \
                 were they run with other settings or another model?",
                batch.len(),
                batch.first().map_or("", |p| p.text.as_str())
            );
        }
        let computed = compute()?;
        let mut t = TensorFile::default();
        t.add("scores", &computed.scores);
        t.add("activations", &computed.activations);
        t.add("probs", &computed.probs);
        t.write(&path)
            .with_context(|| format!("cannot write resume cache entry {}", path.display()))?;
        self.misses.set(self.misses.get() + 1);
        Ok(computed)
    }

    /// The factual commands' unit of work: the result of `what` over `batch`, the prompts of
    /// block `block` (0-based, in run order) of the run. It is read from the cache when an
    /// earlier run stored it, else computed and stored. With a shard, only the blocks the
    /// shard owns ([`Shard::owns`]) are; another shard's block gives `None` (and is counted,
    /// so that the shard knows the run's size). Every item of one block belongs to the same
    /// shard, so an item computed from another (a sweep of the neurons NeurGrad ranks first)
    /// finds it in its own shard.
    ///
    /// With the value come the seconds `compute` took, kept in the entry
    /// (`compute_seconds`): a resumed or merged run reports how long the computation took
    /// where it ran, not how long reading it back did.
    pub fn block_item<T: CachedItem>(
        &self,
        block: usize,
        what: &str,
        batch: &[TargetedPrompt],
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<Option<(T, f64)>> {
        self.batches_seen.set(self.batches_seen.get() + 1);
        if self.shard.is_some_and(|s| !s.owns(block)) {
            return Ok(None);
        }
        let path = self.item_entry(what, batch);
        let bytes = std::fs::read(&path).ok();
        let found = bytes.as_deref().and_then(|bytes| {
            let st = SafeTensors::deserialize(bytes).ok()?;
            let seconds = read_arrays::<f32>(&st, &[SECONDS])?.pop()?;
            let seconds = *seconds.first().filter(|_| seconds.len() == 1)?;
            let value = T::from_arrays(read_arrays(&st, T::NAMES)?, batch.len())?;
            Some((value, f64::from(seconds)))
        });
        let value = match found {
            Some(v) => {
                self.hits.set(self.hits.get() + 1);
                v
            }
            None if self.cached_only => anyhow::bail!(
                "merge: {what} over {} prompts (the first: `{}`) is in none of the shards; \
                 were they run with other settings or another model?",
                batch.len(),
                batch.first().map_or("", |p| p.text.as_str())
            ),
            None => {
                let start = std::time::Instant::now();
                let computed = compute()?;
                let seconds = start.elapsed().as_secs_f64();
                let mut t = TensorFile::default();
                for (name, a) in T::NAMES.iter().zip(computed.arrays()) {
                    t.add(name, &a);
                }
                t.add(SECONDS, &ndarray::arr1(&[seconds as f32]));
                t.write(&path).with_context(|| {
                    format!("cannot write resume cache entry {}", path.display())
                })?;
                self.misses.set(self.misses.get() + 1);
                (computed, seconds)
            }
        };
        if self.shard.is_some() {
            self.owned.borrow_mut().push(path);
        }
        Ok(Some(value))
    }

    /// Batches found in the cache so far.
    pub fn hits(&self) -> usize {
        self.hits.get()
    }

    /// Batches computed (and stored) so far.
    pub fn misses(&self) -> usize {
        self.misses.get()
    }
}

/// The array of a [`FeatureCache::block_item`] entry that holds its compute time.
const SECONDS: &str = "compute_seconds";

/// A work item's result that a cache entry holds ([`FeatureCache::block_item`]): arrays of
/// one element type (f32 for model outputs, f64 for sums the analyses keep in f64), whose
/// first axis is the item's prompts.
pub trait CachedItem: Sized {
    /// The arrays' element type, stored exactly.
    type Elem: StoredElem;
    /// The arrays' names in the entry, in the order of [`CachedItem::arrays`].
    const NAMES: &'static [&'static str];
    /// Its arrays, in the order of `NAMES`.
    fn arrays(&self) -> Vec<ArrayViewD<'_, Self::Elem>>;
    /// It back from an entry's arrays (in the order of `NAMES`), for `prompts` prompts;
    /// `None` when they do not form one, so that the entry is recomputed.
    fn from_arrays(arrays: Vec<ArrayD<Self::Elem>>, prompts: usize) -> Option<Self>;
}

/// An element type a cache entry stores: written by [`TensorFile::add`], read back bit for bit.
pub trait StoredElem: crate::output::Element + Clone {
    /// The element from its little-endian bytes (as many as the type has).
    fn from_le(bytes: &[u8]) -> Self;
}

impl StoredElem for f32 {
    fn from_le(b: &[u8]) -> Self {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl StoredElem for f64 {
    fn from_le(b: &[u8]) -> Self {
        f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

/// One `[P, _, _]` array per block (a sweep's r, a block's curves or patched
/// probabilities), stored as `values`: what the entry's key names says what it holds.
impl<E: StoredElem> CachedItem for Array3<E> {
    type Elem = E;
    const NAMES: &'static [&'static str] = &["values"];

    fn arrays(&self) -> Vec<ArrayViewD<'_, E>> {
        vec![self.view().into_dyn()]
    }

    fn from_arrays(arrays: Vec<ArrayD<E>>, prompts: usize) -> Option<Self> {
        let [a]: [ArrayD<E>; 1] = arrays.try_into().ok()?;
        let a = a.into_dimensionality::<ndarray::Ix3>().ok()?;
        (a.dim().0 == prompts).then_some(a)
    }
}

/// NeurGrad (or any attribution method's scores) of a batch.
impl CachedItem for BatchFeatures {
    type Elem = f32;
    const NAMES: &'static [&'static str] = &["scores", "activations", "probs"];

    fn arrays(&self) -> Vec<ArrayViewD<'_, f32>> {
        vec![
            self.scores.view().into_dyn(),
            self.activations.view().into_dyn(),
            self.probs.view().into_dyn(),
        ]
    }

    fn from_arrays(arrays: Vec<ArrayD<f32>>, prompts: usize) -> Option<Self> {
        let [scores, activations, probs]: [ArrayD<f32>; 3] = arrays.try_into().ok()?;
        let scores = scores.into_dimensionality::<ndarray::Ix4>().ok()?;
        let activations = activations.into_dimensionality::<ndarray::Ix3>().ok()?;
        let probs = probs.into_dimensionality::<ndarray::Ix2>().ok()?;
        let (p, t, l, n) = scores.dim();
        (p == prompts && activations.dim() == (p, l, n) && probs.dim() == (p, t)).then_some(
            BatchFeatures {
                scores,
                activations,
                probs,
            },
        )
    }
}

/// The arrays `names` (of element type `E`) of an entry, when it holds them all.
fn read_arrays<E: StoredElem>(st: &SafeTensors, names: &[&str]) -> Option<Vec<ArrayD<E>>> {
    names
        .iter()
        .map(|name| {
            let v = st.tensor(name).ok()?;
            if v.dtype() != E::DTYPE {
                return None;
            }
            let size = std::mem::size_of::<E>();
            let values = v.data().chunks_exact(size).map(E::from_le).collect();
            ArrayD::from_shape_vec(v.shape().to_vec(), values).ok()
        })
        .collect()
}

/// The entry at `path`, which must be readable and hold `p` prompts of `t` targets.
pub fn read_batch(path: &Path, p: usize, t: usize) -> Result<BatchFeatures> {
    read_entry(path, p, t).with_context(|| {
        format!(
            "resume cache entry {} is missing, unreadable or not {p} prompts x {t} targets",
            path.display()
        )
    })
}

/// The entry at `path` when it is readable and of the expected shape (`p` prompts of `t`
/// targets, the same layers and width for every tensor); `None` otherwise, so it is recomputed.
fn read_entry(path: &Path, p: usize, t: usize) -> Option<BatchFeatures> {
    let bytes = std::fs::read(path).ok()?;
    let st = SafeTensors::deserialize(&bytes).ok()?;
    let found = BatchFeatures::from_arrays(read_arrays(&st, BatchFeatures::NAMES)?, p)?;
    (found.probs.dim().1 == t).then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(texts: &[&str]) -> Vec<TargetedPrompt> {
        texts
            .iter()
            .map(|t| TargetedPrompt::new(*t, vec![1, 2]))
            .collect()
    }

    fn features(p: usize, seed: f32) -> BatchFeatures {
        BatchFeatures {
            scores: Array4::from_shape_fn((p, 2, 3, 4), |(a, b, c, d)| {
                seed + (a * 1000 + b * 100 + c * 10 + d) as f32
            }),
            activations: Array3::from_shape_fn((p, 3, 4), |(a, b, c)| seed - (a + b + c) as f32),
            probs: Array2::from_elem((p, 2), seed / 10.0),
        }
    }

    #[test]
    fn entries_are_reused_only_for_the_same_computation() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let path = FeatureCache::beside(&out);
        let cache = FeatureCache::open(&path, "model-a", "f32", "cpu").unwrap();
        let b = batch(&["one", "two"]);
        let first = cache.get_or_compute(&b, || Ok(features(2, 1.0))).unwrap();
        // The same batch again: the stored bytes, the closure is not run.
        let again = cache
            .get_or_compute(&b, || panic!("recomputed a cached batch"))
            .unwrap();
        assert_eq!(first, again);
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
        // A different prompt, target, order, model, dtype or device is another entry.
        let other_targets = vec![TargetedPrompt::new("one", vec![1, 3]), b[1].clone()];
        for (cache, batch) in [
            (&cache, batch(&["two", "one"])),
            (&cache, batch(&["one", "three"])),
            (&cache, other_targets),
        ] {
            let got = cache
                .get_or_compute(&batch, || Ok(features(2, 7.0)))
                .unwrap();
            assert_eq!(got, features(2, 7.0));
        }
        for (model, dtype, device) in [
            ("model-b", "f32", "cpu"),
            ("model-a", "bf16", "cpu"),
            ("model-a", "f32", "cuda:0"),
        ] {
            let c = FeatureCache::open(&path, model, dtype, device).unwrap();
            let got = c.get_or_compute(&b, || Ok(features(2, 9.0))).unwrap();
            assert_eq!(got, features(2, 9.0), "{model} {dtype} {device}");
        }
        // A damaged entry is recomputed and rewritten, not trusted.
        let entry = cache.entry(&b);
        std::fs::write(&entry, b"garbage").unwrap();
        let fixed = cache.get_or_compute(&b, || Ok(features(2, 3.0))).unwrap();
        assert_eq!(fixed, features(2, 3.0));
        assert_eq!(read_entry(&entry, 2, 2), Some(features(2, 3.0)));
        // The wrong shape (another batch size) is a miss.
        assert_eq!(read_entry(&entry, 3, 2), None);
        FeatureCache::discard(&out).unwrap();
        assert!(!path.exists());
        FeatureCache::discard(&out).unwrap();
    }

    #[test]
    fn block_items_are_keyed_by_what_and_owned_by_their_blocks_shard() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.resume");
        let b = batch(&["one", "two"]);
        let cache = FeatureCache::open(&path, "m", "f32", "cpu").unwrap();
        // The NeurGrad batch keys are those of before named items existed.
        assert_eq!(cache.entry(&b), cache.item_entry("", &b));
        assert_ne!(cache.item_entry("sweep R=1", &b), cache.entry(&b));
        assert_ne!(
            cache.item_entry("sweep R=1", &b),
            cache.item_entry("sweep R=2", &b)
        );
        let got = cache
            .block_item(0, "sweep R=1", &b, || Ok(features(2, 1.0)))
            .unwrap();
        let (got, seconds) = got.unwrap();
        assert_eq!(got, features(2, 1.0));
        let again = cache
            .block_item(0, "sweep R=1", &b, || -> Result<BatchFeatures> {
                panic!("recomputed a cached item")
            })
            .unwrap();
        // The stored value, with the compute time stored beside it.
        assert_eq!(again, Some((features(2, 1.0), f64::from(seconds as f32))));
        assert_eq!(
            (cache.hits(), cache.misses(), cache.batches_seen()),
            (1, 1, 2)
        );
        // An entry of another shape (here: for 3 prompts) is recomputed, not trusted.
        let three = batch(&["one", "two", "three"]);
        std::fs::copy(
            cache.item_entry("sweep R=1", &b),
            cache.item_entry("x", &three),
        )
        .unwrap();
        let fixed = cache
            .block_item(0, "x", &three, || Ok(features(3, 5.0)))
            .unwrap();
        assert_eq!(fixed.unwrap().0, features(3, 5.0));

        // Shard 2 of 2 owns the odd blocks: block 0 is counted, not computed.
        let shard = FeatureCache::open(&path, "m", "f32", "cpu")
            .unwrap()
            .sharded(Some(Shard { index: 2, count: 2 }));
        let none = shard
            .block_item(0, "sweep R=9", &b, || -> Result<BatchFeatures> {
                panic!("computed another shard's block")
            })
            .unwrap();
        assert_eq!(none, None);
        let mine = shard
            .block_item(1, "sweep R=9", &b, || Ok(features(2, 2.0)))
            .unwrap();
        assert_eq!(mine.unwrap().0, features(2, 2.0));
        assert_eq!(shard.batches_seen(), 2);
        assert_eq!(
            shard.owned_entries(),
            vec![shard.item_entry("sweep R=9", &b)]
        );
    }

    #[test]
    fn open_removes_temporaries_of_dead_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        // pid 0 is never a user process; this process is alive.
        let dead = dir.path().join(".x.safetensors.tmp-0");
        let alive = dir
            .path()
            .join(format!(".y.safetensors.tmp-{}", std::process::id()));
        let entry = dir.path().join("abc.safetensors");
        for f in [&dead, &alive, &entry] {
            std::fs::write(f, b"x").unwrap();
        }
        FeatureCache::open(dir.path(), "m", "f32", "cpu").unwrap();
        assert!(!dead.exists());
        assert!(alive.exists() && entry.exists());
    }

    #[test]
    fn files_digest_depends_on_content_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"ab").unwrap();
        std::fs::write(&b, b"c").unwrap();
        let ab = files_digest(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(ab.len(), 64);
        assert_ne!(ab, files_digest(&[b.clone(), a.clone()]).unwrap());
        std::fs::write(&b, b"d").unwrap();
        assert_ne!(ab, files_digest(&[a.clone(), b.clone()]).unwrap());
        let e = files_digest(&[dir.path().join("missing")]).unwrap_err();
        assert!(format!("{e:#}").contains("missing"));
    }
}
