//! NeurGrad features of a prompt set: one target per option, the compact probe features, the
//! activations and option probabilities, and optionally the full f32 scores.
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use mceval::Split as McSplit;
use ndarray::{Array2, Array3, Axis};
use neg_core::{ModelAdapter, TargetedPrompt};
use neg_probe::{ProbeData, ProbeDataBuilder, Split, Storage};
use serde::{Deserialize, Serialize};

use super::*;

/// NeurGrad features of one prompt set.
#[derive(Debug, Clone)]
pub struct SkillFeatures {
    /// Task name.
    pub task: String,
    /// Context name.
    pub context: String,
    /// Model id.
    pub model: String,
    /// Answer strings, one per option.
    pub answers: Vec<String>,
    /// Token id of each answer after the first prompt.
    pub answer_ids: Vec<u32>,
    /// L
    pub n_layers: usize,
    /// N per layer; neuron `i` of the features is layer `i / ff_width`, unit `i % ff_width`.
    pub ff_width: usize,
    /// Compact probe features with activations and option probabilities, `[L*N, P]`
    /// neuron-major: the index of the option with the largest NeurGrad is
    /// `data.option_index()`, the activations `data.activations()`. Kept where
    /// [`compute_features`] was told ([`Storage`]).
    pub data: ProbeData,
    /// `[P, K]` option probabilities.
    pub probs: Array2<f32>,
    /// `[P, K, L*N]` NeurGrad, when kept in memory (features computed without a cache).
    pub scores: Option<Array3<f32>>,
    /// With a cache, kept NeurGrad stays on disk in the cache's entries, one per batch, until
    /// [`write_features_file`] copies it into the features file batch by batch: a run never
    /// holds the `[P, K, L*N]` scores in memory.
    pub score_batches: Vec<ScoreBatch>,
    /// Gold option per prompt.
    pub labels: Vec<usize>,
    /// Split per prompt.
    pub splits: Vec<Split>,
    /// What each row is: its record, prompt and targets.
    pub rows: Vec<FeatureRow>,
    /// Token counts of the batches NeurGrad ran.
    pub tokens: TokenCounts,
    /// Seconds spent in the model.
    pub seconds: f64,
}

impl SkillFeatures {
    /// `[L*N, P]` activations (always computed with the features).
    pub fn activations(&self) -> Result<ndarray::ArrayView2<'_, f32>> {
        self.data
            .activations()
            .with_context(|| format!("task {}: features without activations", self.task))
    }
}

/// Where the NeurGrad of some rows is kept: the cache entry of the batch that computed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreBatch {
    /// The rows of the batch, in batch order.
    pub rows: Vec<usize>,
    /// Its resume-cache entry ([`FeatureCache::entry`]).
    pub entry: std::path::PathBuf,
}

/// How many tokens the batches of a features run held: the prompts' own and, with the
/// left padding of each batch to its longest prompt, in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCounts {
    /// Sum of the prompts' lengths (token counts, or bytes when the model cannot tell).
    pub real: usize,
    /// Sum over batches of batch size x longest prompt.
    pub padded: usize,
    /// Batches run.
    pub batches: usize,
}

impl TokenCounts {
    /// The counts of running prompts of `lengths` in the batches `batches` (row indices).
    pub fn of_batches<'a>(
        lengths: &[usize],
        batches: impl IntoIterator<Item = &'a [usize]>,
    ) -> Self {
        let mut c = TokenCounts::default();
        for rows in batches {
            let longest = rows.iter().map(|&i| lengths[i]).max().unwrap_or(0);
            c.real += rows.iter().map(|&i| lengths[i]).sum::<usize>();
            c.padded += longest * rows.len();
            c.batches += 1;
        }
        c
    }

    /// Padded / real tokens (1 when nothing is padded).
    pub fn ratio(&self) -> f64 {
        self.padded as f64 / self.real.max(1) as f64
    }
}

