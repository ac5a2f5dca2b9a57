//! Progress on stderr for the long commands (`load`, `compact`,
//! `repair`): an indicatif bar or spinner, drawn only when stderr is a
//! terminal and `--quiet` is off. Otherwise nothing at all is printed, so
//! piped and scripted runs (and the tests) see clean, parseable output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often a spinner redraws while the work gives no steps to count.
const SPINNER_TICK: Duration = Duration::from_millis(120);

/// A bar or spinner on a terminal's stderr, or nothing.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// Whether progress is drawn at all.
    fn shown(quiet: bool) -> bool {
        !quiet && std::io::stderr().is_terminal()
    }

    /// A bar over `total` steps, drawn with `template` (an indicatif
    /// template: `{bar}`, `{pos}`, `{len}`, `{bytes}`, `{msg}` …).
    pub fn bar(total: u64, template: &str, quiet: bool) -> Progress {
        if !Progress::shown(quiet) {
            return Progress(None);
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress(Some(bar))
    }

    /// A spinner that ticks by itself, for work with no steps to count
    /// (one engine call) or no known end (standard input).
    pub fn spinner(message: impl Into<String>, quiet: bool) -> Progress {
        if !Progress::shown(quiet) {
            return Progress(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(SPINNER_TICK);
        Progress(Some(bar))
    }

    /// Advances by `n` steps.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// Sets the message shown beside the bar.
    pub fn message(&self, message: impl Into<String>) {
        if let Some(bar) = &self.0 {
            bar.set_message(message.into());
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // On an error path too: never leave a half-drawn bar behind the
        // error message.
        self.finish();
    }
}
