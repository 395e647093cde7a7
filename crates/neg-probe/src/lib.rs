//! # neg-probe
//!
//! Skill-neuron probes on NEG features.
