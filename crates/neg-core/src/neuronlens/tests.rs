use super::table::TableAdapter;
use super::*;
use crate::adapter::{ModelAdapter, TargetedPrompt};
use ndarray::{array, Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr_free::normal;

/// Box-Muller normal draws (rand 0.8 without rand_distr).
mod rand_distr_free {
    use rand::Rng;
    pub fn normal(rng: &mut impl Rng) -> f64 {
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[test]
fn planted_ranges_are_recovered() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let means = [[-2.0, 0.5, 3.0], [1.0, 1.0, 1.0]];
    let sds = [[0.3, 0.2, 0.5], [0.1, 0.4, 0.8]];
    let per_class = 4000;
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for c in 0..3 {
        for _ in 0..per_class {
            rows.push(means[0][c] + sds[0][c] * normal(&mut rng));
            rows.push(means[1][c] + sds[1][c] * normal(&mut rng));
            labels.push(c);
        }
    }
    let acts = Array2::from_shape_vec((3 * per_class, 2), rows).unwrap();
    let stats = ClassStats::fit(acts.view(), &labels, 3).unwrap();
    for u in 0..2 {
        for c in 0..3 {
            assert!((stats.mean[[c, u]] - means[u][c]).abs() < 0.05);
            assert!((stats.std[[c, u]] / sds[u][c] - 1.0).abs() < 0.05);
            let (lo, hi) = stats.range(c, u, Tau::default());
            // About 95.4% of a Gaussian lies within 2 sd.
            let inside = labels
                .iter()
                .enumerate()
                .filter(|(i, &l)| l == c && acts[[*i, u]] >= lo && acts[[*i, u]] <= hi)
                .count() as f64
                / per_class as f64;
            assert!((inside - 0.954).abs() < 0.015, "{inside}");
        }
    }
    let ov = stats.overlap(Tau::default()).unwrap();
    // Unit 0's classes are >= 2.5 apart with small sds: disjoint ranges. Unit 1's share a mean.
    assert_eq!(ov[0], 0.0);
    assert!(ov[1] > 0.2, "{}", ov[1]);
    assert_eq!(stats.salient(0, 0.5).unwrap(), vec![0]);
    assert_eq!(stats.salient(1, 0.5).unwrap(), vec![1]);
}

#[test]
fn bad_input_gives_typed_errors() {
    let acts = array![[1.0, 2.0], [1.5, 2.0], [3.0, 2.0]];
    let e = ClassStats::fit(acts.view(), &[0, 0, 1], 2).unwrap_err();
    assert!(
        matches!(e, LensError::TooFewExamples { class: 1, got: 1 }),
        "{e}"
    );
    assert!(e.to_string().contains("class 1 has 1 example"), "{e}");
    let e = ClassStats::fit(acts.view(), &[0, 1, 1], 2).unwrap_err();
    assert!(matches!(e, LensError::TooFewExamples { class: 0, .. }));
    let acts4 = array![[1.0, 2.0], [1.5, 2.0], [3.0, 2.0], [4.0, 2.0]];
    let e = ClassStats::fit(acts4.view(), &[0, 0, 1, 1], 2).unwrap_err();
    assert!(
        matches!(e, LensError::ConstantActivations { unit: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("constant (2)"), "{e}");
    for bad in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
        assert!(matches!(Tau::new(bad), Err(LensError::InvalidTau(_))));
    }
    assert!(Tau::new(f64::INFINITY).is_ok());
    assert!(serde_json::from_str::<Tau>("-2.0").is_err());
    assert_eq!(serde_json::from_str::<Tau>("1.5").unwrap().get(), 1.5);
    let e = ClassStats::fit(acts4.view(), &[0, 0, 1, 5], 2).unwrap_err();
    assert!(matches!(
        e,
        LensError::LabelOutOfRange {
            index: 3,
            label: 5,
            ..
        }
    ));
    assert!(matches!(
        top_fraction(&[1.0], 0.0),
        Err(LensError::InvalidFraction(_))
    ));
    let nan = array![[1.0], [f64::NAN], [3.0], [4.0]];
    assert!(matches!(
        ClassStats::fit(nan.view(), &[0, 0, 1, 1], 2),
        Err(LensError::NonFinite { .. })
    ));
}

#[test]
fn class_mean_scores_average_per_class() {
    let scores = array![[1.0, 0.0], [3.0, 2.0], [5.0, -4.0]];
    let m = class_mean_scores(scores.view(), &[0, 0, 1], 2).unwrap();
    assert_eq!(m, array![[2.0, 1.0], [5.0, -4.0]]);
    assert_eq!(top_fraction(&m.row(1).to_vec(), 0.5).unwrap(), vec![0]);
    assert!(matches!(
        class_mean_scores(scores.view(), &[0, 0, 0], 2),
        Err(LensError::TooFewExamples { class: 1, got: 0 })
    ));
}

#[test]
fn top_fraction_orders_and_rounds() {
    assert_eq!(
        top_fraction(&[0.1, 0.9, 0.5, 0.7], 0.5).unwrap(),
        vec![1, 3]
    );
    assert_eq!(top_fraction(&[0.1, 0.9, 0.5], 0.01).unwrap(), vec![1]);
    assert_eq!(top_fraction(&[0.1, 0.9], 1.0).unwrap().len(), 2);
}

/// Three classes read off one neuron: class k's prompts put neuron 0 near 2k + 1; the
/// option logits are -(a0 - (2k + 1))^2, so the model answers the nearest class centre.
/// Neuron 1 is noise. A neutral value of 3 (class 1's centre) turns every masked prompt
/// into a class-1 answer.
fn planted(per_class: usize) -> (TableAdapter, Vec<TargetedPrompt>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for k in 0..3 {
        for _ in 0..per_class {
            rows.push(2.0 * k as f64 + 1.0 + 0.2 * normal(&mut rng));
            rows.push(rng.gen_range(-1.0..1.0));
            labels.push(k);
        }
    }
    let acts = Array2::from_shape_vec((3 * per_class, 2), rows).unwrap();
    let model = TableAdapter::new(acts, |a| {
        (0..3)
            .map(|k| -(a[0] - (2.0 * k as f64 + 1.0)).powi(2))
            .collect()
    });
    let prompts = model.prompts(3);
    (model, prompts, labels)
}

#[test]
fn range_masking_hits_the_target_class_only() {
    let (model, prompts, labels) = planted(40);
    let sel = UnitSelection {
        site: Site::FeedForward,
        layers: vec![0],
    };
    let cap = capture(&model, &prompts, &sel).unwrap();
    let correct = correct_indices(cap.probs.view(), &labels);
    assert!(correct.len() > 110, "{}", correct.len());
    let fit_acts = cap.activations.select(Axis(0), &correct);
    let fit_labels: Vec<usize> = correct.iter().map(|&i| labels[i]).collect();
    let stats = ClassStats::fit_named(fit_acts.view(), &fit_labels, 3, Some(&cap.units)).unwrap();
    // Neutral value: class 1's centre, like a balanced reference set's mean.
    let neutral = neutral_values(cap.activations.view()).unwrap();
    assert!((neutral[0] - 3.0).abs() < 0.1);
    // Neuron 0 is class 0's most salient unit? Its mean |a| (~1) beats noise (~0.5).
    let salient = stats.salient(0, 0.5).unwrap();
    assert_eq!(salient, vec![0]);
    let set = EvalSet {
        prompts: &prompts,
        labels: &labels,
        units: &cap.units,
        acts: cap.activations.view(),
    };
    let r = run_class(
        &model,
        set,
        &stats,
        neutral.view(),
        0,
        &salient,
        Tau::default(),
    )
    .unwrap();
    // The batched path agrees with one condition at a time.
    let one = evaluate(
        &model,
        set,
        &stats,
        neutral.view(),
        &Condition {
            class: 0,
            salient: &salient,
            masking: Some(Masking::Range(Tau::default())),
        },
    )
    .unwrap();
    assert_eq!(one, r.range);
    let both = run_classes(
        &model,
        set,
        &stats,
        neutral.view(),
        &[(0, salient.clone()), (2, stats.salient(2, 0.5).unwrap())],
        Tau::default(),
    )
    .unwrap();
    assert_eq!(both[0], r);
    // Masking class 2's range sends class 2 to class 1 and spares classes 0 and 1.
    assert!(both[1].range.target_accuracy < 0.1);
    assert_eq!(both[1].range_complement_retained(), 1.0);
    assert!(r.base.target_accuracy > 0.95 && r.base.complement_accuracy > 0.95);
    // Range masking: class 0 collapses to class 1, classes 1 and 2 are untouched.
    assert!(r.range.target_accuracy < 0.1, "{:?}", r.range);
    assert_eq!(r.range.complement_accuracy, r.base.complement_accuracy);
    assert_eq!(r.range.complement_masked, 0.0);
    assert!(r.range_target_drop() > 0.85);
    assert_eq!(r.range_complement_retained(), 1.0);
    // Neuron masking: class 2 collapses to class 1 as well.
    assert!(r.neuron.target_accuracy < 0.1);
    assert!(r.neuron.complement_accuracy < 0.6, "{:?}", r.neuron);
    assert!(r.neuron_complement_retained() < 0.6);
    assert_eq!(r.neuron.complement_masked, 1.0);
    assert!(r.neuron.target_confidence < r.base.target_confidence);
}

#[test]
fn analytic_model_residual_ranges_run() {
    use crate::testing::AnalyticAdapter;
    let model = AnalyticAdapter::new(1, 2, 6, 4, 3);
    let prompts: Vec<TargetedPrompt> = (0..24)
        .map(|i| TargetedPrompt::new(format!("prompt number {i}"), vec![0, 1, 2, 3]))
        .collect();
    let sel = UnitSelection {
        site: Site::Residual,
        layers: vec![1],
    };
    let cap = capture(&model, &prompts, &sel).unwrap();
    assert_eq!(cap.activations.dim(), (24, 4));
    // Residual stream of the last layer = logits, so residual masking with neutral = the
    // prompt's own value leaves the probabilities unchanged.
    let labels: Vec<usize> = (0..24).map(|i| i % 2).collect();
    let stats = ClassStats::fit(cap.activations.view(), &labels, 2).unwrap();
    let own = cap.activations.row(0).to_owned();
    let patches = mask_patches(
        cap.activations.row(0),
        &cap.units,
        &stats,
        0,
        &[0, 1, 2, 3],
        own.view(),
        Masking::Neuron,
    )
    .unwrap();
    assert_eq!(patches.len(), 4);
    let p = model
        .patched_probs(&prompts[0], &[vec![], patches])
        .unwrap();
    for j in 0..4 {
        assert!((p[[0, j]] - p[[1, j]]).abs() < 1e-5);
    }
    let bad = UnitSelection {
        site: Site::Residual,
        layers: vec![7],
    };
    assert!(matches!(
        capture(&model, &prompts, &bad),
        Err(LensError::LayerOutOfRange { layer: 7, .. })
    ));
}
