//! Multi-neuron enhancement (paper §4.2, Fig. 5; §D, Fig. 14): shift 2^0..2^j random neurons
//! together in their NeurGrad polarity by d in [0, R] and correlate the predicted output shift
//! d x sum |NEG| with the actual one.
//!
//! ```text
//! cargo run --release --example multi_neuron -- \
//!     [--model ../shared/models/stories260k] [--prompts facts.jsonl] [--out out/multi_neuron] \
//!     [--max-prompts 16] [--ranges 0.1,0.5,1,1.5,2] [--step 0.01] [--max-log2 12]
//! ```
//!
//! Fig. 5 is the range 0.5, Fig. 14 the others. Writes `results.json`, `fig5_multi_neuron.csv` and
//! `fig5_multi_neuron.svg`.
use clap::Parser;
use neg_core::neg::ShiftMode;
use neg_rs::negexp::{self, CommonArgs, MultiNeuronRun};

#[derive(Parser, Debug)]
#[command(about = "Figs. 5 and 14: predicted vs actual output shifts of many neurons at once")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Enhancement ranges [0, R].
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,1,1.5,2")]
    ranges: Vec<f32>,
    /// Shift grid step.
    #[arg(long, default_value_t = 0.01)]
    step: f32,
    /// Largest neuron count 2^max_log2 (capped at the model's neuron count).
    #[arg(long, default_value_t = 12)]
    max_log2: u32,
    /// magnitude (a -> a + d pol sign(a), the paper's) or additive (a -> a + d pol).
    #[arg(long, default_value = "magnitude")]
    mode: ShiftMode,
}

fn main() -> std::process::ExitCode {
    neg_rs::cli::run_main(|| {
        let args = Args::parse();
        let (model, set, out) = negexp::setup(&args.common, "multi_neuron", 16)?;
        eprintln!("{}", set.describe());
        let config = MultiNeuronRun {
            ranges: args.ranges.clone(),
            step: args.step,
            max_log2: args.max_log2,
            mode: args.mode,
            seed: args.common.seed,
        };
        let result =
            negexp::run_multi_neuron(&model, &set, &config, &out, !args.common.no_progress)?;
        print!("{}", negexp::multi_neuron_table(&result));
        eprintln!("wrote {} in {:.1} s", out.display(), result.info.runtime_s);
        Ok(())
    })
}
