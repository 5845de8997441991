//! The channel a request's events travel on, from an engine thread to the
//! async caller.
//!
//! An unbounded tokio channel: the engine thread never blocks on a slow
//! reader (that would stall every other slot of the batch), and events are a
//! few bytes each. Cancellation is a shared flag the engine checks before
//! every decode step, so dropping the stream or calling
//! [`GenerationStream::cancel`] stops decoding within one token.
//!
//! A caller that only wants the result ([`GenerationStream::into_result`])
//! says so through a second flag, and the engine stops sending pieces: each
//! piece wakes the reading task, and on a machine whose cores all run
//! ggml's threads that wake-up per token cost 5% of SmolLM2-135M's
//! generation speed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{GenerateError, GenerationEvent, GenerationResult};

/// The receiving end of one request: text pieces, then `Done` or `Error`.
#[derive(Debug)]
pub struct GenerationStream {
    rx: mpsc::UnboundedReceiver<GenerationEvent>,
    cancelled: Arc<AtomicBool>,
    result_only: Arc<AtomicBool>,
}

/// The engine's end of one request.
#[derive(Debug)]
pub struct GenerationSender {
    tx: mpsc::UnboundedSender<GenerationEvent>,
    cancelled: Arc<AtomicBool>,
    result_only: Arc<AtomicBool>,
}

impl GenerationStream {
    /// A connected sender/stream pair, for engines implementing
    /// [`super::LoadedModel`].
    pub fn channel() -> (GenerationSender, GenerationStream) {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let result_only = Arc::new(AtomicBool::new(false));
        let sender = GenerationSender {
            tx,
            cancelled: Arc::clone(&cancelled),
            result_only: Arc::clone(&result_only),
        };
        let stream = GenerationStream {
            rx,
            cancelled,
            result_only,
        };
        (sender, stream)
    }

    /// The next event, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        self.rx.recv().await
    }

    /// Asks the engine to stop this request. Decoding stops within one token
    /// and the stream ends with `Done` whose finish reason is
    /// [`super::FinishReason::Cancelled`] (unless it finished first).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Reads the stream to its end and returns the result, ignoring the
    /// pieces (they are all in [`GenerationResult::text`]).
    ///
    /// # Errors
    /// The request's error, or [`GenerateError::EngineStopped`] when the
    /// stream ended without a result.
    pub async fn into_result(mut self) -> Result<GenerationResult, GenerateError> {
        self.result_only.store(true, Ordering::Relaxed);
        while let Some(event) = self.next().await {
            match event {
                GenerationEvent::Token(_) => {}
                GenerationEvent::Done(result) => return Ok(result),
                GenerationEvent::Error(error) => return Err(error),
            }
        }
        Err(GenerateError::EngineStopped)
    }
}

impl Drop for GenerationStream {
    fn drop(&mut self) {
        // Nobody reads the rest: let the engine free the slot at its next step.
        self.cancel();
    }
}

impl GenerationSender {
    /// Sends an event; `false` when the stream is gone. A text piece is
    /// dropped when the reader only wants the result.
    pub fn send(&self, event: GenerationEvent) -> bool {
        if matches!(event, GenerationEvent::Token(_)) && !self.wants_pieces() {
            return !self.tx.is_closed();
        }
        self.tx.send(event).is_ok()
    }

    /// Whether the reader reads text pieces (false once it asked only for
    /// the result), so an engine may skip building them.
    pub fn wants_pieces(&self) -> bool {
        !self.result_only.load(Ordering::Relaxed)
    }

    /// Whether the request was cancelled or its stream dropped.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reader_of_the_result_only_gets_no_pieces_sent() {
        let (sender, stream) = GenerationStream::channel();
        assert!(sender.wants_pieces());
        let reader = tokio::spawn(stream.into_result());
        while sender.wants_pieces() {
            tokio::task::yield_now().await;
        }
        assert!(sender.send(GenerationEvent::Token("dropped".into())));
        assert!(sender.send(GenerationEvent::Error(GenerateError::EngineStopped)));
        assert!(matches!(
            reader.await.unwrap(),
            Err(GenerateError::EngineStopped)
        ));

        let (sender, mut stream) = GenerationStream::channel();
        assert!(sender.send(GenerationEvent::Token("kept".into())));
        assert!(matches!(stream.next().await, Some(GenerationEvent::Token(t)) if t == "kept"));
    }
}
