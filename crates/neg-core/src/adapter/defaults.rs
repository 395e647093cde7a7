//! The default methods of [`ModelAdapter`], as free functions so that an implementation that
//! overrides a default (for speed) can still be checked against it.
//!
//! Each assembles its answer from the patch primitive [`ModelAdapter::patched_pass`] (or from
//! [`ModelAdapter::forward`] and [`ModelAdapter::residual`]) and checks the shapes it gets, so a
//! faulty implementation is an [`AdapterError::InvalidOutput`] naming the method, not a panic.

use ndarray::{s, Array2, Array4, Axis};

use super::{
    AdapterError, CaptureOptions, CapturedForward, ModelAdapter, NeuronId, PassOutputs, Patch,
    PatchOp, PatchedPass, TargetedPrompt,
};

fn invalid_output<A: ModelAdapter + ?Sized>(
    adapter: &A,
    method: &'static str,
    problem: String,
) -> AdapterError {
    AdapterError::InvalidOutput {
        model: adapter.model_id().into(),
        method,
        problem,
    }
}

/// Checks one pass's shapes against the model: probs [T], activations [L, N] and, when
/// `outputs` asked for them, grads [T, L, N].
fn checked_pass<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompt: &TargetedPrompt,
    patches: &[Patch],
    outputs: PassOutputs,
) -> Result<PatchedPass, AdapterError> {
    let pass = adapter.patched_pass(prompt, patches, outputs)?;
    let (t, l, n) = (
        prompt.targets.len(),
        adapter.num_layers(),
        adapter.ff_width(),
    );
    let bad = |problem: String| Err(invalid_output(adapter, "patched_pass", problem));
    if pass.probs.len() != t {
        return bad(format!(
            "{} probabilities for {t} targets",
            pass.probs.len()
        ));
    }
    if pass.activations.dim() != (l, n) {
        return bad(format!(
            "activations of shape {:?}, expected [{l}, {n}]",
            pass.activations.shape()
        ));
    }
    match (&pass.grads, outputs) {
        (Some(g), PassOutputs::Gradients) if g.dim() != (t, l, n) => bad(format!(
            "gradients of shape {:?}, expected [{t}, {l}, {n}]",
            g.shape()
        )),
        (None, PassOutputs::Gradients) => bad("no gradients although they were asked for".into()),
        _ => Ok(pass),
    }
}

/// [`ModelAdapter::patched_probs`] by one [`ModelAdapter::patched_pass`] per variant: [V, T].
pub fn patched_probs_by_pass<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompt: &TargetedPrompt,
    variants: &[Vec<Patch>],
) -> Result<Array2<f32>, AdapterError> {
    let mut out = Array2::zeros((variants.len(), prompt.targets.len()));
    for (row, patches) in variants.iter().enumerate() {
        let pass = checked_pass(adapter, prompt, patches, PassOutputs::Probs)?;
        out.row_mut(row).assign(&pass.probs);
    }
    Ok(out)
}

/// [`ModelAdapter::scaled_gradients`] by one [`ModelAdapter::patched_pass`] with gradients per
/// (layer, alpha): every neuron of the layer `Set` to alpha times its unpatched activation,
/// the gradient read at that layer. [layers.len(), alphas.len(), T, N].
pub fn scaled_gradients_by_pass<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompt: &TargetedPrompt,
    layers: &[usize],
    alphas: &[f32],
) -> Result<Array4<f32>, AdapterError> {
    let (num_layers, n, t) = (
        adapter.num_layers(),
        adapter.ff_width(),
        prompt.targets.len(),
    );
    if let Some(&layer) = layers.iter().find(|&&l| l >= num_layers) {
        return Err(AdapterError::InvalidInput(format!(
            "layer {layer} is outside the model ({num_layers} layers)"
        )));
    }
    let unpatched = checked_pass(adapter, prompt, &[], PassOutputs::Probs)?.activations;
    let mut out = Array4::zeros((layers.len(), alphas.len(), t, n));
    for (li, &layer) in layers.iter().enumerate() {
        for (ai, &alpha) in alphas.iter().enumerate() {
            let scaled: Vec<Patch> = (0..n)
                .map(|neuron| {
                    let a = unpatched[[layer, neuron]];
                    Patch::ff(NeuronId::new(layer, neuron), PatchOp::Set(alpha * a))
                })
                .collect();
            let pass = checked_pass(adapter, prompt, &scaled, PassOutputs::Gradients)?;
            let grads = pass.grads.expect("checked_pass guarantees gradients");
            out.slice_mut(s![li, ai, .., ..])
                .assign(&grads.index_axis(Axis(1), layer));
        }
    }
    Ok(out)
}

/// [`ModelAdapter::forward_with`] by [`ModelAdapter::forward`] and, when the residual stream
/// is asked for, [`ModelAdapter::residual`] (two passes).
pub fn forward_with_by_parts<A: ModelAdapter + ?Sized>(
    adapter: &A,
    prompts: &[TargetedPrompt],
    capture: CaptureOptions,
) -> Result<CapturedForward, AdapterError> {
    let forward = adapter.forward(prompts)?;
    let residual = if capture.residual {
        Some(adapter.residual(prompts)?)
    } else {
        None
    };
    Ok(CapturedForward {
        probs: forward.probs,
        activations: forward.activations,
        residual,
    })
}
