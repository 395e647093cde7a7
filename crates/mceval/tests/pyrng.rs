//! The re-implemented NumPy and Python generators against the real ones (`.venv/bin/python`),
//! and the published demonstrations reproduced by seeded few-shot draws.
mod common;

use std::process::Command;

use mceval::pyrng::{numpy_permutation, PyRandom};
use mceval::{DataSource, Dataset, Shots, Split, TaskRegistry, TemplateSet};

fn python(code: &str) -> String {
    let out = Command::new(common::python())
        .arg("-c")
        .arg(code)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn numpy_permutation_and_python_choice_match_the_originals() {
    let cases: [(u64, usize); 6] = [
        (42, 6000),
        (100, 1200),
        (0, 1),
        (7, 2),
        (2024, 5000),
        (5_000_000_000, 37),
    ];
    let code = format!(
        "import numpy as np, random\nfor s, n in {cases:?}:\n    print(' '.join(map(str, np.random.default_rng(s).permutation(n)[:50])))\n    random.seed(s); print(' '.join(str(random.choice(range(m))) for m in (1, 2, 3, 7, 1000, 6000, 123456)))\n"
    );
    let want: Vec<String> = python(&code).lines().map(String::from).collect();
    for (k, (seed, n)) in cases.iter().enumerate() {
        let perm = numpy_permutation(*seed, *n);
        let got: Vec<String> = perm.iter().take(50).map(|x| x.to_string()).collect();
        assert_eq!(
            got.join(" "),
            want[2 * k],
            "numpy permutation seed {seed} n {n}"
        );
        let mut r = PyRandom::new(*seed);
        let got: Vec<String> = [1, 2, 3, 7, 1000, 6000, 123456]
            .iter()
            .map(|m| r.below(*m).to_string())
            .collect();
        assert_eq!(got.join(" "), want[2 * k + 1], "python random seed {seed}");
    }
}

#[test]
fn seeded_few_shot_reproduces_every_published_demo_set() {
    let templates = TemplateSet::from_file(&common::templates_json()).unwrap();
    let mut checked = 0;
    for task in TaskRegistry::builtin().tasks() {
        let data = Dataset::load(&DataSource::Dir(common::mceval8k()), task).unwrap();
        if !data.has(Split::Train) {
            continue;
        }
        let seed = templates.template(task).unwrap().seed.unwrap();
        assert_eq!(seed, task.seed, "{}: registry seed", task.name);
        // All test records, so every language's demo block is compared.
        let published = templates
            .render(task, &data, Split::Test, Shots::Published, None)
            .unwrap();
        let drawn = templates
            .render(task, &data, Split::Test, Shots::Few { seed }, None)
            .unwrap();
        assert_eq!(published, drawn, "{}", task.name);
        checked += 1;
    }
    assert_eq!(checked, 20);
}
