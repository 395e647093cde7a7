#![allow(dead_code)]
use std::path::PathBuf;

/// `../shared` from the workspace root; fails (does not skip) when absent.
pub fn shared() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        p.join("data/mceval8k").is_dir(),
        "shared data not found at {} (expected ../shared next to the workspace root, with data/mceval8k)",
        p.display()
    );
    p
}

pub fn mceval8k() -> PathBuf {
    shared().join("data/mceval8k")
}

pub fn templates_json() -> PathBuf {
    mceval8k().join("templates.json")
}

pub fn sources() -> PathBuf {
    let p = shared().join("data/sources");
    assert!(p.is_dir(), "raw sources not found at {}", p.display());
    p
}

pub fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(p.exists(), "workspace Python not found at {}", p.display());
    p
}
