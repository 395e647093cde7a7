//! A random forest specialised for small-integer (u8) features.
//!
//! Why not smartcore (or a port of scikit-learn's CART): those sort the node's samples by
//! every candidate feature at every node, O(n log n) per feature, and smartcore's forest is
//! about 11x slower than scikit-learn on the 2000 x 2000 four-class Tree-Probe task. Tree-Probe
//! features take only a handful of distinct values (the option index, 0..K), so the best split
//! of a feature is found from a `[value, class]` count histogram in one O(n) pass plus an
//! O(values x classes) scan of the thresholds between present values. Bootstrap resampling is
//! kept as per-sample counts (weights), exactly as scikit-learn does, and trees are grown in
//! parallel with rayon, each from its own seeded ChaCha stream so results do not depend on
//! the thread count.
//!
//! The algorithm otherwise follows scikit-learn's `RandomForestClassifier` defaults: Gini
//! impurity, `sqrt(n_features)` candidate features per split drawn without replacement (and,
//! like scikit-learn, more are drawn while the ones drawn are constant in the node), splits
//! `x <= t`, `min_samples_split = 2`, `min_samples_leaf = 1`, unlimited depth, bootstrap
//! samples of the training-set size, and prediction by averaging the trees' leaf class
//! distributions.
use ndarray::ArrayView2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{ProbeError, Result};

/// How many candidate features each split looks at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MaxFeatures {
    /// `max(1, floor(sqrt(n_features)))`, scikit-learn's classifier default.
    Sqrt,
    /// `max(1, floor(log2(n_features)))`.
    Log2,
    /// All features (plain bagged trees).
    All,
    /// A fixed count (capped at the feature count).
    Count(usize),
}

impl MaxFeatures {
    fn resolve(self, n_features: usize) -> usize {
        let k = match self {
            MaxFeatures::Sqrt => (n_features as f64).sqrt().floor() as usize,
            MaxFeatures::Log2 => (n_features as f64).log2().floor() as usize,
            MaxFeatures::All => n_features,
            MaxFeatures::Count(c) => c,
        };
        k.clamp(1, n_features.max(1))
    }
}

/// Forest hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForestConfig {
    /// Number of trees (scikit-learn default 100).
    pub n_trees: usize,
    /// Maximum depth (root at depth 0); `None` grows until leaves are pure.
    pub max_depth: Option<usize>,
    /// Candidate features per split.
    pub max_features: MaxFeatures,
    /// Whether each tree sees a bootstrap sample (true) or the whole training set.
    pub bootstrap: bool,
    /// Seed of the forest; tree `t` uses a stream derived from `(seed, t)`.
    pub seed: u64,
}

impl Default for ForestConfig {
    fn default() -> Self {
        Self {
            n_trees: 100,
            max_depth: None,
            max_features: MaxFeatures::Sqrt,
            bootstrap: true,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Node {
    /// Go left when `x[feature] <= threshold`.
    Split {
        feature: u32,
        threshold: u8,
        left: u32,
        right: u32,
    },
    /// Class distribution at `leaf_values[offset .. offset + n_classes]`.
    Leaf { offset: u32 },
}

/// One fitted decision tree.
#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
    leaf_values: Vec<f32>,
    /// Weighted Gini decrease per feature (sparse: feature, decrease).
    importances: Vec<(u32, f64)>,
    depth: usize,
}

/// A fitted random forest over u8 features.
#[derive(Debug, Clone)]
pub struct RandomForest {
    trees: Vec<Tree>,
    n_classes: usize,
    n_features: usize,
}

/// Read access to a `[features, samples]` u8 matrix, whose columns are addressed by sample id.
struct Columns<'a> {
    x: ArrayView2<'a, u8>,
}

impl Columns<'_> {
    /// Slow path for non-contiguous inputs (a transposed or sliced view).
    #[inline]
    fn get(&self, feature: usize, sample: usize) -> u8 {
        self.x[[feature, sample]]
    }
}

struct Builder<'a, 'b> {
    cols: Columns<'a>,
    y: &'b [usize],
    weight: Vec<u32>,
    n_classes: usize,
    n_values: usize,
    max_features: usize,
    max_depth: usize,
    features: Vec<u32>,
    hist: Vec<u32>,
    importance: Vec<f64>,
}

/// A node to grow: samples[start..end], depth, known constant features, (parent, is_left).
type StackItem = (usize, usize, usize, usize, Option<(usize, bool)>);

