//! With the `clap` feature, the command-line names of the library's enums are the names
//! `FromStr` and serde already use.
#![cfg(feature = "clap")]
use clap::ValueEnum;
use neg_core::{Method, ShiftMode, Site};

#[test]
fn value_enum_names_are_the_from_str_names() {
    for m in Method::ALL {
        let v = m.to_possible_value().unwrap();
        assert_eq!(v.get_name(), m.name());
        assert_eq!(Method::from_str(m.name(), false).unwrap(), m);
        assert_eq!(m.name().parse::<Method>().unwrap(), m);
    }
    for s in ShiftMode::value_variants() {
        let name = s.to_possible_value().unwrap().get_name().to_string();
        assert_eq!(name.parse::<ShiftMode>().unwrap(), *s);
        assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{name}\""));
    }
    assert_eq!(Site::from_str("ff", false).unwrap(), Site::FeedForward);
    assert_eq!(
        Site::from_str("feed_forward", false).unwrap(),
        Site::FeedForward
    );
    assert_eq!(Site::from_str("residual", false).unwrap(), Site::Residual);
}
