//! Knowledge attribution (paper §3.3, Fig. 3): enhance each method's top-K neurons (positive
//! ones up, negative ones down for NeurGrad and CG; IG and LPI rank positive scores only) by
//! activation shifts 0.1..1 and measure the mean shift of the answer's probability.
//!
//! ```text
//! cargo run --release --example knowledge_attribution -- \
//!     [--model ../shared/models/stories260k] [--prompts facts.jsonl] \
//!     [--out out/knowledge_attribution] [--max-prompts 0] [--ks 1,4,16] [--methods neurgrad,cg,ig,lpi]
//! ```
//!
//! Writes `results.json`, `fig3_attribution.csv` and `fig3_attribution.svg`.
use clap::Parser;
use neg_core::analysis::TopKConfig;
use neg_rs::negexp::{self, AttributionRun, CommonArgs, MethodArgs};

#[derive(Parser, Debug)]
#[command(about = "Fig. 3: output shifts when enhancing each method's top-K neurons")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Neuron counts K.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    ks: Vec<usize>,
    /// Largest activation shift; shifts are step, 2 step, ..., max.
    #[arg(long, default_value_t = 1.0)]
    max_shift: f32,
    #[arg(long, default_value_t = 0.1)]
    step: f32,
    #[command(flatten)]
    estimators: MethodArgs,
}

fn main() -> std::process::ExitCode {
    neg_rs::cli::run_main(|| {
        let args = Args::parse();
        if !(args.step > 0.0 && args.max_shift >= args.step) {
            anyhow::bail!(
                "--step must be > 0 and --max-shift >= --step (got {} and {})",
                args.step,
                args.max_shift
            );
        }
        let (model, set, out) = negexp::setup(&args.common, "knowledge_attribution", 0)?;
        eprintln!("{}", set.describe());
        let n = (args.max_shift / args.step + 1e-4).floor() as usize;
        let config = AttributionRun {
            methods: args.estimators.methods.clone(),
            topk: TopKConfig {
                ks: args.ks.clone(),
                shifts: (1..=n).map(|i| i as f32 * args.step).collect(),
                mode: args.estimators.mode,
                ..TopKConfig::default()
            },
        };
        let result =
            negexp::run_attribution(&model, &set, &config, &out, !args.common.no_progress)?;
        print!("{}", negexp::attribution_table(&result));
        eprintln!("wrote {} in {:.1} s", out.display(), result.info.runtime_s);
        Ok(())
    })
}
