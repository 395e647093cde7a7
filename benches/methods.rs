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
use std::time::Duration;

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
        // Each call takes 0.1 s to minutes: one call per sample, the minimum of 10 samples.
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

/// One group of benchmarks over `prompts`; `slow` adds IG, LPI and the naive sweep.
fn bench_prompts(
    c: &mut Criterion,
    setup: &Setup,
    name: &str,
    prompts: &[TargetedPrompt],
    neurons: &[NeuronId],
    slow: bool,
) {
    let model = &setup.model;
    let mut group = c.benchmark_group(format!("{}/{name}", setup.label));
    configure(&mut group, setup.large);
    let ok = |what: &str, e: neg_core::NegError| -> ! { fail(format!("{what}: {e}")) };
    group.bench_function("forward", |b| {
        b.iter(|| {
            model
                .forward(prompts)
                .unwrap_or_else(|e| ok("forward", e.into()))
        })
    });
    group.bench_function("neurgrad", |b| {
        b.iter(|| methods::neurgrad(model, prompts).unwrap_or_else(|e| ok("neurgrad", e)))
    });
    group.bench_function("cg", |b| {
        b.iter(|| methods::computational_gradient(model, prompts).unwrap_or_else(|e| ok("cg", e)))
    });
    let fast = sweep_config(false);
    group.bench_function("sweep_fast", |b| {
        b.iter(|| {
            neg::ground_truth_neg(model, prompts, neurons, &fast)
                .unwrap_or_else(|e| ok("sweep_fast", e))
        })
    });
    if slow {
        let naive = sweep_config(true);
        group.bench_function("sweep_naive", |b| {
            b.iter(|| {
                neg::ground_truth_neg(model, prompts, neurons, &naive)
                    .unwrap_or_else(|e| ok("sweep_naive", e))
            })
        });
        group.bench_function(format!("ig_m{IG_STEPS}"), |b| {
            b.iter(|| {
                methods::integrated_gradients(model, prompts, IG_STEPS)
                    .unwrap_or_else(|e| ok("ig", e))
            })
        });
        group.bench_function("lpi", |b| {
            b.iter(|| methods::log_prob_increase(model, prompts).unwrap_or_else(|e| ok("lpi", e)))
        });
    }
    group.finish();
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
    check_sweeps(&setup, &neurons);
    let mut c = Criterion::default().configure_from_args();
    bench_prompts(&mut c, &setup, "one", &setup.prompts[..1], &neurons, true);
    let batch = format!("batch{}", setup.prompts.len());
    let slow = !setup.large || setup.all;
    bench_prompts(&mut c, &setup, &batch, &setup.prompts, &neurons, slow);
    c.final_summary();
}
