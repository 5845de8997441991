//! The terminal's input: crossterm events read on a plain thread, and the
//! keys the view understands.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use super::app::Key;

/// How long one wait for input lasts, so that the reader notices a stop.
const POLL: Duration = Duration::from_millis(50);

/// What the terminal sent.
#[derive(Debug)]
pub(super) enum Input {
    /// A key the view understands.
    Key(Key),
    /// The terminal changed size (or anything else that calls for a
    /// redraw).
    Redraw,
    /// Reading failed.
    Failed(std::io::Error),
}

/// Reads the terminal on its own thread: crossterm's reads block, and a
/// blocking task would hold the runtime's shutdown.
pub(super) struct InputReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl InputReader {
    /// Starts reading; what comes goes to the receiver.
    pub(super) fn start() -> std::io::Result<(InputReader, mpsc::UnboundedReceiver<Input>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("tui-input".to_string())
            .spawn(move || read(&flag, &tx))?;
        Ok((
            InputReader {
                stop,
                thread: Some(thread),
            },
            rx,
        ))
    }
}

impl Drop for InputReader {
    /// Waits for the reader to stop, so that no key meant for the shell
    /// afterwards is taken.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read(stop: &AtomicBool, tx: &mpsc::UnboundedSender<Input>) {
    while !stop.load(Ordering::Relaxed) {
        let input = match event::poll(POLL) {
            Ok(false) => continue,
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) => match map(key) {
                    Some(key) => Input::Key(key),
                    None => continue,
                },
                Ok(Event::Resize(..)) => Input::Redraw,
                Ok(_) => continue,
                Err(error) => Input::Failed(error),
            },
            Err(error) => Input::Failed(error),
        };
        let failed = matches!(input, Input::Failed(_));
        if tx.send(input).is_err() || failed {
            return;
        }
    }
}

/// The view's key for a terminal key; `None` for keys it ignores.
pub(super) fn map(key: KeyEvent) -> Option<Key> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    Some(match key.code {
        KeyCode::Char('c' | 'd') if ctrl => Key::Quit,
        KeyCode::Char(_) if ctrl => return None,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Esc => Key::Quit,
        KeyCode::Enter => Key::Enter,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_ctrl_c_and_ctrl_d_quit_but_other_control_keys_do_not_type() {
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        assert_eq!(map(ctrl('c')), Some(Key::Quit));
        assert_eq!(map(ctrl('d')), Some(Key::Quit));
        assert_eq!(map(ctrl('x')), None);
        assert_eq!(
            map(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Key::Quit)
        );
        assert_eq!(
            map(KeyEvent::new(KeyCode::Char('P'), KeyModifiers::SHIFT)),
            Some(Key::Char('P'))
        );
    }
}
