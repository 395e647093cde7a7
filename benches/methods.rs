//! Cost of every attribution method against a plain no-grad forward of the same prompts.
//!
//! `cargo bench --bench methods` (stories260k, 2 threads) or, for the random ~135M-parameter
//! Llama, `NEG_BENCH_MODEL=llama-135m cargo bench --bench methods`; see `benches/support` for
//! every variable and `docs/PERFORMANCE.md` for the numbers and the cost model.
//!
//! Benchmark ids are `<model>/<one|batchP>/<method>`:
//! - `forward`: `ModelAdapter::forward` (no gradients; the reference unit);
//! - `neurgrad`, `cg`: dP/da for all FF neurons and all K = 4 answer tokens;
//! - `ig_m20`: integrated gradients over every layer, m = 20;
//! - `lpi`: log-probability increase of every FF neuron;
//! - `sweep_fast`, `sweep_naive`: ground-truth NEG of `NEG_BENCH_SWEEP_NEURONS` (default 2)
//!   sampled neurons on the paper's grid (R = 2, s = 0.2, 21 shifts), through the adapter's
//!   optimised patch path and through full recomputation of every variant.
//!
//! Before timing, the two sweeps are run once and must agree (largest |difference| of the
//! probability shifts printed; the run stops if it exceeds 1e-4).
//!
//! On a large model (anything beyond stories260k) the criterion run leaves out IG, LPI and the
//! naive sweep (30 s to 90 s per call on the 135M Llama, 10 samples minimum), unless
//! `NEG_BENCH_ALL=1`.
//!
//! `NEG_BENCH_PROMPTS_ONLY=1` only writes the prompts file (for the Python reference) and exits.
//!
//! `NEG_BENCH_PAIRED=R` replaces the criterion run by R interleaved repetitions of every case
//! (all one-prompt cases, whatever the model), and prints the medians and the median of the
//! per-repetition ratios to the forward (robust to load that drifts during a run on a shared
//! machine); written to `target/bench-models/paired-<model>.json`. `NEG_BENCH_CASES=a,b,..`
//! restricts the paired mode to those cases (`forward` first: ratios are to the first case;
//! written to `paired-<model>-<cases>.json`).
mod common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use neg_core::methods::{self, IG_STEPS};
use neg_core::{neg, sampling, ModelAdapter, NeuronId, SweepConfig, TargetedPrompt};
use neg_hooks::HfModel;

mod support;
use support::{fail, Setup};

/// Largest tolerated difference between the fast and the naive sweep's probabilities.
const SWEEP_TOLERANCE: f32 = 1e-4;

fn sweep_config(naive: bool) -> SweepConfig {
    SweepConfig {
        naive,
        ..SweepConfig::default()
    }
}

fn sweep_neurons(model: &HfModel) -> Vec<NeuronId> {
    let count = match std::env::var("NEG_BENCH_SWEEP_NEURONS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| {
                fail(format!(
                    "NEG_BENCH_SWEEP_NEURONS={v:?} is not a positive integer"
                ))
            }),
        Err(_) => 2,
    };
    sampling::sample_neurons(model.num_layers(), model.ff_width(), count, 0)
        .unwrap_or_else(|e| fail(format!("sampling {count} neurons: {e}")))
}

