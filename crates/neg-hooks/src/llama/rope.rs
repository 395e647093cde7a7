//! Rotary position embeddings, in f32 exactly as transformers computes them.

use tch::{Device, Kind, Tensor};

use crate::config::{LlamaConfig, RopeScaling};

/// RoPE's inverse frequencies (with any rope scaling applied) on the model's device.
pub(crate) struct Rope {
    /// `[head_dim / 2]` f32.
    inv_freq: Tensor,
    /// The kind cos and sin are cast to (the model's).
    kind: Kind,
}

/// cos and sin of the rotation angles of some positions: `[B, s, hd]` each.
pub(crate) struct Angles {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rope {
    pub fn new(cfg: &LlamaConfig, kind: Kind, device: Device) -> Self {
        Self {
            inv_freq: inv_freq(cfg).to_device(device),
            kind,
        }
    }

    /// Angles of position ids `[B, s]`.
    pub fn angles(&self, pos: &Tensor) -> Angles {
        let freqs = pos.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        Angles {
            cos: emb.cos().to_kind(self.kind),
            sin: emb.sin().to_kind(self.kind),
        }
    }
}

pub(crate) fn rotate_half(x: &Tensor) -> Tensor {
    let d = x.size()[x.dim() - 1] / 2;
    Tensor::cat(&[-x.narrow(-1, d, d), x.narrow(-1, 0, d)], -1)
}

/// `x` `[B, heads, s, hd]` rotated by `angles` (`[B, s, hd]`).
pub(crate) fn apply(x: &Tensor, angles: &Angles) -> Tensor {
    x * angles.cos.unsqueeze(1) + rotate_half(x) * angles.sin.unsqueeze(1)
}

/// RoPE inverse frequencies, in f32 exactly as transformers computes them.
fn inv_freq(cfg: &LlamaConfig) -> Tensor {
    let hd = cfg.head_dim as i64;
    let exps = Tensor::arange_start_step(0, hd, 2, (Kind::Int64, Device::Cpu)).to_kind(Kind::Float)
        / hd as f64;
    let inv = Tensor::pow_scalar(cfg.rope.theta, &exps).reciprocal();
    match cfg.rope.scaling {
        RopeScaling::None => inv,
        RopeScaling::Linear { factor } => inv / factor,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let old = original_max_position_embeddings as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            let wavelen = inv.reciprocal() * (2.0 * std::f64::consts::PI);
            // Long wavelengths (low frequencies) are divided by `factor`, short ones kept, and
            // the band between interpolated (transformers' `_compute_llama3_parameters`).
            let scaled = (&inv / factor).where_self(&wavelen.gt(low_wavelen), &inv);
            let smooth = (wavelen.reciprocal() * old - low_freq_factor)
                / (high_freq_factor - low_freq_factor);
            let one_minus: Tensor = smooth.ones_like() - &smooth;
            let smoothed: Tensor = one_minus * &scaled / factor + &smooth * &scaled;
            let medium = wavelen
                .lt(high_wavelen)
                .logical_not()
                .logical_and(&wavelen.gt(low_wavelen).logical_not());
            smoothed.where_self(&medium, &scaled)
        }
    }
}
