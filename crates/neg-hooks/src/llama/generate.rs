//! Greedy generation with the FF activations of the positions that predicted each token.

use tch::{Kind, Tensor};

use super::block::Kv;
use super::passes::{left_pad, KvMode};
use super::Llama;
use crate::hooks::{Hooks, Record};

/// Tokens generated greedily and the FF activations of the positions that predicted them.
pub(crate) struct Generated {
    /// The new token ids (EOS excluded).
    pub tokens: Vec<u32>,
    /// `[L, N]` f32 sum of the FF activations over those positions (the prompt's last position
    /// alone when nothing was generated).
    pub act_sum: Tensor,
    /// How many positions `act_sum` adds up (at least 1).
    pub positions: usize,
}

impl Llama {
    /// Greedy generation of up to `max_new` tokens after `seq`, stopping at `eos` or the
    /// context limit.
    pub(crate) fn generate(&self, seq: &[u32], max_new: usize, eos: &[u32]) -> Generated {
        tch::no_grad(|| {
            let max_pos = self.cfg.max_position_embeddings;
            let batch = left_pad(&[seq], self.device);
            let mut hooks = Hooks::recording(Record {
                ff: true,
                ..Record::default()
            });
            let pass = self.full(&batch.ids, &batch.pads, None, &mut hooks, KvMode::Keep);
            let mut kv = pass.kv;
            let first_acts = Tensor::cat(&hooks.recorded.ff, 1)
                .squeeze_dim(0)
                .to_kind(Kind::Float);
            let Some(mut h) = pass.last_hidden.filter(|_| max_new > 0) else {
                return Generated {
                    tokens: Vec::new(),
                    act_sum: first_acts,
                    positions: 1,
                };
            };
            let mut acts = first_acts.shallow_clone();
            let mut sum = Tensor::zeros_like(&first_acts);
            let mut out = Vec::new();
            loop {
                let tok = self
                    .logits(&h)
                    .reshape([-1])
                    .argmax(0, false)
                    .int64_value(&[]) as u32;
                if eos.contains(&tok) {
                    break;
                }
                out.push(tok);
                sum += &acts;
                let next_pos = seq.len() + out.len() - 1;
                if out.len() >= max_new || next_pos >= max_pos {
                    break;
                }
                let mut hooks = Hooks::recording(Record {
                    ff: true,
                    kv: true,
                    ..Record::default()
                });
                let x = self.embed_ids(&[tok as i64], &[1, 1]);
                let pos = Tensor::from_slice(&[next_pos as i64]).to_device(self.device);
                h = self.step(x, 0, &pos, &kv, None, &mut hooks);
                for (l, new) in hooks.recorded.kv.into_iter().enumerate() {
                    kv[l] = Kv {
                        keys: Tensor::cat(&[&kv[l].keys, &new.keys], 2),
                        values: Tensor::cat(&[&kv[l].values, &new.values], 2),
                    };
                }
                acts = Tensor::cat(&hooks.recorded.ff, 1)
                    .squeeze_dim(0)
                    .to_kind(Kind::Float);
            }
            if out.is_empty() {
                return Generated {
                    tokens: out,
                    act_sum: first_acts,
                    positions: 1,
                };
            }
            let positions = out.len();
            Generated {
                tokens: out,
                act_sum: sum,
                positions,
            }
        })
    }
}
