//! Reading a successful (2xx) answer: an event stream of chunks, or one
//! JSON completion from a server that ignores `stream: true`. Which one is
//! decided from the `Content-Type`, else from the first byte of the body.
//! The reader yields text pieces as they arrive and stops reading at
//! `[DONE]`, without waiting for the server to close the connection.

use std::collections::VecDeque;

use crate::backend::{TokenLogprob, Usage};

use super::sse::SseParser;
use super::wire::{excerpt, read_answer};

/// The largest whole-JSON answer read.
const MAX_JSON_BYTES: usize = 16 << 20;
/// Bytes of the body kept for an error message.
const HEAD_BYTES: usize = 256;

/// What the reader found next.
#[derive(Debug)]
pub(crate) enum Step {
    /// A piece of text (never empty).
    Piece(String),
    /// The answer is complete.
    Finished,
}

/// Why reading failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The body is not a chat completion; the reason in words.
    Invalid(String),
    /// The connection failed or timed out.
    Transport(reqwest::Error),
}

#[derive(Debug)]
enum Mode {
    /// Nothing but whitespace seen yet.
    Undecided(Vec<u8>),
    Events(SseParser),
    Json(Vec<u8>),
}

/// Reads one answer body.
#[derive(Debug)]
pub(crate) struct AnswerReader {
    response: reqwest::Response,
    mode: Mode,
    json_type: bool,
    head: Vec<u8>,
    pending: VecDeque<String>,
    done: bool,
    saw_done: bool,
    /// `finish_reason` of the answer, once seen.
    pub finish: Option<String>,
    /// The server's usage, once seen.
    pub usage: Option<Usage>,
    /// The log probabilities of the answer's tokens so far, when asked for.
    pub logprobs: Vec<TokenLogprob>,
}

impl AnswerReader {
    /// A reader of `response`'s body.
    pub(super) fn new(response: reqwest::Response) -> AnswerReader {
        let json_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        AnswerReader {
            response,
            mode: Mode::Undecided(Vec::new()),
            json_type,
            head: Vec::new(),
            pending: VecDeque::new(),
            done: false,
            saw_done: false,
            finish: None,
            usage: None,
            logprobs: Vec::new(),
        }
    }

    /// Whether the answer came as an event stream (one piece per chunk) rather
    /// than as one JSON completion.
    pub(super) fn streamed(&self) -> bool {
        matches!(self.mode, Mode::Events(_))
    }

    /// The next piece, or the end of the answer.
    pub(super) async fn next(&mut self) -> Result<Step, ReadError> {
        loop {
            if let Some(piece) = self.pending.pop_front() {
                return Ok(Step::Piece(piece));
            }
            if self.done {
                return Ok(Step::Finished);
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.consume(&bytes)?,
                Ok(None) => self.end()?,
                Err(e) => return Err(ReadError::Transport(e)),
            }
        }
    }

    fn consume(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        if self.head.len() < HEAD_BYTES {
            let take = bytes.len().min(HEAD_BYTES - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        if let Mode::Undecided(seen) = &mut self.mode {
            seen.extend_from_slice(bytes);
            let Some(&first) = seen.iter().find(|b| !b.is_ascii_whitespace()) else {
                return Ok(());
            };
            let seen = std::mem::take(seen);
            if self.json_type || first == b'{' || first == b'[' {
                self.mode = Mode::Json(Vec::new());
            } else {
                self.mode = Mode::Events(SseParser::new());
            }
            return self.consume_decided(&seen);
        }
        self.consume_decided(bytes)
    }

    fn consume_decided(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        match &mut self.mode {
            Mode::Undecided(_) => Ok(()),
            Mode::Json(body) => {
                if body.len() + bytes.len() > MAX_JSON_BYTES {
                    return Err(ReadError::Invalid(format!(
                        "the JSON answer is larger than {MAX_JSON_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(bytes);
                Ok(())
            }
            Mode::Events(parser) => {
                let events = parser
                    .feed(bytes)
                    .map_err(|e| ReadError::Invalid(e.to_string()))?;
                for data in events {
                    self.event(&data)?;
                    if self.done {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    fn event(&mut self, data: &str) -> Result<(), ReadError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            self.saw_done = true;
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_str(data).map_err(|e| {
            ReadError::Invalid(format!("an event is not JSON ({e}): {}", excerpt(data)))
        })?;
        self.answer(&value)
    }

    fn answer(&mut self, value: &serde_json::Value) -> Result<(), ReadError> {
        let answer = read_answer(value).map_err(ReadError::Invalid)?;
        if let Some(text) = answer.text.filter(|t| !t.is_empty()) {
            self.pending.push_back(text);
        }
        self.logprobs.extend(answer.logprobs);
        if answer.finish.is_some() {
            self.finish = answer.finish;
        }
        if answer.usage.is_some() {
            self.usage = answer.usage;
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), ReadError> {
        self.done = true;
        match std::mem::replace(&mut self.mode, Mode::Undecided(Vec::new())) {
            Mode::Undecided(_) => Err(ReadError::Invalid("the body is empty".into())),
            Mode::Json(body) => {
                let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                    ReadError::Invalid(format!(
                        "the body is not JSON ({e}): {}",
                        excerpt(&String::from_utf8_lossy(&self.head))
                    ))
                })?;
                self.mode = Mode::Json(Vec::new());
                self.answer(&value)?;
                if self.finish.is_none() && self.pending.is_empty() {
                    return Err(ReadError::Invalid(format!(
                        "the completion has no content and no finish_reason: {}",
                        excerpt(&value.to_string())
                    )));
                }
                Ok(())
            }
            Mode::Events(mut parser) => {
                let events = parser
                    .finish()
                    .map_err(|e| ReadError::Invalid(e.to_string()))?;
                let saw_data = parser.saw_data;
                self.mode = Mode::Events(parser);
                for data in events {
                    self.event(&data)?;
                }
                if !saw_data {
                    return Err(ReadError::Invalid(format!(
                        "the body is neither JSON nor an event stream: {}",
                        excerpt(&String::from_utf8_lossy(&self.head))
                    )));
                }
                if self.finish.is_none() && !self.saw_done {
                    return Err(ReadError::Invalid(
                        "the event stream ended before a finish_reason or [DONE]".into(),
                    ));
                }
                Ok(())
            }
        }
    }
}
