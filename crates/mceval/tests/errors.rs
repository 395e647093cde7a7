//! Bad input: every error names the file, the record index and the field (or the value).
mod common;

use std::path::Path;

use mceval::{DataSource, Dataset, Error, Split, TaskRegistry, TemplateSet};

fn load_test(root: &Path, task: &str, body: &str) -> Result<Dataset, Error> {
    let spec = TaskRegistry::builtin().get(task).unwrap();
    let dir = root.join(spec.rel_dir());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("test.json"), body).unwrap();
    Dataset::load(&DataSource::Dir(root.into()), spec)
}

#[test]
fn missing_field_names_file_index_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let e = load_test(
        tmp.path(),
        "agnews",
        r#"[{"text":"a","label":0},{"text":"b"}]"#,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::MissingField { index: 1, .. }), "{e:?}");
    assert!(
        msg.contains("classification/agnews/test.json")
            && msg.contains("record 1")
            && msg.contains("`label`"),
        "{msg}"
    );
}

#[test]
fn unknown_label_names_file_index_field_and_value() {
    let tmp = tempfile::tempdir().unwrap();
    for (task, body, field, value) in [
        (
            "agnews",
            r#"[{"text":"a","label":0},{"text":"b","label":1},{"text":"c","label":7}]"#,
            "label",
            "7",
        ),
        (
            "amazon-reviews",
            r#"[{"text":"a","label":6.0}]"#,
            "label",
            "6.0",
        ),
        (
            "lti",
            r#"[{"text":"a","lang":"en"},{"text":"b","lang":"ja"}]"#,
            "lang",
            "\"ja\"",
        ),
        (
            "postag",
            r#"[{"text":"a","tokens":["a"],"target_token":"a","options":["NOUN"],"label":0}]"#,
            "options",
            "1 options",
        ),
    ] {
        let msg = load_test(tmp.path(), task, body).unwrap_err().to_string();
        assert!(
            msg.contains("test.json") && msg.contains(&format!("`{field}`")) && msg.contains(value),
            "{task}: {msg}"
        );
        assert!(msg.contains("record "), "{msg}");
    }
}

#[test]
fn empty_and_malformed_files() {
    let tmp = tempfile::tempdir().unwrap();
    for body in ["", "  \n", "[]"] {
        let e = load_test(tmp.path(), "fever", body).unwrap_err();
        assert!(matches!(e, Error::Empty { .. }), "{body:?}: {e:?}");
        assert!(e.to_string().contains("fact/fever/test.json"), "{e}");
    }
    let msg = load_test(
        tmp.path(),
        "fever",
        "[{\"claim\": \"x\", \"label\": 1},\n {\"claim\": ",
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("fever/test.json") && msg.contains("malformed JSON") && msg.contains("line 2"),
        "{msg}"
    );
    let msg = load_test(tmp.path(), "fever", r#"[{"claim":"x","label":1}, 5]"#)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("record 1") && msg.contains("expected an object"),
        "{msg}"
    );
    let msg = load_test(tmp.path(), "fever", r#"{"claim":"x"}"#)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("malformed JSON"), "{msg}");
}

#[test]
fn unknown_task_and_missing_data() {
    let err = TaskRegistry::builtin()
        .get("agnewz")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`agnewz`") && err.contains("valid tasks") && err.contains("agnews"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let spec = TaskRegistry::builtin().get("swag").unwrap();
    let err = Dataset::load(&DataSource::Dir(tmp.path().into()), spec)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nli/swag"), "{err}");
    let err = mceval::audit(tmp.path()).unwrap_err().to_string();
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
}

#[test]
fn rendering_errors_name_the_record() {
    // The registry accepts null text (the published clang8 has some), the template renders
    // it as Python's `None`; a record missing a field the template needs is named.
    let tmp = tempfile::tempdir().unwrap();
    let data = load_test(
        tmp.path(),
        "clang8",
        r#"[{"sentence1":null,"sentence2":"b","acceptable":1}]"#,
    )
    .unwrap();
    let spec = TaskRegistry::builtin().get("clang8").unwrap();
    let t = TemplateSet::from_file(&common::templates_json()).unwrap();
    let items = t
        .render(spec, &data, Split::Test, mceval::Shots::Zero, None)
        .unwrap();
    assert!(
        items[0].prompt.contains("a.None\nb.b"),
        "{}",
        items[0].prompt
    );
    let err = t
        .render(
            spec,
            &data,
            Split::Test,
            mceval::Shots::Few { seed: 1 },
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no train split") && err.contains("resplit"),
        "{err}"
    );
}

#[test]
fn bad_template_files_and_other_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("t.json");
    std::fs::write(&p, r#"{"tasks": {"agnews": {"prompt_language": "en"}}}"#).unwrap();
    let err = TemplateSet::from_file(&p).unwrap_err().to_string();
    assert!(
        err.contains("t.json") && err.contains("label_field"),
        "{err}"
    );
    std::fs::write(&p, "").unwrap();
    assert!(matches!(
        TemplateSet::from_file(&p),
        Err(Error::Empty { .. })
    ));
    // JSONL: the failing line is named.
    let jl = tmp.path().join("r.jsonl");
    std::fs::write(&jl, "{\"a\":1}\n\n{\"a\":\n").unwrap();
    let err = mceval::read_jsonl_records(&jl).unwrap_err().to_string();
    assert!(
        err.contains("r.jsonl") && err.contains("line 3") && err.contains("record 1"),
        "{err}"
    );
    // CSV: quoted fields, and a short row is named.
    let csv = tmp.path().join("r.csv");
    std::fs::write(&csv, "text,label\n\"a, \"\"quoted\"\"\nline\",1\nb,0\n").unwrap();
    let recs = mceval::read_csv_records(&csv).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(
        recs[0].get("text").unwrap().as_str().unwrap(),
        "a, \"quoted\"\nline"
    );
    std::fs::write(&csv, "text,label\nx\n").unwrap();
    let err = mceval::read_csv_records(&csv).unwrap_err().to_string();
    assert!(err.contains("r.csv") && err.contains("record 0"), "{err}");
}
