//! The main job: skill-neuron probes (Rand, LM-Prob, Polar, Magn, Tree, Act) on MCEval8K,
//! SmolLM2-135M-Instruct, agnews and toxicity, leak-free splits (under 5 minutes on 2 cores).
//!
//! Same as `neg skill-probe` (see `neg skill-probe --help` and docs/EXPERIMENTS.md):
//!
//! ```text
//! cargo run --release --example skill_probe -- [ARGS]
//! ```
fn main() -> std::process::ExitCode {
    neg_rs::cli::main_as("skill-probe")
}
