//! Shared plumbing of the examples layer (`examples/`): result files written atomically,
//! progress bars and plots. The science lives in the library crates under `crates/`.
pub mod output;
pub mod plot;
pub mod skill;
pub mod factual;
pub mod negexp;
