//! Tasks and prompts: MCEval8K records loaded as published or re-split leak-free, rendered in
//! one or more contexts (template set x shots), and a seeded subset per split that fits the
//! model.
use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use mceval::{DataSource, Dataset, RenderedItem, Shots, TaskRegistry, TaskSpec};
use mceval::{Split as McSplit, TemplateSet};
use neg_probe::Split;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use neg_probe::ProbeKind;

/// Default tasks of the no-argument run, chosen by measurement on SmolLM2-135M-Instruct
/// (docs/RESULTS.md): two where its skill neurons stand out while its own answers are near
/// chance (agnews: LM-Prob 0.27, Act-Probe 0.66; toxicity: LM-Prob 0.56, Magn-Probe 0.86 at
/// 128/32/64 prompts), cheap enough that the run finishes in under 5 minutes on 2 cores.
pub const DEFAULT_TASKS: [&str; 2] = ["agnews", "toxicity"];

/// Default prompts per split of the no-argument run (train, valid, test).
pub const DEFAULT_SIZES: Sizes = Sizes {
    train: 256,
    valid: 64,
    test: 128,
};

/// The methods of Table 3, in column order.
pub const METHODS: [ProbeKind; 6] = [
    ProbeKind::Rand,
    ProbeKind::Lmprob,
    ProbeKind::Polar,
    ProbeKind::Magn,
    ProbeKind::Tree,
    ProbeKind::Act,
];

/// Published splits or a leak-free re-split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SplitMode {
    /// The splits as published (several leak: see `../shared/README.md`).
    Published,
    /// `mceval::resplit`: distinct inputs dealt 6:1:1, answer-balanced.
    LeakFree,
}

/// Zero- or few-shot prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ShotMode {
    /// Instruction and question only.
    Zero,
    /// One demonstration per answer (the published demonstrations on published splits with
    /// `templates.json`, else drawn from train with the task's seed).
    Few,
}

/// A task's records, as published or re-split.
#[derive(Debug, Clone)]
pub struct LoadedTask {
    /// The task.
    pub spec: &'static TaskSpec,
    /// Its splits.
    pub data: Dataset,
    /// Where each record of each split (train, valid, test) comes from in the published
    /// files: (published split, index in that file). The identity for published splits; for a
    /// re-split, the first published occurrence of the record's input.
    pub origins: [Vec<(McSplit, usize)>; 3],
}

impl LoadedTask {
    /// The published (split, index) of record `index` of `split`.
    pub fn origin(&self, split: McSplit, index: usize) -> Option<(McSplit, usize)> {
        let i = McSplit::ALL.iter().position(|s| *s == split)?;
        self.origins[i].get(index).copied()
    }
}

/// (published split, index) of every record of `data`, looked up by record content in
/// `published` (first occurrence, in train, valid, test order).
fn origins_in(published: &Dataset, data: &Dataset) -> Result<[Vec<(McSplit, usize)>; 3]> {
    let key = |r: &mceval::Record| serde_json::to_string(r).unwrap_or_default();
    let mut first: HashMap<String, (McSplit, usize)> = HashMap::new();
    for split in McSplit::ALL {
        if let Ok(recs) = published.split(split) {
            for (i, r) in recs.iter().enumerate() {
                first.entry(key(r)).or_insert((split, i));
            }
        }
    }
    let mut out: [Vec<(McSplit, usize)>; 3] = Default::default();
    for (slot, split) in out.iter_mut().zip(McSplit::ALL) {
        if let Ok(recs) = data.split(split) {
            for r in recs {
                let o = first.get(&key(r)).copied().ok_or_else(|| {
                    anyhow::anyhow!("a re-split record is not in the published files")
                })?;
                slot.push(o);
            }
        }
    }
    Ok(out)
}

/// Loads `task` from `data`; `LeakFree` re-splits it with `seed`.
pub fn load_task(
    data: &DataSource,
    task: &str,
    splits: SplitMode,
    seed: u64,
) -> Result<LoadedTask> {
    let spec = TaskRegistry::builtin().get(task)?;
    let published = Dataset::load(data, spec)?;
    let (dataset, origins) = match splits {
        SplitMode::Published => {
            let mut o: [Vec<(McSplit, usize)>; 3] = Default::default();
            for (slot, split) in o.iter_mut().zip(McSplit::ALL) {
                let n = published.split(split).map_or(0, <[_]>::len);
                *slot = (0..n).map(|i| (split, i)).collect();
            }
            (published, o)
        }
        SplitMode::LeakFree => {
            let dataset = mceval::resplit(&published, seed)
                .with_context(|| format!("cannot re-split task {}", spec.name))?;
            let origins = origins_in(&published, &dataset).with_context(|| {
                format!("task {}: tracing records to the published files", spec.name)
            })?;
            (dataset, origins)
        }
    };
    Ok(LoadedTask {
        spec,
        data: dataset,
        origins,
    })
}

