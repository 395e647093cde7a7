//! The `mceval` example's commands, run in-process through its `run` function.
#[allow(dead_code)]
#[path = "../examples/mceval.rs"]
mod example;

use clap::Parser;

mod common;
use common::shared;

fn run(args: &[&str]) -> anyhow::Result<String> {
    let cli = example::Cli::try_parse_from(std::iter::once("mceval").chain(args.iter().copied()))?;
    let mut out = Vec::new();
    example::run(cli, &mut out)?;
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
    assert!(example::Cli::try_parse_from(["mceval", "render", "--data", "x"]).is_err());
}
