//! What a forward pass does at the measured position of each row ([`Focus`]): record, patch,
//! or attach gradient leaves. One struct serves every architecture; the model code calls
//! [`Hooks::ff`] at the FF activation (input of the down projection), [`Hooks::resid`] at each
//! layer's output, and the recorders at each layer's input and before each FF block.

use std::collections::HashMap;

use neg_core::{Patch, PatchOp, Site};
use tch::{Device, Kind, Tensor};

use crate::llama::{Kv, Tape};

/// Writes `values`' rows into rows `rows` of `out` (`out[rows[i]] = values[i]`), as the
/// chunked sweeps of every architecture do with each chunk's target probabilities.
pub(crate) fn copy_rows(out: &mut Tensor, rows: &[usize], values: &Tensor, device: Device) {
    let index = Tensor::from_slice(&rows.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let _ = out.index_copy_(0, &index.to_device(device), values);
}

/// The prompts' target token ids, flattened in order and reshaped to `shape`, as i64 on
/// `device` (the index tensor every architecture gathers target probabilities with).
pub(crate) fn targets_tensor(targets: &[Vec<u32>], shape: &[i64], device: Device) -> Tensor {
    let flat: Vec<i64> = targets.iter().flatten().map(|&t| t as i64).collect();
    Tensor::from_slice(&flat).reshape(shape).to_device(device)
}

/// Per-row edits of one layer's units: `where(set_mask, set_val, x) + add`.
pub(crate) struct PatchTensors {
    set_mask: Tensor,
    set_val: Tensor,
    add: Tensor,
}

impl PatchTensors {
    pub fn apply(&self, x: &Tensor) -> Tensor {
        self.set_val.where_self(&self.set_mask, x) + &self.add
    }

    /// The same edits viewed with another (broadcast-compatible) shape, e.g. `[1, V, W]`.
    pub fn reshape(&self, shape: &[i64]) -> Self {
        Self {
            set_mask: self.set_mask.reshape(shape),
            set_val: self.set_val.reshape(shape),
            add: self.add.reshape(shape),
        }
    }
}

/// Patch tensors of one site, keyed by layer, each `[variants.len(), width]`. Patches in a
/// variant apply in order: a later `Set` overrides an earlier `Add` on the same unit and a
/// later `Add` adds to an earlier `Set`. Indices must already be validated.
pub(crate) fn build_patches(
    variants: &[&[Patch]],
    site: Site,
    width: usize,
    kind: Kind,
    device: Device,
) -> HashMap<usize, PatchTensors> {
    let v = variants.len();
    /// One layer's edits as flat `[V * width]` host vectors.
    struct HostEdits {
        set_mask: Vec<u8>,
        set_val: Vec<f32>,
        add: Vec<f32>,
    }
    let mut per_layer: HashMap<usize, HostEdits> = HashMap::new();
    for (row, patches) in variants.iter().enumerate() {
        for p in patches.iter().filter(|p| p.site == site) {
            let e = per_layer.entry(p.layer).or_insert_with(|| HostEdits {
                set_mask: vec![0; v * width],
                set_val: vec![0.0; v * width],
                add: vec![0.0; v * width],
            });
            let i = row * width + p.index;
            match p.op {
                PatchOp::Add(d) => e.add[i] += d,
                PatchOp::Set(x) => {
                    e.set_mask[i] = 1;
                    e.set_val[i] = x;
                    e.add[i] = 0.0;
                }
            }
        }
    }
    let shape = [v as i64, width as i64];
    per_layer
        .into_iter()
        .map(|(layer, e)| {
            let (mask, val, add) = (e.set_mask, e.set_val, e.add);
            let t = PatchTensors {
                set_mask: Tensor::from_slice(&mask)
                    .reshape(shape)
                    .to_kind(Kind::Bool)
                    .to_device(device),
                set_val: Tensor::from_slice(&val)
                    .reshape(shape)
                    .to_kind(kind)
                    .to_device(device),
                add: Tensor::from_slice(&add)
                    .reshape(shape)
                    .to_kind(kind)
                    .to_device(device),
            };
            (layer, t)
        })
        .collect()
}

/// Which rows of a `[B, S, W]` hidden state or activation are the measured position: where
/// the hooks read and write.
pub(crate) enum Focus<'a> {
    /// The last position of a full causal pass (`[B, 1, W]`).
    LastPosition,
    /// Every row: a one-token pass, all of whose rows sit at the measured position.
    AllRows,
    /// Each row's `[MASK]` (BERT): `positions` `[B]` i64, `is_mask` `[B, S, 1]` bool.
    Masked {
        positions: &'a Tensor,
        is_mask: &'a Tensor,
    },
}

