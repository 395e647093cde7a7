//! Step 1: the selected units' activations and the option probabilities of every prompt.
use ndarray::{Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::{LensError, Result, Unit};
use crate::adapter::{AdapterError, CaptureOptions, ModelAdapter, Site, TargetedPrompt};

/// Which units to capture: all units of `layers` at `site`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitSelection {
    pub site: Site,
    pub layers: Vec<usize>,
}

impl UnitSelection {
    /// The units in column order (layer by layer), checked against the model.
    pub fn units(&self, model: &dyn ModelAdapter) -> Result<Vec<Unit>> {
        if self.layers.is_empty() {
            return Err(LensError::Empty("layer selection"));
        }
        let width = match self.site {
            Site::FeedForward => model.ff_width(),
            Site::Residual => model.hidden_size(),
        };
        let mut out = Vec::with_capacity(self.layers.len() * width);
        for &layer in &self.layers {
            if layer >= model.num_layers() {
                return Err(LensError::LayerOutOfRange {
                    layer,
                    layers: model.num_layers(),
                });
            }
            out.extend((0..width).map(|index| Unit {
                site: self.site,
                layer,
                index,
            }));
        }
        Ok(out)
    }
}

/// Activations of the selected units and option probabilities at each prompt's position.
#[derive(Clone, Debug, PartialEq)]
pub struct Capture {
    pub units: Vec<Unit>,
    /// [P, U]
    pub activations: Array2<f64>,
    /// [P, O]: probability of each option token (the prompts' targets).
    pub probs: Array2<f64>,
}

impl Capture {
    /// The predicted option of each prompt (argmax of the option probabilities).
    pub fn predictions(&self) -> Vec<usize> {
        self.probs.rows().into_iter().map(argmax).collect()
    }
}

/// Runs the model once over `prompts`, whose targets are the option tokens in class order
/// (for the residual stream through [`ModelAdapter::forward_with`], which a model such as
/// `neg_hooks::HfModel` answers from the same pass as the probabilities).
pub fn capture(
    model: &dyn ModelAdapter,
    prompts: &[TargetedPrompt],
    selection: &UnitSelection,
) -> Result<Capture> {
    if prompts.is_empty() {
        return Err(LensError::Empty("prompt set"));
    }
    let units = selection.units(model)?;
    let captured = model.forward_with(
        prompts,
        CaptureOptions {
            residual: selection.site == Site::Residual,
        },
    )?;
    let probs = captured.probs.mapv(f64::from);
    check_finite("option probabilities", probs.view())?;
    let layered = match selection.site {
        Site::FeedForward => captured.activations,
        Site::Residual => captured.residual.ok_or_else(|| {
            LensError::Adapter(AdapterError::InvalidOutput {
                model: model.model_id().into(),
                method: "forward_with",
                problem: "no residual stream although it was asked for".into(),
            })
        })?,
    };
    let width = layered.shape()[2];
    let mut activations = Array2::zeros((prompts.len(), units.len()));
    for (u, unit) in units.iter().enumerate() {
        if unit.layer >= layered.shape()[1] || unit.index >= width {
            return Err(LensError::LengthMismatch {
                what: "captured activations per layer",
                expected: unit.index + 1,
                got: width,
            });
        }
        for p in 0..prompts.len() {
            activations[[p, u]] = f64::from(layered[[p, unit.layer, unit.index]]);
        }
    }
    check_finite("activations", activations.view())?;
    Ok(Capture {
        units,
        activations,
        probs,
    })
}

pub(super) fn check_finite(what: &'static str, a: ArrayView2<f64>) -> Result<()> {
    if let Some(((i, j), &v)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(LensError::NonFinite {
            what,
            index: vec![i, j],
            value: v,
        });
    }
    Ok(())
}

pub(super) fn argmax(r: ArrayView1<f64>) -> usize {
    r.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}
