//! The hand-written backward against autograd.
use crate::model::Arch;
use crate::{HfModel, LoadOptions, ModelSource};
use tch::Tensor;

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    (a - b).abs().max().double_value(&[]) / scale
}

/// The hand-written backward through the last position gives autograd's gradients, for a
/// left-padded batch of prompts of different lengths and several targets each.
#[test]
fn hand_written_backward_equals_autograd() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/models/stories260k"
    );
    assert!(
        std::path::Path::new(dir).join("config.json").exists(),
        "missing {dir}: the real stories260k model from ../shared is needed"
    );
    let model = HfModel::load(&ModelSource::parse(dir), &LoadOptions::default()).unwrap();
    let Arch::Llama(llama) = &model.arch else {
        panic!("stories260k is a Llama")
    };
    let texts = [
        "Once upon a time, there was a little girl named Lily. She",
        "The dog ran",
        "One day, Tom went to the park with his mom and saw a big red",
    ];
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| model.encode(t).unwrap()).collect();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let targets = vec![vec![264, 29, 350], vec![17, 264, 1], vec![400, 3, 264]];
    let tape = llama.gradients_tape(&refs, &targets);
    let auto = llama.gradients_autograd(&refs, &targets);
    let (p_tape, a_tape, g_tape) = (tape.probs, tape.acts, tape.grads);
    let (p_auto, a_auto, g_auto) = (auto.probs, auto.acts, auto.grads);
    assert_eq!(g_tape.size(), vec![3, 3, 5, 172]);
    assert!(max_rel(&p_tape, &p_auto) < 1e-5, "probs");
    assert!(max_rel(&a_tape, &a_auto) < 1e-5, "activations");
    let err = max_rel(&g_tape, &g_auto);
    eprintln!(
        "hand-written vs autograd: max relative error {err:e}, max abs grad {:e}",
        g_auto.abs().max().double_value(&[])
    );
    assert!(err < 1e-4, "gradients differ: max relative error {err}");
}
