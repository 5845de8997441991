//! One line of text per journal event: what the live view of `troupe run`,
//! `troupe tasks log` and the TUI's event log all print. Views choose which
//! events they show and may add their own figures (the live view's running
//! token count), but an event reads the same everywhere.

use std::collections::HashMap;

use troupe_store::{SubtaskId, TaskEvent};

use super::live::short;

/// Texts from the model or the person (a plan's reason, an observation)
/// are cut to this many characters.
const TEXT: usize = 100;

/// Renders events one after another, remembering each step's tool from its
/// `step_started` so that later events of the step can name it.
#[derive(Debug, Default)]
pub(super) struct EventText {
    tools: HashMap<(SubtaskId, u32, u32), String>,
}

impl EventText {
    /// Takes in what later lines need from `event` without rendering it
    /// (catching up on a journal that is not shown).
    pub(super) fn note(&mut self, event: &TaskEvent) {
        if let TaskEvent::StepStarted {
            subtask,
            attempt,
            step,
            tool,
            ..
        } = event
        {
            self.tools
                .insert((subtask.clone(), *attempt, *step), tool.clone());
        }
    }

    /// The line for `event`.
    pub(super) fn line(&mut self, event: &TaskEvent) -> String {
        self.note(event);
        if let Some(line) = self.step_line(event) {
            return line;
        }
        match event {
            TaskEvent::Submitted { request } => format!("submitted: {}", short(request, TEXT)),
            TaskEvent::Planned {
                subtasks,
                model,
                reason,
            } => {
                let ids: Vec<&str> = subtasks.iter().map(|s| s.id.as_str()).collect();
                format!(
                    "planned {} subtasks ({}) with {model}: {}",
                    subtasks.len(),
                    ids.join(", "),
                    short(reason, TEXT)
                )
            }
            TaskEvent::SubtaskStarted {
                subtask,
                attempt,
                model,
                reason,
            } => format!(
                "{subtask} started: attempt {attempt} on {model} ({})",
                short(reason, TEXT)
            ),
            TaskEvent::SubtaskFinished {
                subtask,
                attempt,
                success: true,
                summary,
                tokens,
            } => format!(
                "{subtask} succeeded (attempt {attempt}, {tokens} tokens): {}",
                short(summary, TEXT)
            ),
            TaskEvent::SubtaskFinished {
                subtask,
                attempt,
                summary,
                tokens,
                ..
            } => format!(
                "{subtask} failed (attempt {attempt}, {tokens} tokens): {}",
                short(summary, TEXT)
            ),
            TaskEvent::FailedOver {
                subtask,
                failed,
                served_by,
                model,
            } => format!(
                "{}: {}; served by {served_by} ({model})",
                subtask.as_deref().unwrap_or("director"),
                short(&failed_links(failed), 2 * TEXT)
            ),
            TaskEvent::Delegated {
                subtask,
                attempt,
                node,
                reason,
            } => format!(
                "{subtask} (attempt {attempt}) runs on node {node}: {}",
                short(reason, TEXT)
            ),
            TaskEvent::DirectorCall {
                purpose,
                model,
                tokens,
            } => format!("director {purpose} with {model} · {tokens} tokens"),
            TaskEvent::Replanning { reason } => format!("re-planning: {}", short(reason, TEXT)),
            TaskEvent::Paused => "paused".to_string(),
            TaskEvent::Resumed => "resumed".to_string(),
            TaskEvent::Recovered { detail } => format!("recovered: {}", short(detail, TEXT)),
            TaskEvent::Finished { state, summary } => {
                format!("finished {state}: {}", short(summary, TEXT))
            }
            // A kind of event this build does not know (written by a newer
            // troupe): its type is all there is to say.
            #[allow(unreachable_patterns)]
            _ => String::new(),
        }
    }

    /// The line of an event of one step (its start, result, commit and
    /// the approval it asked for); `None` for the task's other events.
    fn step_line(&self, event: &TaskEvent) -> Option<String> {
        let hash = |c: &str| c.get(..8).unwrap_or(c).to_string();
        Some(match event {
            TaskEvent::StepStarted {
                subtask,
                step,
                tool,
                args,
                tokens,
                ..
            } => format!(
                "{subtask} step {step}: {tool} {} · {tokens} tokens",
                short(&args.to_string(), TEXT)
            ),
            TaskEvent::StepObserved {
                subtask,
                attempt,
                step,
                observation,
                is_error,
                tool_ms,
            } => format!(
                "{subtask} step {step}: {} {} ({tool_ms} ms): {}",
                self.tool(subtask, *attempt, *step),
                if *is_error {
                    "reported an error"
                } else {
                    "returned"
                },
                short(observation, TEXT)
            ),
            TaskEvent::StepCommitted {
                subtask,
                attempt,
                step,
                checkpoint,
            } => format!(
                "{subtask} step {step} committed: {} ({})",
                self.tool(subtask, *attempt, *step),
                hash(checkpoint)
            ),
            TaskEvent::ApprovalRequested {
                subtask,
                request_id,
                tool,
                args,
            } => format!(
                "{subtask} asks to run {tool} {} (request {})",
                short(&args.to_string(), TEXT),
                hash(request_id)
            ),
            TaskEvent::ApprovalDecided {
                request_id,
                approved,
                by,
            } => format!(
                "request {} {}{}",
                hash(request_id),
                if *approved { "approved" } else { "denied" },
                by.map_or_else(String::new, |b| format!(" by {}", b.as_str()))
            ),
            _ => return None,
        })
    }

    fn tool(&self, subtask: &str, attempt: u32, step: u32) -> &str {
        self.tools
            .get(&(subtask.into(), attempt, step))
            .map_or("the tool", String::as_str)
    }
}

/// `local failed (why), b failed (why)` of a failover's failed links.
pub(super) fn failed_links(failed: &[(String, String)]) -> String {
    failed
        .iter()
        .map(|(link, why)| format!("{link} failed ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_step_reads_the_same_from_start_to_commit() {
        let mut text = EventText::default();
        let started = text.line(&TaskEvent::StepStarted {
            subtask: "s1".into(),
            attempt: 1,
            step: 3,
            thought: "run them".into(),
            tool: "shell".into(),
            args: json!({"command": "pytest"}),
            tokens: 120,
        });
        assert_eq!(
            started,
            "s1 step 3: shell {\"command\":\"pytest\"} · 120 tokens"
        );
        let observed = text.line(&TaskEvent::StepObserved {
            subtask: "s1".into(),
            attempt: 1,
            step: 3,
            observation: "exit 1\nFAILED".into(),
            is_error: true,
            tool_ms: 40,
        });
        assert_eq!(
            observed,
            "s1 step 3: shell reported an error (40 ms): exit 1 FAILED"
        );
        let committed = text.line(&TaskEvent::StepCommitted {
            subtask: "s1".into(),
            attempt: 1,
            step: 3,
            checkpoint: "0123456789abcdef".into(),
        });
        assert_eq!(committed, "s1 step 3 committed: shell (01234567)");
        // A commit whose start this view never saw still reads.
        let unseen = text.line(&TaskEvent::StepCommitted {
            subtask: "s2".into(),
            attempt: 1,
            step: 1,
            checkpoint: "abc".into(),
        });
        assert_eq!(unseen, "s2 step 1 committed: the tool (abc)");
    }
}
