//! Prompt rendering against the published templates (character for character, checked by an
//! independent Python renderer written from templates.json's own description) and with the
//! built-in templates.
mod common;

use std::process::Command;

use mceval::{
    check_single_token, resplit, DataSource, Dataset, Shots, Split, TaskRegistry, TemplateSet,
};
use serde_json::Value;

const N: usize = 150;

#[test]
fn every_task_matches_the_python_reference_zero_and_few_shot() {
    let out = Command::new(common::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/reference_render.py"
        ))
        .arg(common::templates_json())
        .arg(common::mceval8k())
        .arg(N.to_string())
        .output()
        .expect("run reference_render.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Value = serde_json::from_slice(&out.stdout).unwrap();
    let templates = TemplateSet::from_file(&common::templates_json()).unwrap();
    let reg = TaskRegistry::builtin();
    let mut few_checked = 0;
    let mut k_checked = Vec::new();
    for task in reg.tasks() {
        let data = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
        let r = &reference[task.name];
        let zero = templates
            .render(task, &data, Split::Test, Shots::Zero, Some(N))
            .unwrap();
        assert_eq!(zero.len(), N);
        assert_eq!(r["zero"].as_array().unwrap().len(), N, "{}", task.name);
        for (item, want) in zero.iter().zip(r["zero"].as_array().unwrap()) {
            assert_eq!(
                item.prompt,
                want["prompt"].as_str().unwrap(),
                "{} zero-shot #{}",
                task.name,
                item.index
            );
            assert_eq!(
                item.answer(),
                want["answer"].as_str().unwrap(),
                "{} answer #{}",
                task.name,
                item.index
            );
            // The registry's label rule agrees with the template's.
            let rec = &data.split(Split::Test).unwrap()[item.index];
            assert_eq!(task.label_of(rec).unwrap(), item.label, "{}", task.name);
        }
        // '<k>-shot' prompts with k other than 0 and the number of answers (PAWS' k_shot_rule).
        if let Some(by_k) = r["k_shot"].as_object() {
            assert!(by_k.len() >= 4, "{}", task.name);
            for (k, prompts) in by_k {
                let k: usize = k.parse().unwrap();
                let shots = templates.k_shot(task, k, task.seed).unwrap();
                assert_eq!(shots, Shots::FirstK { k, seed: 42 }, "{}", task.name);
                let items = templates
                    .render(task, &data, Split::Test, shots, Some(N))
                    .unwrap();
                let prompts = prompts.as_array().unwrap();
                assert_eq!(prompts.len(), N);
                for (item, want) in items.iter().zip(prompts) {
                    assert_eq!(
                        item.prompt,
                        want.as_str().unwrap(),
                        "{} {k}-shot #{}",
                        task.name,
                        item.index
                    );
                }
            }
            k_checked.push(task.name);
        }
        match r["few"].as_array() {
            Some(few_ref) => {
                assert_eq!(few_ref.len(), N, "{}", task.name);
                let few = templates
                    .render(task, &data, Split::Test, Shots::Published, Some(N))
                    .unwrap();
                for (item, want) in few.iter().zip(few_ref) {
                    assert_eq!(
                        item.prompt,
                        want.as_str().unwrap(),
                        "{} few-shot #{}",
                        task.name,
                        item.index
                    );
                }
                few_checked += 1;
            }
            None => {
                // imdb and chunking: no published train, so no published demos.
                let err = templates
                    .render(task, &data, Split::Test, Shots::Published, Some(1))
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("train"), "{err}");
            }
        }
    }
    assert_eq!(few_checked, 20);
    assert_eq!(k_checked, vec!["paws"], "tasks with a k_shot_rule");
}

