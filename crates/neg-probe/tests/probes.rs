//! Probes on synthetic features with planted skill neurons, label permutation invariance and
//! bad input.
use ndarray::{array, Array2, Array3};
use neg_probe::synthetic::{Planted, PlantedConfig};
use neg_probe::*;
use proptest::prelude::*;

fn task(n_options: usize, seed: u64) -> Planted {
    Planted::generate(&PlantedConfig {
        n_prompts: 1200,
        n_options,
        n_neurons: 400,
        n_skill: 24,
        strength: 1.0,
        label_noise: 0.1,
        seed,
        skill_seed: seed,
    })
    .unwrap()
}

/// Fraction of the planted skill neurons among the first `n_skill` ranked neurons.
fn recall_at_skill(task: &Planted, ranked: &[usize]) -> f64 {
    let top = &ranked[..task.skill_neurons.len().min(ranked.len())];
    top.iter()
        .filter(|n| task.skill_neurons.contains(n))
        .count() as f64
        / task.skill_neurons.len() as f64
}

fn check_probe(task: &Planted, probe: &mut dyn Probe, min_recall: f64, slack: f64) -> Evaluation {
    let eval = evaluate(probe, &task.data, None).unwrap();
    let bound = task.attainable_accuracy(&task.data.split_view(Split::Test));
    assert!(
        eval.test_accuracy >= bound - slack,
        "{}: test accuracy {} below attainable {bound} - {slack}",
        eval.probe,
        eval.test_accuracy
    );
    assert!(eval.test_accuracy <= 1.0);
    let recall = recall_at_skill(task, probe.ranked_neurons().unwrap());
    assert!(
        recall >= min_recall,
        "{}: only {recall} of the planted neurons ranked first",
        eval.probe
    );
    eval
}

#[test]
fn vote_probes_find_planted_neurons_binary() {
    let t = task(2, 1);
    let e = check_probe(&t, &mut PolarProbe::new(None), 0.95, 0.04);
    // The chosen count is around the number of skill neurons, not thousands of noise neurons.
    let k = e.selected_neurons.unwrap();
    assert!((4..=128).contains(&k), "polar chose {k} neurons");
    check_probe(&t, &mut MagnProbe::new(None), 0.95, 0.04);
    check_probe(&t, &mut ActProbe::new(None), 0.95, 0.04);
}

#[test]
fn probes_find_planted_neurons_four_options() {
    let t = task(4, 2);
    check_probe(&t, &mut PolarProbe::new(None), 0.95, 0.04);
    check_probe(&t, &mut MagnProbe::new(None), 0.95, 0.04);
    // Act with four options: recursive halves {0,1} | {2,3}; the planted activation is
    // monotone in the answer, so every split is learnable.
    check_probe(&t, &mut ActProbe::new(None), 0.9, 0.06);
    // The forest sees only which option is largest: positive-polarity neurons point at the
    // answer, negative ones at one of the others, so it needs more of them.
    let mut tree = TreeProbe::default();
    let e = evaluate(&mut tree, &t.data, None).unwrap();
    let bound = t.attainable_accuracy(&t.data.split_view(Split::Test));
    assert!(
        e.test_accuracy >= bound - 0.1,
        "tree {} vs attainable {bound}",
        e.test_accuracy
    );
    let ranked = tree.ranked_neurons().unwrap();
    let top10 = &ranked[..10];
    let hits = top10.iter().filter(|n| t.skill_neurons.contains(n)).count();
    assert!(
        hits >= 9,
        "tree's 10 most important neurons hold only {hits} planted ones"
    );
    assert!(tree.n_used_neurons().unwrap() >= 24);
}

#[test]
fn pure_noise_stays_at_chance() {
    let t = Planted::generate(&PlantedConfig {
        n_prompts: 1600,
        n_skill: 0,
        n_options: 2,
        ..Default::default()
    })
    .unwrap();
    for kind in [
        ProbeKind::Polar,
        ProbeKind::Magn,
        ProbeKind::Tree,
        ProbeKind::Act,
        ProbeKind::Rand,
    ] {
        let mut p = kind.build();
        let e = evaluate(p.as_mut(), &t.data, None).unwrap();
        assert!(
            (e.test_accuracy - 0.5).abs() < 0.1,
            "{kind:?} reached {} on noise",
            e.test_accuracy
        );
    }
}

