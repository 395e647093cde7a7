//! The six methods of Table 3 (Rand, LM-Prob, Polar, Magn, Tree, Act) trained and evaluated
//! on features, with bootstrap intervals, the selected neurons and the accuracy table.

use anyhow::{Context, Result};
use neg_probe::{
    evaluate, Evaluation, ForestConfig, NeuronSubset, Probe, ProbeData, RandomBaseline, Split,
    TreeProbe,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::*;
use neg_probe::ProbeKind;

/// A fresh probe of `kind` (`trees` trees and `seed` for the Tree-Probe, `seed` for Rand).
pub fn make_probe(kind: ProbeKind, seed: u64, trees: usize) -> Box<dyn Probe> {
    match kind {
        ProbeKind::Rand => Box::new(RandomBaseline { seed }),
        ProbeKind::Tree => Box::new(TreeProbe::new(
            ForestConfig {
                n_trees: trees,
                seed,
                ..ForestConfig::default()
            },
            NeuronSubset::All,
        )),
        other => other.build(),
    }
}

/// Trains and evaluates every method of `methods` on `data` (neuron count chosen on valid).
pub fn evaluate_methods(
    data: &ProbeData,
    methods: &[ProbeKind],
    seed: u64,
    trees: usize,
) -> Result<Vec<Evaluation>> {
    methods
        .iter()
        .map(|&m| evaluate_method(data, m, seed, trees).map(|(_, e)| e))
        .collect()
}

/// A fresh probe of `method`, fitted and evaluated on `data`; the probe is left at the
/// neuron count chosen on valid.
fn evaluate_method(
    data: &ProbeData,
    method: ProbeKind,
    seed: u64,
    trees: usize,
) -> Result<(Box<dyn Probe>, Evaluation)> {
    let mut probe = make_probe(method, seed, trees);
    let e =
        evaluate(probe.as_mut(), data, None).with_context(|| format!("probe {}", method.name()))?;
    Ok((probe, e))
}

/// A skill neuron a probe selected: FF neuron `neuron` of layer `layer` (the input of that
/// layer's down projection), with the sign of its skill score where the probe has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedNeuron {
    /// Layer, from 0.
    pub layer: usize,
    /// Unit within the layer's FF width.
    pub neuron: usize,
    /// +1: its NEG favours the gold option; -1: disfavours it (Polar/Magn only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polarity: Option<i8>,
}

/// Most neurons listed per probe in results (a probe may select up to 8192).
pub const MAX_LISTED_NEURONS: usize = 256;

/// Resamples of the test prompts behind each bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Percentile bootstrap 95% interval of the mean of `correct` (1 = right), seeded.
pub fn bootstrap_ci95(correct: &[bool], seed: u64) -> Option<[f64; 2]> {
    use rand::Rng;
    let n = correct.len();
    if n == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).filter(|_| correct[rng.gen_range(0..n)]).count() as f64 / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    Some([at(0.025), at(0.975)])
}

/// One probe's evaluation with its bootstrap interval and selected neurons.
#[derive(Debug, Clone)]
pub struct MethodOutcome {
    /// Accuracies, neuron count, curve.
    pub evaluation: Evaluation,
    /// Bootstrap 95% interval of the test accuracy.
    pub test_ci95: Option<[f64; 2]>,
    /// Selected neurons, best first.
    pub neurons: Vec<SelectedNeuron>,
}

/// [`evaluate_methods`], also returning each probe's selected neurons, best first: the first
/// `selected_neurons` of its ranking (vote probes), or of its importance ranking (Tree), at
/// most [`MAX_LISTED_NEURONS`]; none for the baselines. `ff_width` maps flat neuron indices to
/// (layer, neuron).
pub fn evaluate_methods_with_neurons(
    data: &ProbeData,
    methods: &[ProbeKind],
    seed: u64,
    trees: usize,
    ff_width: usize,
) -> Result<Vec<MethodOutcome>> {
    methods
        .iter()
        .map(|&m| {
            let (probe, e) = evaluate_method(data, m, seed, trees)?;
            // The probe is left at the chosen count: its test predictions give the interval.
            let test = data.split_view(Split::Test);
            let gold = test.labels();
            let predicted = probe
                .predict(&test)
                .with_context(|| format!("probe {}", m.name()))?;
            let correct: Vec<bool> = predicted.iter().zip(&gold).map(|(a, b)| a == b).collect();
            let test_ci95 = bootstrap_ci95(&correct, seed);
            let mut neurons = Vec::new();
            if let Some(ranked) = probe.ranked_neurons() {
                let k = e
                    .selected_neurons
                    .unwrap_or(MAX_LISTED_NEURONS)
                    .min(MAX_LISTED_NEURONS)
                    .min(ranked.len());
                let pol = probe.polarities();
                neurons = ranked[..k]
                    .iter()
                    .map(|&i| SelectedNeuron {
                        layer: i / ff_width,
                        neuron: i % ff_width,
                        polarity: pol.and_then(|p| p.get(i).copied()),
                    })
                    .collect();
            }
            Ok(MethodOutcome {
                evaluation: e,
                test_ci95,
                neurons,
            })
        })
        .collect()
}

