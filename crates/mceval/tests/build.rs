//! Construction of postag, mpostag, chunking and ner from the raw sources.
mod common;

use std::collections::{BTreeMap, HashSet};

use mceval::audit::answer_counts;
use mceval::build::{build, build_fact, iob_spans, FactRule, Sizes};
use mceval::{audit_dataset, DataSource, Dataset, Record, Split, TaskRegistry, TemplateSet};
use serde_json::Value;

fn check(data: &Dataset, gold_of: impl Fn(&Record) -> Vec<String>) {
    let task = data.task();
    let sizes: Vec<usize> = Split::ALL
        .iter()
        .map(|s| data.split(*s).unwrap().len())
        .collect();
    assert_eq!(sizes, [6000, 1000, 1000], "{}", task.name);
    assert!(audit_dataset(data).is_leak_free(), "{}", task.name);
    // Splits come from disjoint sentences.
    let texts: Vec<HashSet<String>> = Split::ALL
        .iter()
        .map(|s| {
            data.split(*s)
                .unwrap()
                .iter()
                .map(|r| r.get("text").unwrap().to_string())
                .collect()
        })
        .collect();
    assert!(
        texts[0].is_disjoint(&texts[2])
            && texts[0].is_disjoint(&texts[1])
            && texts[1].is_disjoint(&texts[2])
    );
    for split in Split::ALL {
        let labels = data.labels(split).unwrap();
        let counts = answer_counts(&labels, 4);
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{} {split}: {counts:?}",
            task.name
        );
        for r in data.split(split).unwrap() {
            let opts: Vec<String> = r
                .get("options")
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            let distinct: HashSet<&String> = opts.iter().collect();
            assert_eq!(distinct.len(), 4, "{}: {opts:?}", task.name);
            let gold = &opts[task.label_of(r).unwrap()];
            assert!(
                gold_of(r).contains(gold),
                "{}: gold {gold} not in {:?}",
                task.name,
                gold_of(r)
            );
        }
    }
}

/// The gold tags of a POS record's target word, recomputed from the UD source.
fn ud_tags(files: &[&str]) -> BTreeMap<(String, String), Vec<String>> {
    let mut m: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for f in files {
        for s in mceval::build::read_conllu(&common::sources().join("ud").join(f)).unwrap() {
            for (t, g) in s.tokens.iter().zip(&s.tags) {
                m.entry((s.text.clone(), t.clone()))
                    .or_default()
                    .push(g.clone());
            }
        }
    }
    m
}

#[test]
fn postag_from_gum_is_balanced_leak_free_and_seeded() {
    let data = build("postag", &common::sources(), 11).unwrap();
    let gold = ud_tags(&["en_gum-ud-dev.conllu", "en_gum-ud-test.conllu"]);
    check(&data, |r| {
        let key = (
            r.get("text").unwrap().as_str().unwrap().to_string(),
            r.get("target_token").unwrap().as_str().unwrap().to_string(),
        );
        gold.get(&key).cloned().unwrap_or_default()
    });
    // Frequency-weighted distractors: NOUN (the most frequent tag) is offered far more often
    // than SYM as a wrong option.
    let mut wrong: BTreeMap<String, usize> = BTreeMap::new();
    for r in data.split(Split::Train).unwrap() {
        let label = data.task().label_of(r).unwrap();
        for (i, o) in r
            .get("options")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            if i != label {
                *wrong.entry(o.as_str().unwrap().into()).or_default() += 1;
            }
        }
    }
    assert!(
        wrong["NOUN"] > 5 * wrong.get("SYM").copied().unwrap_or(0),
        "{wrong:?}"
    );
    let again = build("postag", &common::sources(), 11).unwrap();
    let other = build("postag", &common::sources(), 12).unwrap();
    assert_eq!(
        data.split(Split::Test).unwrap(),
        again.split(Split::Test).unwrap()
    );
    assert_ne!(
        data.split(Split::Test).unwrap(),
        other.split(Split::Test).unwrap()
    );
}

#[test]
fn mpostag_from_pud_has_five_balanced_languages() {
    let data = build("mpostag", &common::sources(), 3).unwrap();
    let files: Vec<String> = mceval::LANGUAGES
        .iter()
        .map(|l| format!("{l}_pud-ud-test.conllu"))
        .collect();
    let gold = ud_tags(&files.iter().map(String::as_str).collect::<Vec<_>>());
    check(&data, |r| {
        let key = (
            r.get("text").unwrap().as_str().unwrap().to_string(),
            r.get("target_token").unwrap().as_str().unwrap().to_string(),
        );
        gold.get(&key).cloned().unwrap_or_default()
    });
    for (split, n) in [
        (Split::Train, 1200),
        (Split::Valid, 200),
        (Split::Test, 200),
    ] {
        let langs = mceval::audit::language_counts(data.split(split).unwrap());
        assert_eq!(langs.len(), 5);
        assert!(langs.values().all(|&c| c == n), "{split}: {langs:?}");
    }
    // Same record shape as the published mpostag (lang last).
    let r = &data.split(Split::Test).unwrap()[0];
    let keys: Vec<&str> = r.fields().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        ["text", "tokens", "target_token", "options", "label", "lang"]
    );
}