#[test]
fn curve_covers_powers_of_two_capped_at_neuron_count() {
    let t = task(2, 3);
    let e = evaluate(&mut MagnProbe::new(None), &t.data, None).unwrap();
    let ks: Vec<usize> = e.curve.iter().map(|c| c.k).collect();
    assert_eq!(ks, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 400]);
    let best = e.curve.iter().map(|c| c.valid_accuracy).fold(0.0, f64::max);
    assert_eq!(e.valid_accuracy, best);
    let chosen = e
        .curve
        .iter()
        .find(|c| c.k == e.selected_neurons.unwrap())
        .unwrap();
    assert_eq!(chosen.test_accuracy, e.test_accuracy);
    // A fixed count is honoured.
    let fixed = evaluate(&mut MagnProbe::new(None), &t.data, Some(8)).unwrap();
    assert_eq!(fixed.selected_neurons, Some(8));
    assert_eq!(neuron_counts(20_000).len(), 14);
    assert_eq!(*neuron_counts(20_000).last().unwrap(), 8192);
}

#[test]
fn lmprob_takes_the_most_probable_option() {
    let scores = Array3::<f32>::from_shape_fn((4, 3, 2), |(p, o, n)| (p + o * 2 + n) as f32 - 3.5);
    let probs = array![
        [0.1f32, 0.7, 0.2],
        [0.5, 0.3, 0.2],
        [0.2, 0.2, 0.6],
        [0.3, 0.3, 0.4]
    ];
    let data = ProbeData::from_scores(
        scores.view(),
        &[1, 0, 0, 1],
        &[0, 0, 2, 2],
        None,
        Some(probs.view()),
    )
    .unwrap();
    let mut p = LmProbBaseline;
    p.fit(&data.split_view(Split::Train)).unwrap();
    assert_eq!(
        p.predict(&data.view(vec![0, 1, 2, 3]).unwrap()).unwrap(),
        vec![1, 0, 2, 2]
    );
    assert_eq!(
        evaluate(
            &mut p,
            &data
                .clone()
                .with_splits(vec![Split::Train, Split::Train, Split::Valid, Split::Test])
                .unwrap(),
            None
        )
        .unwrap()
        .test_accuracy,
        0.0
    );
}

#[test]
fn random_baseline_is_reproducible_and_uniform() {
    let t = Planted::generate(&PlantedConfig {
        n_prompts: 4000,
        n_options: 4,
        n_neurons: 4,
        n_skill: 0,
        ..Default::default()
    })
    .unwrap();
    let all = t.data.view((0..4000).collect()).unwrap();
    let p = RandomBaseline { seed: 3 };
    let a = p.predict(&all).unwrap();
    assert_eq!(a, p.predict(&all).unwrap());
    for o in 0..4 {
        let share = a.iter().filter(|&&x| x == o).count() as f64 / 4000.0;
        assert!((share - 0.25).abs() < 0.03, "option {o} drawn {share}");
    }
    assert_ne!(a, RandomBaseline { seed: 4 }.predict(&all).unwrap());
}

#[test]
fn option_index_only_data_serves_tree_and_refuses_polar() {
    let t = task(2, 4);
    let oi = t.option_index();
    let data = ProbeData::from_option_index(oi.view(), 2, &t.labels, &t.split, None, None).unwrap();
    assert_eq!(data.option_index(), t.data.option_index());
    let e = evaluate(&mut TreeProbe::default(), &data, None).unwrap();
    assert!(e.test_accuracy > 0.75, "{}", e.test_accuracy);
    let err = PolarProbe::new(None)
        .fit(&data.split_view(Split::Train))
        .unwrap_err();
    assert_eq!(
        err,
        ProbeError::MissingFeature {
            probe: "polar".into(),
            feature: "scores"
        }
    );
    assert!(err.to_string().contains("scores"));
    let err = ActProbe::new(None)
        .fit(&data.split_view(Split::Train))
        .unwrap_err();
    assert!(err.to_string().contains("activations"), "{err}");
    let err = LmProbBaseline
        .fit(&data.split_view(Split::Train))
        .unwrap_err();
    assert!(err.to_string().contains("probs"), "{err}");
}

