//! [`ProbeKind`]: the probes by name, for command lines and configuration files.
use serde::{Deserialize, Serialize};

use super::{ActProbe, LmProbBaseline, MagnProbe, PolarProbe, Probe, RandomBaseline, TreeProbe};
use crate::error::{ProbeError, Result};

/// The probe kinds, for command lines and configuration files.
///
/// The names (`polar`, `magn`, `tree`, `act`, `lmprob`, `rand`) are the same in `FromStr`,
/// `Display`, serde and, with the crate's `clap` feature, `clap::ValueEnum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// [`PolarProbe`].
    Polar,
    /// [`MagnProbe`].
    Magn,
    /// [`TreeProbe`].
    Tree,
    /// [`ActProbe`].
    Act,
    /// [`LmProbBaseline`].
    Lmprob,
    /// [`RandomBaseline`].
    Rand,
}

impl ProbeKind {
    /// Every kind, in the order of the paper's tables (probes, then baselines).
    pub const ALL: [ProbeKind; 6] = [
        ProbeKind::Polar,
        ProbeKind::Magn,
        ProbeKind::Tree,
        ProbeKind::Act,
        ProbeKind::Lmprob,
        ProbeKind::Rand,
    ];

    /// The kind's name, as [`Probe::name`] and `FromStr` spell it.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Polar => "polar",
            ProbeKind::Magn => "magn",
            ProbeKind::Tree => "tree",
            ProbeKind::Act => "act",
            ProbeKind::Lmprob => "lmprob",
            ProbeKind::Rand => "rand",
        }
    }

    /// A fresh probe of this kind with default settings (Tree: 100 trees, all neurons).
    pub fn build(self) -> Box<dyn Probe> {
        match self {
            ProbeKind::Polar => Box::new(PolarProbe::new(None)),
            ProbeKind::Magn => Box::new(MagnProbe::new(None)),
            ProbeKind::Tree => Box::new(TreeProbe::default()),
            ProbeKind::Act => Box::new(ActProbe::new(None)),
            ProbeKind::Lmprob => Box::new(LmProbBaseline),
            ProbeKind::Rand => Box::new(RandomBaseline::default()),
        }
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ProbeKind {
    type Err = ProbeError;
    fn from_str(s: &str) -> Result<Self> {
        ProbeKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ProbeError::InvalidConfig {
                what: format!("unknown probe `{s}` (polar, magn, tree, act, lmprob, rand)"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_serde_and_the_probes() {
        for kind in ProbeKind::ALL {
            assert_eq!(kind.name().parse::<ProbeKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.name());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(kind.build().name(), kind.name());
        }
        let err = "forest".parse::<ProbeKind>().unwrap_err().to_string();
        assert!(err.contains("unknown probe `forest`"), "{err}");
    }

    #[cfg(feature = "clap")]
    #[test]
    fn value_enum_names_are_the_from_str_names() {
        use clap::ValueEnum;
        assert_eq!(ProbeKind::value_variants(), &ProbeKind::ALL);
        for kind in ProbeKind::ALL {
            let value = kind.to_possible_value().unwrap();
            assert_eq!(value.get_name(), kind.name());
            assert_eq!(value.get_name().parse::<ProbeKind>().unwrap(), kind);
            assert_eq!(
                <ProbeKind as ValueEnum>::from_str(kind.name(), false).unwrap(),
                kind
            );
        }
    }
}