impl Focus<'_> {
    /// The focus rows of `x`: `[B, 1 or R, W]`.
    pub fn select(&self, x: &Tensor) -> Tensor {
        match self {
            Focus::LastPosition => {
                let s = x.size()[1];
                x.narrow(1, s - 1, 1)
            }
            Focus::AllRows => x.shallow_clone(),
            Focus::Masked { positions, .. } => {
                let w = x.size()[2];
                let idx = positions.view([-1, 1, 1]).expand([-1, 1, w], false);
                x.gather(1, &idx, false)
            }
        }
    }

    /// `x` with its focus rows replaced by `new`.
    pub fn replace(&self, x: Tensor, new: Tensor) -> Tensor {
        match self {
            Focus::LastPosition => {
                let s = x.size()[1];
                Tensor::cat(&[x.narrow(1, 0, s - 1), new], 1)
            }
            Focus::AllRows => new,
            Focus::Masked { is_mask, .. } => new.expand_as(&x).where_self(is_mask, &x),
        }
    }
}

/// What a pass records at the focus, in the layer order of the pass.
#[derive(Default)]
pub(crate) struct Record {
    /// FF activations (after any edits).
    pub ff: bool,
    /// Layer outputs (after any residual patches).
    pub resid: bool,
    /// The hidden state entering each layer.
    pub inputs: bool,
    /// The residual stream entering each FF block (Llama: layer input + attention output;
    /// BERT: after the attention LayerNorm).
    pub pre_ff: bool,
    /// Each layer's keys and values (Llama one-token passes, for generation).
    pub kv: bool,
    /// What the hand-written backward needs (Llama full passes, see `llama::backward`).
    pub tape: bool,
}

/// What a pass recorded, per [`Record`] flag.
#[derive(Default)]
pub(crate) struct Recorded {
    pub ff: Vec<Tensor>,
    pub resid: Vec<Tensor>,
    pub inputs: Vec<Tensor>,
    pub pre_ff: Vec<Tensor>,
    pub kv: Vec<Kv>,
    pub tape: Tape,
}

/// One layer's FF activation replaced by a tensor (the IG path's alpha * a leaf).
pub(crate) struct Replacement {
    pub layer: usize,
    pub value: Tensor,
}

/// How a pass changes FF activations at the focus, applied in this order: replacement,
/// patches, gradient leaves.
#[derive(Default)]
pub(crate) struct FfEdits {
    pub replace: Option<Replacement>,
    pub patch: HashMap<usize, PatchTensors>,
    /// Zero tensors requiring grad, added to the FF activation: their gradient is the gradient
    /// with respect to the activation (through every later layer).
    pub grad_leaves: HashMap<usize, Tensor>,
}

impl FfEdits {
    fn touch(&self, layer: usize) -> bool {
        self.patch.contains_key(&layer)
            || self.grad_leaves.contains_key(&layer)
            || matches!(&self.replace, Some(r) if r.layer == layer)
    }

    fn apply(&self, layer: usize, act: Tensor) -> Tensor {
        let mut a = act;
        if let Some(r) = self.replace.as_ref().filter(|r| r.layer == layer) {
            a = r.value.shallow_clone();
        }
        if let Some(p) = self.patch.get(&layer) {
            a = p.apply(&a);
        }
        if let Some(g) = self.grad_leaves.get(&layer) {
            a = a + g;
        }
        a
    }
}

/// The hooks of one pass: what to record, what was recorded, and the edits at the focus.
/// Tensors handed to the hooks are the focus rows only (`[B, R, W]`, see [`Focus`]).
#[derive(Default)]
pub(crate) struct Hooks {
    pub record: Record,
    pub recorded: Recorded,
    pub ff_edits: FfEdits,
    /// Residual-stream (layer output) patches by layer.
    pub resid_patch: HashMap<usize, PatchTensors>,
}

impl Hooks {
    /// Hooks that only record.
    pub fn recording(record: Record) -> Self {
        Self {
            record,
            ..Self::default()
        }
    }

