// Link-time glue for libtorch, shared by `neg-hooks` and the root package (which `include!`s
// this file): an rpath to libtorch's `lib/` so binaries run from a plain shell, and an explicit
// `--no-as-needed` link of `libtorch_cuda.so` when it exists. Without the latter the linker
// drops the CUDA library (no symbol of it is referenced directly; it registers itself when
// loaded), and `tch::Cuda::is_available()` reports false on a GPU machine.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        // torch-sys reports the missing libtorch itself, with its own instructions.
        return;
    };
    let lib = libtorch.join("lib");
    // Canonicalise so the rpath survives the `.libtorch` symlink being re-pointed.
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rerun-if-changed={}", lib.display());
    if !lib.is_dir() {
        return;
    }
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // Link arguments apply to this package's own binaries only (tests, examples, benches):
    // cargo forwards none to dependents, and the `as-needed` link modifier that would is
    // unstable. Downstream binaries get the same effect from `neg_hooks::cuda_available()`,
    // which loads libtorch_cuda at run time when it was not linked.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