#[test]
fn tree_probe_neuron_subsets() {
    let t = task(2, 5);
    let mut top = TreeProbe::new(
        ForestConfig {
            n_trees: 30,
            ..Default::default()
        },
        NeuronSubset::TopAgreement(24),
    );
    let e = evaluate(&mut top, &t.data, None).unwrap();
    let bound = t.attainable_accuracy(&t.data.split_view(Split::Test));
    assert!(
        e.test_accuracy >= bound - 0.06,
        "{} vs {bound}",
        e.test_accuracy
    );
    assert!(top
        .ranked_neurons()
        .unwrap()
        .iter()
        .all(|n| t.skill_neurons.contains(n)));
    // Noise neurons only: near chance.
    let noise: Vec<usize> = (0..400)
        .filter(|n| !t.skill_neurons.contains(n))
        .take(50)
        .collect();
    let mut p = TreeProbe::new(
        ForestConfig {
            n_trees: 30,
            ..Default::default()
        },
        NeuronSubset::Indices(noise.clone()),
    );
    let e = evaluate(&mut p, &t.data, None).unwrap();
    assert!(e.test_accuracy < 0.65, "{}", e.test_accuracy);
    assert!(p
        .ranked_neurons()
        .unwrap()
        .iter()
        .all(|n| noise.contains(n)));
    // Depth 1: stumps.
    let mut s = TreeProbe::new(
        ForestConfig {
            n_trees: 5,
            max_depth: Some(1),
            ..Default::default()
        },
        NeuronSubset::All,
    );
    s.fit(&t.data.split_view(Split::Train)).unwrap();
    assert_eq!(s.model().unwrap().max_depth(), 1);
    assert_eq!(s.model().unwrap().n_trees(), 5);
}

#[test]
fn forest_is_deterministic_for_a_seed() {
    let t = task(4, 6);
    let train = t.data.split_view(Split::Train);
    let test = t.data.split_view(Split::Test);
    let cfg = ForestConfig {
        n_trees: 20,
        seed: 9,
        ..Default::default()
    };
    let mut a = TreeProbe::new(cfg.clone(), NeuronSubset::All);
    let mut b = TreeProbe::new(cfg, NeuronSubset::All);
    a.fit(&train).unwrap();
    b.fit(&train).unwrap();
    assert_eq!(a.predict(&test).unwrap(), b.predict(&test).unwrap());
    let proba = a
        .model()
        .unwrap()
        .predict_proba(t.data.option_index(), &test.rows)
        .unwrap();
    for row in proba.chunks(4) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
}

// ---- bad input ----

#[test]
fn mismatched_shapes_are_named() {
    let s = Array3::<f32>::zeros((4, 2, 3));
    let err = ProbeData::from_scores(s.view(), &[0, 1, 0], &[0, 0, 1, 2], None, None).unwrap_err();
    assert!(
        matches!(&err, ProbeError::ShapeMismatch { what, .. } if what == "labels"),
        "{err}"
    );
    let err = ProbeData::from_scores(s.view(), &[0, 1, 0, 1], &[0, 0, 1], None, None).unwrap_err();
    assert!(err.to_string().contains("split"), "{err}");
    let acts = Array2::<f32>::zeros((4, 5));
    let err = ProbeData::from_scores(
        s.view(),
        &[0, 1, 0, 1],
        &[0, 0, 1, 2],
        Some(acts.view()),
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("activations") && err.to_string().contains("[4, 3]"),
        "{err}"
    );
    let probs = Array2::<f32>::zeros((4, 3));
    let err = ProbeData::from_scores(
        s.view(),
        &[0, 1, 0, 1],
        &[0, 0, 1, 2],
        None,
        Some(probs.view()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("probs"), "{err}");
    let err =
        ProbeData::from_scores(s.view(), &[0, 2, 0, 1], &[0, 0, 1, 2], None, None).unwrap_err();
    assert_eq!(
        err,
        ProbeError::LabelOutOfRange {
            prompt: 1,
            label: 2,
            n_options: 2
        }
    );
    let err =
        ProbeData::from_scores(s.view(), &[0, 1, 0, 1], &[0, 0, 3, 2], None, None).unwrap_err();
    assert_eq!(
        err,
        ProbeError::InvalidSplitId {
            prompt: 2,
            value: 3
        }
    );
    let oi = Array2::<u8>::from_elem((4, 3), 2);
    let err = ProbeData::from_option_index(oi.view(), 2, &[0, 1, 0, 1], &[0, 0, 1, 2], None, None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProbeError::OptionIndexOutOfRange {
                prompt: 0,
                neuron: 0,
                value: 2,
                ..
            }
        ),
        "{err}"
    );
    let one = Array3::<f32>::zeros((4, 1, 3));
    assert!(matches!(
        ProbeData::from_scores(one.view(), &[0; 4], &[0; 4], None, None).unwrap_err(),
        ProbeError::OptionCount { n_options: 1, .. }
    ));
    // A probe fitted on 400 neurons refuses data with 3.
    let t = task(2, 7);
    let mut p = MagnProbe::new(Some(4));
    p.fit(&t.data.split_view(Split::Train)).unwrap();
    let small = ProbeData::from_scores(s.view(), &[0, 1, 0, 1], &[0, 0, 1, 2], None, None).unwrap();
    let err = p.predict(&small.split_view(Split::Test)).unwrap_err();
    assert!(matches!(err, ProbeError::Incompatible { .. }), "{err}");
}