#[test]
fn published_quirks_are_reproduced() {
    let templates = TemplateSet::from_file(&common::templates_json()).unwrap();
    let reg = TaskRegistry::builtin();
    let load = |name: &str| {
        let task = reg.get(name).unwrap();
        (
            task,
            Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap(),
        )
    };
    // LTI letters its options a, b, a, a, a.
    let (task, data) = load("lti");
    let item = &templates
        .render(task, &data, Split::Test, Shots::Zero, Some(1))
        .unwrap()[0];
    assert!(item
        .prompt
        .contains("a.English\nb.French\na.German\na.Chinese\na.Spanish\n### Answer:"));
    // Multilingual prompts follow the record's language (mLAMA zh header swap).
    let (task, data) = load("mlama");
    let items = templates
        .render(task, &data, Split::Test, Shots::Published, None)
        .unwrap();
    let zh = items
        .iter()
        .find(|i| i.lang.as_deref() == Some("zh"))
        .unwrap();
    assert!(zh.prompt.starts_with("### 指令："), "{}", zh.prompt);
    assert!(zh.prompt.ends_with("### 问题:"));
    // Its demos are Chinese too: 4 demos + the question = 5 question headers.
    assert_eq!(zh.prompt.matches("### 答案:").count(), 5);
    // Few-shot prompts end exactly like the zero-shot ones and carry one demo per answer.
    let (task, data) = load("agnews");
    let z = &templates
        .render(task, &data, Split::Test, Shots::Zero, Some(1))
        .unwrap()[0];
    let f = &templates
        .render(task, &data, Split::Test, Shots::Published, Some(1))
        .unwrap()[0];
    let question = z.prompt.split_once("\n\n").unwrap().1;
    assert!(f.prompt.ends_with(question));
    for a in ["a", "b", "c", "d"] {
        assert!(
            f.prompt.contains(&format!("### Answer:{a}\n\n")),
            "demo for {a}"
        );
    }
}

