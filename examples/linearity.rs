//! Neuron linearity (paper §2.2): Fig. 2 (mean |r| of activation vs output shifts per shift
//! range), Table 1 (linear, positive and negative ratios within +-2) and Table 5 (linearity,
//! layer and prompt generality of each prompt's top-|NeurGrad| neurons).
//!
//! ```text
//! cargo run --release --example linearity -- \
//!     [--model ../shared/models/stories260k] [--prompts facts.jsonl] [--out out/linearity] \
//!     [--max-prompts 10] [--neurons 100] [--top-neurons 20] [--ranges 0.1,0.5,1,2,5,10]
//! ```
//!
//! Writes `results.json`, `fig2_linearity.csv`, `fig2_linearity.svg` and `sweeps.safetensors`.
use clap::Parser;
use neg_core::analysis::LinearityConfig;
use neg_core::neg::ShiftMode;
use neg_rs::negexp::{self, CommonArgs, LinearityRun};

#[derive(Parser, Debug)]
#[command(about = "Fig. 2, Table 1 and Table 5: linearity of FF neurons under activation shifts")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Randomly sampled neurons swept on every prompt (Fig. 2, Table 1).
    #[arg(long, default_value_t = 100)]
    neurons: usize,
    /// Top-|NeurGrad| neurons per prompt for Table 5 (0 skips it).
    #[arg(long, default_value_t = 20)]
    top_neurons: usize,
    /// Shift ranges R of Fig. 2 (each swept over [-R, R]).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,1,2,5,10")]
    ranges: Vec<f32>,
    /// Grid points per side: step = R / points.
    #[arg(long, default_value_t = 10)]
    points_per_side: usize,
    /// The range at which Table 1 and Table 5 judge linearity.
    #[arg(long, default_value_t = 2.0)]
    linear_range: f32,
    /// |r| at or above this marks a linear neuron.
    #[arg(long, default_value_t = 0.95)]
    threshold: f32,
    /// magnitude (a -> a + d sign(a), the paper's) or additive (a -> a + d).
    #[arg(long, default_value = "magnitude")]
    mode: ShiftMode,
}

fn main() -> std::process::ExitCode {
    neg_rs::cli::run_main(|| {
        let args = Args::parse();
        let (model, set, out) = negexp::setup(&args.common, "linearity", 10)?;
        eprintln!("{}", set.describe());
        let config = LinearityRun {
            random_neurons: args.neurons,
            top_neurons: args.top_neurons,
            sweep: LinearityConfig {
                ranges: args.ranges.clone(),
                points_per_side: args.points_per_side,
                linear_threshold: args.threshold,
                linear_range: args.linear_range,
                mode: args.mode,
                ..LinearityConfig::default()
            },
            seed: args.common.seed,
        };
        let result = negexp::run_linearity(&model, &set, &config, &out, !args.common.no_progress)?;
        print!("{}", negexp::linearity_table(&result));
        eprintln!("wrote {} in {:.1} s", out.display(), result.info.runtime_s);
        Ok(())
    })
}
