//! What sharing a batch's common prefix saves: skill-probe NeurGrad features of the same
//! records zero-shot, few-shot with the shared prefix run once (the default), and few-shot with
//! every prompt run whole (`HfModel::set_prefix_sharing(false)`), in one run, on
//! SmolLM2-135M-Instruct (f32, CPU threads as libtorch sets them), batches of 16 grouped by
//! length, each case repeated `NEG_BENCH_REPS` times (default 2; the median is reported).
//! The shared and whole few-shot features are also compared (largest difference of |NeurGrad|
//! relative to the largest value, and how many values differ in sign: an activation within
//! rounding of 0 can round either way, which flips its NeurGrad), since sharing must not
//! change the numbers beyond rounding.
//!
//! `cargo bench --bench prefix` (a few minutes on 2 cores). `NEG_BENCH_TASK` (default
//! `agnews`) and `NEG_BENCH_PROMPTS` (default 32 test prompts) choose the work.
mod common;

use std::time::Instant;

use indicatif::ProgressBar;
use neg_rs::skill::{
    compute_features, load_task, resolve_sources, select_prompts, shots_for, Batching,
    PromptContext, ShotMode, Sizes, SkillFeatures, SplitMode,
};

fn main() -> anyhow::Result<()> {
    let task_name = std::env::var("NEG_BENCH_TASK").unwrap_or_else(|_| "agnews".into());
    let n = common::env_usize("NEG_BENCH_PROMPTS", 32);
    let reps = common::env_usize("NEG_BENCH_REPS", 2).max(1);
    let sources = resolve_sources(None, None)?;
    let mut model = neg_rs::sources::load_model(&sources.model, "cpu", "f32", 16 * 8)?;
    let templates = sources.data.template_set()?;
    let task = load_task(&sources.data.source, &task_name, SplitMode::LeakFree, 0)?;
    let contexts: Vec<PromptContext> = [ShotMode::Zero, ShotMode::Few]
        .into_iter()
        .map(|shots| PromptContext {
            name: format!("{shots:?}-shot").to_lowercase(),
            templates: templates.clone(),
            shots: shots_for(
                shots,
                SplitMode::LeakFree,
                task.spec,
                sources.data.templates.is_some(),
            ),
        })
        .collect();
    let fits = |p: &str| model.encode(p).is_ok();
    // Every split needs one prompt at least; the work is the test prompts (and those two).
    let sizes = Sizes {
        train: 1,
        valid: 1,
        test: n,
    };
    let (sets, _) = select_prompts(&task, &contexts, sizes, 0, &fits)?;
    let tokens = |i: usize| -> usize {
        sets[i]
            .items
            .iter()
            .map(|it| model.encode(&it.prompt).map_or(0, |t| t.len()))
            .sum()
    };
    let (zero_tokens, few_tokens) = (tokens(0), tokens(1));
    let mut run = |set: usize, share: bool| -> anyhow::Result<(f64, SkillFeatures)> {
        model.set_prefix_sharing(share);
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..reps {
            let t = Instant::now();
            let f = compute_features(
                &model,
                &sets[set],
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
    let (zero, _) = run(0, true)?;
    let (few_shared, shared) = run(1, true)?;
    let (few_whole, whole) = run(1, false)?;
    let (a, b) = (
        shared.scores.expect("scores kept"),
        whole.scores.expect("scores kept"),
    );
    // NeurGrad is dP/da x sign(a): where an activation lies within rounding of 0, the two
    // computations may round it to opposite signs and the value flips whole. So magnitudes
    // (|dP/da|) are compared, and the flips counted apart.
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    let (mut diff, mut flips) = (0f32, 0usize);
    for (x, y) in a.iter().zip(b.iter()) {
        diff = diff.max((x.abs() - y.abs()).abs());
        if x * y < 0.0 {
            flips += 1;
        }
    }
    let n = sets[0].items.len();
    let per = |s: f64| s / n as f64;
    println!(
        "{task_name}, {n} prompts, {} (median of {reps}):",
        sources.model
    );
    println!("| case | tokens | seconds / prompt | vs zero-shot |");
    println!("|---|---|---|---|");
    println!("| zero-shot | {zero_tokens} | {:.3} | 1.00 |", per(zero));
    println!(
        "| few-shot, shared prefix | {few_tokens} | {:.3} | {:.2} |",
        per(few_shared),
        few_shared / zero
    );
    println!(
        "| few-shot, whole prompts | {few_tokens} | {:.3} | {:.2} |",
        per(few_whole),
        few_whole / zero
    );
    println!(
        "\nsharing the prefix: {:.2}x faster; NeurGrad max ||shared| - |whole|| = {diff:.2e} \
         ({:.2e} of the largest |NeurGrad|); signs differ on {flips} of {} values",
        few_whole / few_shared,
        diff / scale.max(f32::MIN_POSITIVE),
        a.len()
    );
    Ok(())
}
