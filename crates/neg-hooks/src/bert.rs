//! BERT masked LM (placeholder until the full implementation lands).

use tch::{Device, Kind};

use crate::config::BertConfig;
use crate::error::{HooksError, Result};
use crate::loader::Weights;

#[allow(dead_code)] // filled in by the BERT implementation
pub struct Bert {
    pub(crate) cfg: BertConfig,
}

impl Bert {
    pub(crate) fn load(
        _cfg: BertConfig,
        _ws: &mut Weights,
        _kind: Kind,
        _device: Device,
    ) -> Result<Self> {
        Err(HooksError::UnsupportedModelType {
            model_type: "bert".into(),
            path: "config.json".into(),
        })
    }
}