struct Best {
    feature: usize,
    threshold: u8,
    proxy: f64,
}

impl Builder<'_, '_> {
    /// Class weights of `samples` into `out` (length n_classes); returns the total weight.
    fn class_counts(&self, samples: &[u32], out: &mut [u64]) -> u64 {
        out.iter_mut().for_each(|c| *c = 0);
        for &s in samples {
            out[self.y[s as usize]] += self.weight[s as usize] as u64;
        }
        out.iter().sum()
    }

    /// Searches the best split of `samples`; mirrors scikit-learn's BestSplitter feature
    /// sampling (with constant-feature bookkeeping) so that the feature budget per node is
    /// spent on features that vary. Returns the best split and the new constant count.
    fn find_split(
        &mut self,
        samples: &[u32],
        n_known_constants: usize,
        rng: &mut ChaCha8Rng,
    ) -> (Option<Best>, usize) {
        let (nv, nc) = (self.n_values, self.n_classes);
        let n_features = self.features.len();
        let mut f_i = n_features;
        let mut n_found_constants = 0usize;
        let mut n_drawn_constants = 0usize;
        let mut n_total_constants = n_known_constants;
        let mut n_visited = 0usize;
        let mut best: Option<Best> = None;
        let mut left = vec![0u64; nc];
        let mut total = vec![0u64; nc];
        while f_i > n_total_constants
            && (n_visited < self.max_features || n_visited <= n_found_constants + n_drawn_constants)
        {
            n_visited += 1;
            let mut f_j = rng.gen_range(n_drawn_constants..f_i - n_found_constants);
            if f_j < n_known_constants {
                self.features.swap(n_drawn_constants, f_j);
                n_drawn_constants += 1;
                continue;
            }
            f_j += n_found_constants;
            let feature = self.features[f_j] as usize;
            // Histogram of (value, class) weights over the node.
            self.hist.iter_mut().for_each(|h| *h = 0);
            let row = self.cols.x.row(feature);
            let row = row.as_slice();
            for &s in samples {
                let s = s as usize;
                let v = match row {
                    Some(r) => r[s],
                    None => self.cols.get(feature, s),
                } as usize;
                self.hist[v * nc + self.y[s]] += self.weight[s];
            }
            let present: Vec<usize> = (0..nv)
                .filter(|&v| self.hist[v * nc..(v + 1) * nc].iter().any(|&c| c > 0))
                .collect();
            if present.len() < 2 {
                self.features.swap(f_j, n_total_constants);
                n_found_constants += 1;
                n_total_constants += 1;
                continue;
            }
            f_i -= 1;
            self.features.swap(f_i, f_j);
            total.iter_mut().for_each(|t| *t = 0);
            for &v in &present {
                let h = &self.hist[v * nc..(v + 1) * nc];
                total.iter_mut().zip(h).for_each(|(t, &c)| *t += c as u64);
            }
            let w_total: u64 = total.iter().sum();
            left.iter_mut().for_each(|l| *l = 0);
            let mut w_left = 0u64;
            for &v in &present[..present.len() - 1] {
                let h = &self.hist[v * nc..(v + 1) * nc];
                for (l, &c) in left.iter_mut().zip(h) {
                    *l += c as u64;
                    w_left += c as u64;
                }
                let w_right = w_total - w_left;
                // scikit-learn's Gini proxy: maximise sum_c l_c^2 / w_l + sum_c r_c^2 / w_r.
                let (mut sl, mut sr) = (0f64, 0f64);
                for c in 0..nc {
                    let l = left[c] as f64;
                    let r = (total[c] - left[c]) as f64;
                    sl += l * l;
                    sr += r * r;
                }
                let proxy = sl / w_left as f64 + sr / w_right as f64;
                if best.as_ref().is_none_or(|b| proxy > b.proxy + 1e-12) {
                    best = Some(Best {
                        feature,
                        threshold: v as u8,
                        proxy,
                    });
                }
            }
        }
        (best, n_total_constants)
    }

