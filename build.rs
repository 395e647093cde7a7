// The examples, benches and integration tests of the root package need the same libtorch rpath
// as neg-hooks' own targets (cargo does not forward link arguments between packages).
include!("crates/neg-hooks/build.rs");
