//! Loading through hf-hub from an offline cache laid out like the hub's, found via HF_HOME.
//! One test per process here, because it sets HF_HOME.
mod common;

use mceval::{DataSource, Dataset, HubSource, Split, TaskRegistry};

#[test]
fn loads_offline_from_an_hf_home_cache() {
    let home = tempfile::tempdir().unwrap();
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let repo = home.path().join("hub/datasets--iszhaoxin--MCEval8K");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), rev).unwrap();
    let reg = TaskRegistry::builtin();
    for (name, splits) in [
        ("agnews", &["train", "valid", "test"][..]),
        ("imdb", &["valid", "test"][..]),
    ] {
        let task = reg.get(name).unwrap();
        let dir = repo.join("snapshots").join(rev).join(task.rel_dir());
        std::fs::create_dir_all(&dir).unwrap();
        for s in splits {
            std::fs::copy(
                common::mceval8k()
                    .join(task.rel_dir())
                    .join(format!("{s}.json")),
                dir.join(format!("{s}.json")),
            )
            .unwrap();
        }
    }
    std::env::set_var("HF_HOME", home.path());
    let hub = DataSource::Hub(HubSource::offline());
    let agnews = reg.get("agnews").unwrap();
    let from_hub = Dataset::load(&hub, agnews).unwrap();
    let from_dir = Dataset::load(&DataSource::Dir(common::mceval8k()), agnews).unwrap();
    for s in Split::ALL {
        assert_eq!(from_hub.split(s).unwrap(), from_dir.split(s).unwrap());
    }
    assert!(from_hub.path(Split::Test).unwrap().starts_with(home.path()));
    // A file absent from the repository is a missing split, with the usual fix.
    let imdb = Dataset::load(&hub, reg.get("imdb").unwrap()).unwrap();
    let err = imdb.split(Split::Train).unwrap_err().to_string();
    assert!(err.contains("resplit"), "{err}");
    // A task not in the cache at all, offline: a clear error naming the hub location.
    let err = Dataset::load(&hub, reg.get("swag").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("iszhaoxin/MCEval8K") && err.contains("nli/swag") && err.contains("HF_HOME"),
        "{err}"
    );
    // An explicit cache directory works without HF_HOME too.
    let explicit = DataSource::Hub(HubSource {
        cache_dir: Some(home.path().join("hub")),
        ..HubSource::offline()
    });
    assert_eq!(
        Dataset::load(&explicit, agnews)
            .unwrap()
            .split(Split::Valid)
            .unwrap()
            .len(),
        1000
    );
    // A commit revision is found by its snapshot folder, with no refs/<commit> file (as
    // Python's huggingface_hub lays it out); an unknown commit is not in the cache.
    assert!(!repo.join("refs").join(rev).exists());
    let at = |revision: &str| {
        DataSource::Hub(HubSource {
            revision: revision.into(),
            ..HubSource::offline()
        })
    };
    let by_commit = Dataset::load(&at(rev), agnews).unwrap();
    assert_eq!(
        by_commit.split(Split::Test).unwrap(),
        from_dir.split(Split::Test).unwrap()
    );
    let err = Dataset::load(&at(&"f".repeat(40)), agnews)
        .unwrap_err()
        .to_string();
    assert!(err.contains("iszhaoxin/MCEval8K"), "{err}");
}