/// Runs both sweeps once on the first prompt and stops the run if they disagree.
fn check_sweeps(setup: &Setup, neurons: &[NeuronId]) {
    let prompt = &setup.prompts[..1];
    let run = |naive| {
        neg::ground_truth_neg(&setup.model, prompt, neurons, &sweep_config(naive))
            .unwrap_or_else(|e| fail(format!("ground-truth sweep (naive = {naive}): {e}")))
    };
    let (fast, naive) = (run(false), run(true));
    let diff = |a: &ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>| {
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let dp = diff(
        &fast.delta_probs.clone().into_dyn(),
        &naive.delta_probs.clone().into_dyn(),
    );
    let base = diff(
        &fast.base_probs.clone().into_dyn(),
        &naive.base_probs.clone().into_dyn(),
    );
    let slope = diff(&fast.neg.clone().into_dyn(), &naive.neg.clone().into_dyn());
    eprintln!(
        "sweep check: fast vs naive, max |diff| of base probs {base:.3e}, of probability \
         shifts {dp:.3e}, of NEG slopes {slope:.3e} ({} neurons x {} shifts x {} targets)",
        neurons.len(),
        fast.shifts.len(),
        prompt[0].targets.len()
    );
    if dp.max(base) > SWEEP_TOLERANCE {
        fail(format!(
            "the optimised and the naive sweep disagree by {:.3e} (> {SWEEP_TOLERANCE:e})",
            dp.max(base)
        ));
    }
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, large: bool) {
    if large {
        // Each call takes 0.1 s to a minute: one call per sample, the minimum of 10 samples.
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
    } else {
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
    }
}

/// A named benchmark routine.
type Case<'a> = (String, Box<dyn Fn() + 'a>);

/// Which of the slow cases a group runs.
#[derive(Clone, Copy)]
struct Slow {
    ig: bool,
    lpi: bool,
    naive: bool,
}

/// The routines of one group over `prompts`: forward, NeurGrad, CG, the fast sweep, and the
/// slow cases selected by `slow`.
fn cases<'a>(
    model: &'a HfModel,
    prompts: &'a [TargetedPrompt],
    neurons: &'a [NeuronId],
    slow: Slow,
) -> Vec<Case<'a>> {
    fn ok<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) {
        if let Err(e) = r {
            fail(format!("{what}: {e}"));
        }
    }
    let mut out: Vec<Case<'a>> = vec![
        (
            "forward".into(),
            Box::new(move || ok("forward", model.forward(prompts))),
        ),
        (
            "neurgrad".into(),
            Box::new(move || ok("neurgrad", methods::neurgrad(model, prompts))),
        ),
        (
            "cg".into(),
            Box::new(move || ok("cg", methods::computational_gradient(model, prompts))),
        ),
        (
            "sweep_fast".into(),
            Box::new(move || {
                let config = sweep_config(false);
                ok(
                    "sweep_fast",
                    neg::ground_truth_neg(model, prompts, neurons, &config),
                )
            }),
        ),
    ];
    if slow.naive {
        out.push((
            "sweep_naive".into(),
            Box::new(move || {
                let config = sweep_config(true);
                ok(
                    "sweep_naive",
                    neg::ground_truth_neg(model, prompts, neurons, &config),
                )
            }),
        ));
    }
    if slow.ig {
        out.push((
            format!("ig_m{IG_STEPS}"),
            Box::new(move || {
                ok(
                    "ig",
                    methods::integrated_gradients(model, prompts, IG_STEPS),
                )
            }),
        ));
    }
    if slow.lpi {
        out.push((
            "lpi".into(),
            Box::new(move || ok("lpi", methods::log_prob_increase(model, prompts))),
        ));
    }
    out
}

/// The two groups: one prompt, and the batch. On a large model the criterion run leaves out
/// the cases that take half a minute or more per call (IG, LPI, naive sweep) unless
/// `NEG_BENCH_ALL=1`; the paired mode always has every one-prompt case.
fn groups(setup: &Setup, paired: bool) -> Vec<(String, &[TargetedPrompt], Slow)> {
    let small = !setup.large || setup.all;
    let one = Slow {
        ig: small || paired,
        lpi: small || paired,
        naive: small || paired,
    };
    let batch = Slow {
        ig: small,
        lpi: small,
        naive: small,
    };
    vec![
        ("one".to_string(), &setup.prompts[..1], one),
        (
            format!("batch{}", setup.prompts.len()),
            &setup.prompts[..],
            batch,
        ),
    ]
}

