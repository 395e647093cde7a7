//! Compact probe features.
//!
//! A 7B Llama has 352,256 FF neurons; 6000 prompts x 5 options of f32 NEG would be 42 GB.
//! The probes only ever look at signs and at which option is largest / smallest, so the data
//! set keeps, per (neuron, prompt), single bytes: the index of the largest and of the
//! smallest option, two bit masks of the options whose NEG is positive / negative, and the
//! gold option's margin `sum_o sign(g[y] - g[o])` (the Magn-Probe training statistic). That
//! is 5 bytes per (prompt, neuron), 10.6 GB for the whole 7B model over 6000 prompts, or one
//! byte (`option_index` only, enough for the Tree-Probe) = 2.1 GB. Matrices are stored
//! neuron-major (`[neurons, prompts]`) because fitting scans one neuron over all prompts, in
//! memory or, with [`Storage::Disk`], in mapped temporary files ([`crate::store`]).
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayView3, ArrayViewMut2};
use serde::{Deserialize, Serialize};

use crate::error::{ProbeError, Result};
use crate::store::{Matrix, Storage};

/// Largest number of options the sign bit masks hold (MCEval8K has at most 5).
pub const MAX_OPTIONS: usize = 8;

/// Which split a prompt belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Split {
    /// Training prompts (id 0).
    Train,
    /// Validation prompts (id 1), used to choose the neuron count.
    Valid,
    /// Test prompts (id 2).
    Test,
}

impl Split {
    /// Parses the on-disk id: 0 train, 1 valid, 2 test.
    pub fn from_id(prompt: usize, value: u8) -> Result<Self> {
        match value {
            0 => Ok(Split::Train),
            1 => Ok(Split::Valid),
            2 => Ok(Split::Test),
            _ => Err(ProbeError::InvalidSplitId { prompt, value }),
        }
    }

    /// Lower-case name, as used in error messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

/// The per-option sign features derived from full NEG scores.
#[derive(Debug, Clone)]
pub(crate) struct ScoreFeatures {
    /// `[N, P]` index of the option with the smallest NEG.
    pub bottom: Matrix<u8>,
    /// `[N, P]` bit o set when NEG of option o is > 0.
    pub pos_bits: Matrix<u8>,
    /// `[N, P]` bit o set when NEG of option o is < 0.
    pub neg_bits: Matrix<u8>,
    /// `[N, P]` `sum_o sign(g[y] - g[o])` for the gold option y.
    pub gold_margin: Matrix<i8>,
}

impl ScoreFeatures {
    fn zeros(shape: (usize, usize), storage: &Storage) -> Result<Self> {
        Ok(Self {
            bottom: Matrix::zeros(shape, storage, "bottom")?,
            pos_bits: Matrix::zeros(shape, storage, "pos_bits")?,
            neg_bits: Matrix::zeros(shape, storage, "neg_bits")?,
            gold_margin: Matrix::zeros(shape, storage, "gold_margin")?,
        })
    }
}

/// A probing data set: compact NEG features, optional activations and option probabilities,
/// gold labels and split ids for `P` prompts, `K` options and `N` neurons.
#[derive(Debug, Clone)]
pub struct ProbeData {
    n_options: usize,
    labels: Vec<usize>,
    split: Vec<Split>,
    /// `[N, P]` index of the option with the largest NEG (the Tree-Probe feature).
    top: Matrix<u8>,
    scores: Option<ScoreFeatures>,
    /// `[N, P]` activations.
    activations: Option<Matrix<f32>>,
    /// `[P, K]` option probabilities.
    probs: Option<Array2<f32>>,
}

/// A subset of a data set's prompts (a split, or part of one) that probes fit on or predict.
#[derive(Debug, Clone)]
pub struct FeatureView<'a> {
    /// The whole data set.
    pub data: &'a ProbeData,
    /// Prompt indices into `data`, in order.
    pub rows: Vec<usize>,
}