    /// The one place that decides, for layer `layer`'s FF activation `act` (the input of the
    /// down projection, `blocks.{layer}.mlp.hook_post`), whether the pass patches it, attaches
    /// a gradient leaf to it or replaces it at the focus, and whether it records it. Returns
    /// the activation the down projection reads.
    pub fn ff(&mut self, layer: usize, act: Tensor, focus: &Focus) -> Tensor {
        if self.ff_edits.touch(layer) {
            let edited = self.ff_edits.apply(layer, focus.select(&act));
            if self.record.ff {
                self.recorded.ff.push(edited.detach());
            }
            focus.replace(act, edited)
        } else {
            if self.record.ff {
                self.recorded.ff.push(focus.select(&act).detach());
            }
            act
        }
    }

    /// As [`Hooks::ff`] for a layer's output (the residual stream).
    pub fn resid(&mut self, layer: usize, h: Tensor, focus: &Focus) -> Tensor {
        if let Some(p) = self.resid_patch.get(&layer) {
            let patched = p.apply(&focus.select(&h));
            if self.record.resid {
                self.recorded.resid.push(patched.detach());
            }
            focus.replace(h, patched)
        } else {
            if self.record.resid {
                self.recorded.resid.push(focus.select(&h).detach());
            }
            h
        }
    }

    /// Records the hidden state entering a layer, when asked.
    pub fn layer_input(&mut self, h: &Tensor, focus: &Focus) {
        if self.record.inputs {
            self.recorded.inputs.push(focus.select(h).detach());
        }
    }

    /// Records the residual stream entering an FF block, when asked.
    pub fn pre_ff(&mut self, h: &Tensor, focus: &Focus) {
        if self.record.pre_ff {
            self.recorded.pre_ff.push(focus.select(h).detach());
        }
    }
}

/// Hooks that apply the FF and residual patches of `vars` (one variant per batch row), each
/// layer's patch tensors reshaped to `shape(width)` for the pass that uses them.
pub(crate) fn patch_hooks(
    vars: &[&[Patch]],
    ff_width: usize,
    hidden: usize,
    kind: Kind,
    device: Device,
    shape: impl Fn(usize) -> Vec<i64>,
) -> Hooks {
    let reshape = |m: HashMap<usize, PatchTensors>, w: usize| {
        m.into_iter()
            .map(|(l, p)| (l, p.reshape(&shape(w))))
            .collect()
    };
    Hooks {
        ff_edits: FfEdits {
            patch: reshape(
                build_patches(vars, Site::FeedForward, ff_width, kind, device),
                ff_width,
            ),
            ..FfEdits::default()
        },
        resid_patch: reshape(
            build_patches(vars, Site::Residual, hidden, kind, device),
            hidden,
        ),
        ..Hooks::default()
    }
}

/// The loop shared by the IG paths: for each layer and each chunk of at most `max_batch`
/// (alpha, target) rows (alpha-major), `path(layer, alphas, targets)` returns the gradients
/// `[rows, N]` (f32) of those rows' target probabilities with respect to the layer's scaled
/// activation. Stacked to `[layers, A, T, N]`.
pub(crate) fn ig_path_gradients(
    layers: &[usize],
    alphas: &[f32],
    targets: &[u32],
    max_batch: usize,
    n: i64,
    device: Device,
    mut path: impl FnMut(usize, &[f32], &[i64]) -> Tensor,
) -> Tensor {
    let (a, t) = (alphas.len() as i64, targets.len() as i64);
    let rows: Vec<(f32, i64)> = alphas
        .iter()
        .flat_map(|&al| targets.iter().map(move |&tg| (al, tg as i64)))
        .collect();
    let mut per_layer = Vec::with_capacity(layers.len());
    for &l in layers {
        let parts: Vec<Tensor> = rows
            .chunks(max_batch.max(1))
            .map(|chunk| {
                let al: Vec<f32> = chunk.iter().map(|r| r.0).collect();
                let tg: Vec<i64> = chunk.iter().map(|r| r.1).collect();
                path(l, &al, &tg)
            })
            .collect();
        let g = if parts.is_empty() {
            Tensor::zeros([0, n], (Kind::Float, device))
        } else {
            Tensor::cat(&parts, 0)
        };
        per_layer.push(g.reshape([a, t, n]));
    }
    if per_layer.is_empty() {
        return Tensor::zeros([0, a, t, n], (Kind::Float, device));
    }
    Tensor::stack(&per_layer, 0)
}
