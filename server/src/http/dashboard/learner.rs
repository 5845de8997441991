//! `GET /api/learner`: what the Learner learns from and what was chosen.
//!
//! ```json
//! {"outcomes": [{"kind": "code", "complexity": "4–6", "model": "m", "count": 4,
//!                "successes": 3, "failures": 1, "budget_hits": 0, "success_rate": 0.75,
//!                "mean_tokens": …, "quantile_tokens": …, "mean_latency_ms": …,
//!                "mean_cost": …}],
//!  "choices": [{"task_id": "t-…", "subtask": "s1", "time_ms": …,
//!               "model": "m", "reason": "…"}]}
//! ```
//!
//! The table is the Learner's own statistics (per kind, complexity band
//! and model, as `troupe learner stats` prints them); the choices are the model reasons the Director and Workers
//! wrote in the journals of the latest [`CHOICE_TASKS`] tasks.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use troupe_agents::learner::StatsRow;
use troupe_agents::runtime::AgentError;
use troupe_store::{Store, TaskEvent};

use super::super::error::ApiError;
use super::super::tasks::running;
use super::super::AppState;

/// How many of the latest tasks' journals the choices come from.
const CHOICE_TASKS: usize = 50;

/// One model choice and its reason.
#[derive(Debug, Clone, Serialize)]
struct Choice {
    task_id: troupe_store::TaskId,
    /// `None` for the plan.
    subtask: Option<troupe_store::SubtaskId>,
    time_ms: u64,
    model: String,
    reason: String,
}

/// The handler.
pub(super) async fn learner(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let troupe = running(&state)?.get().await?;
    let store = troupe.store().clone();
    let rows = troupe.learner_stats().await?;
    let choices = choices(&store).await?;
    Ok(Json(json!({
        "outcomes": outcome_table(&rows),
        "choices": choices,
    })))
}

/// The Learner's statistics (the table `troupe learner stats` prints),
/// with each row's success rate for the chart.
pub(super) fn outcome_table(rows: &[StatsRow]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            // Counts stay far below 2^52, where f64 would round them.
            let rate = r.successes as f64 / r.calls.max(1) as f64;
            json!({
                "kind": r.kind,
                "complexity": r.complexity,
                "model": r.model,
                "thinking": r.thinking,
                "count": r.calls,
                "successes": r.successes,
                "failures": r.failures,
                "budget_hits": r.budget_hits,
                "success_rate": rate,
                "mean_tokens": r.mean_tokens,
                "quantile_tokens": r.quantile_tokens,
                "mean_latency_ms": r.mean_latency_ms,
                "mean_cost": r.mean_cost,
            })
        })
        .collect()
}

/// The model choices in the journals of the latest tasks, oldest first.
async fn choices(store: &Store) -> Result<Vec<Choice>, ApiError> {
    let tasks = store.tasks().await.map_err(AgentError::from)?;
    let mut out = Vec::new();
    for task in tasks.iter().rev().take(CHOICE_TASKS).rev() {
        for entry in store.journal(&task.id, 0).await.map_err(AgentError::from)? {
            let (subtask, model, reason) = match entry.event {
                TaskEvent::Planned { model, reason, .. } => (None, model, reason),
                TaskEvent::SubtaskStarted {
                    subtask,
                    model,
                    reason,
                    ..
                } => (Some(subtask), model, reason),
                _ => continue,
            };
            out.push(Choice {
                task_id: entry.task_id,
                subtask,
                time_ms: entry.time_ms,
                model,
                reason,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_their_success_rate() {
        let row = StatsRow {
            kind: troupe_store::TaskKind::Code.into(),
            complexity: "4–6".into(),
            model: "b".into(),
            thinking: None,
            calls: 4,
            successes: 3,
            failures: 1,
            budget_hits: 0,
            mean_tokens: 120,
            quantile_tokens: Some(200),
            mean_latency_ms: 50,
            mean_cost: 0.5,
        };
        let table = outcome_table(&[row]);
        assert_eq!(table[0]["count"], 4);
        assert!((table[0]["success_rate"].as_f64().unwrap() - 0.75).abs() < 1e-9);
        assert_eq!(table[0]["quantile_tokens"], 200);
        assert!(outcome_table(&[]).is_empty());
    }
}