impl FeatureView<'_> {
    /// Number of prompts in the view.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Gold labels of the view's prompts.
    pub fn labels(&self) -> Vec<usize> {
        self.rows.iter().map(|&p| self.data.labels[p]).collect()
    }

    /// Fraction of `predictions` equal to the gold labels (0 for an empty view).
    pub fn accuracy(&self, predictions: &[usize]) -> f64 {
        if self.rows.is_empty() {
            return 0.0;
        }
        let correct = self
            .rows
            .iter()
            .zip(predictions)
            .filter(|(&p, &y)| self.data.labels[p] == y)
            .count();
        correct as f64 / self.rows.len() as f64
    }

    /// Errors unless the view holds at least two classes (a training split must).
    pub fn require_two_classes(&self, split: &str) -> Result<()> {
        let Some(&first) = self.rows.first() else {
            return Err(ProbeError::EmptySplit {
                split: split.to_string(),
            });
        };
        let class = self.data.labels[first];
        if self.rows.iter().all(|&p| self.data.labels[p] == class) {
            return Err(ProbeError::SingleClass {
                split: split.to_string(),
                class,
                n_prompts: self.rows.len(),
            });
        }
        Ok(())
    }
}

/// Builds a [`ProbeData`] prompt by prompt, so that full `[K, N]` f32 NEG never needs to be
/// held for more than one prompt at a time. `push_*` fill the lowest row not yet filled;
/// `*_at` fill a given row, so that prompts computed in another order (batches of similar
/// length) go straight to their place.
#[derive(Debug)]
pub struct ProbeDataBuilder {
    n_prompts: usize,
    /// The lowest row not yet filled.
    next: usize,
    /// Which rows are filled, and how many.
    filled: Vec<bool>,
    n_filled: usize,
    /// `N`, kept because the matrices' shape depends on how they are filled.
    n_neurons: usize,
    /// Where the matrices are kept; it decides how they are filled ([`fills_prompt_major`]).
    storage: Storage,
    /// The data set being filled: matrices, labels and splits allocated up front, score
    /// features from the first scores.
    data: ProbeData,
}

impl ProbeDataBuilder {
    /// A builder for `n_prompts` prompts with `n_options` options and `n_neurons` neurons,
    /// kept in memory. `with_activations` / `with_probs` say whether every prompt will bring
    /// them.
    pub fn new(
        n_prompts: usize,
        n_options: usize,
        n_neurons: usize,
        with_activations: bool,
        with_probs: bool,
    ) -> Result<Self> {
        Self::with_storage(
            n_prompts,
            n_options,
            n_neurons,
            with_activations,
            with_probs,
            Storage::Memory,
        )
    }

    /// [`ProbeDataBuilder::new`] keeping the `[N, P]` matrices as `storage` says: with
    /// [`Storage::Disk`] the data set's size no longer counts against the process's anonymous
    /// memory (see [`crate::store`]). An unusable directory is a [`ProbeError::Spool`] naming
    /// it.
    pub fn with_storage(
        n_prompts: usize,
        n_options: usize,
        n_neurons: usize,
        with_activations: bool,
        with_probs: bool,
        storage: Storage,
    ) -> Result<Self> {
        check_options(n_options)?;
        if n_neurons == 0 {
            return Err(ProbeError::ShapeMismatch {
                what: "neurons".into(),
                expected: "at least 1 neuron".into(),
                found: "0".into(),
            });
        }
        let shape = match fills_prompt_major(&storage) {
            true => (n_prompts, n_neurons),
            false => (n_neurons, n_prompts),
        };
        let activations = match with_activations {
            true => Some(Matrix::zeros(shape, &storage, "activations")?),
            false => None,
        };
        Ok(Self {
            n_prompts,
            next: 0,
            filled: vec![false; n_prompts],
            n_filled: 0,
            n_neurons,
            data: ProbeData {
                n_options,
                labels: vec![0; n_prompts],
                split: vec![Split::Train; n_prompts],
                top: Matrix::zeros(shape, &storage, "option_index")?,
                scores: None,
                activations,
                probs: with_probs.then(|| Array2::zeros((n_prompts, n_options))),
            },
            storage,
        })
    }

