//! Progress of long image work (pulls, pushes, imports): bars on a
//! terminal, nothing when stderr is piped or in the controller's log.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars on stderr when it is a terminal, else silence.
    pub fn stderr() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress {
                multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            }
        } else {
            Progress::hidden()
        }
    }

    pub fn hidden() -> Progress {
        Progress { multi: None }
    }

    /// A byte-counting bar for one blob (hidden when there is no terminal).
    pub fn bytes(&self, label: &str, total: u64) -> ProgressBar {
        let Some(multi) = &self.multi else {
            return ProgressBar::hidden();
        };
        let bar = multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>14} [{bar:30}] {bytes:>9}/{total_bytes:<9} {bytes_per_sec:>11}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar
    }
}

/// `sha256:abcdef…` → `abcdef123456`, as Docker labels layers.
pub fn short(digest: &str) -> String {
    digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
}
