//! The trait's default methods, built on the patch primitive, against the analytic model's
//! closed-form overrides.
use neg_core::adapter::defaults;
use neg_core::testing::{AnalyticAdapter, Head};
use neg_core::{
    AdapterError, CaptureOptions, ModelAdapter, NeuronId, PassOutputs, Patch, PatchOp,
    TargetedPrompt,
};

fn prompt() -> TargetedPrompt {
    TargetedPrompt::new("Lily saw a big red", vec![1, 4, 6])
}

#[test]
fn default_patched_probs_equal_the_closed_form() {
    for head in [Head::Softmax, Head::Linear] {
        let m = AnalyticAdapter::new(5, 3, 10, 7, 6).with_head(head);
        let p = prompt();
        let variants = vec![
            vec![],
            vec![Patch::ff(NeuronId::new(1, 4), PatchOp::Add(0.7))],
            vec![
                Patch::ff(NeuronId::new(0, 2), PatchOp::Set(-1.0)),
                Patch::ff(NeuronId::new(0, 2), PatchOp::Add(0.5)),
                Patch::residual(1, 3, PatchOp::Set(0.25)),
                Patch::residual(2, 3, PatchOp::Add(-0.5)),
            ],
        ];
        let fast = m.patched_probs(&p, &variants).unwrap();
        let by_pass = defaults::patched_probs_by_pass(&m, &p, &variants).unwrap();
        assert!(
            fast.iter().zip(&by_pass).all(|(a, b)| (a - b).abs() < 1e-7),
            "{fast} vs {by_pass}"
        );
    }
}

#[test]
fn default_scaled_gradients_equal_the_closed_form() {
    for head in [Head::Softmax, Head::Linear] {
        let m = AnalyticAdapter::new(8, 3, 10, 7, 6).with_head(head);
        let p = prompt();
        let alphas = [0.0, 0.3, 1.0];
        let fast = m.scaled_gradients(&p, &[0, 2], &alphas).unwrap();
        let by_pass = defaults::scaled_gradients_by_pass(&m, &p, &[0, 2], &alphas).unwrap();
        assert_eq!(fast.shape(), by_pass.shape());
        assert!(
            fast.iter().zip(&by_pass).all(|(a, b)| (a - b).abs() < 1e-6),
            "scaled gradients differ"
        );
        let e = defaults::scaled_gradients_by_pass(&m, &p, &[3], &alphas).unwrap_err();
        assert!(matches!(e, AdapterError::InvalidInput(ref s) if s.contains("layer 3")));
    }
}

/// Gradients under a residual `Set` patch: layers at or below it no longer reach that
/// dimension. Checked against central finite differences of the patched probabilities.
#[test]
fn patched_pass_gradients_match_finite_differences_under_patches() {
    let m = AnalyticAdapter::new(2, 3, 6, 5, 4);
    let p = TargetedPrompt::new("Tom liked to", vec![0, 3]);
    let variant = vec![
        Patch::residual(1, 2, PatchOp::Set(0.4)),
        Patch::ff(NeuronId::new(2, 1), PatchOp::Set(0.9)),
    ];
    let pass = m
        .patched_pass(&p, &variant, PassOutputs::Gradients)
        .unwrap();
    let grads = pass.grads.unwrap();
    let h = 1e-3f32;
    for l in 0..3 {
        for n in 0..6 {
            let shifted = |d: f32| {
                let mut v = variant.clone();
                v.push(Patch::ff(NeuronId::new(l, n), PatchOp::Add(d)));
                v
            };
            let out = m.patched_probs(&p, &[shifted(h), shifted(-h)]).unwrap();
            for t in 0..2 {
                let fd = (out[[0, t]] - out[[1, t]]) / (2.0 * h);
                let g = grads[[t, l, n]];
                assert!((fd - g).abs() < 2e-4, "L{l}.{n} t{t}: fd {fd} vs {g}");
            }
        }
    }
}

#[test]
fn forward_with_captures_the_residual_stream() {
    let m = AnalyticAdapter::new(3, 2, 5, 8, 4);
    let ps = vec![
        prompt(),
        TargetedPrompt::new("Once upon a time", vec![0, 1, 2]),
    ];
    let plain = m.forward_with(&ps, CaptureOptions::default()).unwrap();
    assert!(plain.residual.is_none());
    let with = m
        .forward_with(&ps, CaptureOptions { residual: true })
        .unwrap();
    assert_eq!(with.residual.unwrap(), m.residual(&ps).unwrap());
    assert_eq!(with.probs, m.forward(&ps).unwrap().probs);
    assert_eq!(m.max_context(), None);
}
