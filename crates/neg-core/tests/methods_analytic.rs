//! Methods against the analytic model, whose answers are known in closed form.
use ndarray::Array2;
use neg_core::methods::{self, Method};
use neg_core::neg::{ground_truth_neg, shift_grid, ShiftMode, SweepConfig};
use neg_core::testing::{AnalyticAdapter, Head};
use neg_core::{
    sampling, AdapterError, ModelAdapter, ModelKind, NegError, NeuronId, Patch, PatchOp,
    TargetedPrompt,
};

fn prompts() -> Vec<TargetedPrompt> {
    [
        "Once upon a time",
        "The cat sat on",
        "Lily saw a big red",
        "Tom liked to",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| TargetedPrompt::new(*t, vec![i as u32 % 5, 5]))
    .collect()
}

fn model(head: Head) -> AnalyticAdapter {
    AnalyticAdapter::new(11, 3, 16, 7, 6).with_head(head)
}

fn all_neurons(m: &AnalyticAdapter) -> Vec<NeuronId> {
    (0..m.num_layers())
        .flat_map(|l| (0..m.ff_width()).map(move |n| NeuronId::new(l, n)))
        .collect()
}

#[test]
fn analytic_gradients_match_finite_differences_of_patches() {
    let m = model(Head::Softmax);
    let ps = prompts();
    let g = m.gradients(&ps).unwrap();
    let h = 1e-3f32;
    for (p, prompt) in ps.iter().enumerate() {
        let neurons = all_neurons(&m);
        let variants: Vec<Vec<Patch>> = neurons
            .iter()
            .flat_map(|&n| {
                [
                    vec![Patch::ff(n, PatchOp::Add(h))],
                    vec![Patch::ff(n, PatchOp::Add(-h))],
                ]
            })
            .collect();
        let out = m.patched_probs(prompt, &variants).unwrap();
        for (k, n) in neurons.iter().enumerate() {
            for t in 0..2 {
                let fd = (out[[2 * k, t]] - out[[2 * k + 1, t]]) / (2.0 * h);
                let exact = g.grads[[p, t, n.layer, n.neuron]];
                assert!(
                    (fd - exact).abs() < 2e-4,
                    "prompt {p} neuron {n:?}: fd {fd} vs {exact}"
                );
            }
        }
        // The empty variant is the unpatched forward pass.
        let base = m.patched_probs(prompt, &[vec![]]).unwrap();
        assert!((base[[0, 0]] - g.probs[[p, 0]]).abs() < 1e-7);
        // Setting a residual dimension to its own value changes nothing.
        let res = m.residual(std::slice::from_ref(prompt)).unwrap();
        let same = m
            .patched_probs(
                prompt,
                &[vec![Patch::residual(1, 3, PatchOp::Set(res[[0, 1, 3]]))]],
            )
            .unwrap();
        assert!((same[[0, 1]] - g.probs[[p, 1]]).abs() < 1e-6);
    }
}

#[test]
fn neurgrad_equals_ground_truth_for_a_linear_model_and_cg_equals_additive_neg() {
    let m = model(Head::Linear);
    let ps = prompts();
    let neurons = all_neurons(&m);
    let truth = ground_truth_neg(&m, &ps, &neurons, &SweepConfig::default()).unwrap();
    assert_eq!(truth.shifts.len(), 21);
    let ng = methods::neurgrad(&m, &ps).unwrap();
    let additive = SweepConfig {
        mode: ShiftMode::Additive,
        range: 5.0,
        step: 0.5,
        ..SweepConfig::default()
    };
    let truth_add = ground_truth_neg(&m, &ps, &neurons, &additive).unwrap();
    let cg = methods::computational_gradient(&m, &ps).unwrap();
    let mut signs_differ = 0;
    for p in 0..ps.len() {
        for t in 0..2 {
            for (k, n) in neurons.iter().enumerate() {
                let (l, i) = (n.layer, n.neuron);
                assert!((ng.scores[[p, t, l, i]] - truth.neg[[p, t, k]]).abs() < 1e-4);
                assert!((cg.scores[[p, t, l, i]] - truth_add.neg[[p, t, k]]).abs() < 1e-4);
                assert!(truth.r[[p, t, k]].abs() > 0.999_99);
                if ng.scores[[p, t, l, i]] * cg.scores[[p, t, l, i]] < 0.0 {
                    signs_differ += 1;
                }
            }
        }
    }
    // Both activation signs occur, so NeurGrad and CG really differ somewhere.
    assert!(signs_differ > 0);
}

#[test]
fn neurgrad_approaches_ground_truth_as_the_range_shrinks() {
    let m = model(Head::Softmax);
    let ps = prompts();
    let neurons = all_neurons(&m);
    let ng = methods::neurgrad(&m, &ps).unwrap();
    let mut errors = Vec::new();
    for range in [2.0f32, 0.5, 0.05] {
        let cfg = SweepConfig {
            range,
            step: range / 10.0,
            ..SweepConfig::default()
        };
        let truth = ground_truth_neg(&m, &ps, &neurons, &cfg).unwrap();
        let mut worst = 0.0f32;
        for p in 0..ps.len() {
            for t in 0..2 {
                for (k, n) in neurons.iter().enumerate() {
                    let d = (ng.scores[[p, t, n.layer, n.neuron]] - truth.neg[[p, t, k]]).abs();
                    worst = worst.max(d);
                }
            }
        }
        errors.push(worst);
    }
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "{errors:?}");
    assert!(errors[2] < 1e-4, "{errors:?}");
}

