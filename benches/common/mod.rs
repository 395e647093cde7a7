//! Helpers shared by the bench binaries (`mod common;` in each; not a bench itself).
#![allow(dead_code)] // each bench uses only some of them

/// The value of the environment variable `name` as a number, or `default` when it is unset or
/// not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median of a non-empty slice (the mean of the two middle values for an even length, so
/// that the median of two repetitions is their mean, not the slower one).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