    fn build(&mut self, mut samples: Vec<u32>, rng: &mut ChaCha8Rng) -> Tree {
        let nc = self.n_classes;
        let mut nodes: Vec<Node> = Vec::new();
        let mut leaf_values: Vec<f32> = Vec::new();
        let mut counts = vec![0u64; nc];
        let mut max_depth_seen = 0usize;
        // Work stack: (start, end, depth, n_constants, parent slot to patch, is_left).
        let mut stack: Vec<StackItem> = vec![(0, samples.len(), 0, 0, None)];
        while let Some((start, end, depth, n_const, parent)) = stack.pop() {
            let id = nodes.len();
            if let Some((pid, is_left)) = parent {
                if let Node::Split { left, right, .. } = &mut nodes[pid] {
                    if is_left {
                        *left = id as u32;
                    } else {
                        *right = id as u32;
                    }
                }
            }
            max_depth_seen = max_depth_seen.max(depth);
            let node_samples = &samples[start..end];
            let w = self.class_counts(node_samples, &mut counts);
            let sq: u64 = counts.iter().map(|c| c * c).sum();
            let gini = 1.0 - sq as f64 / (w as f64 * w as f64);
            let can_split = depth < self.max_depth && end - start >= 2 && gini > 1e-7;
            let split = if can_split {
                self.find_split(node_samples, n_const, rng)
            } else {
                (None, n_const)
            };
            match split {
                (Some(best), n_const_child) => {
                    // Partition samples[start..end] in place on x[feature] <= threshold.
                    let row = self.cols.x.row(best.feature);
                    let slice = &mut samples[start..end];
                    let mut i = 0;
                    let mut j = slice.len();
                    while i < j {
                        if row[slice[i] as usize] <= best.threshold {
                            i += 1;
                        } else {
                            j -= 1;
                            slice.swap(i, j);
                        }
                    }
                    let mid = start + i;
                    let improvement = best.proxy - sq as f64 / w as f64;
                    self.importance[best.feature] += improvement;
                    nodes.push(Node::Split {
                        feature: best.feature as u32,
                        threshold: best.threshold,
                        left: 0,
                        right: 0,
                    });
                    // Right first so that the left child is processed (and numbered) next.
                    stack.push((mid, end, depth + 1, n_const_child, Some((id, false))));
                    stack.push((start, mid, depth + 1, n_const_child, Some((id, true))));
                }
                (None, _) => {
                    let offset = leaf_values.len() as u32;
                    leaf_values.extend(counts.iter().map(|&c| (c as f64 / w as f64) as f32));
                    nodes.push(Node::Leaf { offset });
                }
            }
        }
        let importances = self
            .importance
            .iter()
            .enumerate()
            .filter(|(_, &v)| v > 0.0)
            .map(|(f, &v)| (f as u32, v))
            .collect();
        Tree {
            nodes,
            leaf_values,
            importances,
            depth: max_depth_seen,
        }
    }
}

impl Tree {
    fn leaf(&self, x: &ArrayView2<u8>, sample: usize) -> &[f32] {
        let mut id = 0usize;
        loop {
            match self.nodes[id] {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    id = if x[[feature as usize, sample]] <= threshold {
                        left
                    } else {
                        right
                    } as usize;
                }
                Node::Leaf { offset } => return &self.leaf_values[offset as usize..],
            }
        }
    }
}