/// The order in which [`compute_features`] runs prompts of `lengths`: shortest first, ties in
/// input order, so that consecutive batches hold prompts of similar length.
pub fn length_order(lengths: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    order
}

/// Most padded / real tokens a batch of [`length_batches`] may hold.
pub const MAX_PADDING: f64 = 1.1;

/// Default [`Batching::tokens`]: small enough that a SmolLM2 skill-probe run's peak memory is
/// flat in the number of prompts on CPU (docs/PERFORMANCE.md: 8192 let it grow with the
/// sample's longest prompts), and large enough that few-shot batches, whose shared prefix
/// counts once, still hold 16 prompts (agnews: 428 shared tokens + 16 x at most 100 own).
pub const DEFAULT_BATCH_TOKENS: usize = 2048;

/// How prompts are grouped into NeurGrad batches ([`length_batches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batching {
    /// Most prompts in a batch (`--batch`).
    pub prompts: usize,
    /// Most tokens a batch runs, padding included (`--batch-tokens`; [`batch_cost`]): the
    /// prefix its prompts share once, plus batch size x its longest prompt's own tokens. The
    /// model's working memory (activations, the backward's tape, the attention scores) grows
    /// with it, so bounding it bounds a run's peak memory whatever the number or the length
    /// spread of the prompts. A single prompt longer than this runs alone.
    pub tokens: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            prompts: 16,
            tokens: DEFAULT_BATCH_TOKENS,
        }
    }
}

impl Batching {
    /// Batches of at most `prompts` prompts and [`DEFAULT_BATCH_TOKENS`] tokens.
    pub fn prompts(prompts: usize) -> Self {
        Self {
            prompts,
            ..Self::default()
        }
    }

    /// Errors naming the flag when either limit is 0.
    pub fn check(&self) -> Result<()> {
        if self.prompts == 0 {
            bail!("--batch must be at least 1");
        }
        if self.tokens == 0 {
            bail!("--batch-tokens must be at least 1");
        }
        Ok(())
    }
}

