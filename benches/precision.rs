//! bf16 vs f32 NeurGrad in one run: skill-probe NeurGrad features of the same prompts on
//! SmolLM2-135M-Instruct loaded in f32 and in bf16 (CPU, libtorch's threads), batches of 16
//! grouped by length, each repeated `NEG_BENCH_REPS` times (default 2; the median is reported),
//! with the error of the bf16 numbers against the f32 ones: relative L2 of NeurGrad and of the
//! option probabilities, and the share of (prompt, neuron) activations whose sign differs
//! (NeurGrad = dP/da x sign(a), so a sign flip flips that neuron's score).
//!
//! `cargo bench --bench precision` (a few minutes on 2 cores). `NEG_BENCH_TASK` (default
//! `agnews`) and `NEG_BENCH_PROMPTS` (default 32 test prompts) choose the work,
//! `NEG_BENCH_DEVICE` (default `cpu`) the device.
mod common;

use std::time::Instant;

use indicatif::ProgressBar;
use neg_rs::skill::{
    compute_features, load_task, resolve_sources, select_prompts, shots_for, Batching,
    PromptContext, ShotMode, Sizes, SkillFeatures, SplitMode,
};

fn rel_l2<'a>(a: impl Iterator<Item = &'a f32>, b: impl Iterator<Item = &'a f32>) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.zip(b) {
        num += (*x as f64 - *y as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

fn main() -> anyhow::Result<()> {
    let task_name = std::env::var("NEG_BENCH_TASK").unwrap_or_else(|_| "agnews".into());
    let device = std::env::var("NEG_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let n = common::env_usize("NEG_BENCH_PROMPTS", 32);
    let reps = common::env_usize("NEG_BENCH_REPS", 2).max(1);
    let sources = resolve_sources(None, None)?;
    let f32_model = neg_rs::sources::load_model(&sources.model, &device, "f32", 16 * 8)?;
    let bf16_model = neg_rs::sources::load_model(&sources.model, &device, "bf16", 16 * 8)?;
    let templates = sources.data.template_set()?;
    let task = load_task(&sources.data.source, &task_name, SplitMode::LeakFree, 0)?;
    let context = PromptContext {
        name: "zero-shot".into(),
        templates,
        shots: shots_for(
            ShotMode::Zero,
            SplitMode::LeakFree,
            task.spec,
            sources.data.templates.is_some(),
        ),
    };
    let fits = |p: &str| f32_model.encode(p).is_ok();
    let sizes = Sizes {
        train: 1,
        valid: 1,
        test: n,
    };
    let (sets, _) = select_prompts(&task, &[context], sizes, 0, &fits)?;
    let set = &sets[0];
    let run = |model: &neg_hooks::HfModel| -> anyhow::Result<(f64, SkillFeatures)> {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..reps {
            let t = Instant::now();
            let f = compute_features(
                model,
                set,
                Batching::prompts(16),
                true,
                None,
                &neg_probe::Storage::Memory,
                &ProgressBar::hidden(),
            )?;
            times.push(t.elapsed().as_secs_f64());
            last = Some(f);
        }
        Ok((
            common::median(&times),
            last.expect("at least one repetition"),
        ))
    };
    let (t32, f32s) = run(&f32_model)?;
    let (t16, bf16s) = run(&bf16_model)?;
    let (s32, s16) = (
        f32s.scores.as_ref().expect("scores kept"),
        bf16s.scores.as_ref().expect("scores kept"),
    );
    let (a32, a16) = (f32s.activations()?, bf16s.activations()?);
    let flips = a32
        .iter()
        .zip(a16.iter())
        .filter(|(a, b)| (**a > 0.0) != (**b > 0.0))
        .count() as f64
        / a32.len() as f64;
    let p = set.items.len();
    println!(
        "{task_name}, {p} prompts, {} on {device} (median of {reps}):",
        sources.model
    );
    println!("| dtype | seconds / prompt | vs f32 |");
    println!("|---|---|---|");
    println!("| f32 | {:.3} | 1.00 |", t32 / p as f64);
    println!("| bf16 | {:.3} | {:.2} |", t16 / p as f64, t16 / t32);
    println!(
        "\nbf16 against f32: NeurGrad relative L2 {:.2e}, option probabilities {:.2e}, \
         activation signs differing {:.2}%",
        rel_l2(s16.iter(), s32.iter()),
        rel_l2(bf16s.probs.iter(), f32s.probs.iter()),
        100.0 * flips
    );
    Ok(())
}
