//! The one progress style of every command: a bar over counted steps (prompts, sweeps) or a
//! spinner for a step whose length is not known in advance (loading, probing). Both draw on
//! stderr, only when it is a terminal (indicatif's detection), and are hidden by `--quiet`.
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` steps of `unit` (e.g. "prompts") labelled `message`; hidden unless `show`.
pub fn bar(len: usize, unit: &str, message: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    let template = format!("{{msg:>24}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}}/{{eta}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}

/// A spinner labelled `message` that ticks by itself until finished; hidden unless `show`.
pub fn spinner(message: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{msg:>24} {spinner} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Runs `work` under a [`spinner`] labelled `message`, clearing it afterwards.
pub fn with_spinner<T>(message: &str, show: bool, work: impl FnOnce() -> T) -> T {
    let s = spinner(message, show);
    let out = work();
    s.finish_and_clear();
    out
}
