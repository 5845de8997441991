//! The Director's long-term memory: similar past tasks recalled for
//! planning, and every finished task remembered with the lessons its run
//! taught (retries, failures, re-plans).
//!
//! Memory is an aid: a failed recall plans without it and a failed
//! remember is logged, so neither fails the task.

use std::sync::Arc;

use troupe_memory::{FinishedTask, Kind, Memory};
use troupe_store::{SubtaskRecord, SubtaskState, TaskRecord, TaskState};

/// Past tasks and lessons put in a planning prompt.
const RECALLED: usize = 3;
/// Below this similarity a past task is not worth the prompt's tokens.
const MIN_SIMILARITY: f32 = 0.35;

/// The most similar past tasks and lessons to `request`, as prompt text.
pub(crate) async fn similar_tasks(memory: &Arc<Memory>, request: &str) -> Vec<String> {
    let memory = Arc::clone(memory);
    let request = request.to_string();
    let found = tokio::task::spawn_blocking(move || memory.similar_tasks(&request, RECALLED)).await;
    match found {
        Ok(Ok(hits)) => hits
            .into_iter()
            .filter(|h| h.similarity >= MIN_SIMILARITY)
            .map(|h| {
                let what = match h.record.kind {
                    Kind::Lesson => "Lesson",
                    _ => "Past task",
                };
                format!(
                    "{what} (similarity {:.2}): {}",
                    h.similarity, h.record.content
                )
            })
            .collect(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "recalling similar tasks failed; planning without them");
            Vec::new()
        }
        Err(error) => {
            tracing::warn!(%error, "the recall thread failed; planning without memory");
            Vec::new()
        }
    }
}

/// Remembers a finished task: request, plan, outcome and lessons.
pub(crate) async fn remember_task(
    memory: &Arc<Memory>,
    task: &TaskRecord,
    state: TaskState,
    subtasks: &[SubtaskRecord],
    summary: &str,
) {
    if state == TaskState::Cancelled {
        // A cancelled task says nothing about how to do the job.
        return;
    }
    let finished = FinishedTask {
        task_id: task.id.to_string(),
        request: task.request.clone(),
        plan: plan_text(subtasks),
        outcome: summary.to_string(),
        succeeded: state == TaskState::Succeeded,
        lessons: lessons(task, state, subtasks),
        tags: kinds(subtasks),
    };
    let memory = Arc::clone(memory);
    match tokio::task::spawn_blocking(move || memory.remember_task(&finished)).await {
        Ok(Ok(ids)) => tracing::debug!(task = %task.id, memories = ids.len(), "task remembered"),
        Ok(Err(error)) => tracing::warn!(task = %task.id, %error, "could not remember the task"),
        Err(error) => tracing::warn!(task = %task.id, %error, "the remember thread failed"),
    }
}

fn plan_text(subtasks: &[SubtaskRecord]) -> String {
    subtasks
        .iter()
        .map(|s| {
            format!(
                "{} [{}, complexity {}] {} → {}",
                s.id,
                s.kind,
                s.complexity,
                s.description,
                s.state.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn kinds(subtasks: &[SubtaskRecord]) -> Vec<String> {
    let mut kinds: Vec<String> = subtasks.iter().map(|s| s.kind.to_string()).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// What the run teaches: subtasks that needed more than one attempt or
/// failed (with which model and why), and re-plans. A run that went
/// smoothly teaches which models were enough.
fn lessons(task: &TaskRecord, state: TaskState, subtasks: &[SubtaskRecord]) -> Vec<String> {
    let mut lessons = Vec::new();
    for s in subtasks {
        let model = s.model.as_deref().unwrap_or("an unknown model");
        match s.state {
            SubtaskState::Failed => lessons.push(format!(
                "A {} subtask of complexity {} (\"{}\") failed with {model} after {} attempt(s): {}",
                s.kind,
                s.complexity,
                s.description,
                s.attempts,
                s.error.as_deref().unwrap_or("no reason given")
            )),
            SubtaskState::Succeeded if s.attempts > 1 => lessons.push(format!(
                "A {} subtask of complexity {} (\"{}\") needed {} attempts; it succeeded with {model}",
                s.kind, s.complexity, s.description, s.attempts
            )),
            _ => {}
        }
    }
    if task.plans > 1 {
        lessons.push(format!(
            "The first plan did not work out: the task took {} plans",
            task.plans
        ));
    }
    if lessons.is_empty() && state == TaskState::Succeeded {
        let used: Vec<String> = subtasks
            .iter()
            .filter(|s| s.state == SubtaskState::Succeeded)
            .map(|s| {
                format!(
                    "{} ({}, complexity {}) with {}",
                    s.id,
                    s.kind,
                    s.complexity,
                    s.model.as_deref().unwrap_or("?")
                )
            })
            .collect();
        if !used.is_empty() {
            lessons.push(format!(
                "Every subtask succeeded at its first attempt: {}",
                used.join("; ")
            ));
        }
    }
    lessons
}
