//! The NEG-experiment examples (linearity, neg_estimation, knowledge_attribution,
//! neg_distribution, multi_neuron) on tiny configurations of the real stories260k model: their
//! library functions are called directly and their output files checked for shape and content
//! (some values against an independent computation through the adapter); the compiled example
//! binaries are run for the bad-argument behaviour.
//!
//! Needs `../shared/models/stories260k` and `../shared/data/myriadlama-probing/`; fails, not
//! skips, when they are missing.
use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::Array4;
use neg_core::analysis::{LinearityConfig, TopKConfig};
use neg_core::methods::{self, Method};
use neg_core::neg::{ShiftMode, SweepConfig};
use neg_core::{ModelAdapter, NeuronId, Patch, PatchOp};
use neg_hooks::{HfModel, LoadOptions, ModelSource};
use neg_rs::commands::attribution::{run_attribution, AttributionRun};
use neg_rs::commands::distribution::{run_distribution, DistributionRun};
use neg_rs::commands::estimate::{run_estimation, EstimationRun};
use neg_rs::commands::linearity::{linearity_table, run_linearity, LinearityRun};
use neg_rs::commands::multi_neuron::{run_multi_neuron, MultiNeuronRun};
use neg_rs::factual::{self, FactualError, FactualSet, ResolveOptions};
use safetensors::SafeTensors;

mod common;
use common::{example_binary, read_json, shared, workspace};

fn model() -> HfModel {
    let dir = shared("models/stories260k");
    HfModel::load(&ModelSource::Dir(dir), &LoadOptions::default()).expect("load stories260k")
}

fn myriadlama() -> PathBuf {
    shared("data/myriadlama-probing/llama2-7b-it.jsonl")
}

fn builtin_set(model: &HfModel, n: usize) -> FactualSet {
    factual::resolve(
        model,
        factual::BUILTIN_NAME,
        &factual::builtin_stories(),
        &ResolveOptions {
            max_prompts: Some(n),
            seed: 3,
            ..ResolveOptions::default()
        },
    )
    .expect("the built-in set resolves on stories260k")
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn tensor_shape(path: &Path, name: &str) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap_or_else(|e| panic!("{}: no tensor {name}: {e}", path.display()))
        .shape()
        .to_vec()
}

fn tensor_f32(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn assert_svg(path: &Path) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
}

fn no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        // The run marker is meant to stay (it lets a later run replace the directory).
        assert!(
            !name.starts_with('.') || name == neg_rs::output::RUN_MARKER,
            "left-over file {name} in {}",
            dir.display()
        );
    }
}

#[test]
fn factual_sets_resolve_and_drop_multi_token_answers() {
    let m = model();
    // The published MyriadLAMA prompt set parses completely...
    let records = factual::read_records(&myriadlama()).unwrap();
    assert_eq!(records.len(), 1000);
    assert!(records
        .iter()
        .all(|(_, r)| !r.uuid.is_empty() && !r.tpl.is_empty()));
    // ...but none of its answers is one token in stories260k's 512-token vocabulary.
    let err = factual::resolve(&m, "ml", &records, &ResolveOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            FactualError::NoSingleToken {
                total: 1000,
                line: 1,
                ..
            }
        ),
        "{err}"
    );
    // The built-in set is single-token throughout, targets are the answers' tokens.
    let builtin = factual::builtin_stories();
    let set = factual::resolve(&m, "b", &builtin, &ResolveOptions::default()).unwrap();
    assert_eq!(
        (set.total, set.single_token, set.prompts.len()),
        (32, 32, 32)
    );
    assert!(set.dropped.is_empty());
    let lily = m.encode(" Lily").unwrap();
    assert_eq!(set.prompts[0].targets, vec![*lily.last().unwrap()]);
    // A mixed set keeps the single-token answers and counts the rest.
    let mut mixed = builtin[..5].to_vec();
    mixed.extend(records[..3].iter().cloned());
    let set = factual::resolve(&m, "mixed", &mixed, &ResolveOptions::default()).unwrap();
    assert_eq!(set.prompts.len(), 5);
    assert_eq!(set.dropped.len(), 3);
    assert_eq!(set.dropped[0].answer, format!(" {}", records[0].1.answer));
    let summary = set.summary();
    assert_eq!((summary.dropped_multi_token, summary.used), (3, 5));
    // Strict mode names the first multi-token line.
    let strict = ResolveOptions {
        strict: true,
        ..ResolveOptions::default()
    };
    let err = factual::resolve(&m, "mixed", &mixed, &strict).unwrap_err();
    assert!(err.to_string().starts_with("mixed:1: answer"), "{err}");
    // max_prompts is a seeded sample in file order.
    let a = factual::resolve(
        &m,
        "b",
        &builtin,
        &ResolveOptions {
            max_prompts: Some(7),
            seed: 1,
            ..ResolveOptions::default()
        },
    )
    .unwrap();
    let lines: Vec<usize> = a.records.iter().map(|r| r.0).collect();
    assert_eq!(lines.len(), 7);
    assert!(lines.windows(2).all(|w| w[0] < w[1]));
    let b = factual::resolve(
        &m,
        "b",
        &builtin,
        &ResolveOptions {
            max_prompts: Some(7),
            seed: 1,
            ..ResolveOptions::default()
        },
    )
    .unwrap();
    assert_eq!(a.prompts, b.prompts);
    // Malformed lines are errors naming the line.
    let err = factual::parse_records(
        "f.jsonl",
        "{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"x\": 1}",
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("f.jsonl:2:"), "{err}");
}

