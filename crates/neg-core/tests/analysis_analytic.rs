//! The analyses against the analytic model, where the right answers follow in closed form.
use ndarray::Array4;
use neg_core::analysis::{
    compare_methods, generality, linearity, multi_neuron_accumulation, neg_distribution,
    topk_attribution, AccumulationConfig, LinearityConfig, Ranking, TopKConfig,
};
use neg_core::methods::{self, Method};
use neg_core::neg::SweepConfig;
use neg_core::testing::{AnalyticAdapter, Head};
use neg_core::{sampling, ModelAdapter, ModelKind, NegError, TargetedPrompt};

fn prompts() -> Vec<TargetedPrompt> {
    [
        "One day a dog",
        "The sun was",
        "She went to the",
        "A little bird",
    ]
    .iter()
    .map(|t| TargetedPrompt::new(*t, vec![0, 3]))
    .collect()
}

fn model(head: Head) -> AnalyticAdapter {
    AnalyticAdapter::new(5, 4, 12, 6, 5).with_head(head)
}

#[test]
fn generality_matches_its_definition() {
    let even = generality(&[3, 3, 3, 3]);
    assert_eq!(
        (even.coverage, even.distribution, even.generality),
        (1.0, 1.0, 1.0)
    );
    let one_bin = generality(&[0, 8, 0, 0]);
    assert_eq!(one_bin.coverage, 0.25);
    assert!(one_bin.distribution.abs() < 1e-12);
    let g = generality(&[1, 3]);
    // mean 2, var 1, max var = 16 * 1 / 4 = 4 -> 0.75
    assert!((g.distribution - 0.75).abs() < 1e-12);
}

#[test]
fn linearity_of_a_linear_model_is_perfect_and_softmax_loses_it_with_range() {
    let neurons = sampling::sample_neurons(4, 12, 20, 3).unwrap();
    let lin = linearity(
        &model(Head::Linear),
        &prompts(),
        &neurons,
        &LinearityConfig::default(),
    )
    .unwrap();
    assert_eq!(lin.per_range.len(), 5);
    assert!(lin.per_range.iter().all(|r| r.linear_ratio == 1.0));
    assert_eq!(lin.linear_ratio, 1.0);
    assert!((lin.positive_ratio + lin.negative_ratio - 1.0).abs() < 1e-12);
    assert!(lin.positive_ratio > 0.1 && lin.negative_ratio > 0.1);
    assert_eq!(lin.prompt_generality.distribution, 1.0);
    assert_eq!(lin.prompt_generality.counts, vec![40; 4]);
    let soft = linearity(
        &model(Head::Softmax),
        &prompts(),
        &neurons,
        &LinearityConfig::default(),
    )
    .unwrap();
    let first = soft.per_range.first().unwrap().mean_abs_r;
    let last = soft.per_range.last().unwrap().mean_abs_r;
    assert!(
        first > 0.95 && last < first,
        "mean |r| {first} at 0.5 vs {last} at 10"
    );
    assert!(soft.linear_ratio < 1.0 || soft.per_range[4].linear_ratio < 1.0);
}

#[test]
fn estimation_quality_ranks_neurgrad_first_on_a_linear_model() {
    let m = model(Head::Linear);
    let neurons = sampling::sample_neurons(4, 12, 30, 9).unwrap();
    let (truth, q) = compare_methods(
        &m,
        &prompts(),
        &neurons,
        &SweepConfig::default(),
        &Method::ALL,
    )
    .unwrap();
    assert_eq!(truth.neg.shape(), &[4, 2, 30]);
    let get = |n: &str| q.methods.iter().find(|m| m.name == n).unwrap();
    assert!((get("neurgrad").r - 1.0).abs() < 1e-6);
    assert!(get("neurgrad").mae < 1e-5);
    assert!(get("cg").r < 0.99);
    assert!(get("ig_mean_gradient").r < 0.99); // a slope of additive shifts, like CG
    assert!(get("lpi").n == 240);
    let masked = model(Head::Linear).with_kind(ModelKind::MaskedLm);
    let (_, q) = compare_methods(
        &masked,
        &prompts(),
        &neurons,
        &SweepConfig::default(),
        &Method::ALL,
    )
    .unwrap();
    assert_eq!(q.unsupported.len(), 1);
    assert_eq!(q.unsupported[0].0, "lpi");
}