    fn row_checks(
        &self,
        p: usize,
        label: i64,
        activations: Option<ArrayView1<f32>>,
        probs: Option<ArrayView1<f32>>,
    ) -> Result<usize> {
        if p >= self.n_prompts {
            return Err(ProbeError::ShapeMismatch {
                what: "prompts pushed".into(),
                expected: format!("{}", self.n_prompts),
                found: format!("more than {}", self.n_prompts),
            });
        }
        if self.filled[p] {
            return Err(ProbeError::ShapeMismatch {
                what: format!("prompt {p}"),
                expected: "filled once".into(),
                found: "filled twice".into(),
            });
        }
        let d = &self.data;
        if label < 0 || label as usize >= d.n_options {
            return Err(ProbeError::LabelOutOfRange {
                prompt: p,
                label,
                n_options: d.n_options,
            });
        }
        let neurons = d.activations.as_ref().map(|_| self.n_neurons);
        check_row("activations", RowIndex::Neuron, p, neurons, activations)?;
        let options = d.probs.as_ref().map(|_| d.n_options);
        check_row("probs", RowIndex::Option, p, options, probs)?;
        Ok(p)
    }

    fn finish_row(
        &mut self,
        p: usize,
        label: usize,
        split: Split,
        activations: Option<ArrayView1<f32>>,
        probs: Option<ArrayView1<f32>>,
    ) {
        let d = &mut self.data;
        if let (Some(dst), Some(a)) = (d.activations.as_mut(), activations) {
            neuron_major(dst, fills_prompt_major(&self.storage))
                .column_mut(p)
                .assign(&a);
        }
        if let (Some(dst), Some(pr)) = (d.probs.as_mut(), probs) {
            dst.row_mut(p).assign(&pr);
        }
        d.labels[p] = label;
        d.split[p] = split;
        self.filled[p] = true;
        self.n_filled += 1;
        while self.next < self.n_prompts && self.filled[self.next] {
            self.next += 1;
        }
    }

    /// Adds one prompt (the lowest row not yet filled) from its full NEG scores `[K, N]`.
    pub fn push_scores(
        &mut self,
        scores: ArrayView2<f32>,
        label: i64,
        split: Split,
        activations: Option<ArrayView1<f32>>,
        probs: Option<ArrayView1<f32>>,
    ) -> Result<()> {
        self.push_scores_at(self.next, scores, label, split, activations, probs)
    }