impl RandomForest {
    /// Fits a forest on `x` `[features, samples]` (feature-major, the layout of
    /// [`crate::ProbeData::option_index`]) using the samples `rows` with labels `y`
    /// (aligned with `rows`, values `< n_classes`).
    pub fn fit(
        x: ArrayView2<u8>,
        rows: &[usize],
        y: &[usize],
        n_classes: usize,
        config: &ForestConfig,
    ) -> Result<Self> {
        if config.n_trees == 0 {
            return Err(ProbeError::InvalidConfig {
                what: "n_trees must be at least 1".into(),
            });
        }
        if config.max_depth == Some(0) {
            return Err(ProbeError::InvalidConfig {
                what: "max_depth must be at least 1".into(),
            });
        }
        if rows.len() != y.len() {
            return Err(ProbeError::ShapeMismatch {
                what: "forest labels".into(),
                expected: format!("[{}]", rows.len()),
                found: format!("[{}]", y.len()),
            });
        }
        let (n_features, n_samples) = x.dim();
        if n_features == 0 || rows.is_empty() {
            return Err(ProbeError::ShapeMismatch {
                what: "forest features".into(),
                expected: "at least one feature and one sample".into(),
                found: format!("[{n_features}, {}]", rows.len()),
            });
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= n_samples) {
            return Err(ProbeError::ShapeMismatch {
                what: "forest rows".into(),
                expected: format!("sample indices < {n_samples}"),
                found: format!("{bad}"),
            });
        }
        if let Some((i, &bad)) = y.iter().enumerate().find(|(_, &c)| c >= n_classes) {
            return Err(ProbeError::LabelOutOfRange {
                prompt: rows[i],
                label: bad as i64,
                n_options: n_classes,
            });
        }
        // Distinct values bound the histogram width; scan feature-major rows (contiguous).
        let mut n_values = 1usize;
        for f in 0..n_features {
            let row = x.row(f);
            for &r in rows {
                n_values = n_values.max(row[r] as usize + 1);
            }
        }
        // Labels indexed by sample id so that nodes can hold plain sample ids.
        let mut y_full = vec![0usize; n_samples];
        for (&r, &c) in rows.iter().zip(y) {
            y_full[r] = c;
        }
        let max_features = config.max_features.resolve(n_features);
        let max_depth = config.max_depth.unwrap_or(usize::MAX);
        let trees: Vec<Tree> = (0..config.n_trees)
            .into_par_iter()
            .map(|t| {
                let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
                rng.set_stream(t as u64 + 1);
                let mut weight = vec![0u32; n_samples];
                if config.bootstrap {
                    for _ in 0..rows.len() {
                        weight[rows[rng.gen_range(0..rows.len())]] += 1;
                    }
                } else {
                    rows.iter().for_each(|&r| weight[r] += 1);
                }
                // Zero-weight samples take no part in the tree, as in scikit-learn.
                let samples: Vec<u32> = rows
                    .iter()
                    .filter(|&&r| weight[r] > 0)
                    .map(|&r| r as u32)
                    .collect();
                let mut b = Builder {
                    cols: Columns { x },
                    y: &y_full,
                    weight,
                    n_classes,
                    n_values,
                    max_features,
                    max_depth,
                    features: (0..n_features as u32).collect(),
                    hist: vec![0; n_values * n_classes],
                    importance: vec![0.0; n_features],
                };
                b.build(samples, &mut rng)
            })
            .collect();
        Ok(Self {
            trees,
            n_classes,
            n_features,
        })
    }

    /// Mean of the trees' leaf class distributions for each sample in `rows` of `x`
    /// (`[features, samples]`), `[rows.len() * n_classes]` row-major.
    pub fn predict_proba(&self, x: ArrayView2<u8>, rows: &[usize]) -> Result<Vec<f32>> {
        if x.nrows() != self.n_features {
            return Err(ProbeError::ShapeMismatch {
                what: "forest features at prediction".into(),
                expected: format!("{} features", self.n_features),
                found: format!("{} features", x.nrows()),
            });
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= x.ncols()) {
            return Err(ProbeError::ShapeMismatch {
                what: "forest rows".into(),
                expected: format!("sample indices < {}", x.ncols()),
                found: format!("{bad}"),
            });
        }
        let nc = self.n_classes;
        let scale = 1.0 / self.trees.len() as f32;
        let out: Vec<Vec<f32>> = rows
            .par_iter()
            .map(|&r| {
                let mut p = vec![0f32; nc];
                for t in &self.trees {
                    let leaf = t.leaf(&x, r);
                    p.iter_mut().zip(leaf).for_each(|(a, b)| *a += b * scale);
                }
                p
            })
            .collect();
        Ok(out.into_iter().flatten().collect())
    }

    /// Most probable class for each sample (ties: the lowest class, like numpy's argmax).
    pub fn predict(&self, x: ArrayView2<u8>, rows: &[usize]) -> Result<Vec<usize>> {
        let proba = self.predict_proba(x, rows)?;
        Ok(proba.chunks(self.n_classes).map(argmax).collect())
    }

    /// Mean decrease in impurity per feature, normalised to sum to 1 (scikit-learn's
    /// `feature_importances_` up to its per-tree normalisation).
    pub fn feature_importances(&self) -> Vec<f64> {
        let mut imp = vec![0f64; self.n_features];
        for t in &self.trees {
            let total: f64 = t.importances.iter().map(|(_, v)| v).sum();
            if total > 0.0 {
                for &(f, v) in &t.importances {
                    imp[f as usize] += v / total;
                }
            }
        }
        let s: f64 = imp.iter().sum();
        if s > 0.0 {
            imp.iter_mut().for_each(|v| *v /= s);
        }
        imp
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Deepest leaf over all trees (root = 0).
    pub fn max_depth(&self) -> usize {
        self.trees.iter().map(|t| t.depth).max().unwrap_or(0)
    }
}

/// Index of the largest element, the first on ties (0 for an empty slice).
pub(crate) fn argmax<T: PartialOrd>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// XOR of two binary features plus a constant one: needs two levels of splits.
    fn xor() -> (Array2<u8>, Vec<usize>) {
        let mut x = Array2::zeros((3, 40));
        let mut y = Vec::new();
        for s in 0..40 {
            let (a, b) = ((s % 2) as u8, ((s / 2) % 2) as u8);
            x[[0, s]] = a;
            x[[1, s]] = b;
            x[[2, s]] = 7;
            y.push((a ^ b) as usize);
        }
        (x, y)
    }