/// The batches [`compute_features`] runs for one group of prompts ([`plan_batches`]): prompts
/// in [`length_order`], at most `batching.prompts` to a batch, and a new batch begun early
/// whenever the next (longest so far) prompt would make the batch's padded tokens exceed
/// [`MAX_PADDING`] times its real ones or its tokens run exceed `batching.tokens` ([`batch_cost`]: the `shared` leading
/// tokens that every prompt has in common and the model runs once per batch,
/// [`ModelAdapter::shared_prefix_len`], count once). So no batch, and no run, spends more
/// than 10% of its tokens on padding, and no batch needs more memory than the token budget;
/// only the long tail of a task's lengths runs in smaller batches. Deterministic: the same
/// lengths give the same batches.
pub fn length_batches(lengths: &[usize], shared: usize, batching: Batching) -> Vec<Vec<usize>> {
    let batch = batching.prompts.max(1);
    let mut out = Vec::new();
    let (mut current, mut real) = (Vec::new(), 0usize);
    for i in length_order(lengths) {
        let len = lengths[i];
        // Sorted ascending: with `i`, the batch's longest prompt is `i`.
        let rows = current.len() + 1;
        let too_padded = (len * rows) as f64 > MAX_PADDING * (real + len) as f64;
        let too_many_tokens = batch_cost(len, rows, shared) > batching.tokens;
        if !current.is_empty() && (current.len() == batch || too_padded || too_many_tokens) {
            out.push(std::mem::take(&mut current));
            real = 0;
        }
        current.push(i);
        real += len;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The tokens the model runs for a left-padded batch of `rows` prompts whose longest is
/// `longest` tokens, when all of them begin with the same `shared` tokens: those once, then
/// each row's own tokens padded to the longest (a batch of one runs whole). This is what the
/// model's working memory grows with, so it is what [`Batching::tokens`] bounds.
pub fn batch_cost(longest: usize, rows: usize, shared: usize) -> usize {
    if rows < 2 || shared == 0 {
        return longest * rows;
    }
    let shared = shared.min(longest);
    shared + rows * (longest - shared)
}

/// One row of a features file, traceable to its MCEval8K record (written as one JSON line of
/// `features/<task>.rows.jsonl`, in row order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureRow {
    /// Row index in the features file.
    pub row: usize,
    /// Probe split of the row (`train`, `valid`, `test`).
    pub split: String,
    /// The record's published file: `<genre>/<task>/<record_split>.json` ...
    pub record_split: String,
    /// ... and its index in that file's array (0-based).
    pub record_index: usize,
    /// Language (multilingual tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// The prompt the model saw.
    pub prompt: String,
    /// Answer strings, one per option.
    pub options: Vec<String>,
    /// Gold option index.
    pub label: usize,
    /// Token id of each option's answer after this prompt.
    pub target_ids: Vec<u32>,
}

/// One target per option for every prompt of `set` (`adapter.target_token(prompt, answer)`):
/// an answer that is not one token, two options on one token, or a record with another
/// number of options is an error naming the task.
fn targeted_prompts(adapter: &dyn ModelAdapter, set: &PromptSet) -> Result<Vec<TargetedPrompt>> {
    let Some(first) = set.items.first() else {
        bail!("task {}: no prompts", set.task);
    };
    let k = first.options.len();
    let mut targeted = Vec::with_capacity(set.items.len());
    for item in &set.items {
        if item.options.len() != k {
            bail!(
                "task {}: record {} has {} options, expected {k}",
                set.task,
                item.index,
                item.options.len()
            );
        }
        let ids = item
            .options
            .iter()
            .map(|answer| {
                adapter.target_token(&item.prompt, answer).map_err(|_| {
                    anyhow::anyhow!(
                        "task {}: answer `{answer}` is not a single token for model {} \
                         (multi-token answers are not supported)",
                        set.task,
                        adapter.model_id()
                    )
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        // Two options on one token id would be indistinguishable to every method.
        for (i, id) in ids.iter().enumerate() {
            if let Some(j) = ids[..i].iter().position(|x| x == id) {
                bail!(
                    "task {}: answers `{}` and `{}` are the same token (id {id}) for model {}, \
                     so the options are indistinguishable",
                    set.task,
                    item.options[j],
                    item.options[i],
                    adapter.model_id()
                );
            }
        }
        targeted.push(TargetedPrompt::new(item.prompt.clone(), ids));
    }
    Ok(targeted)
}

/// One NeurGrad batch of [`plan_batches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    /// Its prompts: indices into the set's items, shortest first.
    pub rows: Vec<usize>,
    /// The leading tokens all prompts of its group share, which the token budget counted
    /// once ([`ModelAdapter::shared_prefix_len`]).
    pub shared: usize,
}

impl PlannedBatch {
    /// The tokens the model runs for this batch ([`batch_cost`]) of prompts of `lengths`.
    pub fn cost(&self, lengths: &[usize]) -> usize {
        let longest = self.rows.iter().map(|&i| lengths[i]).max().unwrap_or(0);
        batch_cost(longest, self.rows.len(), self.shared)
    }
}

/// The NeurGrad batches of `set` and its prompts' lengths (token counts when the model tells
/// them, else bytes). A multilingual task's templates and demonstrations are per language,
/// so only prompts of one language share a prefix the model can run once: a language whose
/// prompts share more than the whole set's do gets batches of its own (languages in the
/// order of their first prompt in the set), and the other prompts (all of them, for a task
/// without languages) are batched together. Each group is batched by [`length_batches`] with
/// the prefix its prompts share. Deterministic; results go back to the set's order whatever
/// the batches.
pub fn plan_batches(
    adapter: &dyn ModelAdapter,
    set: &PromptSet,
    batching: Batching,
) -> (Vec<PlannedBatch>, Vec<usize>) {
    let lengths: Vec<usize> = set
        .items
        .iter()
        .map(|item| {
            adapter
                .token_count(&item.prompt)
                .unwrap_or(item.prompt.len())
        })
        .collect();
    let mut groups: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
    for (i, item) in set.items.iter().enumerate() {
        let lang = item.lang.as_deref();
        match groups.iter_mut().find(|(l, _)| *l == lang) {
            Some((_, members)) => members.push(i),
            None => groups.push((lang, vec![i])),
        }
    }
    let shared_of = |members: &[usize]| {
        let texts: Vec<&str> = members
            .iter()
            .map(|&i| set.items[i].prompt.as_str())
            .collect();
        adapter.shared_prefix_len(&texts)
    };
    // A language keeps batches of its own only where its prompts share more than the whole
    // set's do; the others are pooled (fewer, fuller batches, since nothing is saved by
    // keeping them apart). A task without languages is one pool.
    let mut own = Vec::new();
    let mut pool = Vec::new();
    if groups.len() > 1 {
        let all: Vec<usize> = (0..set.items.len()).collect();
        let set_shared = shared_of(&all);
        for (_, members) in groups {
            let shared = shared_of(&members);
            if shared > set_shared {
                own.push((members, shared));
            } else {
                pool.extend(members);
            }
        }
        pool.sort_unstable();
    } else {
        pool = groups.pop().map(|(_, members)| members).unwrap_or_default();
    }
    if !pool.is_empty() {
        let shared = shared_of(&pool);
        own.push((pool, shared));
    }
    let mut batches = Vec::new();
    for (members, shared) in &own {
        // Every batch of two or more of a group shares at least the group's prefix, so
        // counting it once never lets a batch past the token budget.
        let group_lengths: Vec<usize> = members.iter().map(|&i| lengths[i]).collect();
        for rows in length_batches(&group_lengths, *shared, batching) {
            batches.push(PlannedBatch {
                rows: rows.iter().map(|&j| members[j]).collect(),
                shared: *shared,
            });
        }
    }
    (batches, lengths)
}

/// The batches of `set` that NeurGrad runs ([`plan_batches`]) and their token counts.
fn prompt_batches(
    adapter: &dyn ModelAdapter,
    set: &PromptSet,
    batching: Batching,
) -> (Vec<Vec<usize>>, TokenCounts) {
    let (planned, lengths) = plan_batches(adapter, set, batching);
    let batches: Vec<Vec<usize>> = planned.into_iter().map(|b| b.rows).collect();
    let tokens = TokenCounts::of_batches(&lengths, batches.iter().map(Vec::as_slice));
    (batches, tokens)
}

/// NeurGrad of one batch as the cache stores it.
fn batch_neurgrad(
    adapter: &dyn ModelAdapter,
    set: &PromptSet,
    chunk: &[TargetedPrompt],
) -> Result<BatchFeatures> {
    let att = neg_core::methods::neurgrad(adapter, chunk)
        .with_context(|| format!("NeurGrad on task {} ({})", set.task, set.context))?;
    Ok(BatchFeatures {
        scores: att.scores,
        activations: att.activations,
        probs: att.probs,
    })
}

/// The shard part of [`compute_features`]: of `set`'s batches, computes into `cache` those
/// that fall to its shard ([`FeatureCache::claim`]) and counts the others; returns the
/// number computed (or resumed). The features themselves are assembled by the merged run.
pub fn compute_shard(
    adapter: &dyn ModelAdapter,
    set: &PromptSet,
    batching: Batching,
    cache: &FeatureCache,
    progress: &ProgressBar,
) -> Result<usize> {
    let targeted = targeted_prompts(adapter, set)?;
    let (batches, _) = prompt_batches(adapter, set, batching);
    let mut owned = 0;
    for rows in &batches {
        if cache.claim() {
            let chunk: Vec<TargetedPrompt> = rows.iter().map(|&i| targeted[i].clone()).collect();
            cache.store_owned(&chunk, || batch_neurgrad(adapter, set, &chunk))?;
            owned += 1;
        }
        progress.inc(rows.len() as u64);
    }
    Ok(owned)
}

/// Computes NeurGrad for every option of every prompt of `set` in batches of `batching`
/// ([`length_batches`]; one target per option: `adapter.target_token(prompt, answer)`; an answer that is not one
/// token is an error naming the task and the answer). `keep_scores` keeps the full f32
/// `[P, K, L*N]` tensor besides the compact features: in memory without a `cache`, else on
/// disk in the cache's entries ([`SkillFeatures::score_batches`]). With a `cache`, each
/// batch's NeurGrad is taken from it when an earlier (interrupted) run computed it, and stored
/// in it otherwise. The `[L*N, P]` features are kept as `storage` says: [`Storage::Disk`]
/// keeps them in unlinked files of its directory, so that the run's anonymous memory does not
/// grow with the number of prompts (see `neg_probe::store`).
pub fn compute_features(
    adapter: &dyn ModelAdapter,
    set: &PromptSet,
    batching: Batching,
    keep_scores: bool,
    cache: Option<&FeatureCache>,
    storage: &Storage,
    progress: &ProgressBar,
) -> Result<SkillFeatures> {
    let start = Instant::now();
    let targeted = targeted_prompts(adapter, set)?;
    let k = targeted[0].targets.len();
    let first = &set.items[0];
    let (l, n) = (adapter.num_layers(), adapter.ff_width());
    let width = l * n;
    let p = set.items.len();
    let mut builder = ProbeDataBuilder::with_storage(p, k, width, true, true, storage.clone())
        .with_context(|| format!("features of task {}", set.task))?;
    let mut probs = Array2::<f32>::zeros((p, k));
    let mut scores = (keep_scores && cache.is_none()).then(|| Array3::<f32>::zeros((p, k, width)));
    let mut score_batches = Vec::new();
    let (batches, tokens) = prompt_batches(adapter, set, batching);
    for rows in &batches {
        let chunk: Vec<TargetedPrompt> = rows.iter().map(|&i| targeted[i].clone()).collect();
        let chunk = chunk.as_slice();
        let neurgrad = || batch_neurgrad(adapter, set, chunk);
        let att = match cache {
            Some(c) => {
                // A whole run counts every batch too, so that a cache is never half sharded.
                c.claim();
                let att = c.get_or_compute(chunk, neurgrad)?;
                if keep_scores {
                    score_batches.push(ScoreBatch {
                        rows: rows.clone(),
                        entry: c.entry(chunk),
                    });
                }
                att
            }
            None => neurgrad()?,
        };
        for (i, &row) in rows.iter().enumerate() {
            // [T, L, N] -> [K, L*N]; activations [L, N] -> [L*N].
            let g = att
                .scores
                .index_axis(Axis(0), i)
                .to_owned()
                .into_shape_with_order((k, width))?;
            let a = att
                .activations
                .index_axis(Axis(0), i)
                .to_owned()
                .into_shape_with_order(width)?;
            let pr = att.probs.index_axis(Axis(0), i);
            builder.push_scores_at(
                row,
                g.view(),
                set.items[row].label as i64,
                set.splits[row],
                Some(a.view()),
                Some(pr),
            )?;
            probs.row_mut(row).assign(&pr);
            if let Some(s) = scores.as_mut() {
                s.index_axis_mut(Axis(0), row).assign(&g);
            }
        }
        progress.inc(chunk.len() as u64);
    }
    Ok(SkillFeatures {
        task: set.task.clone(),
        context: set.context.clone(),
        model: adapter.model_id().to_string(),
        answers: first.options.clone(),
        answer_ids: targeted[0].targets.clone(),
        n_layers: l,
        ff_width: n,
        data: builder.finish()?,
        probs,
        scores,
        score_batches,
        labels: set.items.iter().map(|i| i.label).collect(),
        splits: set.splits.clone(),
        rows: set
            .items
            .iter()
            .zip(&set.splits)
            .zip(&targeted)
            .enumerate()
            .map(|(row, ((item, split), tp))| {
                let (rs, ri) = set
                    .origins
                    .get(row)
                    .copied()
                    .unwrap_or((McSplit::Test, item.index));
                FeatureRow {
                    row,
                    split: split.name().to_string(),
                    record_split: rs.name().to_string(),
                    record_index: ri,
                    lang: item.lang.clone(),
                    prompt: item.prompt.clone(),
                    options: item.options.clone(),
                    label: item.label,
                    target_ids: tp.targets.clone(),
                }
            })
            .collect(),
        tokens,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A progress bar over `len` prompts (hidden when `show` is false or stderr is not a
/// terminal, which indicatif detects).
pub fn progress_bar(len: usize, message: &str, show: bool) -> ProgressBar {
    crate::progress::bar(len, "prompts", message, show)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skill::data::tests::prompt_set;
    use neg_core::testing::AnalyticAdapter;

    #[test]
    fn length_ordered_batches_carry_less_padding() {
        let lengths = [10, 3, 9, 2, 11, 4];
        let order = length_order(&lengths);
        assert_eq!(order, vec![3, 1, 5, 2, 0, 4]);
        let file = TokenCounts::of_batches(&lengths, [&[0, 1][..], &[2, 3], &[4, 5]]);
        let sorted = TokenCounts::of_batches(&lengths, order.chunks(2));
        assert_eq!(file.real, 39);
        assert_eq!(sorted.real, 39);
        assert_eq!(file.padded, 20 + 18 + 22);
        assert_eq!(sorted.padded, 6 + 18 + 22);
        assert!(sorted.ratio() < file.ratio());
        assert_eq!((file.batches, sorted.batches), (3, 3));
        // Budgeted batches: never over 1.1 padded / real, at most `batch` prompts each, every
        // prompt once, in length order.
        let lengths = [5, 5, 5, 6, 40, 41, 100, 5, 5];
        let batches = length_batches(&lengths, 0, Batching::prompts(4));
        assert_eq!(
            batches,
            vec![vec![0, 1, 2, 7], vec![8, 3], vec![4, 5], vec![6]]
        );
        for b in &batches {
            let c = TokenCounts::of_batches(&lengths, [b.as_slice()]);
            assert!(c.ratio() <= MAX_PADDING, "{b:?}: {}", c.ratio());
            assert!(b.len() <= 4);
        }
        let mut all: Vec<usize> = batches.concat();
        all.sort();
        assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
        assert_eq!(
            length_batches(&[], 0, Batching::prompts(4)),
            Vec::<Vec<usize>>::new()
        );
        assert_eq!(
            length_batches(&[3, 3, 3], 0, Batching::prompts(1)),
            vec![vec![0], vec![1], vec![2]]
        );
        // A token budget: no batch holds more than 12 padded tokens, except a longer prompt
        // alone; the prompt-count limit (4) no longer binds.
        let budget = Batching {
            prompts: 4,
            tokens: 12,
        };
        let batches = length_batches(&lengths, 0, budget);
        assert_eq!(
            batches,
            vec![
                vec![0, 1],
                vec![2, 7],
                vec![8, 3],
                vec![4],
                vec![5],
                vec![6]
            ]
        );
        for b in &batches {
            let c = TokenCounts::of_batches(&lengths, [b.as_slice()]);
            assert!(c.padded <= 12 || b.len() == 1, "{b:?}: {c:?}");
        }
        assert!(Batching {
            prompts: 1,
            tokens: 0
        }
        .check()
        .is_err());
        assert!(Batching {
            prompts: 0,
            tokens: 1
        }
        .check()
        .is_err());
    }

    #[test]
    fn a_shared_prefix_counts_once_against_the_token_budget() {
        // Rows of 30 tokens whose first 20 the model runs once per batch: three fit a
        // budget of 50 tokens (20 + 3 x 10), a fourth does not; counted whole (30 a row) each
        // would run alone.
        assert_eq!(batch_cost(30, 3, 20), 50);
        assert_eq!(batch_cost(30, 4, 20), 60);
        assert_eq!(batch_cost(30, 1, 20), 30, "a batch of one runs whole");
        assert_eq!(batch_cost(30, 3, 0), 90);
        let budget = Batching {
            prompts: 16,
            tokens: 50,
        };
        let lengths = [30; 7];
        assert_eq!(
            length_batches(&lengths, 20, budget),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]
        );
        assert_eq!(length_batches(&lengths, 0, budget).len(), 7);
        // The padding cap still counts whole prompts (padded / real as `TokenCounts` reports
        // it): a 30-token prompt does not join two of 21 tokens, shared prefix or not.
        let mixed = [21, 21, 30];
        assert_eq!(
            length_batches(&mixed, 20, Batching::prompts(16)),
            vec![vec![0, 1], vec![2]]
        );
    }

    /// The analytic model with words as tokens and a prefix rule like the real models': a
    /// batch runs the leading words all its prompts share once, when they are at least 2 and
    /// leave every prompt one of its own.
    struct WordPrefixes(AnalyticAdapter);

    impl ModelAdapter for WordPrefixes {
        fn model_id(&self) -> &str {
            self.0.model_id()
        }
        fn kind(&self) -> neg_core::ModelKind {
            self.0.kind()
        }
        fn num_layers(&self) -> usize {
            self.0.num_layers()
        }
        fn ff_width(&self) -> usize {
            self.0.ff_width()
        }
        fn hidden_size(&self) -> usize {
            self.0.hidden_size()
        }
        fn target_token(&self, prompt: &str, answer: &str) -> Result<u32, neg_core::AdapterError> {
            self.0.target_token(prompt, answer)
        }
        fn forward(
            &self,
            prompts: &[TargetedPrompt],
        ) -> Result<neg_core::Forward, neg_core::AdapterError> {
            self.0.forward(prompts)
        }
        fn gradients(
            &self,
            prompts: &[TargetedPrompt],
        ) -> Result<neg_core::Gradients, neg_core::AdapterError> {
            self.0.gradients(prompts)
        }
        fn token_count(&self, prompt: &str) -> Option<usize> {
            Some(prompt.split_whitespace().count())
        }
        fn shared_prefix_len(&self, prompts: &[&str]) -> usize {
            let words: Vec<Vec<&str>> = prompts
                .iter()
                .map(|p| p.split_whitespace().collect())
                .collect();
            let shortest = words.iter().map(Vec::len).min().unwrap_or(0);
            let mut c = 0;
            while prompts.len() > 1 && c + 1 < shortest && words.iter().all(|w| w[c] == words[0][c])
            {
                c += 1;
            }
            if c >= 2 {
                c
            } else {
                0
            }
        }
    }

    /// A set of prompts in `langs`: language `a` and `b` prompts begin with four words of
    /// their own language, `c` prompts share nothing.
    fn multilingual_set(langs: &[&str]) -> PromptSet {
        let mut set = prompt_set([&[0, 1, 0, 1], &[0, 1], &[1, 0]], ["tok1", "tok2"]);
        set.items.truncate(langs.len());
        set.splits.truncate(langs.len());
        set.origins.truncate(langs.len());
        for (i, (item, lang)) in set.items.iter_mut().zip(langs).enumerate() {
            let own = format!("tok{}", i % 5);
            item.prompt = match *lang {
                "a" => format!("tok0 tok1 tok2 tok3 {own}"),
                "b" => format!("tok4 tok3 tok2 tok1 {own}"),
                _ => format!("tok{} tok{} tok1 tok0 {own}", (i + 1) % 5, (i + 3) % 5),
            };
            item.lang = Some(lang.to_string());
        }
        set
    }

    #[test]
    fn languages_with_a_prefix_of_their_own_batch_apart() {
        let model = WordPrefixes(AnalyticAdapter::new(3, 2, 3, 5, 2));
        let set = multilingual_set(&["a", "b", "c", "a", "b", "c", "a", "b"]);
        // 7 tokens: three prompts of one language (4 shared + 3 x 1 own), or one of five
        // words that shares nothing.
        let budget = Batching {
            prompts: 16,
            tokens: 7,
        };
        let (batches, lengths) = plan_batches(&model, &set, budget);
        assert_eq!(lengths, vec![5; 8]);
        let planned: Vec<(Vec<usize>, usize)> =
            batches.iter().map(|b| (b.rows.clone(), b.shared)).collect();
        assert_eq!(
            planned,
            vec![
                (vec![0, 3, 6], 4),
                (vec![1, 4, 7], 4),
                (vec![2], 0),
                (vec![5], 0)
            ]
        );
        assert!(batches.iter().all(|b| b.cost(&lengths) <= 7));
        // Without languages the set shares nothing, so every prompt runs alone.
        let mut plain = set.clone();
        for item in &mut plain.items {
            item.lang = None;
        }
        let (alone, _) = plan_batches(&model, &plain, budget);
        assert_eq!(alone.len(), 8);
        assert_eq!(
            alone.iter().map(|b| b.rows.clone()).collect::<Vec<_>>(),
            length_batches(&lengths, 0, budget)
        );
        // A language whose prompts share no more than the whole set's is pooled with the rest.
        let few = multilingual_set(&["a", "c", "c", "a"]);
        let (pooled, _) = plan_batches(&model, &few, Batching::prompts(16));
        let planned: Vec<(Vec<usize>, usize)> =
            pooled.iter().map(|b| (b.rows.clone(), b.shared)).collect();
        assert_eq!(planned, vec![(vec![0, 3], 4), (vec![1, 2], 0)]);

        // The features are those of every prompt run alone, in the set's order.
        let run = |batching: Batching| {
            compute_features(
                &model,
                &set,
                batching,
                true,
                None,
                &Storage::Memory,
                &ProgressBar::hidden(),
            )
            .unwrap()
        };
        let (grouped, one_by_one) = (run(budget), run(Batching::prompts(1)));
        assert_eq!(grouped.tokens.batches, 4);
        assert_eq!(one_by_one.tokens.batches, 8);
        assert_eq!(grouped.probs, one_by_one.probs);
        assert_eq!(grouped.scores, one_by_one.scores);
        assert_eq!(grouped.labels, one_by_one.labels);
    }

    #[test]
    fn options_on_one_token_are_an_error_naming_them() {
        // The analytic model's vocabulary is tok0..tok4, one token each.
        let model = AnalyticAdapter::new(1, 2, 3, 5, 2);
        let ok = prompt_set([&[0, 1], &[0], &[1]], ["tok1", "tok2"]);
        let f = compute_features(
            &model,
            &ok,
            Batching::prompts(2),
            false,
            None,
            &Storage::Memory,
            &ProgressBar::hidden(),
        )
        .unwrap();
        assert_eq!(f.answer_ids, vec![1, 2]);
        let same = prompt_set([&[0, 1], &[0], &[1]], ["tok3", "tok3"]);
        let e = compute_features(
            &model,
            &same,
            Batching::prompts(2),
            false,
            None,
            &Storage::Memory,
            &ProgressBar::hidden(),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`tok3` and `tok3` are the same token (id 3)"),
            "{msg}"
        );
    }
}