#[test]
fn linearity_writes_fig2_table1_table5() {
    let m = model();
    let set = builtin_set(&m, 3);
    let dir = tempfile::tempdir().unwrap();
    let config = LinearityRun {
        random_neurons: 5,
        top_neurons: 3,
        sweep: LinearityConfig {
            ranges: vec![0.5, 2.0, 10.0],
            ..LinearityConfig::default()
        },
        seed: 1,
    };
    let r = run_linearity(&m, &set, &config, dir.path(), false).unwrap();
    let out = dir.path();
    let j = read_json(&out.join("results.json"));
    assert_eq!(j["fig2"].as_array().unwrap().len(), 3);
    assert_eq!(j["info"]["prompts"]["used"], 3);
    assert_eq!(j["info"]["prompts"]["dropped_multi_token"], 0);
    for p in &r.fig2 {
        assert!((0.0..=1.0).contains(&p.mean_abs_r) && (0.0..=1.0).contains(&p.linear_ratio));
    }
    // The paper's first observation: a wider shift range lowers |r|.
    assert!(r.fig2[0].mean_abs_r > r.fig2[2].mean_abs_r, "{:?}", r.fig2);
    assert!(r.positive_ratio + r.negative_ratio <= 1.0 + 1e-9);
    let t5 = r.table5.as_ref().unwrap();
    assert_eq!(t5.neurons_per_prompt, 3);
    assert_eq!(t5.prompt_generality.counts.len(), 3);
    assert_eq!(t5.layer_generality.counts.len(), 5);
    let linear: usize = t5.layer_generality.counts.iter().sum();
    assert!((t5.linear_ratio - linear as f64 / 9.0).abs() < 1e-9);
    // Tensors: r per range [P, T, K], probability shifts at R = 2 [P, T, K, 21].
    let st = out.join("sweeps.safetensors");
    assert_eq!(tensor_shape(&st, "r_range_0.5"), vec![3, 1, 5]);
    assert_eq!(tensor_shape(&st, "delta_probs"), vec![3, 1, 5, 21]);
    // Table 1's linear ratio is the share of |r| >= 0.95 in the R = 2 tensor.
    let r2 = tensor_f32(&st, "r_range_2");
    let share = r2.iter().filter(|v| v.abs() >= 0.95).count() as f64 / r2.len() as f64;
    assert!((share - r.linear_ratio).abs() < 1e-9);
    let rows = csv_rows(&out.join("fig2_linearity.csv"));
    assert_eq!(rows[0], ["range", "step", "mean_abs_r", "linear_ratio"]);
    assert_eq!(rows.len(), 4);
    assert_svg(&out.join("fig2_linearity.svg"));
    no_temp_files(out);
    assert!(linearity_table(&r).contains("Table 1"));
}

