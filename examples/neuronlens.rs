//! NeuronLens on an MCEval8K task: per-class activation ranges of the residual stream (or FF
//! neurons) at the answer position, and range masking versus whole-neuron masking of each
//! class's salient units.
//!
//! ```text
//! cargo run --release --example neuronlens            # stories260k + agnews from ../shared
//! cargo run --release --example neuronlens -- --task toxicity --site ff --layers 2,3 \
//!     --tau 2 --fraction 0.1 --fit-on correct --out results/neuronlens
//! ```
//!
//! Fits on the train split (correctly answered prompts by default), evaluates on the test
//! split. Writes `<out>/neuronlens.json` (every class's unmasked, range-masked and
//! neuron-masked target/complement accuracy and confidence, ranges and their overlap) and
//! `<out>/neuronlens.svg`, atomically; prints a table. Any error is one line and exit status 1.
use std::process::ExitCode;

use clap::Parser;
use neg_rs::lens::{print_table, run, Args};

fn main() -> ExitCode {
    neg_rs::cli::run_main(|| {
        print_table(&run(&Args::parse())?);
        Ok(())
    })
}