#[test]
fn single_class_training_split_is_refused() {
    let s = Array3::<f32>::from_shape_fn((6, 2, 3), |(p, o, n)| (p * 7 + o * 3 + n) as f32 - 9.5);
    let data = ProbeData::from_scores(
        s.view(),
        &[1, 1, 1, 0, 0, 1],
        &[0, 0, 0, 1, 2, 2],
        None,
        None,
    )
    .unwrap();
    for kind in [ProbeKind::Polar, ProbeKind::Magn, ProbeKind::Tree] {
        let err = evaluate(kind.build().as_mut(), &data, None).unwrap_err();
        assert_eq!(
            err,
            ProbeError::SingleClass {
                split: "train".into(),
                class: 1,
                n_prompts: 3
            },
            "{kind:?}"
        );
        assert!(err.to_string().contains("train"));
    }
    let no_valid = data
        .clone()
        .with_splits(vec![
            Split::Train,
            Split::Train,
            Split::Test,
            Split::Train,
            Split::Test,
            Split::Test,
        ])
        .unwrap();
    assert_eq!(
        evaluate(&mut MagnProbe::new(None), &no_valid, None).unwrap_err(),
        ProbeError::EmptySplit {
            split: "valid".into()
        }
    );
}

#[test]
fn too_many_neurons_is_refused() {
    let t = task(2, 8);
    let err = evaluate(&mut PolarProbe::new(None), &t.data, Some(401)).unwrap_err();
    assert_eq!(
        err,
        ProbeError::TooManyNeurons {
            k: 401,
            n_neurons: 400
        }
    );
    let mut p = MagnProbe::new(Some(1000));
    assert_eq!(
        p.fit(&t.data.split_view(Split::Train)).unwrap_err(),
        ProbeError::TooManyNeurons {
            k: 1000,
            n_neurons: 400
        }
    );
    let mut p = MagnProbe::new(None);
    p.fit(&t.data.split_view(Split::Train)).unwrap();
    assert!(matches!(
        p.set_neuron_count(401),
        Err(ProbeError::TooManyNeurons { k: 401, .. })
    ));
    let mut tree = TreeProbe::new(ForestConfig::default(), NeuronSubset::TopAgreement(500));
    assert!(matches!(
        tree.fit(&t.data.split_view(Split::Train)),
        Err(ProbeError::TooManyNeurons { k: 500, .. })
    ));
    assert!(TreeProbe::default().set_neuron_count(3).is_err());
    let err = p
        .predict_with_neurons(&t.data.split_view(Split::Test), &[0, 400])
        .unwrap_err();
    assert_eq!(
        err,
        ProbeError::NeuronOutOfRange {
            neuron: 400,
            n_neurons: 400
        }
    );
}

