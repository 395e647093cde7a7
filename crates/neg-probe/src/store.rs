//! Where a data set's `[neurons, prompts]` matrices live: in memory, or on disk.
//!
//! A skill-probe data set holds 9 bytes per (neuron, prompt) (five u8 / i8 compact features
//! and the f32 activation): 0.4 GB for SmolLM2's 46,080 neurons over 1,000 prompts, 25 GB for
//! a 7B model's 352,256 neurons over 8,000. [`Storage::Disk`] keeps each matrix in a
//! temporary file mapped into memory, so that it is page cache the kernel writes back and
//! evicts under memory pressure instead of anonymous memory that must stay resident, and the
//! process's anonymous memory no longer grows with the number of prompts. A disk-backed
//! builder writes prompt-major `[prompts, neurons]` files (each prompt a contiguous run of
//! pages, written once) and transposes them once, in page-sized blocks, when it finishes:
//! written neuron-major, every batch of prompts would touch every page of the files, which
//! for a data set larger than RAM means reading and writing all of it once per batch. The
//! probes then read neuron rows back as they scan.
//!
//! Written here rather than taken from a crate because what is needed is small: `memmap2`
//! maps the file, `bytemuck` views its bytes as `u8` / `i8` / `f32`, and the mapping is handed
//! to the probes as the `ArrayView2` they already take. (`ndarray-npy` maps `.npy` files, but
//! a named file would outlive a killed run; ours is unlinked from the start.)
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use bytemuck::Pod;
use memmap2::MmapMut;
use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};

use crate::error::{ProbeError, Result};

/// The usual page size; only sizes [`Matrix::transposed`]'s blocks, so another one costs
/// speed, not correctness.
const PAGE_BYTES: usize = 4096;

/// Where [`crate::ProbeDataBuilder::with_storage`] keeps the data set's matrices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Storage {
    /// In memory (the default; fastest while the data set fits).
    #[default]
    Memory,
    /// In unlinked temporary files in this directory, mapped into memory: nothing is left in
    /// the directory, even when the process is killed, and the data set's pages are the
    /// kernel's to evict. The directory must exist and be writable.
    Disk(PathBuf),
}

/// One `[rows, cols]` matrix, row-major, in memory or in a mapped temporary file.
pub(crate) struct Matrix<T> {
    shape: (usize, usize),
    inner: Inner<T>,
}

enum Inner<T> {
    Memory(Array2<T>),
    Disk {
        map: MmapMut,
        dir: PathBuf,
        _elem: PhantomData<T>,
    },
}

impl<T: Pod> Matrix<T> {
    /// A zero matrix of `shape` kept as `storage` says; `what` names it in errors.
    pub fn zeros(shape: (usize, usize), storage: &Storage, what: &'static str) -> Result<Self> {
        let len = shape.0 * shape.1;
        let inner = match storage {
            // An empty mapping is refused by the kernel; an empty matrix costs nothing anyway.
            Storage::Disk(dir) if len > 0 => Inner::Disk {
                map: map_zeroed(dir, len * std::mem::size_of::<T>(), what)?,
                dir: dir.clone(),
                _elem: PhantomData,
            },
            _ => Inner::Memory(Array2::from_elem(shape, T::zeroed())),
        };
        Ok(Self { shape, inner })
    }

    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.shape.0
    }

    /// The matrix, read-only.
    pub fn view(&self) -> ArrayView2<'_, T> {
        match &self.inner {
            Inner::Memory(a) => a.view(),
            Inner::Disk { map, .. } => {
                // The mapping is page-aligned and holds exactly rows x cols elements (made so
                // in `zeros`), so neither the cast nor the shape can fail.
                let elems: &[T] = bytemuck::cast_slice(&map[..]);
                ArrayView2::from_shape(self.shape, elems).expect("mapping of rows x cols")
            }
        }
    }

    /// Row `i`, read-only (panics when out of range, like ndarray's `row`).
    pub fn row(&self, i: usize) -> ArrayView1<'_, T> {
        self.view().index_axis_move(Axis(0), i)
    }

    /// The matrix, writable.
    pub fn view_mut(&mut self) -> ArrayViewMut2<'_, T> {
        match &mut self.inner {
            Inner::Memory(a) => a.view_mut(),
            Inner::Disk { map, .. } => {
                let elems: &mut [T] = bytemuck::cast_slice_mut(&mut map[..]);
                ArrayViewMut2::from_shape(self.shape, elems).expect("mapping of rows x cols")
            }
        }
    }

    /// Where the matrix is kept: memory, or the directory of its temporary file.
    pub fn storage(&self) -> Storage {
        match &self.inner {
            Inner::Memory(_) => Storage::Memory,
            Inner::Disk { dir, .. } => Storage::Disk(dir.clone()),
        }
    }

    /// The transpose, `[cols, rows]`, kept as `storage` says. Copied in blocks of the
    /// output's rows, as many as make one page of a source row, so that each page of either
    /// matrix is read or written in one stretch: on disk that is one pass over each file
    /// whether or not they fit in memory (a plain strided transpose would revisit every
    /// source page once per output row).
    pub fn transposed(&self, storage: &Storage, what: &'static str) -> Result<Self> {
        let (rows, cols) = self.shape;
        let mut out = Self::zeros((cols, rows), storage, what)?;
        let block = (PAGE_BYTES / std::mem::size_of::<T>()).max(1);
        let src = self.view();
        let mut dst = out.view_mut();
        for c0 in (0..cols).step_by(block) {
            let c1 = (c0 + block).min(cols);
            dst.slice_mut(s![c0..c1, ..])
                .assign(&src.slice(s![.., c0..c1]).t());
        }
        Ok(out)
    }

    /// A copy kept as `storage` says.
    pub fn copy_to(&self, storage: &Storage, what: &'static str) -> Result<Self> {
        let mut out = Self::zeros(self.shape, storage, what)?;
        out.view_mut().assign(&self.view());
        Ok(out)
    }
}