#[test]
fn chunking_and_ner_from_conll_restore_train_and_render() {
    for (name, dir, files) in [
        (
            "chunking",
            "conll2000",
            vec!["train.txt", "dev.txt", "test.txt"],
        ),
        (
            "ner",
            "conll2003",
            vec!["eng.train", "eng.testa", "eng.testb"],
        ),
    ] {
        let data = build(name, &common::sources(), 5).unwrap();
        // Gold types of every span, recomputed from the source.
        let mut gold: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for f in files {
            let path = common::sources().join(dir).join(f);
            let sents = if name == "chunking" {
                mceval::build::read_conll2000(&path)
            } else {
                mceval::build::read_conll2003(&path)
            }
            .unwrap();
            for s in sents {
                for (a, b, ty) in iob_spans(&s.tags) {
                    gold.entry((s.text.clone(), s.tokens[a..b].join(" ")))
                        .or_default()
                        .push(ty);
                }
            }
        }
        check(&data, |r| {
            let chunk: Vec<&str> = r
                .get("target_chunk")
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            gold.get(&(
                r.get("text").unwrap().as_str().unwrap().to_string(),
                chunk.join(" "),
            ))
            .cloned()
            .unwrap_or_default()
        });
        // Written in the published layout, it loads like a published task and renders
        // few-shot prompts (chunking's train split is restored).
        let out = tempfile::tempdir().unwrap();
        data.write(out.path()).unwrap();
        let task = TaskRegistry::builtin().get(name).unwrap();
        let back = Dataset::load(&DataSource::Dir(out.path().into()), task).unwrap();
        assert_eq!(back.split(Split::Train).unwrap().len(), 6000);
        let items = TemplateSet::from_file(&common::templates_json())
            .unwrap()
            .render(
                task,
                &back,
                Split::Test,
                mceval::Shots::Few { seed: 100 },
                Some(3),
            )
            .unwrap();
        assert!(
            items[0].prompt.contains("### Target phrase:'"),
            "{}",
            items[0].prompt
        );
    }
}

#[test]
fn iob1_and_iob2_spans() {
    let tags = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    assert_eq!(
        iob_spans(&tags("I-PER I-PER O I-LOC B-LOC")),
        vec![
            (0, 2, "PER".into()),
            (3, 4, "LOC".into()),
            (4, 5, "LOC".into())
        ]
    );
    assert_eq!(
        iob_spans(&tags("B-NP I-NP B-VP I-NP")),
        vec![
            (0, 2, "NP".into()),
            (2, 3, "VP".into()),
            (3, 4, "NP".into())
        ]
    );
}

#[test]
fn unknown_or_unbuildable_tasks_and_missing_sources_are_errors() {
    let err = build("nope", &common::sources(), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown task `nope`"), "{err}");
    let err = build("agnews", &common::sources(), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("postag, mpostag, chunking, ner"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = build("ner", empty.path(), 1).unwrap_err().to_string();
    assert!(err.contains("eng.train"), "{err}");
}

#[test]
fn fact_tasks_use_same_relation_objects_or_years() {
    let reg = TaskRegistry::builtin();
    let mut raw = Vec::new();
    for i in 0..400 {
        let rel = ["capital", "born_in"][i % 2];
        raw.push(
            Record::new()
                .with("sentence", format!("Subject {i} relates to [Y]."))
                .with("obj", format!("{rel}-{}", i % 7))
                .with("rel", rel)
                .with("year", format!("{}", 2009 + i % 12)),
        );
    }
    let sizes = Sizes {
        train: 240,
        valid: 40,
        test: 40,
    };
    let lama = build_fact(
        reg.get("myriadlama").unwrap(),
        &raw,
        ("sentence", "obj", "rel"),
        FactRule::SameRelation,
        sizes,
        1,
    )
    .unwrap();
    for r in lama.split(Split::Train).unwrap() {
        let opts = r.get("options").unwrap().as_array().unwrap();
        let rels: HashSet<&str> = opts
            .iter()
            .map(|o| o.as_str().unwrap().split('-').next().unwrap())
            .collect();
        assert_eq!(rels.len(), 1, "options from one relation: {opts:?}");
    }
    let tl = build_fact(
        reg.get("templama").unwrap(),
        &raw,
        ("sentence", "year", "rel"),
        FactRule::Years,
        sizes,
        1,
    )
    .unwrap();
    for r in tl.split(Split::Test).unwrap() {
        for o in r.get("options").unwrap().as_array().unwrap() {
            let y: u32 = o.as_str().unwrap().parse().unwrap();
            assert!((2009..=2020).contains(&y));
        }
    }
    assert_eq!(tl.split(Split::Valid).unwrap().len(), 40);
    let _ = Value::Null;
}
