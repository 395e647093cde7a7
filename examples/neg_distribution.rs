//! NEG distribution (paper §4.1 and §B.2-B.3): cumulative share of |NEG| held by the largest
//! neurons (Fig. 4), the histogram of NEG values (Fig. 11) and per-layer mean and variance of
//! |NEG| (Fig. 12), from NeurGrad of every FF neuron on every prompt.
//!
//! ```text
//! cargo run --release --example neg_distribution -- \
//!     [--model ../shared/models/stories260k] [--prompts facts.jsonl] \
//!     [--out out/neg_distribution] [--max-prompts 0] [--bins 50]
//! ```
//!
//! Writes `results.json`, `fig4_cumulative.{csv,svg}`, `fig11_histogram.svg`,
//! `fig12_layers.{csv,svg}` and `neurgrad.safetensors`.
use clap::Parser;
use neg_rs::negexp::{self, CommonArgs, DistributionRun};

#[derive(Parser, Debug)]
#[command(about = "Figs. 4, 11, 12: how NEG magnitudes are distributed over neurons and layers")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Histogram bins (Fig. 11).
    #[arg(long, default_value_t = 50)]
    bins: usize,
}

fn main() -> std::process::ExitCode {
    neg_rs::cli::run_main(|| {
        let args = Args::parse();
        if args.bins == 0 {
            anyhow::bail!("--bins must be at least 1");
        }
        let (model, set, out) = negexp::setup(&args.common, "neg_distribution", 0)?;
        eprintln!("{}", set.describe());
        let config = DistributionRun { bins: args.bins };
        let result =
            negexp::run_distribution(&model, &set, &config, &out, !args.common.no_progress)?;
        print!("{}", negexp::distribution_table(&result));
        eprintln!("wrote {} in {:.1} s", out.display(), result.info.runtime_s);
        Ok(())
    })
}