    /// Fills row `row` from its full NEG scores `[K, N]`; each row is filled once, in any
    /// order.
    pub fn push_scores_at(
        &mut self,
        row: usize,
        scores: ArrayView2<f32>,
        label: i64,
        split: Split,
        activations: Option<ArrayView1<f32>>,
        probs: Option<ArrayView1<f32>>,
    ) -> Result<()> {
        let p = self.row_checks(row, label, activations, probs)?;
        if self.n_filled > 0 && !self.data.has_scores() {
            return Err(ProbeError::ShapeMismatch {
                what: format!("features of prompt {p}"),
                expected: "option_index like the earlier prompts".into(),
                found: "scores".into(),
            });
        }
        let (k, n) = (self.data.n_options, self.n_neurons);
        if scores.dim() != (k, n) {
            return Err(ProbeError::ShapeMismatch {
                what: format!("scores of prompt {p}"),
                expected: format!("[{k}, {n}]"),
                found: format!("{:?}", scores.shape()),
            });
        }
        if let Some(((o, nn), v)) = scores.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(ProbeError::NonFinite {
                what: "scores",
                prompt: p,
                option: Some(o),
                neuron: Some(nn),
                value: v.to_string(),
            });
        }
        if self.data.scores.is_none() {
            let shape = self.data.top.view().dim();
            self.data.scores = Some(ScoreFeatures::zeros(shape, &self.storage)?);
        }
        let Some(sf) = self.data.scores.as_mut() else {
            unreachable!("score features made above");
        };
        let pm = fills_prompt_major(&self.storage);
        let mut top_col = neuron_major(&mut self.data.top, pm);
        let mut bottom_col = neuron_major(&mut sf.bottom, pm);
        let (mut pos_col, mut neg_col) = (
            neuron_major(&mut sf.pos_bits, pm),
            neuron_major(&mut sf.neg_bits, pm),
        );
        let mut margin_col = neuron_major(&mut sf.gold_margin, pm);
        let y = label as usize;
        for neuron in 0..n {
            let col = scores.column(neuron);
            let (mut top, mut bottom) = (0usize, 0usize);
            let (mut pos, mut neg) = (0u8, 0u8);
            let mut margin = 0i8;
            let gy = col[y];
            for (o, &g) in col.iter().enumerate() {
                // Ties keep the first option, like numpy's argmax.
                if g > col[top] {
                    top = o;
                }
                if g < col[bottom] {
                    bottom = o;
                }
                if g > 0.0 {
                    pos |= 1 << o;
                } else if g < 0.0 {
                    neg |= 1 << o;
                }
                margin += (gy > g) as i8 - (gy < g) as i8;
            }
            top_col[[neuron, p]] = top as u8;
            bottom_col[[neuron, p]] = bottom as u8;
            pos_col[[neuron, p]] = pos;
            neg_col[[neuron, p]] = neg;
            margin_col[[neuron, p]] = margin;
        }
        self.finish_row(p, y, split, activations, probs);
        Ok(())
    }

    /// Adds one prompt from its option indices `[N]` (index of the largest NEG per neuron).
    pub fn push_option_index(
        &mut self,
        option_index: ArrayView1<u8>,
        label: i64,
        split: Split,
        activations: Option<ArrayView1<f32>>,
        probs: Option<ArrayView1<f32>>,
    ) -> Result<()> {
        let p = self.row_checks(self.next, label, activations, probs)?;
        if self.data.has_scores() {
            return Err(ProbeError::ShapeMismatch {
                what: format!("features of prompt {p}"),
                expected: "scores like the earlier prompts".into(),
                found: "option_index".into(),
            });
        }
        let (k, n) = (self.data.n_options, self.n_neurons);
        if option_index.len() != n {
            return Err(ProbeError::ShapeMismatch {
                what: format!("option_index of prompt {p}"),
                expected: format!("[{n}]"),
                found: format!("[{}]", option_index.len()),
            });
        }
        if let Some((neuron, &value)) = option_index
            .iter()
            .enumerate()
            .find(|(_, &v)| v as usize >= k)
        {
            return Err(ProbeError::OptionIndexOutOfRange {
                prompt: p,
                neuron,
                value,
                n_options: k,
            });
        }
        neuron_major(&mut self.data.top, fills_prompt_major(&self.storage))
            .column_mut(p)
            .assign(&option_index);
        self.finish_row(p, label as usize, split, activations, probs);
        Ok(())
    }

    /// Finishes the data set; errors unless exactly `n_prompts` prompts were pushed.
    pub fn finish(self) -> Result<ProbeData> {
        if self.n_filled != self.n_prompts {
            return Err(ProbeError::ShapeMismatch {
                what: "prompts pushed".into(),
                expected: format!("{}", self.n_prompts),
                found: format!("{}", self.n_filled),
            });
        }
        let mut data = self.data;
        if fills_prompt_major(&self.storage) {
            // Each assignment drops (and so frees) the prompt-major file it replaces, so the
            // disk holds at most one matrix twice.
            let st = &self.storage;
            data.top = data.top.transposed(st, "option_index")?;
            if let Some(sf) = data.scores.as_mut() {
                sf.bottom = sf.bottom.transposed(st, "bottom")?;
                sf.pos_bits = sf.pos_bits.transposed(st, "pos_bits")?;
                sf.neg_bits = sf.neg_bits.transposed(st, "neg_bits")?;
                sf.gold_margin = sf.gold_margin.transposed(st, "gold_margin")?;
            }
            if let Some(a) = data.activations.as_mut() {
                *a = a.transposed(st, "activations")?;
            }
        }
        Ok(data)
    }
}

