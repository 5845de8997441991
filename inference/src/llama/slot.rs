//! One sequence of the shared context, and the request running in it.
//!
//! A slot outlives its requests: it remembers which tokens its KV-cache
//! sequence holds and which session last used it, so the next request of
//! that session (or any request sharing a prompt prefix) decodes only what
//! is new.

use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::engine::Job;
use super::text::OutputText;
use crate::backend::{
    FinishReason, GenerateError, GenerationEvent, GenerationResult, Timings, Usage,
};

/// A sequence of the context.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Its sequence id.
    pub(crate) seq: i32,
    /// Tokens whose keys and values are in the sequence, in position order.
    pub(crate) cached: Vec<LlamaToken>,
    /// The session of the last request that ran here.
    pub(crate) session: Option<String>,
    /// When a request last finished here (engine clock), for LRU reuse.
    pub(crate) last_used: u64,
    /// The request running here.
    pub(crate) active: Option<Active>,
}

/// A request being decoded.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) job: Box<Job>,
    /// When the engine thread received the request.
    pub(crate) arrived: Instant,
    /// Prompt tokens reused from the sequence's cache.
    pub(crate) cached_prompt_tokens: usize,
    /// A sampled token not yet decoded.
    pub(crate) pending: Option<LlamaToken>,
    /// Where this slot's logits are in the current batch.
    pub(crate) logit_index: Option<i32>,
    pub(crate) output: OutputText,
    /// Tokens sampled so far.
    pub(crate) generated: u32,
    /// Their ids.
    pub(crate) tokens: Vec<i32>,
    /// Their log probabilities, when the request asked (text tokens only).
    pub(crate) logprobs: Vec<crate::backend::TokenLogprob>,
    pub(crate) prompt_started: Option<Instant>,
    pub(crate) prompt_done: Option<Instant>,
    pub(crate) first_token: Option<Instant>,
    pub(crate) last_token: Option<Instant>,
}

impl Active {
    pub(crate) fn new(job: Box<Job>, arrived: Instant, cached_prompt_tokens: usize) -> Self {
        let output = OutputText::new(job.stop.clone());
        Self {
            job,
            arrived,
            cached_prompt_tokens,
            pending: None,
            logit_index: None,
            output,
            generated: 0,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            prompt_started: None,
            prompt_done: None,
            first_token: None,
            last_token: None,
        }
    }

    /// Sends the rest of the output and the result.
    pub(crate) fn finish(mut self, finish: FinishReason) {
        if finish != FinishReason::StopString {
            let rest = self.output.finish();
            if !rest.is_empty() {
                self.job.events.send(GenerationEvent::Token(rest));
            }
        }
        if finish == FinishReason::StopString {
            // The tokens that completed the stop string are not text: keep
            // those that begin inside it.
            let kept = self.output.text().len();
            let mut start = 0;
            self.logprobs.retain(|entry| {
                let inside = start < kept;
                start += entry.chosen.bytes.len();
                inside
            });
        }
        let result = GenerationResult {
            text: self.output.text().to_owned(),
            finish,
            usage: self.usage(),
            timings: self.timings(),
            tokens: std::mem::take(&mut self.tokens),
            logprobs: std::mem::take(&mut self.logprobs),
        };
        self.job.events.send(GenerationEvent::Done(result));
    }

    /// Sends the error that ended the request.
    pub(crate) fn fail(self, error: GenerateError) {
        self.job.events.send(GenerationEvent::Error(error));
    }

    fn usage(&self) -> Usage {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Usage {
            prompt_tokens: count(self.job.prompt.len()),
            completion_tokens: self.generated,
            cached_prompt_tokens: count(self.cached_prompt_tokens),
        }
    }

    fn timings(&self) -> Timings {
        let ms = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(from), Some(to)) => to.saturating_duration_since(from).as_secs_f64() * 1000.0,
            _ => 0.0,
        };
        let rate = |tokens: f64, ms: f64| if ms > 0.0 { tokens * 1000.0 / ms } else { 0.0 };
        let prompt_ms = ms(self.prompt_started, self.prompt_done);
        let generation_ms = ms(self.first_token, self.last_token);
        let decoded_prompt = self
            .job
            .prompt
            .len()
            .saturating_sub(self.cached_prompt_tokens);
        Timings {
            time_to_first_token_ms: ms(Some(self.arrived), self.first_token),
            prompt_ms,
            generation_ms,
            prompt_tokens_per_s: rate(decoded_prompt as f64, prompt_ms),
            generation_tokens_per_s: rate(
                f64::from(self.generated.saturating_sub(1)),
                generation_ms,
            ),
        }
    }
}

/// Length of the common prefix of `a` and `b`.
pub(crate) fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Slot {
    pub(crate) fn new(seq: i32) -> Self {
        Self {
            seq,
            cached: Vec::new(),
            session: None,
            last_used: 0,
            active: None,
        }
    }

    /// Whether the running request still has prompt tokens to decode.
    pub(crate) fn in_prefill(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|active| self.cached.len() < active.job.prompt.len())
    }
}

/// Picks the free slot for a request: the one its session last used, else
/// the one sharing the longest prompt prefix, else the least recently used.
/// `None` when no slot is free.
pub(crate) fn choose_slot(
    slots: &[Slot],
    prompt: &[LlamaToken],
    session: Option<&str>,
) -> Option<usize> {
    let free = || {
        slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.active.is_none())
    };
    if let Some(session) = session {
        if let Some((i, _)) = free().find(|(_, slot)| slot.session.as_deref() == Some(session)) {
            return Some(i);
        }
    }
    let (best, prefix) = free()
        .map(|(i, slot)| (i, common_prefix(&slot.cached, prompt)))
        .max_by_key(|&(i, prefix)| (prefix, std::cmp::Reverse(slots[i].last_used)))?;
    if prefix > 0 {
        return Some(best);
    }
    free()
        .min_by_key(|(_, slot)| (slot.last_used, slot.cached.len()))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(seq: i32, cached: &[i32], session: Option<&str>, last_used: u64) -> Slot {
        Slot {
            seq,
            cached: cached.iter().map(|&t| LlamaToken(t)).collect(),
            session: session.map(str::to_owned),
            last_used,
            active: None,
        }
    }

    fn tokens(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|&t| LlamaToken(t)).collect()
    }

    #[test]
    fn a_session_goes_back_to_its_slot() {
        let slots = [slot(0, &[1, 2, 3], None, 1), slot(1, &[9], Some("s"), 2)];
        assert_eq!(
            choose_slot(&slots, &tokens(&[1, 2, 3, 4]), Some("s")),
            Some(1)
        );
    }

    #[test]
    fn without_a_session_the_longest_shared_prefix_wins() {
        let slots = [
            slot(0, &[1, 5], None, 1),
            slot(1, &[1, 2, 3], None, 2),
            slot(2, &[], None, 0),
        ];
        assert_eq!(choose_slot(&slots, &tokens(&[1, 2, 3, 4]), None), Some(1));
    }

    #[test]
    fn with_no_shared_prefix_the_least_recently_used_slot_is_taken() {
        let slots = [slot(0, &[7], None, 5), slot(1, &[8], None, 3)];
        assert_eq!(choose_slot(&slots, &tokens(&[1]), None), Some(1));
        assert_eq!(common_prefix(&tokens(&[1, 2]), &tokens(&[1, 2, 3])), 2);
    }
}
