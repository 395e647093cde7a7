//! The hand-written backward against autograd.
use super::Llama;
use crate::model::Arch;
use crate::{DType, HfModel, LoadOptions, ModelSource};
use tch::Tensor;

/// The real stories260k from `../shared`, loaded in `dtype`.
fn stories(dtype: DType) -> HfModel {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/models/stories260k"
    );
    assert!(
        std::path::Path::new(dir).join("config.json").exists(),
        "missing {dir}: the real stories260k model from ../shared is needed"
    );
    let options = LoadOptions {
        dtype,
        ..LoadOptions::default()
    };
    HfModel::load(&ModelSource::parse(dir), &options).unwrap()
}

/// The decoder inside `model`.
fn llama_of(model: &HfModel) -> &Llama {
    let Arch::Llama(llama) = model.arch().unwrap() else {
        panic!("stories260k is a Llama")
    };
    llama
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    (a - b).abs().max().double_value(&[]) / scale
}

/// The hand-written backward through the last position gives autograd's gradients, for a
/// left-padded batch of prompts of different lengths and several targets each.
#[test]
fn hand_written_backward_equals_autograd() {
    let model = stories(DType::F32);
    let llama = llama_of(&model);
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

/// The adapter tells batching callers the prefix a batch runs once: exactly the tokens the
/// prompts' encodings share (each keeping one of its own), and nothing for one prompt, for
/// prompts with little in common, or with sharing off.
#[test]
fn the_adapter_reports_the_prefix_a_batch_runs_once() {
    use super::passes::MIN_SHARED_PREFIX;
    use neg_core::ModelAdapter;
    let mut model = stories(DType::F32);
    let header = "Once upon a time, there was a little girl named Lily. She loved to play \
                  outside in the park with her friends. One day,";
    let texts = [
        format!("{header} she saw a big red"),
        format!("{header} Tom"),
    ];
    let prompts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| model.encode(t).unwrap()).collect();
    let common = seqs[0]
        .iter()
        .zip(&seqs[1])
        .take_while(|(a, b)| a == b)
        .count();
    let shortest = seqs.iter().map(Vec::len).min().unwrap();
    let c = model.shared_prefix_len(&prompts);
    assert!(c >= MIN_SHARED_PREFIX, "the prompts share {c} tokens");
    assert_eq!(c, common.min(shortest - 1));
    assert_eq!(model.shared_prefix_len(&prompts[..1]), 0, "one prompt");
    assert_eq!(
        model.shared_prefix_len(&["The dog ran", "The dog sat"]),
        0,
        "too short to share"
    );
    model.set_prefix_sharing(false);
    assert_eq!(model.shared_prefix_len(&prompts), 0, "sharing off");
}

/// Prompts that share a long prefix run it once ([`super::passes::SharedPrefix`]); the
/// numbers are those of running every prompt whole: the tape backward against autograd (which
/// does not share) and the batched forward against one prompt at a time.
#[test]
fn a_shared_prefix_gives_the_numbers_of_whole_prompts() {
    use super::passes::{shared_prefix_len, MIN_SHARED_PREFIX};
    let model = stories(DType::F32);
    let llama = llama_of(&model);
    let header = "Once upon a time, there was a little girl named Lily. She loved to play \
                  outside in the park with her friends. One day,";
    let texts = [
        format!("{header} she saw a big red"),
        format!("{header} Tom"),
        format!("{header} the sun was hot and the birds sang in the"),
    ];
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| model.encode(t).unwrap()).collect();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let c = shared_prefix_len(&refs);
    assert!(c >= MIN_SHARED_PREFIX, "the prompts share {c} tokens");
    assert!(refs.iter().all(|s| s.len() > c));
    assert_eq!(shared_prefix_len(&refs[..1]), 0, "one row shares nothing");
    assert_eq!(
        shared_prefix_len(&[&refs[0][..5], &refs[1][..5]]),
        0,
        "too short to share"
    );

    let targets = vec![vec![264, 29, 350], vec![17, 264, 1], vec![400, 3, 264]];
    let tape = llama.gradients_tape(&refs, &targets);
    let auto = llama.gradients_autograd(&refs, &targets);
    assert!(max_rel(&tape.probs, &auto.probs) < 1e-5, "probs");
    assert!(max_rel(&tape.acts, &auto.acts) < 1e-5, "activations");
    let err = max_rel(&tape.grads, &auto.grads);
    assert!(err < 1e-4, "gradients differ: max relative error {err}");

    let batched = llama.forward_tokens(&refs, &targets, true);
    for (i, seq) in refs.iter().enumerate() {
        let one = llama.forward_tokens(&[seq], &targets[i..i + 1], true);
        let row = |t: &Tensor| t.narrow(0, i as i64, 1);
        assert!(
            max_rel(&row(&batched.probs), &one.probs) < 1e-5,
            "probs {i}"
        );
        assert!(max_rel(&row(&batched.acts), &one.acts) < 1e-5, "acts {i}");
        let resid = |f: &super::ForwardTensors| f.resid.as_ref().unwrap().shallow_clone();
        assert!(
            max_rel(&row(&resid(&batched)), &resid(&one)) < 1e-5,
            "resid {i}"
        );
    }
}

