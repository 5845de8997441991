//! The bridge from hf-hub's progress events to a [`PullProgress`].
//!
//! hf-hub reports cumulative bytes per file (and announces the size once);
//! the CLI's progress bar wants increments. The bridge also remembers how
//! far a download got, which is what an interruption error reports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use hf_hub::progress::{DownloadEvent, ProgressEvent, ProgressHandler};

use super::PullProgress;

/// Adapts hf-hub's progress events to a [`PullProgress`], remembering how
/// many bytes arrived so an interruption can say how far it got.
pub(super) struct ProgressBridge {
    file: String,
    sink: Arc<dyn PullProgress>,
    started: AtomicBool,
    finished: AtomicBool,
    total: AtomicU64,
    received: AtomicU64,
}

impl ProgressBridge {
    pub(super) fn new(file: &str, sink: Arc<dyn PullProgress>) -> Self {
        Self {
            file: file.to_owned(),
            sink,
            started: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            total: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    pub(super) fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub(super) fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    /// The announced size; hf-hub reports 0 when the server sent none.
    pub(super) fn total(&self) -> Option<u64> {
        Some(self.total.load(Ordering::Acquire)).filter(|&t| t > 0)
    }

    fn advance_to(&self, bytes_completed: u64) {
        let before = self.received.fetch_max(bytes_completed, Ordering::AcqRel);
        if bytes_completed > before {
            self.sink.advance(bytes_completed - before);
        }
    }

    pub(super) fn finish(&self) {
        if self.started() && !self.finished.swap(true, Ordering::AcqRel) {
            self.sink.finish();
        }
    }
}

impl ProgressHandler for ProgressBridge {
    fn on_progress(&self, event: &ProgressEvent) {
        let ProgressEvent::Download(event) = event else {
            return;
        };
        match event {
            DownloadEvent::Start { total_bytes, .. } => {
                self.total.store(*total_bytes, Ordering::Release);
                if !self.started.swap(true, Ordering::AcqRel) {
                    self.sink.start(&self.file, *total_bytes);
                }
            }
            DownloadEvent::Progress { files } => {
                for f in files.iter().filter(|f| f.filename == self.file) {
                    self.advance_to(f.bytes_completed);
                }
            }
            DownloadEvent::AggregateProgress {
                bytes_completed, ..
            } => self.advance_to(*bytes_completed),
            // `finish` is called by `pull` once, whether or not hf-hub completes.
            DownloadEvent::Complete => {}
        }
    }
}