/// A copy in memory: `Clone` cannot report an I/O error, so a disk-backed matrix clones into
/// memory; [`Matrix::copy_to`] copies to disk.
impl<T: Pod> Clone for Matrix<T> {
    fn clone(&self) -> Self {
        Self {
            shape: self.shape,
            inner: Inner::Memory(self.view().to_owned()),
        }
    }
}

impl<T> std::fmt::Debug for Matrix<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match &self.inner {
            Inner::Memory(_) => "memory".to_string(),
            Inner::Disk { dir, .. } => format!("disk in {}", dir.display()),
        };
        write!(f, "Matrix{:?} in {place}", self.shape)
    }
}

/// A zeroed, writable mapping of `bytes` bytes of a new unlinked file in `dir`.
fn map_zeroed(dir: &Path, bytes: usize, what: &'static str) -> Result<MmapMut> {
    let err = |e: std::io::Error| ProbeError::Spool {
        what,
        bytes: bytes as u64,
        dir: dir.to_path_buf(),
        message: e.to_string(),
    };
    // Unlinked at creation (O_TMPFILE where the file system has it): the space comes back
    // when the mapping is dropped, whatever ends the process.
    let file = tempfile::tempfile_in(dir).map_err(err)?;
    // A sparse file: reads of unwritten pages are zeros without disk space being taken.
    file.set_len(bytes as u64).map_err(err)?;
    // SAFETY: the file is unlinked and its handle private to this mapping, so no other
    // process or handle can truncate or write it while it is mapped.
    unsafe { MmapMut::map_mut(&file) }.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked transpose equals ndarray's, on disk and in memory, for shapes that are
    /// not multiples of the block (4,096 u8 columns, 1,024 f32 ones) and for a single row.
    #[test]
    fn transposed_equals_the_transpose_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        for storage in [Storage::Memory, Storage::Disk(dir.path().to_path_buf())] {
            for (rows, cols) in [(3, 9_000), (1, 5), (7, 1_030)] {
                let mut bytes = Matrix::<u8>::zeros((rows, cols), &storage, "u8").unwrap();
                let mut floats = Matrix::<f32>::zeros((rows, cols), &storage, "f32").unwrap();
                for ((r, c), v) in bytes.view_mut().indexed_iter_mut() {
                    *v = (r * 31 + c * 7) as u8;
                }
                for ((r, c), v) in floats.view_mut().indexed_iter_mut() {
                    *v = (r * cols + c) as f32 * 0.5;
                }
                let bt = bytes.transposed(&storage, "u8 t").unwrap();
                let ft = floats.transposed(&storage, "f32 t").unwrap();
                assert_eq!(bt.view(), bytes.view().t(), "{rows}x{cols} {storage:?}");
                assert_eq!(ft.view(), floats.view().t(), "{rows}x{cols} {storage:?}");
                assert_eq!(bt.storage(), storage);
            }
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
