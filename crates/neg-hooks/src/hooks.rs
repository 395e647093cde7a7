//! What a forward pass does at the measured position of each row: capture, patch, or attach
//! gradient leaves. One struct serves every architecture; the model code calls it at the FF
//! activation (input of the down projection), at each layer's output, and at each layer's
//! input.

use std::collections::HashMap;

use neg_core::{Patch, PatchOp, Site};
use tch::{Device, Kind, Tensor};

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
    // Per layer: set mask, set values, additive shifts, each [V * width].
    type Edits = (Vec<u8>, Vec<f32>, Vec<f32>);
    let mut per_layer: HashMap<usize, Edits> = HashMap::new();
    for (row, patches) in variants.iter().enumerate() {
        for p in patches.iter().filter(|p| p.site == site) {
            let (mask, val, add) = per_layer.entry(p.layer).or_insert_with(|| {
                (
                    vec![0; v * width],
                    vec![0.0; v * width],
                    vec![0.0; v * width],
                )
            });
            let i = row * width + p.index;
            match p.op {
                PatchOp::Add(d) => add[i] += d,
                PatchOp::Set(x) => {
                    mask[i] = 1;
                    val[i] = x;
                    add[i] = 0.0;
                }
            }
        }
    }
    let shape = [v as i64, width as i64];
    per_layer
        .into_iter()
        .map(|(layer, (mask, val, add))| {
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

/// The hooks of one pass. Tensors handed to the hooks are the focus rows only (`[B, R, W]`:
/// the last position of a full causal pass, all rows of a one-token pass, the [MASK] of BERT).
#[derive(Default)]
pub(crate) struct Hooks {
    /// Record FF activations (in layer order of the pass).
    pub capture_ff: bool,
    pub ff: Vec<Tensor>,
    /// Record layer outputs.
    pub capture_resid: bool,
    pub resid: Vec<Tensor>,
    /// Record the hidden state entering each layer.
    pub capture_inputs: bool,
    pub inputs: Vec<Tensor>,
    /// Record the residual stream entering each FF block (layer input + attention output).
    pub capture_pre_ff: bool,
    pub pre_ff: Vec<Tensor>,
    /// Record each layer's keys and values of the pass (causal one-token passes).
    pub capture_kv: bool,
    pub kv: Vec<(Tensor, Tensor)>,
    pub ff_patch: HashMap<usize, PatchTensors>,
    pub resid_patch: HashMap<usize, PatchTensors>,
    /// Zero tensors requiring grad, added to the FF activation: their gradient is the gradient
    /// with respect to the activation (through every later layer).
    pub grad_leaves: HashMap<usize, Tensor>,
    /// Replace one layer's FF activation by this tensor (the IG path's alpha * a leaf).
    pub ff_replace: Option<(usize, Tensor)>,
    /// Record, per layer of a full causal pass, what a hand-written backward through the last
    /// position needs (see `Llama::gradients_tape`).
    pub capture_tape: bool,
    pub tape: Vec<Tensor>,
}

impl Hooks {
    pub fn modifies_ff(&self, layer: usize) -> bool {
        self.ff_patch.contains_key(&layer)
            || self.grad_leaves.contains_key(&layer)
            || matches!(&self.ff_replace, Some((l, _)) if *l == layer)
    }

    pub fn modifies_resid(&self, layer: usize) -> bool {
        self.resid_patch.contains_key(&layer)
    }

    /// The FF activation at the focus after this pass's edits (records it when asked).
    pub fn on_ff(&mut self, layer: usize, act: Tensor) -> Tensor {
        let mut a = act;
        if let Some((l, leaf)) = &self.ff_replace {
            if *l == layer {
                a = leaf.shallow_clone();
            }
        }
        if let Some(p) = self.ff_patch.get(&layer) {
            a = p.apply(&a);
        }
        if let Some(g) = self.grad_leaves.get(&layer) {
            a = a + g;
        }
        if self.capture_ff {
            self.ff.push(a.detach());
        }
        a
    }

    pub fn on_resid(&mut self, layer: usize, h: Tensor) -> Tensor {
        let h = match self.resid_patch.get(&layer) {
            Some(p) => p.apply(&h),
            None => h,
        };
        if self.capture_resid {
            self.resid.push(h.detach());
        }
        h
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
        ff_patch: reshape(
            build_patches(vars, Site::FeedForward, ff_width, kind, device),
            ff_width,
        ),
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