#[test]
fn linearity_on_the_papers_fixed_step() {
    let m = model();
    let set = builtin_set(&m, 2);
    let run = |ranges: Vec<f32>, fixed_step: Option<f32>, dir: &std::path::Path| {
        let config = LinearityRun {
            random_neurons: 4,
            top_neurons: 0,
            sweep: LinearityConfig {
                ranges,
                fixed_step,
                ..LinearityConfig::default()
            },
            seed: 2,
        };
        run_linearity(&m, &set, &config, dir, false)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fixed = run(vec![0.2, 1.0, 2.0], Some(0.2), a.path()).unwrap();
    let steps: Vec<f32> = fixed.fig2.iter().map(|p| p.step).collect();
    assert!(steps.iter().all(|s| (s - 0.2).abs() < 1e-6), "{steps:?}");
    // At R = 2 the fixed step 0.2 is the same grid as 10 points per side: the same r.
    let scaled = run(vec![2.0], None, b.path()).unwrap();
    assert_eq!(fixed.fig2[2].mean_abs_r, scaled.fig2[0].mean_abs_r);
    assert_eq!(fixed.linear_ratio, scaled.linear_ratio);
    // A range that is not a multiple of the step is an error naming both, before any sweep.
    let c = tempfile::tempdir().unwrap();
    let err = format!("{:#}", run(vec![0.5], Some(0.2), c.path()).unwrap_err());
    assert!(
        err.contains("range 0.5") && err.contains("step 0.2"),
        "{err}"
    );
    assert!(!c.path().join("results.json").exists());
}

#[test]
fn neg_estimation_writes_table2() {
    let m = model();
    let set = builtin_set(&m, 3);
    let dir = tempfile::tempdir().unwrap();
    let config = EstimationRun {
        neurons: 6,
        sweep: SweepConfig {
            range: 0.5,
            step: 0.05,
            ..SweepConfig::default()
        },
        methods: vec![Method::NeurGrad, Method::Cg, Method::Ig, Method::Lpi],
        seed: 2,
    };
    let r = run_estimation(&m, &set, &config, dir.path(), false).unwrap();
    let names: Vec<&str> = r.rows.iter().map(|x| x.method.as_str()).collect();
    assert_eq!(names, ["neurgrad", "cg", "ig", "ig_mean_gradient", "lpi"]);
    assert!(r.unsupported.is_empty());
    let ng = &r.rows[0];
    assert_eq!(ng.n, 3 * 6);
    // At R = 0.5 NeurGrad is close to the slope it approximates (NOTES.md: r = 0.997).
    assert!(ng.r > 0.95, "{ng:?}");
    let out = dir.path();
    let rows = csv_rows(&out.join("table2.csv"));
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0][0], "method");
    // The exported NeurGrad cells are NeurGrad of the sampled neurons, computed here directly.
    let st = out.join("estimates.safetensors");
    assert_eq!(tensor_shape(&st, "ground_truth"), vec![3, 1, 6]);
    let exported = tensor_f32(&st, "neurgrad");
    let direct = methods::neurgrad(&m, &set.prompts).unwrap().scores;
    for p in 0..3 {
        for (k, id) in r.neurons.iter().enumerate() {
            let want = direct[[p, 0, id.layer, id.neuron]];
            assert!((exported[p * 6 + k] - want).abs() <= 1e-6 + 1e-4 * want.abs());
        }
    }
    assert_eq!(
        read_json(&out.join("results.json"))["rows"][4]["method"],
        "lpi"
    );
    no_temp_files(out);
}

