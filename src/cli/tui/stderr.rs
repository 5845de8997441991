//! While the view owns the screen, anything written to stderr (the log,
//! warnings) would land in the middle of it: stderr goes to a file then,
//! and back to where it was afterwards, also when the process panics.

use std::path::Path;

/// Stderr sent to a file until dropped.
pub(super) struct StderrToFile {
    #[cfg(unix)]
    saved: Option<std::os::fd::OwnedFd>,
}

#[cfg(unix)]
impl StderrToFile {
    /// Sends stderr to `path` (appending).
    ///
    /// # Errors
    /// The file cannot be opened, or the descriptor cannot be duplicated.
    pub(super) fn to(path: &Path) -> std::io::Result<StderrToFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let saved = rustix::io::dup(std::io::stderr())?;
        // A panic's message belongs on the terminal: the hook puts stderr
        // back before the earlier hooks (ratatui's restores the screen)
        // print it.
        let for_panic = rustix::io::dup(&saved)?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = rustix::stdio::dup2_stderr(&for_panic);
            previous(info);
        }));
        rustix::stdio::dup2_stderr(&file)?;
        Ok(StderrToFile { saved: Some(saved) })
    }
}

#[cfg(unix)]
impl Drop for StderrToFile {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = rustix::stdio::dup2_stderr(&saved);
        }
    }
}

#[cfg(not(unix))]
impl StderrToFile {
    /// Does nothing here: stderr stays where it is.
    pub fn to(_path: &Path) -> std::io::Result<StderrToFile> {
        Ok(StderrToFile {})
    }
}