#[test]
fn ig_is_complete_and_its_mean_gradient_is_exact_for_a_linear_model() {
    for head in [Head::Linear, Head::Softmax] {
        let m = model(head);
        let ps = prompts();
        let steps = if head == Head::Linear { 20 } else { 4000 };
        let ig = methods::integrated_gradients(&m, &ps, steps).unwrap();
        assert_eq!(ig.alphas.len(), steps);
        assert_eq!(ig.alphas[steps - 1], 1.0);
        for (p, prompt) in ps.iter().enumerate() {
            for l in 0..m.num_layers() {
                // Zeroing the layer's activation vector is IG's baseline.
                let zero: Vec<Patch> = (0..m.ff_width())
                    .map(|n| Patch::ff(NeuronId::new(l, n), PatchOp::Set(0.0)))
                    .collect();
                let out = m.patched_probs(prompt, &[vec![], zero]).unwrap();
                for t in 0..2 {
                    let total: f32 = (0..m.ff_width())
                        .map(|n| ig.attribution[[p, t, l, n]])
                        .sum();
                    let gap = out[[0, t]] - out[[1, t]];
                    let tol = if head == Head::Linear {
                        1e-4
                    } else {
                        2e-3 * gap.abs().max(1e-2)
                    };
                    assert!(
                        (total - gap).abs() < tol,
                        "{head:?} p{p} l{l} t{t}: {total} vs {gap}"
                    );
                }
            }
        }
        if head == Head::Linear {
            let cg = methods::computational_gradient(&m, &ps).unwrap();
            let diff = (&ig.mean_gradient - &cg.scores).mapv(f32::abs);
            assert!(diff.iter().all(|&d| d < 1e-5));
        }
    }
}

#[test]
fn lpi_is_delegated_and_unsupported_for_masked_lms() {
    let m = model(Head::Softmax);
    let ps = prompts();
    let lpi = methods::attribute(&m, &ps, Method::Lpi).unwrap();
    assert_eq!(lpi.scores.shape(), &[4, 2, 3, 16]);
    assert!(lpi.scores.iter().any(|v| v.abs() > 1e-3));
    let masked = model(Head::Softmax).with_kind(ModelKind::MaskedLm);
    match methods::attribute(&masked, &ps, Method::Lpi) {
        Err(NegError::Adapter(AdapterError::Unsupported { what, .. })) => {
            assert!(what.contains("LPI"))
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    for method in [Method::NeurGrad, Method::Cg, Method::Ig] {
        assert_eq!(
            methods::attribute(&masked, &ps, method).unwrap().method,
            method
        );
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    let m = model(Head::Softmax);
    let ps = prompts();
    let neurons = vec![NeuronId::new(0, 1)];
    let cfg = SweepConfig::default();
    assert!(matches!(
        ground_truth_neg(&m, &[], &neurons, &cfg),
        Err(NegError::EmptyPrompts)
    ));
    assert!(matches!(
        methods::neurgrad(&m, &[]),
        Err(NegError::EmptyPrompts)
    ));
    assert!(matches!(
        ground_truth_neg(&m, &ps, &[], &cfg),
        Err(NegError::NoNeurons)
    ));
    for range in [0.0, -1.0, f32::NAN] {
        let c = SweepConfig {
            range,
            ..cfg.clone()
        };
        assert!(matches!(
            ground_truth_neg(&m, &ps, &neurons, &c),
            Err(NegError::InvalidRange(_))
        ));
    }
    for step in [0.0, -0.2] {
        let c = SweepConfig {
            step,
            ..cfg.clone()
        };
        assert!(matches!(
            ground_truth_neg(&m, &ps, &neurons, &c),
            Err(NegError::InvalidStep(_))
        ));
    }
    assert!(shift_grid(0.1, 0.5).is_err());
    let outside = [NeuronId::new(3, 0)];
    let err = ground_truth_neg(&m, &ps, &outside, &cfg).unwrap_err();
    assert!(err.to_string().contains("layer 3"), "{err}");
    let mut uneven = ps.clone();
    uneven[2].targets.push(1);
    assert!(matches!(
        methods::neurgrad(&m, &uneven),
        Err(NegError::TargetCountMismatch { index: 2, .. })
    ));
    let nan = model(Head::Softmax).with_nan_output();
    assert!(matches!(
        methods::neurgrad(&nan, &ps),
        Err(NegError::NonFinite { .. })
    ));
    let err = ground_truth_neg(&nan, &ps, &neurons, &cfg).unwrap_err();
    assert!(
        matches!(
            err,
            NegError::NonFinite {
                what: "patched_probs",
                ..
            }
        ),
        "{err}"
    );
    assert!(sampling::sample_neurons(3, 16, 0, 1).is_err());
    assert!(sampling::sample_neurons(3, 16, 49, 1).is_err());
}

#[test]
fn sampling_is_reproducible_and_distinct() {
    let a = sampling::sample_neurons(5, 172, 50, 42).unwrap();
    let b = sampling::sample_neurons(5, 172, 50, 42).unwrap();
    let c = sampling::sample_neurons(5, 172, 50, 43).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mut d = a.clone();
    d.dedup();
    assert_eq!(d.len(), 50);
}

#[test]
fn sweeps_split_across_calls_give_the_same_numbers() {
    let m = model(Head::Softmax);
    let ps = prompts();
    let neurons = all_neurons(&m);
    let one = ground_truth_neg(&m, &ps, &neurons, &SweepConfig::default()).unwrap();
    let small = SweepConfig {
        max_variants_per_call: 7,
        naive: true,
        ..SweepConfig::default()
    };
    let many = ground_truth_neg(&m, &ps, &neurons, &small).unwrap();
    assert_eq!(one.delta_probs, many.delta_probs);
    let _: Array2<f32> = one.base_probs;
}
