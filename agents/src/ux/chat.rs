//! Replies from the UX model: one JSON-schema-constrained generation that
//! both answers and says whether the message asks for work.

use serde::Deserialize;
use serde_json::json;
use troupe_inference::backend::{Constraint, FinishReason, GenerateRequest};
use troupe_inference::chat::ChatMessage;
use troupe_store::{now_ms, OutcomeRecord, Speaker};

use super::commands::{looks_like_work, HELP};
use super::{Intent, UxReply};
use crate::learner::{estimate_tokens, LearnerHandle, RecommendRequest, Role};
use crate::router::{Call, Route, Router};
use crate::runtime::TaskJournal;

/// The model's answer, as the schema below constrains it.
#[derive(Deserialize)]
struct ModelAnswer {
    intent: AnswerIntent,
    reply: String,
}

/// What the model may call a message (a command is never the model's call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AnswerIntent {
    Chat,
    Work,
}

/// What a model reply needs.
pub(super) struct Replier {
    pub router: Router,
    pub learner: LearnerHandle,
    pub model: Option<String>,
    pub max_tokens: u32,
    pub journal: TaskJournal,
}

/// Answers `text` in `conversation` with the UX model; `chat_only` keeps
/// the reply from being taken as work (`/chat`).
pub(super) async fn chat(r: &Replier, conversation: &str, text: &str, chat_only: bool) -> UxReply {
    let Replier {
        router,
        learner,
        model,
        max_tokens,
        journal,
    } = r;
    let max_tokens = *max_tokens;
    let Some(configured) = model.as_deref() else {
        return UxReply {
            intent: Intent::Chat,
            text: format!("Hello! {HELP}"),
            task_id: None,
        };
    };
    // The Learner may prefer another loaded model; it never picks one that
    // would have to be loaded first. Without it, the configured one.
    let model = learner
        .recommend(RecommendRequest {
            role_model: Some(configured.to_string()),
            request_tokens: estimate_tokens(text),
            ..RecommendRequest::new(Role::Ux, Role::Ux, 0)
        })
        .await
        .map(|r| r.model)
        .unwrap_or_else(|_| configured.to_string());
    let model = model.as_str();
    let mut messages = vec![ChatMessage::system(
        "You are the front desk of troupe, a team of AI agents that does multi-step jobs. \
         Decide whether the person's last message asks for a job to be done (intent \"work\") \
         or is conversation (intent \"chat\"), and reply in one or two friendly sentences. \
         Answer with JSON only.",
    )];
    if let Ok(history) = journal.store().conversation(conversation).await {
        // The last message is the one being answered; it is already there.
        for m in history.iter().rev().take(9).rev() {
            messages.push(match m.role {
                Speaker::Assistant => ChatMessage::assistant(m.content.clone()),
                Speaker::User => ChatMessage::user(m.content.clone()),
            });
        }
    }
    if messages.len() == 1 {
        messages.push(ChatMessage::user(text.to_string()));
    }
    let mut req = GenerateRequest::chat(messages);
    req.max_tokens = max_tokens;
    req.session = Some(format!("ux/{conversation}"));
    req.constraint = Some(Constraint::JsonSchema(json!({
        "type": "object",
        "properties": {
            "intent": { "enum": ["chat", "work"] },
            "reply": { "type": "string", "maxLength": 600 }
        },
        "required": ["intent", "reply"],
        "additionalProperties": false
    })));
    let started = std::time::Instant::now();
    let call = Call {
        route: Route::Ux,
        model,
        task_id: None,
    };
    let result = router
        .complete(call, req)
        .await
        .map(|done| done.result)
        .map_err(|e| e.to_string());
    let parsed = result
        .as_ref()
        .ok()
        .and_then(|r| serde_json::from_str::<ModelAnswer>(r.text.trim()).ok());
    let usage = result.as_ref().map(|r| r.usage).unwrap_or_default();
    learner.record(OutcomeRecord {
        task_id: None,
        subtask: None,
        role: Role::Ux,
        model: model.to_string(),
        kind: Role::Ux.into(),
        complexity: 0,
        prompt_tokens: u64::from(usage.prompt_tokens),
        completion_tokens: u64::from(usage.completion_tokens),
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        success: parsed.is_some(),
        time_ms: now_ms(),
        max_tokens: Some(u64::from(max_tokens)),
        hit_budget: result
            .as_ref()
            .is_ok_and(|r| r.finish == FinishReason::Length),
        request_tokens: u64::from(usage.prompt_tokens),
        ..Default::default()
    });
    match parsed {
        Some(a) => UxReply {
            intent: match a.intent {
                AnswerIntent::Work if !chat_only => Intent::Work,
                AnswerIntent::Work | AnswerIntent::Chat => Intent::Chat,
            },
            text: a.reply,
            task_id: None,
        },
        // The model failed: fall back to the rule so the person still gets
        // an answer at once.
        None => {
            let why = match result {
                Err(e) => e,
                Ok(r) => format!("its reply was not the expected JSON: {:?}", r.text),
            };
            tracing::warn!(model, %why, "the UX model failed; answering from the template");
            UxReply {
                intent: if !chat_only && looks_like_work(text) {
                    Intent::Work
                } else {
                    Intent::Chat
                },
                text: format!("(my model is unavailable: {why}) {HELP}"),
                task_id: None,
            }
        }
    }
}