#[test]
fn topk_enhancement_of_a_linear_model_follows_the_top_neg_sum() {
    let m = model(Head::Linear);
    let ps = prompts();
    let ng = methods::neurgrad(&m, &ps).unwrap();
    let cfg = TopKConfig::default();
    let curves = topk_attribution(
        &m,
        &ps,
        "neurgrad",
        &ng.scores,
        &ng.activations,
        Ranking::Magnitude,
        &cfg,
    )
    .unwrap();
    assert_eq!(curves.len(), 3);
    for c in &curves {
        // Exact: each target moves by shift * sum of its top-K |NEG|.
        let mut expected_per_unit = 0.0f64;
        for p in 0..ps.len() {
            for t in 0..2 {
                let mut mags: Vec<f64> = ng
                    .scores
                    .slice(ndarray::s![p, t, .., ..])
                    .iter()
                    .map(|v| v.abs() as f64)
                    .collect();
                mags.sort_by(|a, b| b.total_cmp(a));
                expected_per_unit += mags[..c.k].iter().sum::<f64>();
            }
        }
        expected_per_unit /= 8.0;
        for (s, v) in c.shifts.iter().zip(&c.mean_output_shift) {
            assert!(
                (v - *s as f64 * expected_per_unit).abs() < 1e-4,
                "K={} {v}",
                c.k
            );
        }
    }
    assert!(curves[2].mean_output_shift[9] > curves[0].mean_output_shift[9]);
    // CG's polarity ignores the activation's sign, so it enhances less under magnitude shifts.
    let cg = methods::computational_gradient(&m, &ps).unwrap();
    let cg_curves = topk_attribution(
        &m,
        &ps,
        "cg",
        &cg.scores,
        &cg.activations,
        Ranking::Magnitude,
        &cfg,
    )
    .unwrap();
    assert!(cg_curves[2].mean_output_shift[9] < curves[2].mean_output_shift[9]);
    let bad = TopKConfig {
        ks: vec![0],
        ..TopKConfig::default()
    };
    assert!(matches!(
        topk_attribution(
            &m,
            &ps,
            "x",
            &ng.scores,
            &ng.activations,
            Ranking::Positive,
            &bad
        ),
        Err(NegError::NoNeurons)
    ));
}