/// Why `task`'s published splits leak, when they do: test or valid records whose input also
/// appears in train (the probes would be scored on what they were fitted on), or valid == test.
pub fn leak_warning(task: &LoadedTask) -> Option<String> {
    let a = mceval::audit_dataset(&task.data);
    let mut parts = Vec::new();
    for (first, second) in [
        (McSplit::Test, McSplit::Train),
        (McSplit::Valid, McSplit::Train),
        (McSplit::Test, McSplit::Valid),
    ] {
        if let Some(o) = a.overlap(first, second).filter(|o| o.first_in_second > 0) {
            parts.push(if o.identical {
                format!("{} identical to {}", first.name(), second.name())
            } else {
                format!(
                    "{} {} records also in {}",
                    o.first_in_second,
                    first.name(),
                    second.name()
                )
            });
        }
    }
    (!parts.is_empty()).then(|| {
        format!(
            "task {}: the published splits leak ({}); use --splits leak-free for honest accuracies",
            task.spec.name,
            parts.join(", ")
        )
    })
}

/// On published splits, prints `task`'s [`leak_warning`] and returns it (for the report).
pub fn warn_if_leaking(task: &LoadedTask, splits: SplitMode) -> Option<String> {
    if splits != SplitMode::Published {
        return None;
    }
    let w = leak_warning(task)?;
    eprintln!("warning: {w}");
    Some(w)
}

/// How to render one context of a task.
#[derive(Debug, Clone)]
pub struct PromptContext {
    /// Name recorded in results (e.g. `zero-shot`).
    pub name: String,
    /// Template set.
    pub templates: TemplateSet,
    /// Demonstrations.
    pub shots: Shots,
}

/// The mceval shots for a mode: few-shot uses the published demonstrations only when they
/// apply (published splits and a template file), else a draw with the task's seed.
pub fn shots_for(mode: ShotMode, splits: SplitMode, spec: &TaskSpec, from_file: bool) -> Shots {
    match mode {
        ShotMode::Zero => Shots::Zero,
        ShotMode::Few if splits == SplitMode::Published && from_file => Shots::Published,
        ShotMode::Few => Shots::Few { seed: spec.seed },
    }
}

/// Prompts per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Training prompts.
    pub train: usize,
    /// Validation prompts (choose the neuron count).
    pub valid: usize,
    /// Test prompts.
    pub test: usize,
}

/// The rendered prompts of one context, with their probe split.
#[derive(Debug, Clone)]
pub struct PromptSet {
    /// Task name.
    pub task: String,
    /// Context name.
    pub context: String,
    /// Prompts, options and gold labels.
    pub items: Vec<RenderedItem>,
    /// Split of each item.
    pub splits: Vec<Split>,
    /// Where each item's record is in the published files: (split, index).
    pub origins: Vec<(McSplit, usize)>,
}

/// Per-split counts of a selection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionStats {
    /// Records examined (in seeded order) per split.
    pub examined: [usize; 3],
    /// Records skipped because a prompt of some context does not fit the model.
    pub too_long: [usize; 3],
}

/// Prints and returns (for the report) what is legal but suspicious about a drawn prompt set,
/// one line each, like [`warn_if_leaking`]: a split with fewer prompts than requested (the
/// task has too few records that fit), and a valid or test split whose prompts all have one
/// gold answer (accuracy there says nothing about a probe).
pub fn warn_selection(set: &PromptSet, sizes: Sizes) -> Vec<String> {
    let mut out = Vec::new();
    for (split, want) in [
        (Split::Train, sizes.train),
        (Split::Valid, sizes.valid),
        (Split::Test, sizes.test),
    ] {
        let labels: Vec<usize> = set
            .items
            .iter()
            .zip(&set.splits)
            .filter(|(_, s)| **s == split)
            .map(|(item, _)| item.label)
            .collect();
        let name = format!("{split:?}").to_lowercase();
        if labels.len() < want {
            out.push(format!(
                "task {}: {} {name} prompts of the {want} requested (too few records fit)",
                set.task,
                labels.len()
            ));
        }
        if split != Split::Train && labels.len() > 1 && labels.iter().all(|&y| y == labels[0]) {
            out.push(format!(
                "task {}: every {name} prompt has gold option {}, so {name} accuracy cannot \
                 tell a probe from a constant guess",
                set.task, labels[0]
            ));
        }
    }
    for w in &out {
        eprintln!("warning: {w}");
    }
    out
}

