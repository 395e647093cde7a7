//! The libtorch boundary: every [`crate::HfModel`] entry point that computes runs under
//! [`libtorch`], so a libtorch error reaches the caller as [`HooksError::Libtorch`] and never as
//! a panic.
//!
//! Why a boundary guard and not `f_` calls everywhere: tch's infallible methods (`matmul`,
//! `embedding`, ...) call the fallible `f_` variant and `unwrap` it, so a C++ exception becomes
//! a plain Rust panic carrying libtorch's message; nothing unwinds through C++. The model code
//! has a few hundred such calls, each made safe by validation before it runs (the config is
//! bounded and checked on load, every checkpoint tensor is checked for presence, shape and
//! float type, prompts for length and vocabulary, patches and targets for range). Rewriting
//! each call as `f_...?` would double the parity-tested model code without covering more
//! cases; catching the panic where the adapter is entered turns whatever validation missed (an
//! allocation the machine cannot make, a CUDA error) into a typed error, with libtorch's own
//! message, while the model and its caller stay usable.
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::error::{HooksError, Result};

thread_local! {
    static GUARDED: Cell<usize> = const { Cell::new(0) };
}

/// Installs (once) a panic hook that stays silent for panics raised inside [`libtorch`] on
/// this thread (they become errors, so the default "thread panicked" text would be noise) and
/// hands every other panic to the hook that was there before.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.with(|g| g.get()) == 0 {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic raised inside it (tch's infallible calls panic on a libtorch
/// error) into [`HooksError::Libtorch`] naming `op` and carrying the panic's message.
pub fn libtorch<T>(op: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    install_quiet_hook();
    GUARDED.with(|g| g.set(g.get() + 1));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown error".to_string());
            // tch's messages carry a C++ backtrace after the first lines; the first line
            // that says what failed is enough for an error line.
            let first = message
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("unknown error")
                .to_string();
            Err(HooksError::Libtorch { op, message: first })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn a_libtorch_error_is_a_typed_error_and_the_thread_goes_on() {
        let bad = libtorch("matmul", || {
            let a = Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu));
            let b = Tensor::zeros([4, 5], (Kind::Float, tch::Device::Cpu));
            Ok(a.matmul(&b).size())
        });
        match bad {
            Err(HooksError::Libtorch { op, message }) => {
                assert_eq!(op, "matmul");
                assert!(message.contains("cannot be multiplied"), "{message}");
            }
            other => panic!("expected Libtorch, got {other:?}"),
        }
        // Errors returned by the closure pass through unchanged; so do results.
        let ok = libtorch("add", || {
            Ok((Tensor::ones([2], (Kind::Float, tch::Device::Cpu)) + 1).size())
        });
        assert_eq!(ok.unwrap(), vec![2]);
        let typed = libtorch("x", || -> Result<()> {
            Err(HooksError::EmptyPrompt { prompt: "p".into() })
        });
        assert!(matches!(typed, Err(HooksError::EmptyPrompt { .. })));
        // A panic outside the guard still panics (the hook hands it on).
        assert!(std::panic::catch_unwind(|| panic!("outside")).is_err());
    }
}