/// Whether a builder keeping its matrices as `storage` says fills them as `[P, N]` (on disk, so
/// that each prompt writes its own pages once; transposed in [`ProbeDataBuilder::finish`])
/// rather than as the data set's `[N, P]`.
fn fills_prompt_major(storage: &Storage) -> bool {
    matches!(storage, Storage::Disk(_))
}

/// The `[N, P]` view of a matrix being filled: the matrix itself, or the transpose of the
/// `[P, N]` one a disk-backed builder fills (see [`crate::store`]).
fn neuron_major<T: bytemuck::Pod>(m: &mut Matrix<T>, prompt_major: bool) -> ArrayViewMut2<'_, T> {
    match prompt_major {
        true => m.view_mut().reversed_axes(),
        false => m.view_mut(),
    }
}

fn check_options(n_options: usize) -> Result<()> {
    if !(2..=MAX_OPTIONS).contains(&n_options) {
        return Err(ProbeError::OptionCount {
            n_options,
            max: MAX_OPTIONS,
        });
    }
    Ok(())
}

fn check_len(what: &str, found: usize, expected: usize) -> Result<()> {
    if found != expected {
        return Err(ProbeError::ShapeMismatch {
            what: what.to_string(),
            expected: format!("[{expected}]"),
            found: format!("[{found}]"),
        });
    }
    Ok(())
}

fn check_matrix(what: &str, m: Option<&ArrayView2<f32>>, rows: usize, cols: usize) -> Result<()> {
    if let Some(m) = m {
        if m.dim() != (rows, cols) {
            return Err(ProbeError::ShapeMismatch {
                what: what.to_string(),
                expected: format!("[{rows}, {cols}]"),
                found: format!("{:?}", m.shape()),
            });
        }
    }
    Ok(())
}

impl ProbeData {
    /// Builds a data set from full NEG scores `[P, K, N]`, gold `labels` `[P]` and split ids
    /// `[P]` (0 train, 1 valid, 2 test), with optional `activations` `[P, N]` and option
    /// `probs` `[P, K]`.
    pub fn from_scores(
        scores: ArrayView3<f32>,
        labels: &[i64],
        split: &[u8],
        activations: Option<ArrayView2<f32>>,
        probs: Option<ArrayView2<f32>>,
    ) -> Result<Self> {
        let (p, k, n) = scores.dim();
        check_len("labels", labels.len(), p)?;
        check_len("split", split.len(), p)?;
        check_matrix("activations", activations.as_ref(), p, n)?;
        check_matrix("probs", probs.as_ref(), p, k)?;
        let mut b = ProbeDataBuilder::new(p, k, n, activations.is_some(), probs.is_some())?;
        for i in 0..p {
            b.push_scores(
                scores.index_axis(ndarray::Axis(0), i),
                labels[i],
                Split::from_id(i, split[i])?,
                activations.as_ref().map(|a| a.row(i)),
                probs.as_ref().map(|a| a.row(i)),
            )?;
        }
        b.finish()
    }

    /// Builds a data set from option indices `[P, N]` (index of the option with the largest
    /// NEG, per prompt and neuron); enough for the Tree-Probe, Act-Probe and baselines.
    pub fn from_option_index(
        option_index: ArrayView2<u8>,
        n_options: usize,
        labels: &[i64],
        split: &[u8],
        activations: Option<ArrayView2<f32>>,
        probs: Option<ArrayView2<f32>>,
    ) -> Result<Self> {
        let (p, n) = option_index.dim();
        check_options(n_options)?;
        check_len("labels", labels.len(), p)?;
        check_len("split", split.len(), p)?;
        check_matrix("activations", activations.as_ref(), p, n)?;
        check_matrix("probs", probs.as_ref(), p, n_options)?;
        let mut b = ProbeDataBuilder::new(p, n_options, n, activations.is_some(), probs.is_some())?;
        for i in 0..p {
            b.push_option_index(
                option_index.row(i),
                labels[i],
                Split::from_id(i, split[i])?,
                activations.as_ref().map(|a| a.row(i)),
                probs.as_ref().map(|a| a.row(i)),
            )?;
        }
        b.finish()
    }

