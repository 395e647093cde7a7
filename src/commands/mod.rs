//! One module per `neg` subcommand: `Args`, `run(&Args) -> Result<Report>` (writes the
//! command's files and returns what it computed) and `main(&Args)` (runs and prints).
//!
//! | subcommand | module | paper |
//! |---|---|---|
//! | `skill-probe` | [`skill_probe`] | §5.3, Tables 3, 8, 9 |
//! | `training-size` | [`training_size`] | Fig. 7 |
//! | `robustness` | [`robustness`] | §6.2 |
//! | `substitutability` | [`substitutability`] | §6.3, Fig. 8 |
//! | `tree-shape` | [`tree_shape`] | §6.4, Fig. 9 |
//! | `linearity` | [`linearity`] | Fig. 2, Tables 1, 5 |
//! | `estimate` | [`estimate`] | Table 2 |
//! | `attribution` | [`attribution`] | Fig. 3 |
//! | `distribution` | [`distribution`] | Figs. 4, 11, 12 |
//! | `multi-neuron` | [`multi_neuron`] | Figs. 5, 14 |
//! | `neurgrad`, `intervene` | [`neurgrad`], [`intervene`] | exporters |
//! | `lens` | [`lens`] | NeuronLens |
//! | `aux-metrics` | [`aux_metrics`] | auxiliary-metric skill neurons |
//! | `probe-features` | [`probe_features`] | one probe on a features file |
//! | `mceval` | [`mceval`] | MCEval8K tools |
pub mod attribution;
pub mod aux_metrics;
pub mod distribution;
pub mod estimate;
mod export;
pub mod intervene;
pub mod lens;
pub mod linearity;
pub mod mceval;
pub mod multi_neuron;
pub mod neurgrad;
pub mod probe_features;
pub mod robustness;
pub mod skill_probe;
pub mod substitutability;
pub mod training_size;
pub mod tree_shape;

pub use export::ExportArgs;
