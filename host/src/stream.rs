//! [`HostStream`]: a request's generation stream that tells the host when the
//! request ends, so the host knows which models are busy (never evicted)
//! and when a model's keep-alive starts counting.

use std::path::PathBuf;

use ractor::ActorRef;
use troupe_inference::backend::{
    GenerateError, GenerationEvent, GenerationResult, GenerationStream,
};

use super::actor::HostMsg;

/// What a finished request reports to the host.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestSummary {
    pub(crate) completion_tokens: u32,
    pub(crate) ttft_ms: f64,
    pub(crate) tokens_per_s: f64,
}

/// Where to report the end of a request.
#[derive(Debug)]
struct EndNotice {
    host: ActorRef<HostMsg>,
    path: PathBuf,
    instance: u64,
}

/// A running request: text pieces, then `Done` or `Error`.
///
/// Dropping it cancels the request (the engine frees the slot within a
/// token) and tells the host the request ended.
#[derive(Debug)]
pub struct HostStream {
    inner: GenerationStream,
    model: String,
    notice: Option<EndNotice>,
}

impl HostStream {
    pub(crate) fn new(
        inner: GenerationStream,
        model: String,
        host: ActorRef<HostMsg>,
        path: PathBuf,
        instance: u64,
    ) -> Self {
        Self {
            inner,
            model,
            notice: Some(EndNotice {
                host,
                path,
                instance,
            }),
        }
    }

    /// The next event, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        let event = self.inner.next().await;
        match &event {
            Some(GenerationEvent::Token(_)) => {}
            Some(GenerationEvent::Done(result)) => self.ended(Some(RequestSummary {
                completion_tokens: result.usage.completion_tokens,
                ttft_ms: result.timings.time_to_first_token_ms,
                tokens_per_s: result.timings.generation_tokens_per_s,
            })),
            Some(GenerationEvent::Error(_)) | None => self.ended(None),
        }
        event
    }

    /// Asks the engine to stop this request; the stream then ends with
    /// `Done` whose finish reason is `Cancelled` (unless it finished first).
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Reads the stream to its end and returns the result.
    ///
    /// # Errors
    /// The request's error, or [`GenerateError::EngineStopped`] when the
    /// stream ended without a result.
    pub async fn into_result(mut self) -> Result<GenerationResult, GenerateError> {
        while let Some(event) = self.next().await {
            match event {
                GenerationEvent::Token(_) => {}
                GenerationEvent::Done(result) => return Ok(result),
                GenerationEvent::Error(error) => return Err(error),
            }
        }
        Err(GenerateError::EngineStopped)
    }

    /// The catalog name of the model serving the request.
    pub fn model(&self) -> &str {
        &self.model
    }

    fn ended(&mut self, summary: Option<RequestSummary>) {
        if let Some(notice) = self.notice.take() {
            // The host may have stopped; then nobody needs the count.
            let _ = notice.host.cast(HostMsg::RequestEnded {
                path: notice.path,
                instance: notice.instance,
                summary,
            });
        }
    }
}

impl Drop for HostStream {
    fn drop(&mut self) {
        self.inner.cancel();
        self.ended(None);
    }
}