/// A batch whose common prefix the previous batch already ran reuses its keys and values
/// ([`super::passes::PrefixMemo`]) and gets exactly (bit for bit) the numbers a model that never
/// saw the previous batch computes; a batch with another prefix replaces the kept one.
#[test]
fn a_kept_prefix_gives_the_numbers_of_a_fresh_pass() {
    use super::passes::shared_prefix_len;
    let header = "Once upon a time, there was a little girl named Lily. She loved to play \
                  outside in the park with her friends. One day,";
    let batch = |ends: &[&str], model: &HfModel| -> Vec<Vec<u32>> {
        ends.iter()
            .map(|e| model.encode(&format!("{header} {e}")).unwrap())
            .collect()
    };
    let (warm, fresh) = (stories(DType::F32), stories(DType::F32));
    let (warm_llama, fresh_llama) = (llama_of(&warm), llama_of(&fresh));
    let first = batch(&["she saw a big red", "Tom"], &warm);
    let second = batch(&["the sun was hot", "a cat sat on the", "Ben"], &warm);
    fn refs(b: &[Vec<u32>]) -> Vec<&[u32]> {
        b.iter().map(|s| s.as_slice()).collect()
    }
    let (first, second) = (refs(&first), refs(&second));
    let c = shared_prefix_len(&second);
    assert!(
        c > 0 && c == shared_prefix_len(&first),
        "both batches share {c} tokens"
    );
    let targets = vec![vec![264, 29], vec![17, 264], vec![400, 3]];

    warm_llama.gradients_tape(&first, &targets[..2]);
    assert!(warm_llama.prefix_memo.holds(&first[0][..c]));
    let kept = warm_llama.gradients_tape(&second, &targets);
    let computed = fresh_llama.gradients_tape(&second, &targets);
    assert!(kept.grads.equal(&computed.grads), "gradients");
    assert!(kept.probs.equal(&computed.probs), "probs");
    assert!(kept.acts.equal(&computed.acts), "activations");
    let kept_fwd = warm_llama.forward_tokens(&second, &targets, true);
    let computed_fwd = fresh_llama.forward_tokens(&second, &targets, true);
    assert!(
        kept_fwd.acts.equal(&computed_fwd.acts),
        "forward activations"
    );

    let other = batch(&["Tom", "Ben"], &warm);
    let other: Vec<Vec<u32>> = other
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s[2] = s[2].wrapping_add(1) % 512;
            s
        })
        .collect();
    let other = refs(&other);
    let c_other = shared_prefix_len(&other);
    assert!(c_other > 0);
    warm_llama.forward_tokens(&other, &targets[..2], false);
    assert!(warm_llama.prefix_memo.holds(&other[0][..c_other]));
    assert!(!warm_llama.prefix_memo.holds(&first[0][..c]));
}

