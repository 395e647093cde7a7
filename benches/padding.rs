//! Padding of skill-probe batches: padded / real tokens of the NeurGrad batches of every
//! MCEval8K task, in file order (how batches were formed before) and grouped by language and
//! length (how `skill::compute_features` forms them now), for the main job's selection
//! (leak-free re-splits, 256 / 64 / 128 prompts, batches of at most 16 prompts and 2,048
//! tokens run, cut early where padding would pass 10%: `skill::length_batches`) with
//! SmolLM2-135M-Instruct's tokenizer, zero- and few-shot. A count, not a timing: NeurGrad's cost is about linear in the tokens a
//! batch runs, so the ratio is the work spent on padding. The last columns give the prefix
//! the prompts of each language share (the smallest over a multilingual task's languages;
//! run once per batch, so the token budget counts it once), how many batches the token
//! budget added, and the largest batch's tokens run (the shared prefix once plus every row's
//! own tokens, padded: what the model's working memory grows with, `skill::batch_cost`). Batches as `skill::plan_batches` forms them: by language, then
//! by length.
//!
//! `cargo bench --bench padding` (about a minute; needs the packaged model and `../shared`).
use std::time::Instant;

use mceval::TaskRegistry;
use neg_rs::skill::{
    load_task, plan_batches, resolve_sources, select_prompts, shots_for, Batching, PromptContext,
    ShotMode, SplitMode, TokenCounts, DEFAULT_SIZES,
};

const BATCH: usize = 16;

fn main() -> anyhow::Result<()> {
    let start = Instant::now();
    let sources = resolve_sources(None, None)?;
    let model = neg_rs::sources::load_model(&sources.model, "cpu", "f32", 8)?;
    let templates = sources.data.template_set()?;
    println!(
        "padded / real tokens, batches of {BATCH}, {} ({} / {} / {} prompts, leak-free)\n",
        sources.model, DEFAULT_SIZES.train, DEFAULT_SIZES.valid, DEFAULT_SIZES.test
    );
    println!(
        "| task | shots | prompts | real tokens | file order | by length | batches | \
         shared prefix | split by the token budget | largest batch (tokens run) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut worst: f64 = 0.0;
    for spec in TaskRegistry::builtin().tasks() {
        let task = load_task(&sources.data.source, spec.name, SplitMode::LeakFree, 0)?;
        for shots in [ShotMode::Zero, ShotMode::Few] {
            let context = PromptContext {
                name: format!("{shots:?}"),
                templates: templates.clone(),
                shots: shots_for(
                    shots,
                    SplitMode::LeakFree,
                    spec,
                    sources.data.templates.is_some(),
                ),
            };
            let fits = |p: &str| model.encode(p).is_ok();
            let Ok((sets, _)) = select_prompts(&task, &[context], DEFAULT_SIZES, 0, &fits) else {
                println!(
                    "| {} | {shots:?} | no prompt fits | | | | | | | |",
                    spec.name
                );
                continue;
            };
            let set = &sets[0];
            let (budgeted, lengths) = plan_batches(&model, set, Batching::prompts(BATCH));
            let file_rows: Vec<usize> = (0..lengths.len()).collect();
            let file = TokenCounts::of_batches(&lengths, file_rows.chunks(BATCH));
            let unbounded = Batching {
                prompts: BATCH,
                tokens: usize::MAX,
            };
            let added = budgeted.len() - plan_batches(&model, set, unbounded).0.len();
            let largest = budgeted.iter().map(|b| b.cost(&lengths)).max().unwrap_or(0);
            let shared = budgeted.iter().map(|b| b.shared).min().unwrap_or(0);
            let budgeted: Vec<Vec<usize>> = budgeted.into_iter().map(|b| b.rows).collect();
            let sorted = TokenCounts::of_batches(&lengths, budgeted.iter().map(Vec::as_slice));
            worst = worst.max(sorted.ratio());
            println!(
                "| {} | {shots:?} | {} | {} | {:.3} | {:.3} | {} (file order {}) | {shared} | \
                 {added} | {largest} |",
                spec.name,
                lengths.len(),
                file.real,
                file.ratio(),
                sorted.ratio(),
                sorted.batches,
                file.batches
            );
        }
    }
    println!(
        "\nlargest padded / real by length: {worst:.3} ({:.0} s)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