    /// Number of prompts.
    pub fn n_prompts(&self) -> usize {
        self.labels.len()
    }

    /// Number of answer options.
    pub fn n_options(&self) -> usize {
        self.n_options
    }

    /// Number of neurons.
    pub fn n_neurons(&self) -> usize {
        self.top.nrows()
    }

    /// Gold labels `[P]`.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Split of every prompt.
    pub fn splits(&self) -> &[Split] {
        &self.split
    }

    /// `[N, P]` index of the option with the largest NEG.
    pub fn option_index(&self) -> ArrayView2<'_, u8> {
        self.top.view()
    }

    /// Where the `[N, P]` matrices are kept.
    pub fn storage(&self) -> Storage {
        self.top.storage()
    }

    /// Whether the data set was built from full scores (Polar- and Magn-Probe need them).
    pub fn has_scores(&self) -> bool {
        self.scores.is_some()
    }

    /// `[N, P]` activations, if present.
    pub fn activations(&self) -> Option<ArrayView2<'_, f32>> {
        self.activations.as_ref().map(|a| a.view())
    }

    /// `[P, K]` option probabilities, if present.
    pub fn probs(&self) -> Option<ArrayView2<'_, f32>> {
        self.probs.as_ref().map(|a| a.view())
    }

    pub(crate) fn score_features(&self, probe: &str) -> Result<&ScoreFeatures> {
        self.scores
            .as_ref()
            .ok_or_else(|| ProbeError::MissingFeature {
                probe: probe.to_string(),
                feature: "scores",
            })
    }

    /// The prompts of one split, in index order.
    pub fn split_view(&self, split: Split) -> FeatureView<'_> {
        let rows = (0..self.n_prompts())
            .filter(|&p| self.split[p] == split)
            .collect();
        FeatureView { data: self, rows }
    }

    /// A view of the given prompts; errors on an index out of range.
    pub fn view(&self, rows: Vec<usize>) -> Result<FeatureView<'_>> {
        if let Some(&bad) = rows.iter().find(|&&p| p >= self.n_prompts()) {
            return Err(ProbeError::ShapeMismatch {
                what: "view rows".into(),
                expected: format!("prompt indices < {}", self.n_prompts()),
                found: format!("{bad}"),
            });
        }
        Ok(FeatureView { data: self, rows })
    }

    /// Same features with options relabelled: option `o` becomes `perm[o]` everywhere
    /// (labels, option indices, signs, probabilities). Used to check that probes do not
    /// depend on the order of the options.
    pub fn permute_options(&self, perm: &[usize]) -> Result<Self> {
        let k = self.n_options;
        let mut seen = vec![false; k];
        if perm.len() != k
            || perm
                .iter()
                .any(|&o| o >= k || std::mem::replace(&mut seen[o], true))
        {
            return Err(ProbeError::InvalidConfig {
                what: format!("{perm:?} is not a permutation of {k} options"),
            });
        }
        let map_bits = |b: u8| -> u8 {
            (0..k)
                .filter(|&o| b & (1 << o) != 0)
                .fold(0u8, |acc, o| acc | (1 << perm[o]))
        };
        let mut out = self.try_clone()?;
        out.labels.iter_mut().for_each(|y| *y = perm[*y]);
        out.top.view_mut().mapv_inplace(|o| perm[o as usize] as u8);
        if let Some(sf) = out.scores.as_mut() {
            sf.bottom
                .view_mut()
                .mapv_inplace(|o| perm[o as usize] as u8);
            sf.pos_bits.view_mut().mapv_inplace(map_bits);
            sf.neg_bits.view_mut().mapv_inplace(map_bits);
        }
        if let (Some(dst), Some(src)) = (out.probs.as_mut(), self.probs.as_ref()) {
            for (o, &to) in perm.iter().enumerate() {
                dst.column_mut(to).assign(&src.column(o));
            }
        }
        Ok(out)
    }

    /// A copy kept where this data set is ([`ProbeData::storage`]): on disk, a new temporary
    /// file beside the old. (`Clone` copies into memory, as it cannot report an I/O error.)
    pub fn try_clone(&self) -> Result<Self> {
        let storage = self.storage();
        let scores = match &self.scores {
            Some(sf) => Some(ScoreFeatures {
                bottom: sf.bottom.copy_to(&storage, "bottom")?,
                pos_bits: sf.pos_bits.copy_to(&storage, "pos_bits")?,
                neg_bits: sf.neg_bits.copy_to(&storage, "neg_bits")?,
                gold_margin: sf.gold_margin.copy_to(&storage, "gold_margin")?,
            }),
            None => None,
        };
        let activations = match &self.activations {
            Some(a) => Some(a.copy_to(&storage, "activations")?),
            None => None,
        };
        Ok(Self {
            n_options: self.n_options,
            labels: self.labels.clone(),
            split: self.split.clone(),
            top: self.top.copy_to(&storage, "option_index")?,
            scores,
            activations,
            probs: self.probs.clone(),
        })
    }

    /// Replaces the split ids (e.g. for a re-split); errors on a length mismatch.
    pub fn with_splits(mut self, split: Vec<Split>) -> Result<Self> {
        check_len("split", split.len(), self.n_prompts())?;
        self.split = split;
        Ok(self)
    }
}