#[test]
fn neg_distribution_of_known_values() {
    // 1 prompt, 1 target, 2 layers x 50 neurons, values 1..=100 (layer 1 holds 51..=100).
    let scores = Array4::from_shape_fn((1, 1, 2, 50), |(_, _, l, n)| (l * 50 + n + 1) as f32);
    let d = neg_distribution(&scores, 10).unwrap();
    assert_eq!(d.count, 100);
    assert_eq!(d.total_abs, 5050.0);
    assert!((d.cumulative_share[0] - 100.0 / 5050.0).abs() < 1e-12);
    assert!((d.cumulative_share[99] - 1.0).abs() < 1e-12);
    assert!(d.cumulative_share.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(d.histogram.counts.iter().sum::<u64>(), 100);
    assert_eq!(d.histogram.edges.len(), 11);
    assert!((d.per_layer[0].mean_abs - 25.5).abs() < 1e-9);
    assert!((d.per_layer[1].mean_abs - 75.5).abs() < 1e-9);
    // variance of 1..=50 = (50^2 - 1) / 12
    assert!((d.per_layer[0].var_abs - 2499.0 / 12.0).abs() < 1e-9);
    assert!(neg_distribution(&Array4::zeros((0, 1, 1, 1)), 10).is_err());
}

#[test]
fn multi_neuron_shifts_accumulate_exactly_for_a_linear_model() {
    let ps = prompts();
    let cfg = AccumulationConfig {
        max_log2: 12,
        seed: 7,
        ..AccumulationConfig::default()
    };
    let lin = model(Head::Linear);
    let ng = methods::neurgrad(&lin, &ps).unwrap();
    let rep = multi_neuron_accumulation(&lin, &ps, &ng.scores, &ng.activations, &cfg).unwrap();
    // 48 neurons: 1, 2, 4, 8, 16, 32
    assert_eq!(
        rep.points.iter().map(|p| p.neurons).collect::<Vec<_>>(),
        vec![1, 2, 4, 8, 16, 32]
    );
    assert_eq!(rep.shifts.len(), 51);
    for p in &rep.points {
        assert!((p.r_mean - 1.0).abs() < 1e-6 && (p.r_pooled - 1.0).abs() < 1e-6);
        assert!((p.mean_actual_at_max - p.mean_predicted_at_max).abs() < 1e-4);
    }
    let soft = model(Head::Softmax);
    let ng = methods::neurgrad(&soft, &ps).unwrap();
    let rep = multi_neuron_accumulation(&soft, &ps, &ng.scores, &ng.activations, &cfg).unwrap();
    let again = multi_neuron_accumulation(&soft, &ps, &ng.scores, &ng.activations, &cfg).unwrap();
    assert_eq!(rep, again, "seeded sampling is reproducible");
    assert!(rep.points.iter().all(|p| p.r_mean > 0.5));
    let bad = AccumulationConfig { step: 0.0, ..cfg };
    assert!(matches!(
        multi_neuron_accumulation(&soft, &ps, &ng.scores, &ng.activations, &bad),
        Err(NegError::InvalidStep(_))
    ));
    assert!(matches!(
        multi_neuron_accumulation(&soft, &[], &ng.scores, &ng.activations, &cfg),
        Err(NegError::EmptyPrompts)
    ));
    let _ = soft.num_layers();
}

/// The accumulation in steps (plan, each prompt's probabilities from arrays holding only its
/// block, report) gives exactly the one-call result: what lets a run spread prompts over
/// processes and resume them. Rows and plans that do not fit are typed errors.
#[test]
fn accumulation_by_blocks_equals_one_call() {
    use ndarray::s;
    use neg_core::analysis::AccumulationPlan;
    let ps = prompts();
    let cfg = AccumulationConfig {
        max_log2: 5,
        seed: 3,
        ..AccumulationConfig::default()
    };
    let soft = model(Head::Softmax);
    let ng = methods::neurgrad(&soft, &ps).unwrap();
    let whole = multi_neuron_accumulation(&soft, &ps, &ng.scores, &ng.activations, &cfg).unwrap();
    let (l, n) = (soft.num_layers(), soft.ff_width());
    let plan = AccumulationPlan::new(&cfg, ps.len(), l, n).unwrap();
    let mut probs = Vec::new();
    for (b, block) in ps.chunks(3).enumerate() {
        let rows = b * 3..b * 3 + block.len();
        let neg = ng.scores.slice(s![rows.clone(), .., .., ..]).to_owned();
        let acts = ng.activations.slice(s![rows.clone(), .., ..]).to_owned();
        for (row, (p, prompt)) in rows.zip(block).enumerate() {
            probs.push(plan.probs(&soft, prompt, p, &neg, &acts, row).unwrap());
        }
    }
    assert_eq!(plan.report(&ng.scores, &probs).unwrap(), whole);
    // A row past the arrays, a prompt past the plan, or too few prompts' probabilities.
    let neg = ng.scores.slice(s![0..1, .., .., ..]).to_owned();
    let acts = ng.activations.slice(s![0..1, .., ..]).to_owned();
    assert!(matches!(
        plan.probs(&soft, &ps[0], 0, &neg, &acts, 1),
        Err(NegError::InvalidArgument { name: "row", .. })
    ));
    assert!(matches!(
        plan.probs(&soft, &ps[0], 9, &neg, &acts, 0),
        Err(NegError::InvalidArgument { name: "index", .. })
    ));
    assert!(matches!(
        plan.report(&ng.scores, &probs[..2]),
        Err(NegError::InvalidArgument { name: "probs", .. })
    ));
}