#[test]
fn published_demos_need_the_published_train_split() {
    let templates = TemplateSet::from_file(&common::templates_json()).unwrap();
    let task = TaskRegistry::builtin().get("agnews").unwrap();
    let data = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
    let other = resplit(&data, 3).unwrap();
    let err = templates
        .render(task, &other, Split::Test, Shots::Published, Some(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("published train"), "{err}");
}

#[test]
fn builtin_templates_render_every_task_with_seeded_demos() {
    let templates = TemplateSet::builtin();
    let published = TemplateSet::from_file(&common::templates_json()).unwrap();
    for task in TaskRegistry::builtin().tasks() {
        let loaded = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
        // imdb/chunking have no train: re-split them first (the documented fix).
        let data = if loaded.has(Split::Train) {
            loaded
        } else {
            resplit(&loaded, 0).unwrap()
        };
        let zero = templates
            .render(task, &data, Split::Test, Shots::Zero, Some(20))
            .unwrap();
        let few1 = templates
            .render(task, &data, Split::Test, Shots::Few { seed: 1 }, Some(20))
            .unwrap();
        let few1b = templates
            .render(task, &data, Split::Test, Shots::Few { seed: 1 }, Some(20))
            .unwrap();
        let few2 = templates
            .render(task, &data, Split::Test, Shots::Few { seed: 2 }, Some(20))
            .unwrap();
        assert_eq!(few1, few1b, "{}: same seed, same prompts", task.name);
        assert_ne!(few1, few2, "{}: another seed draws other demos", task.name);
        let pub_zero = published
            .render(task, &data, Split::Test, Shots::Zero, Some(20))
            .unwrap();
        for ((z, f), p) in zero.iter().zip(&few1).zip(&pub_zero) {
            // Same answers and labels as the published templates, different wording.
            assert_eq!(
                (z.label, &z.options),
                (p.label, &p.options),
                "{}",
                task.name
            );
            assert_ne!(z.prompt, p.prompt, "{}", task.name);
            assert!(
                z.prompt.ends_with(':') || z.prompt.ends_with('：'),
                "{}: {:?}",
                task.name,
                z.prompt
            );
            // One demonstration per answer, each ending with its answer token.
            let demos = f.prompt.len() - z.prompt.len();
            assert!(demos > 0);
            for (a, tok) in f.options.iter().enumerate() {
                let _ = a;
                assert!(
                    f.prompt.contains(&format!(":{tok}\n\n"))
                        || f.prompt.contains(&format!("：{tok}\n\n")),
                    "{}: no demo for {tok}",
                    task.name
                );
            }
        }
    }
}

#[test]
fn single_token_check_names_the_offending_answer() {
    let templates = TemplateSet::builtin();
    let task = TaskRegistry::builtin().get("fever").unwrap();
    let data = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
    let items = templates
        .render(task, &data, Split::Test, Shots::Zero, Some(5))
        .unwrap();
    // A toy tokenizer: one id per character.
    let per_char = |_: &str, answer: &str| -> Result<Vec<u32>, String> {
        Ok(answer.chars().map(|c| c as u32).collect())
    };
    let err = check_single_token(&items, per_char)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`False`") && err.contains("fever"), "{err}");
    // A word-level one passes and returns one id per option.
    let words =
        |_: &str, answer: &str| -> Result<Vec<u32>, String> { Ok(vec![answer.len() as u32]) };
    let ids = check_single_token(&items, words).unwrap();
    assert_eq!(ids[0], vec![5, 4]);
    // Tokenizer errors are reported with the answer too.
    let failing = |_: &str, _: &str| -> Result<Vec<u32>, String> { Err("boom".into()) };
    let err = check_single_token(&items, failing).unwrap_err().to_string();
    assert!(err.contains("boom") && err.contains("False"), "{err}");
}

#[test]
fn single_token_check_with_the_real_stories260k_tokenizer() {
    let path = common::shared().join("models/stories260k/tokenizer.json");
    let tok = tokenizers::Tokenizer::from_file(&path)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    let encode = |_: &str, answer: &str| -> Result<Vec<u32>, String> {
        tok.encode(answer, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    };
    let reg = TaskRegistry::builtin();
    let templates = TemplateSet::from_file(&common::templates_json()).unwrap();
    let render = |name: &str| {
        let task = reg.get(name).unwrap();
        let data = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
        templates
            .render(task, &data, Split::Test, Shots::Zero, Some(3))
            .unwrap()
    };
    // Letters are single tokens in this 512-piece vocabulary ...
    let ids = check_single_token(&render("agnews"), encode).unwrap();
    assert_eq!(ids.len(), 3);
    let distinct: std::collections::HashSet<u32> = ids[0].iter().copied().collect();
    assert_eq!(distinct.len(), 4);
    // ... but "False" is not: the error names the task and the answer.
    let err = check_single_token(&render("fever"), encode)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fever") && err.contains("`False`") && err.contains("tokens"),
        "{err}"
    );
}

#[test]
fn paws_prompt_variants() {
    let templates = TemplateSet::from_file(&common::templates_json()).unwrap();
    let task = TaskRegistry::builtin().get("paws").unwrap();
    let data = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
    let base = templates
        .render(task, &data, Split::Test, Shots::Few { seed: 42 }, Some(2))
        .unwrap();
    let it4 = templates.with_variant(task, "IT4").unwrap();
    let items = it4
        .render(task, &data, Split::Test, Shots::Few { seed: 42 }, Some(2))
        .unwrap();
    let p = &items[0].prompt;
    assert!(
        p.starts_with("### Instruction: You are provided with two sentences."),
        "{p}"
    );
    assert!(p.contains("### Options:\na.The sentences convey different idea.\nb.The sentences convey the same ideas.\n### Answer:a\n\n"), "{p}");
    assert_eq!(items[0].options, ["a", "b"]);
    assert_eq!(items[0].label, base[0].label);
    // IT0 is the default prompt.
    let it0 = templates.with_variant(task, "IT0").unwrap();
    assert_eq!(
        it0.render(task, &data, Split::Test, Shots::Few { seed: 42 }, Some(2))
            .unwrap(),
        base
    );
    let err = templates.with_variant(task, "IT9").unwrap_err().to_string();
    assert!(err.contains("IT9") && err.contains("IT1"), "{err}");
}

/// The published `'<k>-shot'` prompt types: PAWS takes any k (first k of the twice-shuffled
/// train); 0 and k = 2 are the zero-shot and label-balanced prompts; other tasks take only
/// 0 or one shot per answer.
#[test]
fn paws_k_shot_follows_the_published_rule() {
    let text = std::fs::read_to_string(common::templates_json()).unwrap();
    let raw: Value = serde_json::from_str(&text).unwrap();
    let head: Vec<usize> = raw["tasks"]["paws"]["k_shot_train_order_head"]
        .as_array()
        .expect("templates.json lists paws' k_shot_train_order_head")
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(head.len(), 16);
    let templates = TemplateSet::from_file(&common::templates_json()).unwrap();
    let reg = TaskRegistry::builtin();
    let task = reg.get("paws").unwrap();
    let data = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
    let train = data.split(Split::Train).unwrap();
    let render = |shots| {
        templates
            .render(task, &data, Split::Test, shots, Some(3))
            .unwrap()
    };

    // 16 demos: the train records the published order head lists, in that order, each with
    // its own answer (not one per answer).
    let shots = templates.k_shot(task, 16, task.seed).unwrap();
    let items = render(shots);
    let parts: Vec<&str> = items[0].prompt.split("\n\n").collect();
    assert_eq!(parts.len(), 18, "instruction + 16 demos + question");
    let mut answers = std::collections::BTreeSet::new();
    for (demo, &i) in parts[1..17].iter().zip(&head) {
        let rec = &train[i];
        let s1 = rec.get("sentence1").unwrap().as_str().unwrap();
        assert!(
            demo.starts_with(&format!("### Sentence 1:{s1}\n")),
            "{demo} is not train #{i}"
        );
        let answer = ["no", "yes"][task.label_of(rec).unwrap()];
        assert!(demo.ends_with(&format!("### Answer:{answer}")), "{demo}");
        answers.insert(demo.rsplit(':').next().unwrap().to_string());
    }
    assert_eq!(answers.len(), 2);
    // Every evaluated record shares the demo block and ends with its own question.
    let zero = render(Shots::Zero);
    for (f, z) in items.iter().zip(&zero) {
        assert!(f.prompt.starts_with(&parts[..17].join("\n\n")));
        assert!(f.prompt.ends_with(z.prompt.split_once("\n\n").unwrap().1));
        assert_eq!((f.label, &f.options), (z.label, &z.options));
    }
    // A shorter k is a prefix of the same order.
    let three = render(Shots::FirstK { k: 3, seed: 42 });
    assert!(three[0]
        .prompt
        .starts_with(&format!("{}\n\n", parts[..4].join("\n\n"))));
    assert_eq!(three[0].prompt.split("\n\n").count(), 5);
    // Another load seed reorders the first shuffle.
    let other = render(Shots::FirstK { k: 3, seed: 7 });
    assert_ne!(other[0].prompt, three[0].prompt);

    // k = 0 and k = 2 are the zero-shot and the published (label-balanced) prompts.
    assert_eq!(templates.k_shot(task, 0, 42).unwrap(), Shots::Zero);
    assert_eq!(render(Shots::FirstK { k: 0, seed: 42 }), zero);
    let two = templates.k_shot(task, 2, 42).unwrap();
    assert_eq!(two, Shots::Few { seed: 42 });
    assert_eq!(render(two), render(Shots::Published));

    // Prompt variants take the same demo records with the variant's wording and answers.
    let it1 = templates.with_variant(task, "IT1").unwrap();
    let v = &it1
        .render(
            task,
            &data,
            Split::Test,
            Shots::FirstK { k: 3, seed: 42 },
            Some(1),
        )
        .unwrap()[0];
    let vparts: Vec<&str> = v.prompt.split("\n\n").collect();
    assert_eq!(vparts.len(), 5);
    for (demo, &i) in vparts[1..4].iter().zip(&head) {
        let letter = ["a", "b"][task.label_of(&train[i]).unwrap()];
        assert!(demo.contains("### Options:\na.not paraphrase\nb.paraphrase\n"));
        assert!(demo.ends_with(&format!("### Answer:{letter}")), "{demo}");
    }

    // More demos than train records: an error naming the counts.
    let err = templates
        .render(
            task,
            &data,
            Split::Test,
            Shots::FirstK { k: 6001, seed: 42 },
            Some(1),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("6001") && err.contains("6000") && err.contains("train.json"),
        "{err}"
    );

    // Other tasks: only 0 or one demo per answer, as the published code.
    let agnews = reg.get("agnews").unwrap();
    assert_eq!(
        templates.k_shot(agnews, 4, 3).unwrap(),
        Shots::Few { seed: 3 }
    );
    let err = templates.k_shot(agnews, 3, 3).unwrap_err().to_string();
    assert!(
        err.contains("agnews") && err.contains("3-shot") && err.contains("0 or 4"),
        "{err}"
    );
    // The built-in wording keeps PAWS' rule.
    assert_eq!(
        TemplateSet::builtin().k_shot(task, 5, 42).unwrap(),
        Shots::FirstK { k: 5, seed: 42 }
    );
}

/// `Shots::FirstK` on a multilingual task takes the first k records of each prompt language.
#[test]
fn first_k_demos_follow_the_record_language() {
    let templates = TemplateSet::from_file(&common::templates_json()).unwrap();
    let task = TaskRegistry::builtin().get("xnli").unwrap();
    let data = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
    let items = templates
        .render(
            task,
            &data,
            Split::Test,
            Shots::FirstK { k: 3, seed: 1 },
            None,
        )
        .unwrap();
    let train = data.split(Split::Train).unwrap();
    let mut langs = std::collections::BTreeSet::new();
    for item in &items {
        let lang = item.lang.as_deref().unwrap();
        langs.insert(lang.to_string());
        let demos: Vec<&str> = item.prompt.split("\n\n").collect();
        assert_eq!(demos.len(), 5, "{lang}: instruction + 3 demos + question");
        for demo in &demos[1..4] {
            // Each demo's premise is a train premise of the same language (zh prompts drop
            // spaces, so compare without them).
            let squeeze = |s: &str| s.replace(' ', "");
            assert!(
                train.iter().any(|r| r.lang() == Some(lang)
                    && squeeze(demo)
                        .contains(&squeeze(r.get("premise").unwrap().as_str().unwrap()))),
                "{lang}: {demo}"
            );
        }
    }
    assert!(langs.len() >= 3, "{langs:?}");
}
