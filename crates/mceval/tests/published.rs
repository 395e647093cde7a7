//! The published MCEval8K files: loading, missing splits, the audit against the known defects
//! of `shared/README.md`, and the published file format.
mod common;

use mceval::{audit, DataSource, Dataset, Split, TaskRegistry};

#[test]
fn registry_has_22_tasks_in_6_genres() {
    let reg = TaskRegistry::builtin();
    assert_eq!(reg.tasks().len(), 22);
    let genres: std::collections::BTreeSet<_> = reg.tasks().iter().map(|t| t.genre).collect();
    assert_eq!(genres.len(), 6);
    assert_eq!(reg.get("commonsenseqa").unwrap().name, "commensenseqa");
    assert_eq!(reg.get("CSQA").unwrap().name, "commensenseqa");
    let err = reg.get("no-such-task").unwrap_err().to_string();
    assert!(
        err.contains("no-such-task") && err.contains("agnews") && err.contains("mpostag"),
        "{err}"
    );
}

#[test]
fn all_published_tasks_load_and_imdb_chunking_train_names_the_fix() {
    let root = common::mceval8k();
    let reg = TaskRegistry::builtin();
    let mut with_train = 0;
    for task in reg.tasks() {
        let data = Dataset::load(&DataSource::Dir(root.clone()), task)
            .unwrap_or_else(|e| panic!("{}: {e}", task.name));
        for split in [Split::Valid, Split::Test] {
            assert!(
                !data.split(split).unwrap().is_empty(),
                "{} {split}",
                task.name
            );
        }
        match data.split(Split::Train) {
            Ok(train) => {
                with_train += 1;
                assert!(train.len() >= 3000, "{}: {}", task.name, train.len());
                assert!(!["imdb", "chunking"].contains(&task.name));
            }
            Err(e) => {
                assert!(
                    ["imdb", "chunking"].contains(&task.name),
                    "{}: {e}",
                    task.name
                );
                let msg = e.to_string();
                assert!(msg.contains("resplit") && msg.contains("train"), "{msg}");
                if task.name == "chunking" {
                    assert!(msg.contains("build"), "{msg}");
                }
            }
        }
        // Every answer index is in range and every answer occurs in test.
        let labels = data.labels(Split::Test).unwrap();
        let counts = mceval::audit::answer_counts(&labels, task.n_options());
        assert!(counts.iter().all(|&c| c > 0), "{}: {counts:?}", task.name);
    }
    assert_eq!(with_train, 20);
}

#[test]
fn audit_matches_the_documented_defects() {
    let audits = audit(&common::mceval8k()).unwrap();
    assert_eq!(audits.len(), 22);
    let get = |name: &str| audits.iter().find(|a| a.task == name).unwrap();
    // test entirely contained in train
    for t in [
        "amazon-reviews",
        "myriadlama",
        "templama",
        "clang8",
        "paws",
        "halueval",
        "mpostag",
    ] {
        let o = get(t).overlap(Split::Test, Split::Train).unwrap();
        assert!(o.contained && o.first_in_second == 1000, "{t}: {o:?}");
    }
    let ner = get("ner");
    let o = ner.overlap(Split::Test, Split::Train).unwrap();
    assert_eq!(
        (o.shared_unique, ner.split(Split::Test).unwrap().records),
        (998, 1000)
    );
    assert_eq!(ner.split(Split::Test).unwrap().duplicates, 2);
    let arm = get("amazon-review-multi")
        .overlap(Split::Test, Split::Train)
        .unwrap();
    assert_eq!(arm.shared_unique, 199);
    assert!(!arm.contained);
    // valid == test for 11 tasks, and only those
    let identical: Vec<&str> = audits
        .iter()
        .filter(|a| {
            a.overlap(Split::Valid, Split::Test)
                .is_some_and(|o| o.identical)
        })
        .map(|a| a.task.as_str())
        .collect();
    let mut expected = vec![
        "amazon-reviews",
        "myriadlama",
        "templama",
        "clang8",
        "ner",
        "paws",
        "halueval",
        "mpostag",
        "chunking",
        "fever",
        "swag",
    ];
    let mut got = identical.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    // valid contained in train
    for t in ["agnews", "commensenseqa", "toxicity", "lti"] {
        assert!(
            get(t)
                .overlap(Split::Valid, Split::Train)
                .unwrap()
                .contained,
            "{t}"
        );
    }
    // fever's test has 934 unique items
    let fever = get("fever").split(Split::Test).unwrap().clone();
    assert_eq!(
        (fever.records, fever.unique, fever.duplicates),
        (1000, 934, 66)
    );
    // mnli valid and test share 999 records
    assert_eq!(
        get("mnli")
            .overlap(Split::Valid, Split::Test)
            .unwrap()
            .shared_unique,
        999
    );
    // clean tasks
    for t in ["postag", "mlama", "xnli", "stereoset"] {
        assert!(get(t).is_leak_free(), "{t}: {:?}", get(t));
    }
    for t in ["imdb", "chunking"] {
        assert_eq!(get(t).missing, vec!["train".to_string()]);
    }
}

#[test]
fn multilingual_tasks_cover_five_languages() {
    let reg = TaskRegistry::builtin();
    for name in ["amazon-review-multi", "lti", "mlama", "xnli", "mpostag"] {
        let data =
            Dataset::load(&DataSource::Dir(common::mceval8k()), reg.get(name).unwrap()).unwrap();
        let langs = mceval::audit::language_counts(data.split(Split::Train).unwrap());
        let mut keys: Vec<_> = langs.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["de", "en", "es", "fr", "zh"], "{name}");
    }
}

#[test]
fn every_published_file_round_trips_byte_for_byte() {
    // The published files were written by pandas (indent 1, `\/`, ASCII escapes); reading and
    // writing them again must reproduce every byte, so built tasks look exactly the same.
    let reg = TaskRegistry::builtin();
    let mut files = 0;
    for task in reg.tasks() {
        for split in Split::ALL {
            let path = common::mceval8k()
                .join(task.rel_dir())
                .join(format!("{split}.json"));
            if !path.exists() {
                continue;
            }
            let original = std::fs::read_to_string(&path).unwrap();
            let recs = mceval::read_json_records(&path).unwrap();
            let again = mceval::record::to_published_json(&recs).unwrap();
            if again != original {
                let at = again
                    .bytes()
                    .zip(original.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                panic!(
                    "{} differs at byte {at}: ours {:?} vs published {:?}",
                    path.display(),
                    &again[at.saturating_sub(40)..(at + 40).min(again.len())],
                    &original[at.saturating_sub(40)..(at + 40).min(original.len())]
                );
            }
            files += 1;
        }
    }
    assert_eq!(files, 64);
}
