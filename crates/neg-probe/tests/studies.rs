//! The §6 studies on planted tasks.
use neg_probe::studies::*;
use neg_probe::synthetic::{Planted, PlantedConfig};
use neg_probe::*;

fn planted(seed: u64, skill_seed: u64, n_options: usize) -> Planted {
    Planted::generate(&PlantedConfig {
        n_prompts: 1200,
        n_options,
        n_neurons: 256,
        n_skill: 16,
        strength: 0.8,
        label_noise: 0.1,
        seed,
        skill_seed,
    })
    .unwrap()
}

#[test]
fn accuracy_grows_with_training_size() {
    // Weak neurons: a few prompts cannot tell them from noise.
    let t = Planted::generate(&PlantedConfig {
        n_prompts: 1200,
        n_options: 4,
        n_neurons: 1000,
        n_skill: 32,
        strength: 0.3,
        label_noise: 0.1,
        seed: 1,
        skill_seed: 1,
    })
    .unwrap();
    let make = || Box::new(MagnProbe::new(None)) as Box<dyn Probe>;
    let points = accuracy_vs_train_size(&make, &t.data, &[4, 32, 900], 0).unwrap();
    assert_eq!(
        points.iter().map(|p| p.n_train).collect::<Vec<_>>(),
        vec![4, 32, 900]
    );
    assert_eq!(points[2].evaluation.n_train, 900);
    let (small, large) = (
        points[0].evaluation.test_accuracy,
        points[2].evaluation.test_accuracy,
    );
    assert!(
        large > small + 0.1,
        "4 prompts: {small}, 900 prompts: {large}"
    );
    let json = serde_json::to_string(&points).unwrap();
    assert!(json.contains("\"n_train\":900"));
    let err = accuracy_vs_train_size(&make, &t.data, &[901], 0).unwrap_err();
    assert!(err.to_string().contains("901"), "{err}");
}

#[test]
fn robustness_is_high_for_the_same_skill_and_low_for_another() {
    let a = planted(10, 7, 2);
    let b = planted(11, 7, 2); // same skill neurons, new prompts and noise
    let c = planted(12, 8, 2); // other skill neurons
    let make = || Box::new(MagnProbe::new(None)) as Box<dyn Probe>;
    let m = robustness(
        &make,
        &[("a", &a.data), ("b", &b.data), ("c", &c.data)],
        Some(16),
    )
    .unwrap();
    assert_eq!(m.cells.len(), 9);
    assert_eq!(m.chance, 0.5);
    assert_eq!(m.neuron_counts, vec![Some(16); 3]);
    let cell = |s: &str, t: &str| {
        m.cells
            .iter()
            .find(|c| c.source == s && c.target == t)
            .unwrap()
            .clone()
    };
    assert_eq!(cell("a", "a").ratio, Some(1.0));
    let ab = cell("a", "b").ratio.unwrap();
    let ac = cell("a", "c").ratio.unwrap();
    assert!(ab > 0.85, "same skill: {ab}");
    assert!(ac < 0.3, "other skill: {ac}");
    let other = planted(13, 7, 3);
    let err = robustness(&make, &[("a", &a.data), ("x", &other.data)], Some(16)).unwrap_err();
    assert!(
        matches!(err, ProbeError::Incompatible { .. }) && err.to_string().contains("`x`"),
        "{err}"
    );
}

#[test]
fn windows_down_the_ranking_lose_accuracy() {
    let t = planted(20, 20, 2);
    let s = substitutability(&mut MagnProbe::new(None), &t.data, 16, None).unwrap();
    assert_eq!(s.windows.len(), 16);
    assert_eq!(s.windows[1].start_rank, 16);
    let first = s.windows[0].test_accuracy;
    let last = s.windows.last().unwrap().test_accuracy;
    assert!(first > 0.8, "best window {first}");
    assert!(last < 0.65, "last window {last}");
    let few = substitutability(&mut PolarProbe::new(None), &t.data, 16, Some(4)).unwrap();
    assert_eq!(
        few.windows.iter().map(|w| w.start_rank).collect::<Vec<_>>(),
        vec![0, 80, 160, 240]
    );
    assert!(matches!(
        substitutability(&mut MagnProbe::new(None), &t.data, 257, None),
        Err(ProbeError::TooManyNeurons {
            k: 257,
            n_neurons: 256
        })
    ));
}

#[test]
fn tree_shape_sweep_covers_the_paper_grid() {
    let t = planted(30, 30, 2);
    let points = tree_shape_sweep(
        &t.data,
        NeuronSubset::TopAgreement(64),
        &ForestConfig::default(),
        12,
    )
    .unwrap();
    assert_eq!(points.len(), 66);
    assert!(points
        .iter()
        .all(|p| p.log2_trees + p.log2_depth < 12 && p.log2_depth >= 1));
    let best = points.iter().map(|p| p.test_accuracy).fold(0.0, f64::max);
    let bound = t.attainable_accuracy(&t.data.split_view(Split::Test));
    assert!(
        best >= bound - 0.05,
        "best shape {best} vs attainable {bound}"
    );
    let one_stump = points
        .iter()
        .find(|p| p.log2_trees == 0 && p.log2_depth == 1)
        .unwrap();
    assert!(
        one_stump.test_accuracy < best,
        "a single depth-2 tree should not be the best shape"
    );
}