#[test]
fn nan_features_are_located() {
    let mut s = Array3::<f32>::ones((4, 2, 3));
    s[[2, 1, 0]] = f32::NAN;
    let err =
        ProbeData::from_scores(s.view(), &[0, 1, 0, 1], &[0, 0, 1, 2], None, None).unwrap_err();
    assert_eq!(
        err,
        ProbeError::NonFinite {
            what: "scores",
            prompt: 2,
            option: Some(1),
            neuron: Some(0),
            value: "NaN".into()
        }
    );
    let s = Array3::<f32>::ones((4, 2, 3));
    let mut a = Array2::<f32>::zeros((4, 3));
    a[[3, 2]] = f32::INFINITY;
    let err = ProbeData::from_scores(s.view(), &[0, 1, 0, 1], &[0, 0, 1, 2], Some(a.view()), None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProbeError::NonFinite {
                what: "activations",
                prompt: 3,
                neuron: Some(2),
                ..
            }
        ),
        "{err}"
    );
    let mut pr = Array2::<f32>::zeros((4, 2));
    pr[[0, 1]] = f32::NAN;
    let err = ProbeData::from_scores(
        s.view(),
        &[0, 1, 0, 1],
        &[0, 0, 1, 2],
        None,
        Some(pr.view()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ProbeError::NonFinite {
                what: "probs",
                prompt: 0,
                option: Some(1),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("NaN"));
}

#[test]
fn unfitted_probes_say_so() {
    let t = task(2, 9);
    let test = t.data.split_view(Split::Test);
    assert_eq!(
        PolarProbe::new(None).predict(&test).unwrap_err(),
        ProbeError::NotFitted {
            probe: "polar".into()
        }
    );
    assert_eq!(
        TreeProbe::default().predict(&test).unwrap_err(),
        ProbeError::NotFitted {
            probe: "tree".into()
        }
    );
    assert_eq!(
        ActProbe::new(None).predict(&test).unwrap_err(),
        ProbeError::NotFitted {
            probe: "act".into()
        }
    );
    let cfg = ForestConfig {
        n_trees: 0,
        ..Default::default()
    };
    assert!(matches!(
        TreeProbe::new(cfg, NeuronSubset::All).fit(&t.data.split_view(Split::Train)),
        Err(ProbeError::InvalidConfig { .. })
    ));
}

// ---- label permutation invariance ----

fn random_data(p: usize, k: usize, n: usize, seed: u64) -> ProbeData {
    let t = Planted::generate(&PlantedConfig {
        n_prompts: p,
        n_options: k,
        n_neurons: n,
        n_skill: n / 4,
        strength: 0.5,
        label_noise: 0.2,
        seed,
        skill_seed: seed,
    })
    .unwrap();
    t.data
}

fn permutation(k: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut perm: Vec<usize> = (0..k).collect();
    perm.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    perm
}

fn check_vote_equivariance<P: VoteProbe>(
    mut a: P,
    mut b: P,
    data: &ProbeData,
    perm: &[usize],
    k: usize,
) {
    let permuted = data.permute_options(perm).unwrap();
    a.fit(&data.split_view(Split::Train)).unwrap();
    b.fit(&permuted.split_view(Split::Train)).unwrap();
    // Scores do not depend on the option order, so neither do the rankings.
    assert_eq!(a.ranked_neurons(), b.ranked_neurons());
    let neurons = &a.ranked_neurons().unwrap()[..k];
    let all: Vec<usize> = (0..data.n_prompts()).collect();
    let va = a.votes(&data.view(all.clone()).unwrap(), neurons).unwrap();
    let vb = b
        .votes(&permuted.view(all.clone()).unwrap(), neurons)
        .unwrap();
    let pa = a
        .predict_with_neurons(&data.view(all.clone()).unwrap(), neurons)
        .unwrap();
    let pb = b
        .predict_with_neurons(&permuted.view(all).unwrap(), neurons)
        .unwrap();
    for i in 0..data.n_prompts() {
        for o in 0..perm.len() {
            assert_eq!(
                va[[i, o]],
                vb[[i, perm[o]]],
                "votes of prompt {i}, option {o}"
            );
        }
        let row = va.row(i);
        let max = row.iter().max().unwrap();
        if row.iter().filter(|&v| v == max).count() == 1 {
            assert_eq!(perm[pa[i]], pb[i], "prediction of prompt {i}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn polar_and_magn_are_label_permutation_equivariant(
        p in 40usize..160, k in 2usize..6, n in 4usize..60, seed in 0u64..1000, pseed in 0u64..1000, kk in 1usize..8,
    ) {
        let data = random_data(p, k, n, seed);
        let perm = permutation(k, pseed);
        let kk = kk.min(n);
        check_vote_equivariance(PolarProbe::new(None), PolarProbe::new(None), &data, &perm, kk);
        check_vote_equivariance(MagnProbe::new(None), MagnProbe::new(None), &data, &perm, kk);
    }

    #[test]
    fn planted_neurons_are_found_for_any_seed(seed in 0u64..10_000, k in 2usize..5) {
        let t = Planted::generate(&PlantedConfig {
            n_prompts: 1600, n_options: k, n_neurons: 150, n_skill: 12, strength: 1.2,
            label_noise: 0.1, seed, skill_seed: seed,
        }).unwrap();
        let bound = t.attainable_accuracy(&t.data.split_view(Split::Test));
        for probe in [&mut MagnProbe::new(None) as &mut dyn Probe, &mut PolarProbe::new(None)] {
            let e = evaluate(probe, &t.data, None).unwrap();
            prop_assert!(e.test_accuracy >= bound - 0.1, "{} {} vs {}: {:?}", e.probe, e.test_accuracy, bound, e.curve);
            let recall = recall_at_skill(&t, probe.ranked_neurons().unwrap());
            prop_assert!(recall >= 0.9, "{} recall {}", e.probe, recall);
        }
    }
}

#[test]
fn tree_and_act_accuracy_do_not_depend_on_option_order() {
    let t = task(2, 11);
    let permuted = t.data.permute_options(&[1, 0]).unwrap();
    for kind in [ProbeKind::Tree, ProbeKind::Act] {
        let a = evaluate(kind.build().as_mut(), &t.data, None)
            .unwrap()
            .test_accuracy;
        let b = evaluate(kind.build().as_mut(), &permuted, None)
            .unwrap()
            .test_accuracy;
        assert!(
            (a - b).abs() <= 0.03,
            "{kind:?}: {a} vs {b} after swapping the options"
        );
    }
    let t = task(4, 12);
    let permuted = t.data.permute_options(&[2, 0, 3, 1]).unwrap();
    let a = evaluate(&mut TreeProbe::default(), &t.data, None)
        .unwrap()
        .test_accuracy;
    let b = evaluate(&mut TreeProbe::default(), &permuted, None)
        .unwrap()
        .test_accuracy;
    assert!(
        (a - b).abs() <= 0.04,
        "tree: {a} vs {b} after permuting four options"
    );
    assert!(t.data.permute_options(&[0, 0, 1, 2]).is_err());
}

/// A data set kept on disk ([`Storage::Disk`]) holds the same features as one in memory,
/// every probe evaluates identically on both, the temporary files are unlinked from the
/// start (the directory stays empty) and an unusable directory is a typed error naming it.
#[test]
fn disk_backed_data_equals_memory_and_every_probe_agrees() {
    let t = Planted::generate(&PlantedConfig {
        n_prompts: 300,
        n_options: 3,
        n_neurons: 120,
        n_skill: 8,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (p, k, n) = t.scores.dim();
    let storage = Storage::Disk(dir.path().to_path_buf());
    let mut b = ProbeDataBuilder::with_storage(p, k, n, true, true, storage.clone()).unwrap();
    // Filled last row first, as batches of similar length fill it.
    for i in (0..p).rev() {
        b.push_scores_at(
            i,
            t.scores.index_axis(ndarray::Axis(0), i),
            t.labels[i],
            Split::from_id(i, t.split[i]).unwrap(),
            Some(t.activations.row(i)),
            Some(t.probs.row(i)),
        )
        .unwrap();
    }
    let disk = b.finish().unwrap();
    assert_eq!(disk.storage(), storage);
    assert_eq!(t.data.storage(), Storage::Memory);
    assert_eq!(disk.option_index(), t.data.option_index());
    assert_eq!(disk.activations(), t.data.activations());
    assert_eq!(disk.probs(), t.data.probs());
    assert_eq!(disk.labels(), t.data.labels());
    assert_eq!(disk.splits(), t.data.splits());
    // Everything but the wall-clock time.
    let run = |kind: ProbeKind, d: &ProbeData| {
        let mut probe = kind.build();
        let mut e = evaluate(probe.as_mut(), d, None).unwrap();
        e.fit_seconds = 0.0;
        (e, probe.ranked_neurons().map(<[usize]>::to_vec))
    };
    for kind in ProbeKind::ALL {
        assert_eq!(run(kind, &disk), run(kind, &t.data), "{kind}");
    }
    // A copy stays on disk, a permuted copy too, and equals the permuted memory data set.
    let permuted = disk.permute_options(&[2, 0, 1]).unwrap();
    assert_eq!(permuted.storage(), storage);
    let expected = t.data.permute_options(&[2, 0, 1]).unwrap();
    assert_eq!(permuted.option_index(), expected.option_index());
    assert_eq!(permuted.labels(), expected.labels());
    assert_eq!(
        run(ProbeKind::Magn, &permuted),
        run(ProbeKind::Magn, &expected)
    );
    // Four data sets live on disk, and the directory shows no file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let missing = dir.path().join("missing");
    let err = ProbeDataBuilder::with_storage(4, 2, 3, true, false, Storage::Disk(missing.clone()))
        .unwrap_err();
    assert!(
        matches!(err, ProbeError::Spool { ref dir, what: "activations", .. } if *dir == missing),
        "{err}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
}
