//! Streaming one scripted reply: the pieces, the pauses between them, and
//! the result, on the caller's thread or one of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{
    FinishReason, GenerateError, GenerationEvent, GenerationResult, GenerationSender, Timings,
    Usage,
};

/// The longest single sleep, so that a cancelled or unloaded request stops
/// soon even inside a long scripted delay.
const PAUSE_SLICE: Duration = Duration::from_millis(10);

/// Characters per piece (and per token in [`token_count`]).
const CHARS_PER_TOKEN: usize = 4;

/// A reply cut to what the request allows, ready to stream.
#[derive(Debug)]
pub(crate) struct Replay {
    pub(crate) pieces: Vec<String>,
    /// Why generation ends if every piece is sent.
    pub(crate) finish: FinishReason,
    pub(crate) delay_ms: u64,
    pub(crate) token_delay_ms: u64,
    pub(crate) prompt_tokens: u32,
    pub(crate) events: GenerationSender,
    pub(crate) unloaded: Arc<AtomicBool>,
}

/// Why streaming stopped early.
enum Interrupt {
    Cancelled,
    Unloaded,
}

impl Replay {
    /// Whether the replay sleeps at all: one that does not can run on the
    /// caller's thread, since it never blocks.
    pub(crate) fn pauses(&self) -> bool {
        self.delay_ms > 0 || (self.token_delay_ms > 0 && self.pieces.len() > 1)
    }

    /// Streams the pieces and then `Done` (or `Error` when the model was
    /// unloaded meanwhile).
    pub(crate) fn run(self) {
        let start = Instant::now();
        let mut first: Option<Instant> = None;
        let mut text = String::new();
        let mut sent = 0u32;
        let mut finish = self.finish;
        for (index, piece) in self.pieces.iter().enumerate() {
            let pause = if index == 0 {
                self.delay_ms
            } else {
                self.token_delay_ms
            };
            self.pause(pause);
            match self.interrupted() {
                Some(Interrupt::Unloaded) => {
                    self.events
                        .send(GenerationEvent::Error(GenerateError::Unloaded));
                    return;
                }
                Some(Interrupt::Cancelled) => {
                    finish = FinishReason::Cancelled;
                    break;
                }
                None => {}
            }
            first.get_or_insert_with(Instant::now);
            text.push_str(piece);
            sent += 1;
            if !self.events.send(GenerationEvent::Token(piece.clone())) {
                return;
            }
        }
        let result = GenerationResult {
            text,
            finish,
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: sent,
                cached_prompt_tokens: 0,
            },
            timings: timings(start, first, sent),
            tokens: Vec::new(),
            logprobs: Vec::new(),
        };
        self.events.send(GenerationEvent::Done(result));
    }

    fn interrupted(&self) -> Option<Interrupt> {
        if self.unloaded.load(Ordering::Relaxed) {
            Some(Interrupt::Unloaded)
        } else if self.events.is_cancelled() {
            Some(Interrupt::Cancelled)
        } else {
            None
        }
    }

    /// Sleeps `ms` milliseconds, or less when interrupted.
    fn pause(&self, ms: u64) {
        let until = Instant::now() + Duration::from_millis(ms);
        loop {
            let now = Instant::now();
            if now >= until || self.interrupted().is_some() {
                return;
            }
            std::thread::sleep((until - now).min(PAUSE_SLICE));
        }
    }
}

fn timings(start: Instant, first: Option<Instant>, sent: u32) -> Timings {
    let Some(first) = first else {
        return Timings::default();
    };
    let generation = first.elapsed().as_secs_f64();
    Timings {
        time_to_first_token_ms: (first - start).as_secs_f64() * 1000.0,
        prompt_ms: 0.0,
        generation_ms: generation * 1000.0,
        prompt_tokens_per_s: 0.0,
        generation_tokens_per_s: if generation > 0.0 {
            f64::from(sent.saturating_sub(1)) / generation
        } else {
            0.0
        },
    }
}

/// `text` split into pieces of four characters (the last may be shorter).
pub(crate) fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(CHARS_PER_TOKEN)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

/// Tokens `text` counts as: one per four characters, rounded up.
pub(crate) fn token_count(text: &str) -> usize {
    text.chars().count().div_ceil(CHARS_PER_TOKEN)
}

/// Cuts `reply` to what the request allows: before the earliest stop string,
/// then to `max_tokens` pieces. Returns the pieces and why generation ends
/// once they are all sent.
pub(crate) fn cut(reply: &str, stop: &[String], max_tokens: u32) -> (Vec<String>, FinishReason) {
    let stop_at = stop
        .iter()
        .filter_map(|needle| reply.find(needle.as_str()))
        .min();
    let (text, mut finish) = match stop_at {
        Some(at) => (&reply[..at], FinishReason::StopString),
        None => (reply, FinishReason::Stop),
    };
    let mut pieces = pieces(text);
    let max = usize::try_from(max_tokens).unwrap_or(usize::MAX);
    if pieces.len() > max {
        pieces.truncate(max);
        finish = FinishReason::Length;
    }
    (pieces, finish)
}