/// Interleaved timings of every case (see the module docs).
fn paired(setup: &Setup, neurons: &[NeuronId], reps: usize) {
    let mut report = serde_json::Map::new();
    // `NEG_BENCH_CASES=forward,neurgrad` keeps only those cases (the first one is the unit).
    let keep: Option<Vec<String>> = std::env::var("NEG_BENCH_CASES")
        .ok()
        .map(|v| v.split(',').map(|c| c.trim().to_string()).collect());
    for (name, prompts, slow) in groups(setup, true) {
        let mut cases = cases(&setup.model, prompts, neurons, slow);
        if let Some(keep) = &keep {
            cases.retain(|(c, _)| keep.contains(c));
            if cases.len() < 2 {
                fail(format!(
                    "NEG_BENCH_CASES={keep:?} must name at least two cases, forward first"
                ));
            }
        }
        // Warm-up: first calls allocate and fault in the weights.
        (cases[0].1)();
        (cases[1].1)();
        let mut samples = vec![Vec::new(); cases.len()];
        for _ in 0..reps {
            for (c, (_, f)) in cases.iter().enumerate() {
                let start = Instant::now();
                f();
                samples[c].push(start.elapsed().as_secs_f64());
            }
        }
        let mut group = serde_json::Map::new();
        for (c, (case, _)) in cases.iter().enumerate() {
            // Ratio to the forward of the same repetition: robust to load that drifts.
            let ratios: Vec<f64> = samples[c]
                .iter()
                .zip(&samples[0])
                .map(|(a, b)| a / b)
                .collect();
            eprintln!(
                "paired {}/{name}/{case}: median {:.4} s, median ratio to forward {:.3}",
                setup.label,
                common::median(&samples[c]),
                common::median(&ratios)
            );
            group.insert(
                case.clone(),
                serde_json::json!({
                    "median_s": common::median(&samples[c]),
                    "median_ratio_to_forward": common::median(&ratios),
                    "samples_s": samples[c],
                }),
            );
        }
        report.insert(name, serde_json::Value::Object(group));
    }
    let suffix = keep.map_or(String::new(), |k| format!("-{}", k.join("-")));
    let path = support::bench_out().join(format!("paired-{}{suffix}.json", setup.label));
    if let Err(e) = neg_rs::output::write_json(&path, &report) {
        fail(format!("writing {}: {e}", path.display()));
    }
    eprintln!("paired timings written to {}", support::rel(&path));
}

fn main() {
    let setup = support::setup();
    let neurons = sweep_neurons(&setup.model);
    let prompts_file = support::write_prompts(&setup);
    eprintln!(
        "methods bench: model {} ({}), {} layers x {} FF neurons, {} thread(s); {} prompts \
         ({TASK}, zero-shot) of {:?} tokens, K = {} answers; prompts written to {}",
        setup.label,
        support::rel(&setup.dir),
        setup.model.num_layers(),
        setup.model.ff_width(),
        setup.threads,
        setup.prompts.len(),
        setup.lengths,
        setup.prompts[0].targets.len(),
        support::rel(&prompts_file),
        TASK = support::TASK,
    );
    if std::env::var("NEG_BENCH_PROMPTS_ONLY").is_ok_and(|v| v == "1") {
        return;
    }
    if let Ok(v) = std::env::var("NEG_BENCH_PAIRED") {
        let reps = v
            .parse()
            .ok()
            .filter(|&r: &usize| r > 0)
            .unwrap_or_else(|| fail(format!("NEG_BENCH_PAIRED={v:?} is not a positive integer")));
        paired(&setup, &neurons, reps);
        return;
    }
    check_sweeps(&setup, &neurons);
    let mut c = Criterion::default().configure_from_args();
    for (name, prompts, slow) in groups(&setup, false) {
        let mut group = c.benchmark_group(format!("{}/{name}", setup.label));
        configure(&mut group, setup.large);
        for (case, f) in cases(&setup.model, prompts, &neurons, slow) {
            group.bench_function(case, |b| b.iter(&f));
        }
        group.finish();
    }
    c.final_summary();
}
