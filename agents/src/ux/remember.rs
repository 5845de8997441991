//! Conversation summaries for long-term memory: every
//! [`SUMMARY_EVERY`] messages, the UX remembers what the last stretch of a
//! conversation was about, so later planning and `memory_search` can find
//! it.
//!
//! The summary is extractive (each message's opening words), written
//! without a model call: it costs nothing and cannot be wrong about what
//! was said.

use std::sync::Arc;

use troupe_memory::{Kind, Memory, Namespace, NewMemory};
use troupe_store::{ConversationMessage, Speaker};

/// Messages per summary.
pub(crate) const SUMMARY_EVERY: u64 = 10;
/// Characters kept of each message.
const EXCERPT_CHARS: usize = 160;

/// Remembers a summary of `messages` (the conversation's last stretch) when
/// `last` completes a stretch of [`SUMMARY_EVERY`].
pub(crate) async fn maybe_summarise(
    memory: &Arc<Memory>,
    last: &ConversationMessage,
    messages: &[ConversationMessage],
) {
    if !(last.seq + 1).is_multiple_of(SUMMARY_EVERY) {
        return;
    }
    let from = last.seq + 1 - SUMMARY_EVERY;
    let stretch: Vec<&ConversationMessage> = messages
        .iter()
        .filter(|m| m.seq >= from && m.seq <= last.seq)
        .collect();
    let Some(text) = summary(&last.conversation, from, last.seq, &stretch) else {
        return;
    };
    let memory = Arc::clone(memory);
    let conversation = last.conversation.clone();
    let stored = tokio::task::spawn_blocking(move || {
        memory.remember(
            NewMemory::new(Namespace::Shared, Kind::Conversation, text).with_tags([
                "conversation".to_string(),
                format!("conversation:{conversation}"),
            ]),
        )
    })
    .await;
    match stored {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not remember a conversation summary"),
        Err(error) => tracing::warn!(%error, "the summary thread failed"),
    }
}

/// The summary of messages `from..=to` of `conversation`.
fn summary(
    conversation: &str,
    from: u64,
    to: u64,
    stretch: &[&ConversationMessage],
) -> Option<String> {
    if stretch.is_empty() {
        return None;
    }
    let mut text = format!("Conversation {conversation}, messages {from}–{to}. What was said:\n");
    for m in stretch {
        let who = match m.role {
            Speaker::User => "person",
            Speaker::Assistant => "troupe",
        };
        let excerpt: String = m.content.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut cut: String = excerpt.chars().take(EXCERPT_CHARS).collect();
        if cut.len() < excerpt.len() {
            cut.push('…');
        }
        text.push_str(&format!("- {who}: {cut}\n"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, role: Speaker, content: &str) -> ConversationMessage {
        ConversationMessage {
            conversation: "c".into(),
            seq,
            role,
            content: content.into(),
            time_ms: 0,
        }
    }

    #[test]
    fn a_summary_quotes_each_message_briefly() {
        let long = "word ".repeat(100);
        let msgs = [
            message(0, Speaker::User, "hello   there"),
            message(1, Speaker::Assistant, &long),
        ];
        let refs: Vec<&ConversationMessage> = msgs.iter().collect();
        let text = summary("c", 0, 1, &refs).unwrap();
        assert!(text.contains("- person: hello there\n"), "{text}");
        assert!(text.contains("- troupe: word word"), "{text}");
        assert!(text.contains('…'), "{text}");
        assert!(summary("c", 0, 1, &[]).is_none());
    }
}
