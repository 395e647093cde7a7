//! Property tests of the statistics: exact recovery, invariances, degenerate input.
use neg_core::stats::{fit_through_origin, mae, pearson, slope_through_origin, spearman};
use proptest::prelude::*;

fn series(min_len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-100.0f64..100.0, min_len..40)
}

/// A series with real spread (no near-constant inputs, where r is ill-conditioned).
fn spread_series() -> impl Strategy<Value = Vec<f64>> {
    series(3).prop_filter("needs spread", |v| {
        let max = v.iter().cloned().fold(f64::MIN, f64::max);
        let min = v.iter().cloned().fold(f64::MAX, f64::min);
        max - min > 1.0
    })
}

proptest! {
    #[test]
    fn exact_linear_relation_is_recovered(x in spread_series(), k in -50.0f64..50.0) {
        prop_assume!(k.abs() > 1e-3);
        let y: Vec<f64> = x.iter().map(|v| k * v).collect();
        let fit = fit_through_origin(&x, &y).unwrap();
        prop_assert!((fit.slope - k).abs() <= 1e-9 * k.abs().max(1.0));
        prop_assert!((fit.r - k.signum()).abs() < 1e-9);
        prop_assert!((spearman(&x, &y).unwrap() - k.signum()).abs() < 1e-9);
    }

    #[test]
    fn slope_scales_inversely_with_x(x in spread_series(), y0 in series(1), c in 0.1f64..10.0) {
        let y = &y0[..x.len().min(y0.len())];
        let x = &x[..y.len()];
        prop_assume!(x.iter().any(|v| v.abs() > 1e-3));
        let scaled: Vec<f64> = x.iter().map(|v| v * c).collect();
        let a = slope_through_origin(x, y).unwrap();
        let b = slope_through_origin(&scaled, y).unwrap();
        prop_assert!((a / c - b).abs() <= 1e-9 * a.abs().max(1.0));
    }

    #[test]
    fn pearson_is_symmetric_bounded_and_affine_invariant(
        x in spread_series(), noise in series(1), a in 0.1f64..10.0, b in -10.0f64..10.0
    ) {
        let y: Vec<f64> = x.iter().zip(noise.iter().cycle()).map(|(u, e)| u + e).collect();
        if let Ok(r) = pearson(&x, &y) {
            prop_assert!((-1.0..=1.0).contains(&r));
            prop_assert!((pearson(&y, &x).unwrap() - r).abs() < 1e-12);
            let t: Vec<f64> = x.iter().map(|v| a * v + b).collect();
            prop_assert!((pearson(&t, &y).unwrap() - r).abs() < 1e-9);
            let neg: Vec<f64> = x.iter().map(|v| -v).collect();
            prop_assert!((pearson(&neg, &y).unwrap() + r).abs() < 1e-9);
        }
    }

    #[test]
    fn spearman_is_invariant_to_monotone_maps(x in spread_series(), y in spread_series()) {
        let n = x.len().min(y.len());
        let (x, y) = (&x[..n], &y[..n]);
        if let Ok(s) = spearman(x, y) {
            let cubed: Vec<f64> = x.iter().map(|v| v.powi(3) + 7.0).collect();
            prop_assert!((spearman(&cubed, y).unwrap() - s).abs() < 1e-9);
        }
    }

    #[test]
    fn mae_is_a_metric(x in series(1), y in series(1), z in series(1)) {
        let n = x.len().min(y.len()).min(z.len());
        let (x, y, z) = (&x[..n], &y[..n], &z[..n]);
        prop_assume!(n >= 1);
        prop_assert_eq!(mae(x, x).unwrap(), 0.0);
        prop_assert!((mae(x, y).unwrap() - mae(y, x).unwrap()).abs() < 1e-12);
        prop_assert!(mae(x, z).unwrap() <= mae(x, y).unwrap() + mae(y, z).unwrap() + 1e-9);
    }

    #[test]
    fn constant_series_never_gives_nan(c in -10.0f64..10.0, n in 2usize..20) {
        let x: Vec<f64> = (0..n).map(|i| i as f64 - 3.0).collect();
        let y = vec![c; n];
        prop_assert!(pearson(&x, &y).is_err());
        prop_assert!(pearson(&y, &x).is_err());
        prop_assert!(spearman(&y, &x).is_err());
        let fit = fit_through_origin(&x, &y).unwrap();
        prop_assert!(fit.slope.is_finite() && fit.r == 0.0);
    }
}