    #[test]
    fn a_full_tree_learns_xor_and_a_stump_cannot() {
        let (x, y) = xor();
        let rows: Vec<usize> = (0..40).collect();
        let exact = ForestConfig {
            n_trees: 1,
            max_features: MaxFeatures::All,
            bootstrap: false,
            ..Default::default()
        };
        let f = RandomForest::fit(x.view(), &rows, &y, 2, &exact).unwrap();
        assert_eq!(f.predict(x.view(), &rows).unwrap(), y);
        assert_eq!(f.max_depth(), 2);
        let imp = f.feature_importances();
        assert_eq!(imp[2], 0.0, "the constant feature is never split on");
        assert!((imp.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let stump = ForestConfig {
            max_depth: Some(1),
            ..exact
        };
        let f = RandomForest::fit(x.view(), &rows, &y, 2, &stump).unwrap();
        let pred = f.predict(x.view(), &rows).unwrap();
        let acc = pred.iter().zip(&y).filter(|(a, b)| a == b).count();
        assert_eq!(acc, 20, "one split of XOR is right half of the time");
    }

    #[test]
    fn thresholds_split_ordinal_values() {
        // Class is 1 when the value is >= 3 among values 0..6: one split at 2.
        let x = Array2::from_shape_fn((1, 60), |(_, s)| (s % 6) as u8);
        let y: Vec<usize> = (0..60).map(|s| ((s % 6) >= 3) as usize).collect();
        let rows: Vec<usize> = (0..60).collect();
        let cfg = ForestConfig {
            n_trees: 1,
            bootstrap: false,
            ..Default::default()
        };
        let f = RandomForest::fit(x.view(), &rows, &y, 2, &cfg).unwrap();
        assert_eq!(f.max_depth(), 1);
        match f.trees[0].nodes[0] {
            Node::Split {
                feature: 0,
                threshold,
                ..
            } => assert_eq!(threshold, 2),
            other => panic!("root is {other:?}"),
        }
        assert_eq!(f.predict(x.view(), &rows).unwrap(), y);
    }

    #[test]
    fn same_seed_same_forest_any_thread_count() {
        let (x, y) = xor();
        let rows: Vec<usize> = (0..40).collect();
        let cfg = ForestConfig {
            n_trees: 16,
            seed: 5,
            ..Default::default()
        };
        let a = RandomForest::fit(x.view(), &rows, &y, 2, &cfg).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| RandomForest::fit(x.view(), &rows, &y, 2, &cfg).unwrap());
        assert_eq!(
            a.predict_proba(x.view(), &rows).unwrap(),
            b.predict_proba(x.view(), &rows).unwrap()
        );
    }

    #[test]
    fn bad_forest_input_is_refused() {
        let (x, y) = xor();
        let rows: Vec<usize> = (0..40).collect();
        let cfg = ForestConfig::default();
        assert!(matches!(
            RandomForest::fit(x.view(), &rows, &y[..39], 2, &cfg),
            Err(ProbeError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            RandomForest::fit(x.view(), &[0, 40], &y[..2], 2, &cfg),
            Err(ProbeError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            RandomForest::fit(x.view(), &rows, &y, 1, &cfg),
            Err(ProbeError::LabelOutOfRange { .. })
        ));
        let zero_depth = ForestConfig {
            max_depth: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            RandomForest::fit(x.view(), &rows, &y, 2, &zero_depth),
            Err(ProbeError::InvalidConfig { .. })
        ));
        let f = RandomForest::fit(x.view(), &rows, &y, 2, &cfg).unwrap();
        let narrow = Array2::<u8>::zeros((2, 40));
        assert!(matches!(
            f.predict(narrow.view(), &rows),
            Err(ProbeError::ShapeMismatch { .. })
        ));
    }
}
