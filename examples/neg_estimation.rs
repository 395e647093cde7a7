//! NEG estimation quality (paper §3.2, Table 2): Pearson r, Spearman and MAE of NeurGrad, CG,
//! IG and LPI against ground-truth NEG from intervention sweeps, with runtimes.
//!
//! ```text
//! cargo run --release --example neg_estimation -- \
//!     [--model ../shared/models/stories260k] [--prompts facts.jsonl] [--out out/neg_estimation] \
//!     [--max-prompts 0] [--neurons 100] [--range 2] [--step 0.2] [--methods neurgrad,cg,ig,lpi]
//! ```
//!
//! Writes `results.json`, `table2.csv` and `estimates.safetensors`.
use clap::Parser;
use neg_core::neg::SweepConfig;
use neg_rs::negexp::{self, CommonArgs, EstimationRun, MethodArgs};

#[derive(Parser, Debug)]
#[command(about = "Table 2: NeurGrad, CG, IG and LPI against ground-truth NEG")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Randomly sampled neurons whose ground-truth NEG is swept.
    #[arg(long, default_value_t = 100)]
    neurons: usize,
    /// Shift range R of the ground-truth sweep.
    #[arg(long, default_value_t = 2.0)]
    range: f32,
    /// Grid step s.
    #[arg(long, default_value_t = 0.2)]
    step: f32,
    #[command(flatten)]
    estimators: MethodArgs,
}

fn main() -> std::process::ExitCode {
    neg_rs::cli::run_main(|| {
        let args = Args::parse();
        let (model, set, out) = negexp::setup(&args.common, "neg_estimation", 0)?;
        eprintln!("{}", set.describe());
        let config = EstimationRun {
            neurons: args.neurons,
            sweep: SweepConfig {
                range: args.range,
                step: args.step,
                mode: args.estimators.mode,
                ..SweepConfig::default()
            },
            methods: args.estimators.methods.clone(),
            seed: args.common.seed,
        };
        let result = negexp::run_estimation(&model, &set, &config, &out, !args.common.no_progress)?;
        print!("{}", negexp::estimation_table(&result));
        eprintln!("wrote {} in {:.1} s", out.display(), result.info.runtime_s);
        Ok(())
    })
}