/// Renders every context of `task` and draws, per split, the first `sizes` records of a
/// seeded shuffle whose prompts all fit (`fits`), so every context holds the same records in
/// the same order. Errors when a split is missing or has no prompt that fits.
pub fn select_prompts(
    task: &LoadedTask,
    contexts: &[PromptContext],
    sizes: Sizes,
    seed: u64,
    fits: &dyn Fn(&str) -> bool,
) -> Result<(Vec<PromptSet>, SelectionStats)> {
    if contexts.is_empty() {
        bail!("no contexts to render");
    }
    let mut sets: Vec<PromptSet> = contexts
        .iter()
        .map(|c| PromptSet {
            task: task.spec.name.to_string(),
            context: c.name.clone(),
            items: Vec::new(),
            splits: Vec::new(),
            origins: Vec::new(),
        })
        .collect();
    let mut stats = SelectionStats::default();
    let plan = [
        (McSplit::Train, Split::Train, sizes.train),
        (McSplit::Valid, Split::Valid, sizes.valid),
        (McSplit::Test, Split::Test, sizes.test),
    ];
    for (si, (mc, ps, want)) in plan.into_iter().enumerate() {
        if want == 0 {
            bail!(
                "task {}: {} size must be at least 1",
                task.spec.name,
                ps.name()
            );
        }
        let rendered: Vec<Vec<RenderedItem>> = contexts
            .iter()
            .map(|c| {
                c.templates
                    .render(task.spec, &task.data, mc, c.shots, None)
                    .with_context(|| format!("task {} context {}", task.spec.name, c.name))
            })
            .collect::<Result<_>>()?;
        let n = rendered[0].len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(si as u64)));
        let mut taken = 0;
        for i in order {
            if taken == want {
                break;
            }
            stats.examined[si] += 1;
            if !rendered.iter().all(|r| fits(&r[i].prompt)) {
                stats.too_long[si] += 1;
                continue;
            }
            let origin = task.origin(mc, rendered[0][i].index).ok_or_else(|| {
                anyhow::anyhow!(
                    "task {}: record {} of {} has no published origin",
                    task.spec.name,
                    rendered[0][i].index,
                    mc.name()
                )
            })?;
            for (set, r) in sets.iter_mut().zip(&rendered) {
                set.items.push(r[i].clone());
                set.splits.push(ps);
                set.origins.push(origin);
            }
            taken += 1;
        }
        if taken == 0 {
            bail!(
                "task {}: no {} prompt fits the model's context ({} examined; contexts {}: \
                 few-shot prompts are the longest, try --shots zero or a longer-context model)",
                task.spec.name,
                ps.name(),
                stats.examined[si],
                contexts
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok((sets, stats))
}

/// Where a skill run's model and data come from ([`crate::sources`]), and why.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Model spec (directory, `.gguf`, packaged name or hub id).
    pub model: String,
    /// MCEval8K location and templates.
    pub data: crate::sources::DataLocation,
    /// Why a fallback was taken, to print once.
    pub note: Option<String>,
}

/// Resolves `--model` (default SmolLM2-135M-Instruct) and `--data` (default
/// `<shared>/data/mceval8k`, else the hub).
pub fn resolve_sources(model: Option<&str>, data: Option<&str>) -> Result<Sources> {
    let m = crate::sources::resolve_model(model, crate::sources::DefaultModel::SmolLM2)?;
    let d = crate::sources::resolve_data(data)?;
    let notes: Vec<String> = [m.note, d.note.clone()].into_iter().flatten().collect();
    Ok(Sources {
        model: m.spec,
        data: d,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A prompt set of `labels` per split (train, valid, test), two options `tok1`/`tok2`.
    pub(crate) fn prompt_set(labels: [&[usize]; 3], options: [&str; 2]) -> PromptSet {
        let mut set = PromptSet {
            task: "toy".into(),
            context: "zero-shot".into(),
            items: Vec::new(),
            splits: Vec::new(),
            origins: Vec::new(),
        };
        for (split, ls) in [Split::Train, Split::Valid, Split::Test]
            .into_iter()
            .zip(labels)
        {
            for &label in ls {
                set.items.push(RenderedItem {
                    task: "toy".into(),
                    index: set.items.len(),
                    prompt: format!("tok0 tok{}", set.items.len() % 3),
                    options: options.iter().map(|o| o.to_string()).collect(),
                    label,
                    lang: None,
                });
                set.splits.push(split);
                set.origins.push((McSplit::Train, set.origins.len()));
            }
        }
        set
    }

    #[test]
    fn short_and_one_class_splits_are_named() {
        let sizes = Sizes {
            train: 4,
            valid: 2,
            test: 3,
        };
        let fine = prompt_set([&[0, 1, 0, 1], &[0, 1], &[1, 0, 1]], ["tok1", "tok2"]);
        assert!(warn_selection(&fine, sizes).is_empty());
        let odd = prompt_set([&[0, 1], &[1, 1], &[0, 1, 0]], ["tok1", "tok2"]);
        let w = warn_selection(&odd, sizes);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("2 train prompts of the 4 requested"),
            "{}",
            w[0]
        );
        assert!(
            w[1].contains("every valid prompt has gold option 1"),
            "{}",
            w[1]
        );
    }
}