/// In bf16 and f16 the tape backward (its chain in f32, its weight products in the model's
/// type) runs over the half-precision pass: its gradients
/// are as close to f32's as autograd's (which differentiates in half precision), and close to
/// f32 in relative L2. Eight prompts of different lengths in one padded batch: on this
/// 5-layer model one prompt's error is amplified rounding noise (2.6e-2 to 6.8e-2 per prompt
/// in bf16), too unsteady to bound alone.
#[test]
fn half_precision_tape_backward_is_close_to_f32() {
    let texts = [
        "Once upon a time, there was a little girl named Lily. She",
        "The dog ran",
        "Tom and his mom went to the park. They saw a big",
        "One day, a little bird",
        "Sue had a red ball. She liked to play with it every",
        "The sun was hot and the",
        "Max the cat was very hungry. He looked for",
        "Once upon a time there was a boy",
    ];
    let targets: Vec<Vec<u32>> = (0..texts.len() as u32)
        .map(|i| vec![264, 29 + i, 350 - 7 * i])
        .collect();
    let f32_model = stories(DType::F32);
    let reference_llama = llama_of(&f32_model);
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| f32_model.encode(t).unwrap()).collect();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let reference = reference_llama.gradients_tape(&refs, &targets);
    let rel_l2 = |a: &Tensor, b: &Tensor| {
        (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-30)
    };
    for dtype in [DType::BF16, DType::F16] {
        let m = stories(dtype);
        let llama = llama_of(&m);
        let tape = llama.gradients_tape(&refs, &targets);
        let auto = llama.gradients_autograd(&refs, &targets);
        assert_eq!(tape.grads.kind(), tch::Kind::Float);
        let (e_tape, e_auto, e_probs) = (
            rel_l2(&tape.grads, &reference.grads),
            rel_l2(&auto.grads, &reference.grads),
            rel_l2(&tape.probs, &reference.probs),
        );
        eprintln!(
            "{dtype:?}: relative L2 to f32: gradients by tape {e_tape:.2e}, by autograd \
             {e_auto:.2e}; probabilities {e_probs:.2e}"
        );
        assert!(
            e_tape <= 0.05,
            "{dtype:?}: tape gradients {e_tape} from f32 (probabilities {e_probs})"
        );
        assert!(
            e_tape <= e_auto * 1.5,
            "{dtype:?}: the f32 backward ({e_tape}) is much worse than half-precision autograd ({e_auto})"
        );
    }
}

/// `matmul_shared` (the batch folded into the rows) equals a broadcasting matmul, and
/// grouping query heads onto their kv head is undone by `ungrouped`: head `kv * group + j`'s
/// rows sit at `j * r ..` of kv head `kv`, the head order of GQA's `repeat_interleave`.
#[test]
fn grouped_heads_and_the_shared_matmul_are_the_plain_forms() {
    use super::block::matmul_shared;
    let model = stories(DType::F32);
    let llama = llama_of(&model);
    let attention = &llama.blocks[0].attention;
    let (nh, kvh, g) = (
        attention.num_heads,
        attention.num_kv_heads,
        attention.group_size(),
    );
    assert!(g > 1, "stories260k has grouped-query attention");
    let opts = (tch::Kind::Float, tch::Device::Cpu);
    let a = Tensor::randn([3, kvh, 5, 8], opts);
    let b = Tensor::randn([1, kvh, 8, 7], opts);
    let plain = a.matmul(&b);
    assert_eq!(matmul_shared(&a, &b).size(), plain.size());
    assert!(max_rel(&matmul_shared(&a, &b), &plain) < 1e-6);

    let q = Tensor::randn([2, nh, 4, 8], opts);
    let k = Tensor::randn([2, kvh, 6, 8], opts);
    assert!(attention.ungrouped(&attention.grouped(&q)).equal(&q));
    let grouped = attention.ungrouped(&attention.grouped(&q).matmul(&k.transpose(-2, -1)));
    let repeated = q.matmul(&k.repeat_interleave_self_int(g, 1, None).transpose(-2, -1));
    assert!(max_rel(&grouped, &repeated) < 1e-6);
    assert!(attention
        .repeated(&k)
        .equal(&k.repeat_interleave_self_int(g, 1, None)));
}
