//! Tree-Probe forest fit time on the 2000 prompts x 2000 neurons four-option task, to compare
//! with scikit-learn's RandomForestClassifier (docs/PERFORMANCE.md).
//!
//! `NEG_PROBE_DUMP_TASK=FILE.json cargo bench --bench forest` also writes the task for
//! `crates/neg-probe/scripts/sklearn_forest.py FILE.json --time`, so that both fit the same
//! features.
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
    group.finish();
}

criterion_group!(benches, forest_fit);
criterion_main!(benches);
