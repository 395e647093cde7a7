//! # mceval
//!
//! MCEval8K loading, prompts and construction from sources.
