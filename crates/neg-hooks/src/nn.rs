//! The layers every architecture is built from: [`Linear`], [`Embedding`], [`RmsNorm`] (with its
//! hand-written backward) and [`LayerNorm`], loaded by Hugging Face parameter name.

use tch::{Kind, Tensor};

use crate::error::Result;
use crate::loader::Weights;

/// Added to the attention scores of masked keys. Finite (unlike -inf) so that fully masked
/// padding rows give a uniform softmax instead of NaN; exp(-1e9) underflows to exactly 0.
pub(crate) const MASKED: f64 = -1e9;

/// [`MASKED`] as a mask of type `kind` can hold it: f16 tops out at 65504, and -1e9 would
/// be -inf there (NaN rows again); -65504 still sends exp to 0 after any real score.
pub(crate) fn masked_score(kind: tch::Kind) -> f64 {
    if kind == tch::Kind::Half {
        -65504.0
    } else {
        MASKED
    }
}

/// `y = x W^T + b`, `W` `[out, in]`.
pub(crate) struct Linear {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

impl Linear {
    /// `{name}.weight` `[out, inp]` and, when `bias`, `{name}.bias` `[out]`.
    pub fn load(ws: &mut Weights, name: &str, out: usize, inp: usize, bias: bool) -> Result<Self> {
        let w = ws.get(&format!("{name}.weight"), &[out as i64, inp as i64])?;
        let b = if bias {
            Some(ws.get(&format!("{name}.bias"), &[out as i64])?)
        } else {
            None
        };
        Ok(Self { w, b })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w, self.b.as_ref())
    }
}

/// A token embedding table `[vocab, hidden]`.
pub(crate) struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn load(ws: &mut Weights, name: &str, vocab: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            weight: ws.get(name, &[vocab as i64, hidden as i64])?,
        })
    }

    /// The rows of `ids` (any shape of i64 ids): `[.., hidden]`.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, ids, -1, false, false)
    }
}

/// Llama's RMSNorm: `y = w * x / sqrt(mean(x^2) + eps)`.
pub(crate) struct RmsNorm {
    pub w: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn load(ws: &mut Weights, name: &str, hidden: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            w: ws.get(name, &[hidden as i64])?,
            eps,
        })
    }

    /// As transformers: normalise in f32, cast back, then scale.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let var = xf
            .pow_tensor_scalar(2)
            .mean_dim([-1i64].as_slice(), true, Kind::Float);
        (xf * (var + self.eps).rsqrt()).to_kind(kind) * &self.w
    }

    /// Backward (in f32): the gradient with respect to the input `x` `[B, 1, H]` given the
    /// gradient `dy` `[B, R, H]` of the output, for each of R rows.
    /// y = w x r with r = (mean(x^2) + eps)^-1/2, so dx = r (w dy) - r^3 x mean(x w dy).
    pub fn backward(&self, x: &Tensor, dy: &Tensor) -> Tensor {
        let r = (x
            .pow_tensor_scalar(2)
            .mean_dim([-1i64].as_slice(), true, Kind::Float)
            + self.eps)
            .rsqrt();
        let g = dy * &self.w;
        let dot = (&g * x).mean_dim([-1i64].as_slice(), true, Kind::Float);
        &r * g - x * r.pow_tensor_scalar(3) * dot
    }
}

/// BERT's LayerNorm over the last dimension, with weight and bias.
pub(crate) struct LayerNorm {
    pub w: Tensor,
    pub b: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    /// `{name}.weight`/`{name}.bias`, or the `gamma`/`beta` of old TF-converted checkpoints.
    pub fn load(ws: &mut Weights, name: &str, hidden: usize, eps: f64) -> Result<Self> {
        let h = [hidden as i64];
        let w = ws.get_any(&[&format!("{name}.weight"), &format!("{name}.gamma")], &h)?;
        let b = ws.get_any(&[&format!("{name}.bias"), &format!("{name}.beta")], &h)?;
        Ok(Self { w, b, eps })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.w.size()[0];
        x.layer_norm(
            [h].as_slice(),
            Some(&self.w),
            Some(&self.b),
            self.eps,
            false,
        )
    }
}
