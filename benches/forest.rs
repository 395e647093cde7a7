//! Tree-Probe forest fit time on the 2000 prompts x 2000 neurons four-option task, to compare
//! with scikit-learn's RandomForestClassifier (docs/PERFORMANCE.md).
//!
//! `NEG_PROBE_DUMP_TASK=FILE.json cargo bench --bench forest` also writes the task for
//! `crates/neg-probe/scripts/sklearn_forest.py FILE.json --time`, so that both fit the same
//! features.
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use neg_probe::synthetic::{forest_task, sklearn_task_json};
use neg_probe::{ForestConfig, RandomForest};

fn forest_fit(c: &mut Criterion) {
    let task = forest_task(2000, 2000, 4, 0).expect("synthetic task");
    let x = task.data.option_index();
    let y = task.data.labels().to_vec();
    let rows: Vec<usize> = (0..y.len()).collect();
    if let Ok(path) = std::env::var("NEG_PROBE_DUMP_TASK") {
        std::fs::write(&path, sklearn_task_json(x, &y, &rows, &rows, 100, None))
            .expect("write task");
        eprintln!("task written to {path}");
    }
    let config = ForestConfig::default();
    let mut group = c.benchmark_group("forest_fit_2000x2000_4class_100trees");
    group.sample_size(10);
    group.bench_function("all_threads", |b| {
        b.iter(|| RandomForest::fit(x, &rows, &y, 4, &config).expect("fit"))
    });
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("thread pool");
    group.bench_function("one_thread", |b| {
        b.iter(|| one.install(|| RandomForest::fit(x, &rows, &y, 4, &config).expect("fit")))
    });
    // CPU time of the fitting thread: on a shared machine wall time counts other jobs too.
    group.bench_function("one_thread_cpu_time", |b| {
        b.iter_custom(|iters| {
            one.install(|| {
                let (t0, w0) = (thread_cpu_seconds(), Instant::now());
                for _ in 0..iters {
                    RandomForest::fit(x, &rows, &y, 4, &config).expect("fit");
                }
                match (t0, thread_cpu_seconds()) {
                    (Some(a), Some(b)) => Duration::from_secs_f64(b - a),
                    _ => w0.elapsed(),
                }
            })
        })
    });
    group.finish();
}

/// User + system CPU seconds of the calling thread (Linux `/proc`, 100 ticks per second);
/// `None` elsewhere, and the bench then reports wall time.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

criterion_group!(benches, forest_fit);
criterion_main!(benches);
