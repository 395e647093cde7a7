//! Skill neurons from auxiliary metrics: every FF neuron's activation correlated with
//! per-prompt metrics (external labels one-vs-rest, the model's gold-option and max-option
//! probability) on an MCEval8K task, and with per-generation metrics on open-ended greedy
//! generations; permutation p-values with Benjamini-Hochberg correction; ablation of the top
//! correlated neurons versus random neurons of the same count.
//!
//! ```text
//! cargo run --release --example aux_metrics            # stories260k + agnews from ../shared
//! cargo run --release --example aux_metrics -- --task mnli --n 200 --permutations 2000 \
//!     --top-k 20 --seeds 10 --max-new-tokens 32 --out results/aux_metrics
//! ```
//!
//! Writes `<out>/aux_metrics.json` and `<out>/aux_metrics.svg` atomically and prints a table.
//! Any error is one line and exit status 1.
use std::process::ExitCode;

use clap::Parser;
use neg_rs::aux_metrics::{print_table, run, Args};

fn main() -> ExitCode {
    neg_rs::cli::run_main(|| {
        print_table(&run(&Args::parse())?);
        Ok(())
    })
}
