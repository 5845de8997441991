//! indicatif progress bars for long work (downloads, synthetic model writes).

use indicatif::{ProgressBar, ProgressStyle};
use troupe_models::pull::PullProgress;

/// A download bar: bytes, rate and time left.
pub(super) struct DownloadBar {
    bar: ProgressBar,
}

impl DownloadBar {
    /// A bar that draws on stderr (hidden when stderr is not a terminal).
    pub(super) fn new() -> DownloadBar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        DownloadBar { bar }
    }
}

impl PullProgress for DownloadBar {
    fn start(&self, file: &str, total: u64) {
        self.bar.set_message(file.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn finish(&self) {
        self.bar.finish();
    }
}

/// A spinner for work with no byte count.
pub(super) fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