/// One method's result in a task row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodRow {
    /// Method name.
    pub method: String,
    /// Test accuracy at the selected neuron count.
    pub test_accuracy: f64,
    /// Validation accuracy.
    pub valid_accuracy: f64,
    /// Neuron count chosen on valid (vote probes).
    pub selected_neurons: Option<usize>,
    /// Bootstrap 95% interval of the test accuracy: 2.5th and 97.5th percentiles over
    /// [`BOOTSTRAP_RESAMPLES`] resamples of the test prompts (seeded), the probe fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_ci95: Option<[f64; 2]>,
    /// The skill neurons it selected, best first (at most [`MAX_LISTED_NEURONS`]).
    #[serde(default)]
    pub neurons: Vec<SelectedNeuron>,
    /// The full evaluation (curve included).
    pub evaluation: Option<Evaluation>,
}

/// One task's row of the accuracy table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Task directory name.
    pub task: String,
    /// Name in the paper's tables.
    pub paper_name: String,
    /// Answers, one per option.
    pub answers: Vec<String>,
    /// Their token ids.
    pub answer_ids: Vec<u32>,
    /// Prompts per split.
    pub n_train: usize,
    /// Validation prompts.
    pub n_valid: usize,
    /// Test prompts.
    pub n_test: usize,
    /// Records skipped because the prompt is longer than the model's context.
    pub selection: SelectionStats,
    /// Seconds computing NeurGrad.
    pub feature_seconds: f64,
    /// Seconds fitting and evaluating the probes.
    pub probe_seconds: f64,
    /// Token counts of the NeurGrad batches (prompts grouped by length; `padded / real` is the
    /// work spent on padding).
    pub tokens: TokenCounts,
    /// Batches of NeurGrad taken from the resume cache instead of computed (written to
    /// `timings.json` with the times, not to `results.json`).
    pub resumed_batches: usize,
    /// Features file, relative to `--out`.
    pub features_file: String,
    /// One entry per method, in [`METHODS`] order.
    pub methods: Vec<MethodRow>,
}

impl TaskResult {
    /// A row with only names and test accuracies (for documentation and tests).
    pub fn example_row(task: &str, accs: &[(&str, f64)]) -> Self {
        Self {
            task: task.into(),
            paper_name: task.into(),
            answers: vec![],
            answer_ids: vec![],
            n_train: 0,
            n_valid: 0,
            n_test: 0,
            selection: SelectionStats::default(),
            feature_seconds: 0.0,
            probe_seconds: 0.0,
            resumed_batches: 0,
            tokens: TokenCounts::default(),
            features_file: String::new(),
            methods: accs
                .iter()
                .map(|(m, a)| MethodRow {
                    method: m.to_string(),
                    test_accuracy: *a,
                    ..MethodRow::default()
                })
                .collect(),
        }
    }
}

/// Rows as text: tasks x methods, test accuracy (paper Table 3/8/9 layout), with an average
/// row when there is more than one task.
pub fn format_table(rows: &[TaskResult]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let methods: Vec<&str> = first.methods.iter().map(|m| m.method.as_str()).collect();
    let mut out = format!("{:<16}", "task");
    for m in &methods {
        out += &format!(" {:>8}", display_name(m));
    }
    out.push('\n');
    for r in rows {
        out += &format!("{:<16}", r.task);
        for m in &r.methods {
            out += &format!(" {:>8.3}", m.test_accuracy);
        }
        out.push('\n');
    }
    if rows.len() > 1 {
        out += &format!("{:<16}", "average");
        for (i, _) in methods.iter().enumerate() {
            let mean = rows
                .iter()
                .filter_map(|r| r.methods.get(i))
                .map(|m| m.test_accuracy)
                .sum::<f64>()
                / rows.len() as f64;
            out += &format!(" {mean:>8.3}");
        }
        out.push('\n');
    }
    out
}

/// The paper's column names.
pub fn display_name(method: &str) -> &str {
    match method {
        "rand" => "Rand",
        "lmprob" => "LM-Prob",
        "polar" => "Polar",
        "magn" => "Magn",
        "tree" => "Tree",
        "act" => "Act",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_one_row_per_task_and_an_average() {
        let rows = vec![
            TaskResult::example_row("a", &[("rand", 0.25), ("polar", 0.75)]),
            TaskResult::example_row("b", &[("rand", 0.5), ("polar", 0.25)]),
        ];
        let t = format_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].contains("Rand") && lines[0].contains("Polar"));
        assert!(
            lines[3].starts_with("average")
                && lines[3].contains("0.375")
                && lines[3].contains("0.500")
        );
    }

    #[test]
    fn every_method_builds_a_probe_of_its_name() {
        for m in METHODS {
            assert_eq!(make_probe(m, 0, 10).name(), m.name());
            assert_eq!(m.name().parse::<ProbeKind>().unwrap(), m);
        }
    }
}
