//! Input and output checks shared by the methods.
use ndarray::{ArrayBase, Data, Dimension};

use crate::adapter::{ModelAdapter, NeuronId, TargetedPrompt};
use crate::error::{NegError, Result};

/// Non-empty prompt set, each prompt with the same, non-zero number of targets. Returns T.
pub fn prompts(prompts: &[TargetedPrompt]) -> Result<usize> {
    let first = prompts.first().ok_or(NegError::EmptyPrompts)?;
    let expected = first.targets.len();
    for (index, p) in prompts.iter().enumerate() {
        if p.targets.is_empty() {
            return Err(NegError::NoTargets {
                index,
                text: p.text.clone(),
            });
        }
        if p.targets.len() != expected {
            return Err(NegError::TargetCountMismatch {
                index,
                expected,
                got: p.targets.len(),
            });
        }
    }
    Ok(expected)
}

/// Non-empty neuron list inside the model.
pub fn neurons<A: ModelAdapter + ?Sized>(adapter: &A, neurons: &[NeuronId]) -> Result<()> {
    if neurons.is_empty() {
        return Err(NegError::NoNeurons);
    }
    let (layers, width) = (adapter.num_layers(), adapter.ff_width());
    if let Some(&neuron) = neurons
        .iter()
        .find(|n| n.layer >= layers || n.neuron >= width)
    {
        return Err(NegError::NeuronOutOfRange {
            neuron,
            layers,
            width,
        });
    }
    Ok(())
}

/// Every element finite.
pub fn finite<S, D>(what: &'static str, array: &ArrayBase<S, D>) -> Result<()>
where
    S: Data<Elem = f32>,
    D: Dimension,
{
    // `iter` walks in logical (row-major) order, so the flat position unravels by the shape.
    match array.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(flat) => {
            let shape = array.shape();
            let mut index = vec![0; shape.len()];
            let mut rest = flat;
            for (i, &dim) in shape.iter().enumerate().rev() {
                index[i] = rest % dim.max(1);
                rest /= dim.max(1);
            }
            let value = array.iter().nth(flat).copied().unwrap_or(f32::NAN);
            Err(NegError::NonFinite { what, index, value })
        }
    }
}

/// The array has exactly this shape.
pub fn shape<S, D>(what: &'static str, array: &ArrayBase<S, D>, expected: &[usize]) -> Result<()>
where
    S: Data<Elem = f32>,
    D: Dimension,
{
    if array.shape() != expected {
        return Err(NegError::Shape {
            what,
            got: array.shape().to_vec(),
            expected: expected.to_vec(),
        });
    }
    Ok(())
}

/// `sign(a)` as the paper's code defines it: 1 if a > 0, else -1 (zero counts as negative).
pub fn sign(a: f32) -> f32 {
    if a > 0.0 {
        1.0
    } else {
        -1.0
    }
}
