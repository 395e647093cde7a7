//! Behaviour of the Llama path on the real stories260k checkpoint: greedy decoding, the fast
//! paths against their full-recomputation references, padding, IG, LPI and residual capture.

mod common;

use ndarray::{s, Axis};
use neg_core::{ModelAdapter, NeuronId, Patch, PatchOp, TargetedPrompt};

const GREEDY_60: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high";

#[test]
fn greedy_decoding_from_bos_reproduces_reference_text() {
    let model = common::stories();
    assert_eq!(
        model.encode("").unwrap(),
        vec![1],
        "empty prompt is BOS alone"
    );
    let g = model.generate("", 60).unwrap();
    assert_eq!(g.token_ids.len(), 60);
    assert_eq!(g.text.trim(), GREEDY_60);
    assert_eq!(g.mean_activations.shape(), &[5, 172]);
    assert!(g.mean_activations.iter().all(|x| x.is_finite()));
    // Mean over the positions that predicted the tokens: for one token, the prompt's last
    // position, which is what `forward` captures.
    let one = model.generate("Once upon a time", 1).unwrap();
    let fwd = model
        .forward(&[TargetedPrompt::new("Once upon a time", vec![])])
        .unwrap();
    let d = max_diff(
        one.mean_activations.iter().copied(),
        fwd.activations.iter().copied(),
    );
    assert!(
        d <= 1e-5,
        "mean activations of a 1-token generation differ by {d}"
    );
    assert!(model
        .generate("Once upon a time", 0)
        .unwrap()
        .token_ids
        .is_empty());
}

fn prompts() -> Vec<TargetedPrompt> {
    vec![
        TargetedPrompt::new("Once upon a time, there was a little", vec![3, 100, 400]),
        TargetedPrompt::new("Lily", vec![5, 6, 7]),
        TargetedPrompt::new(
            "One day, Tom went to the park. He saw a big red ball and",
            vec![8, 9, 10],
        ),
        TargetedPrompt::new("", vec![11, 12, 13]),
    ]
}

