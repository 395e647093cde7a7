//! Making libtorch's CUDA backend visible to binaries that did not link it.
//!
//! `libtorch_cuda.so` registers the CUDA backend from its static initialisers; nothing
//! references its symbols directly, so a linker running with `--as-needed` (the default on most
//! distributions) drops it and CUDA looks absent. This workspace's own binaries link it with
//! `--no-as-needed` (see `build.rs`), but cargo cannot forward that flag to crates that depend on
//! `neg-hooks`. For them we load the library at run time, from the directory of the
//! `libtorch_cpu.so` already mapped into the process, before libtorch first asks for its CUDA
//! hooks (it caches the answer). Written by hand: no crate does this for libtorch.
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::OnceLock;

/// What [`ensure_cuda_backend`] found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CudaBackend {
    /// `libtorch_cuda.so` was already mapped (linked, or loaded earlier).
    AlreadyLoaded,
    /// It was loaded now from this path.
    Loaded(PathBuf),
    /// This libtorch has no CUDA library (a CPU-only build), or it could not be loaded.
    Unavailable(String),
}

const CUDA_LIB: &str = "libtorch_cuda.so";

fn mapped_libraries() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

fn load() -> CudaBackend {
    let mapped = mapped_libraries();
    if mapped
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n == CUDA_LIB))
    {
        return CudaBackend::AlreadyLoaded;
    }
    let Some(cpu_lib) = mapped
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "libtorch_cpu.so"))
    else {
        return CudaBackend::Unavailable("libtorch_cpu.so is not mapped into this process".into());
    };
    let candidate = cpu_lib.with_file_name(CUDA_LIB);
    if !candidate.exists() {
        return CudaBackend::Unavailable(format!("{} does not exist", candidate.display()));
    }
    let Ok(c_path) = CString::new(candidate.to_string_lossy().as_bytes()) else {
        return CudaBackend::Unavailable("library path contains a NUL byte".into());
    };
    // SAFETY: dlopen with a valid NUL-terminated path; the handle is intentionally leaked so the
    // library stays loaded for the life of the process.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local C string or null.
        let reason = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "dlopen failed".to_string()
            } else {
                std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        return CudaBackend::Unavailable(reason);
    }
    CudaBackend::Loaded(candidate)
}

/// Loads `libtorch_cuda.so` beside the running libtorch if it is not loaded yet (once per
/// process). Called by [`crate::cuda_available`] and before a CUDA device is resolved.
pub fn ensure_cuda_backend() -> &'static CudaBackend {
    static STATE: OnceLock<CudaBackend> = OnceLock::new();
    STATE.get_or_init(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_library_is_mapped_after_ensure_when_libtorch_has_one() {
        // Touch libtorch so libtorch_cpu is mapped.
        let _ = tch::Tensor::from_slice(&[1.0f32]);
        let state = ensure_cuda_backend().clone();
        let has_cuda_lib = mapped_libraries()
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == "libtorch_cpu.so"))
            .map(|p| p.with_file_name(CUDA_LIB).exists())
            .unwrap_or(false);
        if has_cuda_lib {
            assert!(
                matches!(state, CudaBackend::AlreadyLoaded | CudaBackend::Loaded(_)),
                "{state:?}"
            );
            assert!(mapped_libraries()
                .iter()
                .any(|p| p.file_name().is_some_and(|n| n == CUDA_LIB)));
        } else {
            assert!(matches!(state, CudaBackend::Unavailable(_)), "{state:?}");
        }
    }
}
