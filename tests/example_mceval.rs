//! The `neg mceval` commands, parsed by the `neg` command line and run in process through
//! `neg_rs::commands::mceval::run`.
use clap::Parser;
use neg_rs::cli::{Cli, Command};
use neg_rs::commands::mceval as mceval_cmd;

mod common;
use common::shared;

fn run(args: &[&str]) -> anyhow::Result<String> {
    let cli = Cli::try_parse_from(["neg", "mceval"].into_iter().chain(args.iter().copied()))?;
    let Command::Mceval(args) = cli.command else {
        unreachable!("parsed as neg mceval")
    };
    let mut out = Vec::new();
    mceval_cmd::run(&args, &mut out)?;
    Ok(String::from_utf8(out)?)
}

#[test]
fn audit_prints_defects_and_writes_json() {
    let data = shared("data/mceval8k");
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("audit.json");
    let text = run(&[
        "audit",
        "--data",
        data.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(text.lines().count(), 22);
    let ner = text.lines().find(|l| l.starts_with("ner ")).unwrap();
    assert!(
        ner.contains("test~train 998 (contained)") && ner.contains("valid~test 998 (identical)"),
        "{ner}"
    );
    assert!(text
        .lines()
        .find(|l| l.starts_with("imdb "))
        .unwrap()
        .contains("missing: train"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 22);
}

#[test]
fn render_reproduces_published_prompts_as_json_lines() {
    let root = shared("data/mceval8k");
    let t = root.join("templates.json");
    let args = |shots: &'static str| {
        vec![
            "render",
            "--data",
            root.to_str().unwrap(),
            "--task",
            "fever",
            "--split",
            "test",
            "--shots",
            shots,
            "--templates",
            t.to_str().unwrap(),
            "--limit",
            "2",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let zero = run(&args("0").iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let lines: Vec<serde_json::Value> = zero
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let first = &lines[0];
    assert!(first["prompt"]
        .as_str()
        .unwrap()
        .starts_with("### Instruction: Given the factual claim"));
    assert!(first["prompt"]
        .as_str()
        .unwrap()
        .ends_with("### Validity (True or False):"));
    assert_eq!(first["options"], serde_json::json!(["False", "True"]));
    let few = run(&args("few").iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let f: serde_json::Value = serde_json::from_str(few.lines().next().unwrap()).unwrap();
    assert!(f["prompt"]
        .as_str()
        .unwrap()
        .contains("(True or False):False\n\n"));
}

#[test]
fn build_and_resplit_write_loadable_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("built");
    let text = run(&[
        "build",
        "--sources",
        shared("data/sources").to_str().unwrap(),
        "--task",
        "chunking",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "1",
    ])
    .unwrap();
    assert_eq!(text.lines().count(), 3);
    let re = tmp.path().join("re");
    let text = run(&[
        "resplit",
        "--data",
        out.to_str().unwrap(),
        "--out",
        re.to_str().unwrap(),
        "--seed",
        "2",
    ])
    .unwrap();
    assert!(text.starts_with("chunking"), "{text}");
    let audit = mceval::audit(&re).unwrap();
    assert!(audit[0].is_leak_free());
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared("data/mceval8k");
    let err = run(&[
        "render",
        "--data",
        data.to_str().unwrap(),
        "--task",
        "nope",
        "--split",
        "test",
        "--shots",
        "0",
        "--limit",
        "1",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("unknown task `nope`"));
    let err = run(&[
        "render",
        "--data",
        data.to_str().unwrap(),
        "--task",
        "paws",
        "--split",
        "test",
        "--shots",
        "many",
        "--limit",
        "1",
    ])
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("0, few or a number k, not `many`"),
        "{err:#}"
    );
    let err = run(&[
        "render",
        "--data",
        data.to_str().unwrap(),
        "--task",
        "imdb",
        "--split",
        "test",
        "--shots",
        "few",
        "--limit",
        "1",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("resplit"), "{err:#}");
    // A corrupt task among good ones: resplit fails before writing anything.
    let bad = tmp.path().join("bad");
    let task_dir = bad.join("nli/swag");
    std::fs::create_dir_all(&task_dir).unwrap();
    std::fs::copy(data.join("fact/fever/test.json"), bad.join("x.json")).ok();
    std::fs::create_dir_all(bad.join("fact/fever")).unwrap();
    std::fs::copy(
        data.join("fact/fever/test.json"),
        bad.join("fact/fever/test.json"),
    )
    .unwrap();
    std::fs::write(task_dir.join("test.json"), "[{\"text\": 1}").unwrap();
    let out = tmp.path().join("out");
    let err = run(&[
        "resplit",
        "--data",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "1",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("nli/swag/test.json"), "{err:#}");
    assert!(!out.exists(), "partial output written");
    assert!(Cli::try_parse_from(["neg", "mceval", "render", "--data", "x"]).is_err());
}

/// `--data hub:<repo>[@<rev>]` goes through `DataSource::Hub`, offline from a temporary
/// HF_HOME cache laid out like the hub's. This test sets HF_HOME for the whole process; no
/// other test in this file reads it.
#[test]
fn hub_data_reads_the_hf_home_cache_offline() {
    let root = shared("data/mceval8k");
    let templates = root.join("templates.json");
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/datasets--iszhaoxin--MCEval8K");
    let main = "0123456789abcdef0123456789abcdef01234567";
    let v1 = "89abcdef0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), main).unwrap();
    std::fs::write(repo.join("refs/v1"), v1).unwrap();
    // main: paws and fever as published. v1: paws with a 2-record test split.
    let snapshot = repo.join("snapshots").join(main);
    for rel in ["nli/paws", "fact/fever"] {
        std::fs::create_dir_all(snapshot.join(rel)).unwrap();
        for s in ["train", "valid", "test"] {
            let file = format!("{rel}/{s}.json");
            std::fs::copy(root.join(&file), snapshot.join(&file)).unwrap();
        }
    }
    let paws_v1 = repo.join("snapshots").join(v1).join("nli/paws");
    std::fs::create_dir_all(&paws_v1).unwrap();
    std::fs::copy(root.join("nli/paws/train.json"), paws_v1.join("train.json")).unwrap();
    let test: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(root.join("nli/paws/test.json")).unwrap())
            .unwrap();
    std::fs::write(
        paws_v1.join("test.json"),
        serde_json::to_string(&test[..2]).unwrap(),
    )
    .unwrap();
    std::env::set_var("HF_HOME", home.path());

    let render = |data: &str, task: &str, shots: &str| {
        run(&[
            "render",
            "--data",
            data,
            "--task",
            task,
            "--split",
            "test",
            "--shots",
            shots,
            "--templates",
            templates.to_str().unwrap(),
            "--limit",
            "3",
        ])
    };
    let local = snapshot.to_str().unwrap();
    // A 5-shot PAWS prompt from the hub is the local directory's, with 5 demonstrations.
    let from_dir = render(local, "paws", "5").unwrap();
    let from_hub = render("hub:iszhaoxin/MCEval8K", "paws", "5").unwrap();
    assert_eq!(from_hub, from_dir);
    assert_eq!(from_hub.lines().count(), 3);
    let first: serde_json::Value = serde_json::from_str(from_hub.lines().next().unwrap()).unwrap();
    let prompt = first["prompt"].as_str().unwrap();
    assert_eq!(prompt.split("\n\n").count(), 7, "{prompt}");
    assert_eq!(
        render("hub:iszhaoxin/MCEval8K@main", "paws", "5").unwrap(),
        from_dir
    );
    // Another branch reads its own snapshot; a commit id needs no ref file.
    let v = render("hub:iszhaoxin/MCEval8K@v1", "paws", "0").unwrap();
    assert_eq!(v.lines().count(), 2, "{v}");
    let by_commit = render(&format!("hub:iszhaoxin/MCEval8K@{main}"), "paws", "0").unwrap();
    assert_eq!(by_commit, render(local, "paws", "0").unwrap());

    // audit and resplit see the tasks in the cache, as from a directory.
    let audit = run(&["audit", "--data", "hub:iszhaoxin/MCEval8K"]).unwrap();
    assert_eq!(audit, run(&["audit", "--data", local]).unwrap());
    assert_eq!(audit.lines().count(), 2, "{audit}");
    assert!(
        audit.contains("paws") && audit.contains("valid~test 1000 (identical)"),
        "{audit}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let re = tmp.path().join("re");
    let text = run(&[
        "resplit",
        "--data",
        "hub:iszhaoxin/MCEval8K",
        "--out",
        re.to_str().unwrap(),
        "--seed",
        "1",
    ])
    .unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    let audits = mceval::audit(&re).unwrap();
    assert_eq!(audits.len(), 2);
    assert!(audits.iter().all(|a| a.is_leak_free()));

    // Offline, a task or repository absent from the cache is an error naming where it looked.
    let err = render("hub:iszhaoxin/MCEval8K", "swag", "0").unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("iszhaoxin/MCEval8K") && err.contains("nli/swag"),
        "{err}"
    );
    let err = run(&["audit", "--data", "hub:someone/else@dev"]).unwrap_err();
    assert!(
        format!("{err:#}").contains("no MCEval8K task found in hub:someone/else@dev"),
        "{err:#}"
    );
    // Only PAWS takes k-shot prompts other than 0 and one demo per answer.
    let err = render("hub:iszhaoxin/MCEval8K", "fever", "3").unwrap_err();
    assert!(format!("{err:#}").contains("k_shot_rule"), "{err:#}");
    assert_eq!(
        render("hub:iszhaoxin/MCEval8K", "fever", "2").unwrap(),
        render(local, "fever", "few").unwrap()
    );
    // Malformed hub specs are argument errors that show the expected form.
    for bad in [
        "hub:",
        "hub:MCEval8K",
        "hub:iszhaoxin/MCEval8K@",
        "hub:a/b/c",
    ] {
        let err = Cli::try_parse_from(["neg", "mceval", "audit", "--data", bad]).unwrap_err();
        assert!(
            err.to_string().contains("hub:<owner>/<name>[@<revision>]"),
            "{bad}: {err}"
        );
    }
}