/// What the entries of a per-prompt row are indexed by, for [`ProbeError::NonFinite`].
#[derive(Clone, Copy)]
enum RowIndex {
    Neuron,
    Option,
}

/// Checks prompt `p`'s row of tensor `what` (`activations` or `probs`): present exactly when
/// the dataset holds that tensor (`expected` is then its row length), of that length, and
/// finite. Activations and probabilities are checked alike; only the index kind differs.
fn check_row(
    what: &'static str,
    index: RowIndex,
    p: usize,
    expected: Option<usize>,
    row: Option<ArrayView1<f32>>,
) -> Result<()> {
    let presence = |present: bool| if present { "present" } else { "absent" }.to_string();
    match (expected, row) {
        (Some(len), Some(r)) => {
            if r.len() != len {
                return Err(ProbeError::ShapeMismatch {
                    what: format!("{what} of prompt {p}"),
                    expected: format!("[{len}]"),
                    found: format!("[{}]", r.len()),
                });
            }
            if let Some((i, v)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                let (option, neuron) = match index {
                    RowIndex::Neuron => (None, Some(i)),
                    RowIndex::Option => (Some(i), None),
                };
                return Err(ProbeError::NonFinite {
                    what,
                    prompt: p,
                    option,
                    neuron,
                    value: v.to_string(),
                });
            }
            Ok(())
        }
        (None, None) => Ok(()),
        (expected, row) => Err(ProbeError::ShapeMismatch {
            what: format!("{what} of prompt {p}"),
            expected: presence(expected.is_some()),
            found: presence(row.is_some()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// 150 prompts, 3 options, 300 neurons,
    /// with ties and exact zeros: every compact feature equals its definition.
    #[test]
    fn compact_features_match_their_definitions() {
        let (p, k, n) = (150, 3, 300);
        let scores = Array3::from_shape_fn((p, k, n), |(i, o, j)| {
            ((i * 7 + o * 13 + j * 3) % 11) as f32 - 5.0 // values in -5..=5, ties and zeros
        });
        let labels: Vec<i64> = (0..p).map(|i| (i % k) as i64).collect();
        let split: Vec<u8> = (0..p).map(|i| (i % 3) as u8).collect();
        let d = ProbeData::from_scores(scores.view(), &labels, &split, None, None).unwrap();
        let sf = d.score_features("test").unwrap();
        let sign = |g: f32| (g > 0.0) as i32 - (g < 0.0) as i32;
        for i in 0..p {
            let y = labels[i] as usize;
            for j in 0..n {
                let g: Vec<f32> = (0..k).map(|o| scores[[i, o, j]]).collect();
                let first_max = (0..k).fold(0, |b, o| if g[o] > g[b] { o } else { b });
                let first_min = (0..k).fold(0, |b, o| if g[o] < g[b] { o } else { b });
                assert_eq!(d.option_index()[[j, i]] as usize, first_max);
                assert_eq!(sf.bottom.view()[[j, i]] as usize, first_min);
                for (o, &go) in g.iter().enumerate() {
                    let s = ((sf.pos_bits.view()[[j, i]] >> o) & 1) as i32
                        - ((sf.neg_bits.view()[[j, i]] >> o) & 1) as i32;
                    assert_eq!(s, sign(go), "sign of prompt {i}, option {o}, neuron {j}");
                }
                let margin: i32 = (0..k).map(|o| sign(g[y] - g[o])).sum();
                assert_eq!(sf.gold_margin.view()[[j, i]] as i32, margin);
            }
        }
        assert_eq!(d.labels()[149], 2);
        assert_eq!(d.splits()[149], Split::Test); // 149 % 3 == 2
                                                  // The option-index path stores the same matrix.
        let oi = d.option_index().t().to_owned();
        let d2 = ProbeData::from_option_index(oi.view(), k, &labels, &split, None, None).unwrap();
        assert_eq!(d2.option_index(), d.option_index());
    }

    #[test]
    fn builder_rows_filled_out_of_order_equal_rows_pushed_in_order() {
        let (p, k, n) = (4usize, 3usize, 5usize);
        let scores: Vec<Array2<f32>> = (0..p)
            .map(|i| Array2::from_shape_fn((k, n), |(o, j)| ((i * 7 + o * 3 + j) % 5) as f32 - 2.0))
            .collect();
        let acts: Vec<ndarray::Array1<f32>> = (0..p)
            .map(|i| ndarray::Array1::from_elem(n, i as f32))
            .collect();
        let splits = [Split::Train, Split::Valid, Split::Test, Split::Train];
        let mut in_order = ProbeDataBuilder::new(p, k, n, true, false).unwrap();
        for i in 0..p {
            in_order
                .push_scores(
                    scores[i].view(),
                    (i % k) as i64,
                    splits[i],
                    Some(acts[i].view()),
                    None,
                )
                .unwrap();
        }
        let in_order = in_order.finish().unwrap();
        let mut shuffled = ProbeDataBuilder::new(p, k, n, true, false).unwrap();
        for i in [2, 0, 3, 1] {
            shuffled
                .push_scores_at(
                    i,
                    scores[i].view(),
                    (i % k) as i64,
                    splits[i],
                    Some(acts[i].view()),
                    None,
                )
                .unwrap();
        }
        let err = shuffled
            .push_scores_at(
                3,
                scores[3].view(),
                0,
                Split::Test,
                Some(acts[3].view()),
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("filled twice"), "{err}");
        let shuffled = shuffled.finish().unwrap();
        assert_eq!(shuffled.labels(), in_order.labels());
        assert_eq!(shuffled.splits(), in_order.splits());
        assert_eq!(shuffled.option_index(), in_order.option_index());
        assert_eq!(shuffled.activations(), in_order.activations());
        // A missing row is an error at finish.
        let mut gap = ProbeDataBuilder::new(2, k, n, false, false).unwrap();
        gap.push_scores_at(1, scores[1].view(), 0, Split::Test, None, None)
            .unwrap();
        assert!(gap.finish().is_err());
    }

    #[test]
    fn builder_counts_prompts_and_refuses_mixed_inputs() {
        let mut b = ProbeDataBuilder::new(2, 2, 3, false, false).unwrap();
        b.push_option_index(
            ndarray::arr1(&[0u8, 1, 1]).view(),
            1,
            Split::Train,
            None,
            None,
        )
        .unwrap();
        let err = b
            .push_scores(
                Array2::<f32>::zeros((2, 3)).view(),
                0,
                Split::Test,
                None,
                None,
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("option_index like the earlier prompts"),
            "{err}"
        );
        let err = b.finish().unwrap_err();
        assert!(
            matches!(err, ProbeError::ShapeMismatch { ref what, .. } if what == "prompts pushed"),
            "{err}"
        );
    }
}
