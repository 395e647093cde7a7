//! Statistics used to fit and compare neuron empirical gradients.
//!
//! Written by hand because each is a few lines and none of the workspace's crates offers the
//! zero-intercept fit or rank correlation with typed errors for degenerate input
//! (`ndarray-stats` has neither). Every function works in `f64`, checks its input and returns
//! [`StatsError`] instead of NaN.

/// Why a statistic could not be computed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("length mismatch: x has {x} values, y has {y}")]
    LengthMismatch { x: usize, y: usize },
    #[error("need at least {needed} points, got {got}")]
    TooFewPoints { needed: usize, got: usize },
    #[error("non-finite value {value} at index {index} of {which}")]
    NonFinite {
        which: &'static str,
        index: usize,
        value: f64,
    },
    #[error("{which} is constant (zero variance), so the statistic is undefined")]
    ZeroVariance { which: &'static str },
}

fn check(x: &[f64], y: &[f64], needed: usize) -> Result<(), StatsError> {
    if x.len() != y.len() {
        return Err(StatsError::LengthMismatch {
            x: x.len(),
            y: y.len(),
        });
    }
    if x.len() < needed {
        return Err(StatsError::TooFewPoints {
            needed,
            got: x.len(),
        });
    }
    for (which, values) in [("x", x), ("y", y)] {
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(StatsError::NonFinite {
                which,
                index,
                value,
            });
        }
    }
    Ok(())
}

/// Least-squares slope of `y = k * x` (no intercept): `sum(x*y) / sum(x*x)`.
///
/// All-zero `x` is [`StatsError::ZeroVariance`] (the line through the origin is undefined).
pub fn slope_through_origin(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    check(x, y, 1)?;
    let sxx: f64 = x.iter().map(|v| v * v).sum();
    if sxx == 0.0 {
        return Err(StatsError::ZeroVariance { which: "x" });
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    Ok(sxy / sxx)
}

/// Pearson correlation coefficient, clamped to [-1, 1] against rounding.
///
/// Needs two points; a constant `x` or `y` is [`StatsError::ZeroVariance`].
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    check(x, y, 2)?;
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    // A spread below rounding noise of the mean is a constant series.
    let tiny = |s: f64, m: f64| s <= (m.abs() * 1e-15).powi(2) * n;
    if sxx == 0.0 || tiny(sxx, mx) {
        return Err(StatsError::ZeroVariance { which: "x" });
    }
    if syy == 0.0 || tiny(syy, my) {
        return Err(StatsError::ZeroVariance { which: "y" });
    }
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Ranks from 1, ties sharing their average rank.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Spearman rank correlation (Pearson r of average ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    check(x, y, 2)?;
    pearson(&ranks(x), &ranks(y))
}

/// Mean absolute error `mean(|x - y|)`; needs one point.
pub fn mae(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    check(x, y, 1)?;
    Ok(x.iter().zip(y).map(|(a, b)| (a - b).abs()).sum::<f64>() / x.len() as f64)
}

/// A zero-intercept fit of a sweep: the slope (the NEG) and how linear the relation is.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OriginFit {
    pub slope: f64,
    /// Pearson r of (x, y); 0 when `y` is constant (a neuron with no effect shows no linear
    /// relation), so that results never hold NaN.
    pub r: f64,
}

/// [`slope_through_origin`] and [`pearson`] together; a constant `y` gives `r = 0`.
pub fn fit_through_origin(x: &[f64], y: &[f64]) -> Result<OriginFit, StatsError> {
    let slope = slope_through_origin(x, y)?;
    let r = match pearson(x, y) {
        Ok(r) => r,
        Err(StatsError::ZeroVariance { which: "y" }) => 0.0,
        Err(e) => return Err(e),
    };
    Ok(OriginFit { slope, r })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let x = [1.0, 2.0, 3.0];
        let y = [2.0, 4.0, 7.0];
        // sum xy = 2 + 8 + 21 = 31, sum xx = 14
        assert!((slope_through_origin(&x, &y).unwrap() - 31.0 / 14.0).abs() < 1e-12);
        assert!((mae(&x, &y).unwrap() - 7.0 / 3.0).abs() < 1e-12);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert!((spearman(&[1.0, 2.0, 3.0], &[1.0, 10.0, 100.0]).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn degenerate_input_is_a_typed_error() {
        assert_eq!(
            pearson(&[1.0, 1.0], &[1.0, 2.0]),
            Err(StatsError::ZeroVariance { which: "x" })
        );
        assert_eq!(
            pearson(&[1.0], &[1.0]),
            Err(StatsError::TooFewPoints { needed: 2, got: 1 })
        );
        assert_eq!(
            mae(&[1.0], &[1.0, 2.0]),
            Err(StatsError::LengthMismatch { x: 1, y: 2 })
        );
        assert!(matches!(
            slope_through_origin(&[0.0, 0.0], &[1.0, 2.0]),
            Err(StatsError::ZeroVariance { which: "x" })
        ));
        assert!(matches!(
            mae(&[1.0, f64::NAN], &[1.0, 2.0]),
            Err(StatsError::NonFinite {
                which: "x",
                index: 1,
                ..
            })
        ));
        assert!(matches!(
            mae(&[], &[]),
            Err(StatsError::TooFewPoints { .. })
        ));
        let fit = fit_through_origin(&[-1.0, 0.0, 1.0], &[0.5, 0.5, 0.5]).unwrap();
        assert_eq!(fit.r, 0.0);
        assert_eq!(fit.slope, 0.0);
    }
}
