//! Leak-free re-splits of the published tasks.
mod common;

use std::collections::HashSet;

use mceval::audit::{answer_counts, input_key};
use mceval::{audit_dataset, resplit, DataSource, Dataset, Split, TaskRegistry};

fn check_balanced(data: &Dataset, what: &str) {
    let task = data.task();
    for split in Split::ALL {
        let recs = data.split(split).unwrap();
        let groups: Vec<Option<&str>> = if task.has_lang {
            mceval::LANGUAGES.iter().map(|l| Some(*l)).collect()
        } else {
            vec![None]
        };
        for g in groups {
            let labels: Vec<usize> = recs
                .iter()
                .filter(|r| g.is_none() || r.lang() == g)
                .map(|r| task.label_of(r).unwrap())
                .collect();
            let counts: Vec<usize> = answer_counts(&labels, task.n_options())
                .into_iter()
                .filter(|&c| c > 0)
                .collect();
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(max - min <= 1, "{what} {split} {g:?}: {counts:?}");
        }
    }
}

#[test]
fn every_task_resplits_leak_free_balanced_and_deterministic() {
    for task in TaskRegistry::builtin().tasks() {
        let data = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
        let a = resplit(&data, 7).unwrap();
        let audit = audit_dataset(&a);
        assert!(audit.is_leak_free(), "{}: {audit:?}", task.name);
        // No input (record without its label) in two splits either.
        let mut seen = HashSet::new();
        for split in Split::ALL {
            for r in a.split(split).unwrap() {
                assert!(
                    seen.insert(input_key(task, r)),
                    "{}: input repeated",
                    task.name
                );
            }
        }
        let (tr, va, te) = (
            a.split(Split::Train).unwrap().len(),
            a.split(Split::Valid).unwrap().len(),
            a.split(Split::Test).unwrap().len(),
        );
        assert_eq!(va, te, "{}", task.name);
        assert!(tr + va + te <= 8000 && va > 0, "{}", task.name);
        let ratio = tr as f64 / va as f64;
        assert!(
            (5.5..=6.5).contains(&ratio),
            "{}: {tr}/{va}/{te}",
            task.name
        );
        check_balanced(&a, task.name);
        let again = resplit(&data, 7).unwrap();
        let other = resplit(&data, 8).unwrap();
        for split in Split::ALL {
            assert_eq!(
                a.split(split).unwrap(),
                again.split(split).unwrap(),
                "{}",
                task.name
            );
        }
        assert_ne!(
            a.split(Split::Test).unwrap(),
            other.split(Split::Test).unwrap(),
            "{}",
            task.name
        );
    }
}

#[test]
fn clean_tasks_keep_their_size_and_multilingual_ones_split_per_language() {
    let reg = TaskRegistry::builtin();
    let data = Dataset::load(
        &DataSource::Dir(common::mceval8k()),
        reg.get("postag").unwrap(),
    )
    .unwrap();
    let r = resplit(&data, 1).unwrap();
    let sizes: Vec<usize> = Split::ALL
        .iter()
        .map(|s| r.split(*s).unwrap().len())
        .collect();
    assert_eq!(sizes, [6000, 1000, 1000]);
    for name in ["xnli", "mpostag", "mlama", "amazon-review-multi"] {
        let data =
            Dataset::load(&DataSource::Dir(common::mceval8k()), reg.get(name).unwrap()).unwrap();
        let r = resplit(&data, 1).unwrap();
        for split in Split::ALL {
            let langs = mceval::audit::language_counts(r.split(split).unwrap());
            assert_eq!(langs.len(), 5, "{name} {split}");
            let counts: HashSet<usize> = langs.values().copied().collect();
            assert_eq!(counts.len(), 1, "{name} {split}: {langs:?}");
        }
    }
}

#[test]
fn resplit_output_loads_back_from_disk_and_gives_imdb_a_train_split() {
    let reg = TaskRegistry::builtin();
    let task = reg.get("imdb").unwrap();
    let data = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
    let r = resplit(&data, 5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = r.write(dir.path()).unwrap();
    assert_eq!(files.len(), 3);
    let back = Dataset::load(&DataSource::Dir(dir.path().into()), task).unwrap();
    for split in Split::ALL {
        assert_eq!(back.split(split).unwrap(), r.split(split).unwrap());
    }
    // Pool of 2000 distinct reviews, balanced -> 1500/250/250 at most.
    assert!(back.split(Split::Train).unwrap().len() >= 1400);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("classification/imdb"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}