fn max_diff(a: impl IntoIterator<Item = f32>, b: impl IntoIterator<Item = f32>) -> f32 {
    a.into_iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn batched_padded_equals_one_at_a_time() {
    let model = common::stories();
    let ps = prompts();
    let batch = model.forward(&ps).unwrap();
    let grads = model.gradients(&ps).unwrap();
    for (i, p) in ps.iter().enumerate() {
        let one = model.forward(std::slice::from_ref(p)).unwrap();
        let d = max_diff(
            batch.probs.row(i).iter().copied(),
            one.probs.row(0).iter().copied(),
        );
        assert!(d <= 1e-5, "prompt {i}: batched probabilities differ by {d}");
        let d = max_diff(
            batch.activations.index_axis(Axis(0), i).iter().copied(),
            one.activations.index_axis(Axis(0), 0).iter().copied(),
        );
        assert!(d <= 1e-5, "prompt {i}: batched activations differ by {d}");
        let g1 = model.gradients(std::slice::from_ref(p)).unwrap();
        let d = max_diff(
            grads.grads.index_axis(Axis(0), i).iter().copied(),
            g1.grads.index_axis(Axis(0), 0).iter().copied(),
        );
        let scale = g1.grads.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(
            d <= 1e-5 * scale.max(1.0),
            "prompt {i}: batched gradients differ by {d}"
        );
    }
    // In chunks of two, prompts run grouped by length (shortest first), and come back in
    // input order with the same numbers.
    let small = neg_hooks::HfModel::load(
        &neg_hooks::ModelSource::Dir(common::stories_dir()),
        &neg_hooks::LoadOptions {
            max_batch: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut many = ps.clone();
    many.extend(ps.iter().rev().cloned());
    let chunked = small.forward(&many).unwrap();
    let chunked_grads = small.gradients(&many).unwrap();
    for (i, p) in many.iter().enumerate() {
        let j = ps.iter().position(|q| q.text == p.text).unwrap();
        let d = max_diff(
            chunked.activations.index_axis(Axis(0), i).iter().copied(),
            batch.activations.index_axis(Axis(0), j).iter().copied(),
        );
        assert!(
            d <= 1e-5,
            "row {i}: length-chunked activations differ by {d}"
        );
        let d = max_diff(
            chunked_grads.grads.index_axis(Axis(0), i).iter().copied(),
            grads.grads.index_axis(Axis(0), j).iter().copied(),
        );
        let scale = grads.grads.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(
            d <= 1e-5 * scale.max(1.0),
            "row {i}: length-chunked gradients differ by {d}"
        );
        assert!(
            max_diff(
                chunked.probs.row(i).iter().copied(),
                batch.probs.row(j).iter().copied()
            ) <= 1e-5
        );
    }
    // The gradient path (prefix + one-token pass) gives the forward pass's numbers.
    assert!(max_diff(grads.probs.iter().copied(), batch.probs.iter().copied()) <= 1e-5);
    assert!(
        max_diff(
            grads.activations.iter().copied(),
            batch.activations.iter().copied()
        ) <= 1e-5
    );
}

#[test]
fn gradients_match_finite_differences() {
    let model = common::stories();
    let text = "Once upon a time, there was a little";
    let p = TargetedPrompt::new(text, common::top_tokens(&model, text, 2));
    let g = model.gradients(std::slice::from_ref(&p)).unwrap();
    // Central differences through the sweep path on a few neurons of different layers; the
    // strict check is the parity test against transformers. In f32 a probability near 0.6 is
    // computed to some 10 units in the last place (6e-8 each), so a step of 1e-2 (a change of
    // 1,000 units) left the difference quotient only 1% accurate, the tolerance itself.
    // Richardson's extrapolation of steps h and 2h cancels the h^2 error term, which lets h be
    // 5x larger and the rounding 5x smaller.
    let h = 5e-2f32;
    for (layer, neuron) in [(0, 3), (2, 50), (4, 171)] {
        let id = NeuronId::new(layer, neuron);
        let v: Vec<Vec<Patch>> = [h, -h, 2.0 * h, -2.0 * h]
            .iter()
            .map(|&d| vec![Patch::ff(id, PatchOp::Add(d))])
            .collect();
        let pr = model.patched_probs(&p, &v).unwrap();
        for t in 0..2 {
            let (d1, d2) = (
                (pr[[0, t]] - pr[[1, t]]) / (2.0 * h),
                (pr[[2, t]] - pr[[3, t]]) / (4.0 * h),
            );
            let fd = (4.0 * d1 - d2) / 3.0;
            let an = g.grads[[0, t, layer, neuron]];
            assert!(
                (fd - an).abs() <= 1e-2 * an.abs().max(1e-4) + 1e-6,
                "neuron {id:?} target {t}: finite difference {fd} vs gradient {an}"
            );
        }
    }
}

#[test]
fn sweep_fast_path_equals_naive_recomputation() {
    let model = common::stories();
    let p = TargetedPrompt::new("One day, Tom went to the park. He saw a", vec![3, 100, 400]);
    let fwd = model.forward(std::slice::from_ref(&p)).unwrap();
    let mut variants: Vec<Vec<Patch>> = vec![vec![]];
    for layer in 0..5 {
        for (k, d) in [-2.0f32, 0.5, 2.0].iter().enumerate() {
            variants.push(vec![Patch::ff(
                NeuronId::new(layer, 7 + 30 * k),
                PatchOp::Add(*d),
            )]);
        }
        variants.push(vec![Patch::ff(NeuronId::new(layer, 1), PatchOp::Set(0.0))]);
        variants.push(vec![Patch::residual(layer, 5, PatchOp::Add(1.0))]);
    }
    variants.push(vec![
        Patch::ff(NeuronId::new(4, 2), PatchOp::Set(1.5)),
        Patch::ff(NeuronId::new(1, 2), PatchOp::Add(-1.0)),
        Patch::residual(2, 0, PatchOp::Set(0.0)),
    ]);
    let fast = model.patched_probs(&p, &variants).unwrap();
    let naive = model.patched_probs_naive(&p, &variants).unwrap();
    assert_eq!(fast.shape(), &[variants.len(), 3]);
    let d = max_diff(fast.iter().copied(), naive.iter().copied());
    println!("sweep fast vs naive max abs diff {d:e}");
    assert!(d <= 1e-5, "fast sweep differs from recomputation by {d}");
    // The empty variant is the unpatched forward, and patches do change something.
    assert!(
        max_diff(
            fast.row(0).iter().copied(),
            fwd.probs.row(0).iter().copied()
        ) <= 1e-5
    );
    assert!(
        max_diff(
            fast.row(1).iter().copied(),
            fwd.probs.row(0).iter().copied()
        ) > 1e-7
    );
    // Set to the current value is a no-op.
    let a = fwd.activations[[0, 3, 9]];
    let same = model
        .patched_probs(&p, &[vec![Patch::ff(NeuronId::new(3, 9), PatchOp::Set(a))]])
        .unwrap();
    assert!(
        max_diff(
            same.row(0).iter().copied(),
            fwd.probs.row(0).iter().copied()
        ) <= 1e-6
    );
}

#[test]
fn scaled_gradients_at_alpha_one_are_the_gradients() {
    let model = common::stories();
    let text = "Once upon a time, there was a little";
    let p = TargetedPrompt::new(text, common::top_tokens(&model, text, 2));
    let g = model.gradients(std::slice::from_ref(&p)).unwrap();
    let sg = model
        .scaled_gradients(&p, &[1, 4], &[0.0, 0.5, 1.0])
        .unwrap();
    assert_eq!(sg.shape(), &[2, 3, 2, 172]);
    for (i, &layer) in [1usize, 4].iter().enumerate() {
        let ours = sg.slice(s![i, 2, .., ..]);
        let full = g.grads.slice(s![0, .., layer, ..]);
        let d = max_diff(ours.iter().copied(), full.iter().copied());
        assert!(
            d <= 1e-6,
            "layer {layer}: alpha=1 differs from gradients by {d}"
        );
        // Alpha = 0 is a different point of the path.
        assert!(
            max_diff(
                sg.slice(s![i, 0, .., ..]).iter().copied(),
                full.iter().copied()
            ) > 1e-9
        );
    }
    // Against finite differences at alpha = 0.5 for one neuron: scaling the whole layer by 0.5
    // is a Set of every unit; move one unit by +-h around it.
    let fwd = model.forward(std::slice::from_ref(&p)).unwrap();
    let layer = 4;
    let base: Vec<Patch> = (0..172)
        .map(|n| {
            Patch::ff(
                NeuronId::new(layer, n),
                PatchOp::Set(0.5 * fwd.activations[[0, layer, n]]),
            )
        })
        .collect();
    let h = 1e-2;
    let mut plus = base.clone();
    plus.push(Patch::ff(NeuronId::new(layer, 20), PatchOp::Add(h)));
    let mut minus = base.clone();
    minus.push(Patch::ff(NeuronId::new(layer, 20), PatchOp::Add(-h)));
    let pr = model.patched_probs(&p, &[plus, minus]).unwrap();
    let fd = (pr[[0, 0]] - pr[[1, 0]]) / (2.0 * h);
    let an = sg[[1, 1, 0, 20]];
    assert!(
        (fd - an).abs() <= 1e-2 * an.abs().max(1e-4) + 1e-6,
        "fd {fd} vs {an}"
    );
}

#[test]
fn residual_capture_and_residual_patches() {
    let model = common::stories();
    let ps = prompts();
    let r = model.residual(&ps).unwrap();
    assert_eq!(r.shape(), &[4, 5, 64]);
    // Setting a residual unit to its own value is a no-op; moving it changes the output.
    let p = &ps[0];
    let v = r[[0, 2, 10]];
    let out = model
        .patched_probs(
            p,
            &[
                vec![Patch::residual(2, 10, PatchOp::Set(v))],
                vec![Patch::residual(2, 10, PatchOp::Add(3.0))],
            ],
        )
        .unwrap();
    let base = model.forward(std::slice::from_ref(p)).unwrap();
    assert!(
        max_diff(
            out.row(0).iter().copied(),
            base.probs.row(0).iter().copied()
        ) <= 1e-6
    );
    assert!(
        max_diff(
            out.row(1).iter().copied(),
            base.probs.row(0).iter().copied()
        ) > 1e-7
    );
}