#[test]
fn knowledge_attribution_curves_match_direct_patching() {
    let m = model();
    let set = builtin_set(&m, 3);
    let dir = tempfile::tempdir().unwrap();
    let config = AttributionRun {
        methods: vec![Method::NeurGrad, Method::Cg],
        topk: TopKConfig {
            ks: vec![1, 2],
            shifts: vec![0.5, 1.0],
            mode: ShiftMode::Magnitude,
            ..TopKConfig::default()
        },
    };
    let r = run_attribution(&m, &set, &config, dir.path(), false).unwrap();
    assert_eq!(r.curves.len(), 4);
    // Independent check of NeurGrad, K = 1, shift 0.5: patch each prompt's top neuron by hand.
    let ng = methods::neurgrad(&m, &set.prompts).unwrap();
    let mut sum = 0.0f64;
    for (p, prompt) in set.prompts.iter().enumerate() {
        let s = ng.scores.slice(ndarray::s![p, 0, .., ..]);
        let ((l, n), v) = s
            .indexed_iter()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let a = ng.activations[[p, l, n]];
        let delta = 0.5 * v.signum() * if a > 0.0 { 1.0 } else { -1.0 };
        let probs = m
            .patched_probs(
                prompt,
                &[
                    vec![],
                    vec![Patch::ff(NeuronId::new(l, n), PatchOp::Add(delta))],
                ],
            )
            .unwrap();
        sum += (probs[[1, 0]] - probs[[0, 0]]) as f64;
    }
    let curve = r
        .curves
        .iter()
        .find(|c| c.method == "neurgrad" && c.k == 1)
        .unwrap();
    assert!(
        (curve.mean_output_shift[0] - sum / 3.0).abs() < 1e-6,
        "{} vs {}",
        curve.mean_output_shift[0],
        sum / 3.0
    );
    let out = dir.path();
    let rows = csv_rows(&out.join("fig3_attribution.csv"));
    assert_eq!(rows.len(), 1 + 2 * 2 * 2);
    assert_eq!(
        read_json(&out.join("results.json"))["curves"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_svg(&out.join("fig3_attribution.svg"));
    no_temp_files(out);
}

#[test]
fn neg_distribution_writes_figs_4_11_12() {
    let m = model();
    let set = builtin_set(&m, 4);
    let dir = tempfile::tempdir().unwrap();
    let r = run_distribution(&m, &set, &DistributionRun { bins: 20 }, dir.path(), false).unwrap();
    let d = &r.distribution;
    assert_eq!(d.count, 4 * 5 * 172);
    assert_eq!(d.histogram.counts.iter().sum::<u64>() as usize, d.count);
    assert_eq!(d.histogram.counts.len(), 20);
    assert!(d.cumulative_share.windows(2).all(|w| w[0] <= w[1] + 1e-12));
    assert!((d.cumulative_share[99] - 1.0).abs() < 1e-9);
    // The top 10% of neurons hold more than 10% of the total |NEG|.
    assert!(r.top10_share > 0.1);
    assert_eq!(d.per_layer.len(), 5);
    let out = dir.path();
    let st = out.join("neurgrad.safetensors");
    assert_eq!(tensor_shape(&st, "scores"), vec![4, 1, 5, 172]);
    assert_eq!(tensor_shape(&st, "activations"), vec![4, 5, 172]);
    // Per-layer mean |NEG| recomputed from the exported scores.
    let scores = Array4::from_shape_vec((4, 1, 5, 172), tensor_f32(&st, "scores")).unwrap();
    let layer2: f64 = scores
        .slice(ndarray::s![.., .., 2, ..])
        .iter()
        .map(|v| v.abs() as f64)
        .sum::<f64>()
        / (4.0 * 172.0);
    assert!((layer2 - d.per_layer[2].mean_abs).abs() < 1e-9);
    assert_eq!(csv_rows(&out.join("fig4_cumulative.csv")).len(), 101);
    assert_eq!(csv_rows(&out.join("fig12_layers.csv")).len(), 6);
    for f in [
        "fig4_cumulative.svg",
        "fig11_histogram.svg",
        "fig12_layers.svg",
    ] {
        assert_svg(&out.join(f));
    }
    // Fig. 11 draws one bar per non-empty bin (plus the background and plot-area frames).
    let fig11 = std::fs::read_to_string(out.join("fig11_histogram.svg")).unwrap();
    let bars = d.histogram.counts.iter().filter(|&&c| c > 0).count();
    assert!(
        fig11.matches("<rect").count() >= bars,
        "{bars} bars expected"
    );
    no_temp_files(out);
}

#[test]
fn multi_neuron_writes_fig5() {
    let m = model();
    let set = builtin_set(&m, 2);
    let dir = tempfile::tempdir().unwrap();
    let config = MultiNeuronRun {
        ranges: vec![0.1, 0.5],
        step: 0.05,
        max_log2: 3,
        ..MultiNeuronRun::default()
    };
    let r = run_multi_neuron(&m, &set, &config, dir.path(), false).unwrap();
    assert_eq!(r.reports.len(), 2);
    for rep in &r.reports {
        let sizes: Vec<usize> = rep.points.iter().map(|p| p.neurons).collect();
        assert_eq!(sizes, [1, 2, 4, 8]);
        assert_eq!(
            rep.shifts.len(),
            (rep.config.max_shift / 0.05).round() as usize + 1
        );
    }
    // One neuron, small range: the actual shift follows d x |NEG| closely.
    assert!(
        r.reports[0].points[0].r_mean > 0.9,
        "{:?}",
        r.reports[0].points[0]
    );
    let out = dir.path();
    let rows = csv_rows(&out.join("fig5_multi_neuron.csv"));
    assert_eq!(rows.len(), 1 + 2 * 4);
    assert_eq!(
        read_json(&out.join("results.json"))["reports"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_svg(&out.join("fig5_multi_neuron.svg"));
    no_temp_files(out);
}

const EXAMPLES: [&str; 5] = [
    "linearity",
    "neg_estimation",
    "knowledge_attribution",
    "neg_distribution",
    "multi_neuron",
];

fn run(bin: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(workspace())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn binaries_reject_bad_arguments_with_one_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let unwritable = blocker.join("out");
    let ml = myriadlama();
    for name in EXAMPLES {
        let bin = example_binary(name);
        let out = dir.path().join(name);
        let out_s = out.to_str().unwrap();
        let mut cases: Vec<(Vec<&str>, &str)> = vec![(
            vec!["--prompts", "/nonexistent/facts.jsonl"],
            "cannot read prompt file",
        )];
        // The input checks are shared code (factual::setup): one example runs them all, which
        // keeps this test's many process starts within its time budget.
        if name == "neg_distribution" {
            cases.extend([
                (
                    vec!["--prompts", ml.to_str().unwrap(), "--strict"],
                    "is not a single token",
                ),
                (
                    vec!["--prompts", ml.to_str().unwrap()],
                    "none of the 1000 answers is a single token",
                ),
                (vec!["--model", "/nonexistent/model"], "does not exist"),
            ]);
        }
        if name == "linearity" {
            // Fails during computation, after every input check: still nothing written.
            cases.push((
                vec!["--neurons", "100000"],
                "cannot sample 100000 distinct neurons",
            ));
        }
        for (args, needle) in cases {
            let mut all = args.clone();
            all.extend(["--out", out_s, "--quiet"]);
            let (code, stdout, stderr) = run(&bin, &all);
            assert_eq!(code, 1, "{name} {all:?}: {stderr}");
            assert!(stdout.is_empty(), "{name}: {stdout}");
            // Input errors are the only output; an error during computation follows the
            // prompt-set line. Either way the error is one line, the last.
            let lines: Vec<&str> = stderr.trim_end().lines().collect();
            let max_lines = if args[0] == "--neurons" { 2 } else { 1 };
            assert!(lines.len() <= max_lines, "{name}: {stderr}");
            let last = lines.last().copied().unwrap_or_default();
            assert!(
                last.starts_with("error: ") && last.contains(needle),
                "{name} {args:?}: {stderr}"
            );
            assert!(!out.exists(), "{name} created {}", out.display());
        }
        let (code, _, stderr) = run(&bin, &["--out", unwritable.to_str().unwrap(), "--quiet"]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.contains("cannot create output directory"),
            "{stderr}"
        );
        // clap rejects malformed values itself (non-zero exit, usage on stderr).
        let (code, _, _) = run(&bin, &["--seed", "minus-one", "--out", out_s]);
        assert_ne!(code, 0);
        assert!(!out.exists());
    }
}

#[test]
fn a_binary_runs_end_to_end() {
    let bin = example_binary("neg_distribution");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    let (code, stdout, stderr) = run(
        &bin,
        &[
            "--max-prompts",
            "2",
            "--bins",
            "10",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Fig. 4") && stdout.contains("Fig. 12"),
        "{stdout}"
    );
    assert!(stderr.contains("32 with a single-token answer (0 multi-token dropped), 2 used"));
    let j = read_json(&out.join("results.json"));
    assert_eq!(j["info"]["prompts"]["used"], 2);
    assert_eq!(j["distribution"]["count"], 2 * 860);

    // A prompt file mixing three single-token answers with two MyriadLAMA facts: the two are
    // dropped, counted on the console and in results.json.
    let mut lines: Vec<String> = factual::builtin_stories()[..3]
        .iter()
        .map(|(_, r)| serde_json::to_string(r).unwrap())
        .collect();
    let ml = std::fs::read_to_string(myriadlama()).unwrap();
    lines.extend(ml.lines().take(2).map(str::to_string));
    let file = dir.path().join("mixed.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = dir.path().join("mixed");
    let (code, _, stderr) = run(
        &bin,
        &[
            "--prompts",
            file.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("5 prompts, 3 with a single-token answer (2 multi-token dropped), 3 used"),
        "{stderr}"
    );
    let j = read_json(&out.join("results.json"));
    assert_eq!(j["info"]["prompts"]["dropped_multi_token"], 2);
    assert_eq!(j["info"]["prompts"]["dropped_examples"][0]["line"], 4);
    assert_eq!(j["distribution"]["count"], 3 * 860);
}

#[test]
fn chunked_neurgrad_equals_one_batched_call() {
    let m = model();
    // 18 prompts: two chunks of the progress-reporting path (16 + 2).
    let set = builtin_set(&m, 18);
    let bar = indicatif::ProgressBar::hidden();
    let chunked = factual::neurgrad_with_progress(&m, &set.prompts, &bar).unwrap();
    let whole = methods::neurgrad(&m, &set.prompts).unwrap();
    assert_eq!(chunked.scores.shape(), &[18, 1, 5, 172]);
    assert_eq!(bar.position(), 18);
    for (a, b) in chunked.scores.iter().zip(whole.scores.iter()) {
        assert!((a - b).abs() <= 1e-6 + 1e-4 * b.abs(), "{a} vs {b}");
    }
    for (a, b) in chunked.probs.iter().zip(whole.probs.iter()) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
}
