//! The agent API of `troupe serve`: tasks, their journals, controls,
//! approvals, the UX conversation and the supervisor's children, in front of
//! a running [`Troupe`]. The event stream of one task is in `tasks_sse`.
//!
//! Routes (JSON; errors are the OpenAI-style objects of [`ApiError`]):
//! - `POST /api/tasks` `{"request", "model"?, "priority"?}` → 201 `{"id", "state"}`
//! - `GET /api/tasks` → `{"object": "list", "data": [task summary, ...]}`, oldest first
//! - `GET /api/tasks/{id}` → the task, its subtasks and its journal (`events`)
//! - `GET /api/tasks/{id}/events` → server-sent events (see `tasks_sse`)
//! - `POST /api/tasks/{id}/cancel`, `/pause`, `/resume` → `{"id", "state"}`;
//!   409 for a finished task
//! - `GET /api/agents` → the supervisor's children and the ModelHost's status
//! - `POST /api/agent/chat` `{"conversation"?, "text"}` → the UX's reply
//! - `GET /api/approvals` → tool calls waiting for a person
//! - `POST /api/approvals/{id}` `{"approved", "reason"?}` → the decided call

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{watch, RwLock, RwLockReadGuard};
use troupe_agents::runtime::AgentError;
use troupe_host::ModelHostHandle;
use troupe_store::{SubtaskRecord, SubtaskState, TaskRecord};

use super::error::ApiError;
use super::{tasks_sse, AppState, JsonBody};
use troupe_supervision::{TaskSpec, Troupe};

/// The conversation `POST /api/agent/chat` speaks in when the body names none.
pub const DEFAULT_CONVERSATION: &str = "default";

/// The troupe behind the agent API, shared by the routes and by whoever
/// stops it. Cheap to clone.
///
/// The troupe sits behind a lock so that [`RunningTroupe::stop`] can take it
/// out and shut it down (which needs it by value) while the server still
/// runs; requests are short, so the lock is only ever held briefly, and
/// event streams hold none.
#[derive(Clone)]
pub struct RunningTroupe {
    troupe: Arc<RwLock<Option<Troupe>>>,
    host: ModelHostHandle,
    stopping: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for RunningTroupe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningTroupe")
            .field("stopping", &*self.stopping.borrow())
            .finish()
    }
}

impl RunningTroupe {
    /// Shares `troupe` with the HTTP routes.
    pub fn new(troupe: Troupe) -> RunningTroupe {
        RunningTroupe {
            host: troupe.model_host().clone(),
            troupe: Arc::new(RwLock::new(Some(troupe))),
            stopping: Arc::new(watch::channel(false).0),
        }
    }

    /// The troupe's ModelHost.
    pub fn model_host(&self) -> &ModelHostHandle {
        &self.host
    }

    /// Ends every open event stream, then shuts the troupe down (models
    /// unloaded; unfinished tasks resume at the next start). Requests after
    /// this get 503. Calling it again does nothing.
    pub async fn stop(&self) {
        self.stopping.send_replace(true);
        let taken = self.troupe.write().await.take();
        if let Some(troupe) = taken {
            troupe.shutdown().await;
        }
    }

    /// Resolves once [`RunningTroupe::stop`] has been called.
    pub(super) fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The troupe, or 503 once it is stopping.
    pub(super) async fn get(&self) -> Result<RwLockReadGuard<'_, Troupe>, ApiError> {
        RwLockReadGuard::try_map(self.troupe.read().await, Option::as_ref).map_err(|_| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "troupe is shutting down".to_string(),
            kind: "server_error",
            param: None,
            code: Some("shutting_down"),
        })
    }
}

/// The agent routes; [`super::router`] adds them when the state has a troupe.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/tasks", post(submit).get(list))
        .route("/api/tasks/{id}", get(show))
        .route("/api/tasks/{id}/events", get(tasks_sse::events))
        .route("/api/tasks/{id}/cancel", post(cancel))
        .route("/api/tasks/{id}/pause", post(pause))
        .route("/api/tasks/{id}/resume", post(resume))
        .route("/api/agents", get(agents))
        .route("/api/agent/chat", post(chat))
        .route("/api/approvals", get(approvals))
        .route("/api/approvals/{id}", post(decide))
}

/// The running troupe of `state`; routes are only mounted when there is one.
pub(super) fn running(state: &AppState) -> Result<&RunningTroupe, ApiError> {
    state.troupe.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: "this server runs no agents, only the model host".to_string(),
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    })
}

#[derive(Debug, Deserialize)]
struct SubmitBody {
    request: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    priority: Option<i32>,
}

async fn submit(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<SubmitBody>,
) -> Result<Response, ApiError> {
    let troupe = running(&state)?.get().await?;
    let spec = TaskSpec {
        request: body.request,
        model: body.model,
        priority: body.priority.unwrap_or(0),
    };
    let id = troupe.submit(spec).await?;
    let task = troupe.store().task(&id).await.map_err(AgentError::from)?;
    let state = task.map_or("queued", |t| t.state.as_str());
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "state": state })),
    )
        .into_response())
}

async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let troupe = running(&state)?.get().await?;
    let mut data = Vec::new();
    for task in troupe.tasks().await? {
        let subtasks = troupe
            .store()
            .subtasks(&task.id)
            .await
            .map_err(AgentError::from)?;
        data.push(summary(&task, &subtasks));
    }
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// One task in the list: no journal, and its subtasks only counted.
fn summary(task: &TaskRecord, subtasks: &[SubtaskRecord]) -> Value {
    let count = |s: SubtaskState| subtasks.iter().filter(|x| x.state == s).count();
    json!({
        "id": task.id,
        "state": task.state,
        "request": task.request,
        "model": task.model,
        "priority": task.priority,
        "created_ms": task.created_ms,
        "updated_ms": task.updated_ms,
        "subtasks": {
            "total": subtasks.len(),
            "pending": count(SubtaskState::Pending),
            "running": count(SubtaskState::Running),
            "succeeded": count(SubtaskState::Succeeded),
            "failed": count(SubtaskState::Failed),
            "cancelled": count(SubtaskState::Cancelled),
        },
    })
}

async fn show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let troupe = running(&state)?.get().await?;
    match troupe.task(&id).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(AgentError::UnknownTask(id.into()).into()),
    }
}

/// What a control route asks of the Director.
#[derive(Debug, Clone, Copy)]
enum ControlAction {
    Cancel,
    Pause,
    Resume,
}

async fn control(
    state: &AppState,
    id: &str,
    action: ControlAction,
) -> Result<Json<Value>, ApiError> {
    let troupe = running(state)?.get().await?;
    match action {
        ControlAction::Cancel => troupe.cancel(id).await?,
        ControlAction::Pause => troupe.pause(id).await?,
        ControlAction::Resume => troupe.resume(id).await?,
    }
    // A running task stops at its next step boundary, so this may still say
    // `running`; the event stream tells when it has stopped.
    let task = troupe
        .store()
        .task(id)
        .await
        .map_err(AgentError::from)?
        .ok_or_else(|| AgentError::UnknownTask(id.into()))?;
    Ok(Json(json!({ "id": task.id, "state": task.state })))
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(&state, &id, ControlAction::Cancel).await
}

async fn pause(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(&state, &id, ControlAction::Pause).await
}

async fn resume(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(&state, &id, ControlAction::Resume).await
}

async fn agents(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let running = running(&state)?;
    let children: Vec<Value> = {
        let troupe = running.get().await?;
        troupe
            .agents()
            .await
            .into_iter()
            .map(|c| json!({ "name": c.name, "alive": c.alive, "restarts": c.restarts }))
            .collect()
    };
    let host = running.model_host().status().await?;
    Ok(Json(json!({ "children": children, "model_host": host })))
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    #[serde(default)]
    conversation: Option<String>,
    text: String,
}

async fn chat(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<ChatBody>,
) -> Result<Response, ApiError> {
    if body.text.trim().is_empty() {
        return Err(ApiError::invalid(Some("text"), "`text` is empty"));
    }
    let conversation = body
        .conversation
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_CONVERSATION.to_string());
    let troupe = running(&state)?.get().await?;
    let reply = troupe.chat(&conversation, &body.text).await?;
    Ok(Json(reply).into_response())
}

async fn approvals(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let troupe = running(&state)?.get().await?;
    Ok(Json(
        json!({ "object": "list", "data": troupe.pending_approvals() }),
    ))
}

#[derive(Debug, Deserialize)]
struct DecideBody {
    approved: bool,
    #[serde(default)]
    reason: Option<String>,
}

async fn decide(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    extensions: axum::http::Extensions,
    JsonBody(body): JsonBody<DecideBody>,
) -> Result<Json<Value>, ApiError> {
    let troupe = running(&state)?.get().await?;
    // Set by the auth middleware for every request that reaches here.
    let by = extensions
        .get::<super::auth::Caller>()
        .map_or(troupe_store::Approver::LocalHttp, |c| c.0);
    match troupe.decide(&id, body.approved, body.reason, by) {
        Ok(call) => Ok(Json(json!({
            "id": call.request.id,
            "approved": body.approved,
            "by": by.as_str(),
            "task_id": call.task_id,
            "subtask": call.subtask,
            "tool": call.request.tool,
        }))),
        Err(unknown) => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: unknown.to_string(),
            kind: "invalid_request_error",
            param: None,
            code: Some("approval_not_found"),
        }),
    }
}

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> Self {
        let message = error.to_string();
        match error {
            AgentError::BadRequest(_) => ApiError::invalid(Some("request"), message),
            AgentError::NoModel { .. } => {
                ApiError::invalid(Some("model"), message).with_code("no_model")
            }
            AgentError::UnknownTask(_) => ApiError {
                status: StatusCode::NOT_FOUND,
                message,
                kind: "invalid_request_error",
                param: None,
                code: Some("task_not_found"),
            },
            AgentError::InvalidState { .. } => ApiError {
                status: StatusCode::CONFLICT,
                message,
                kind: "invalid_request_error",
                param: None,
                code: Some("invalid_task_state"),
            },
            AgentError::Stopped(_) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message,
                kind: "server_error",
                param: None,
                code: Some("agent_stopped"),
            },
            AgentError::Host(inner) => ApiError::from(inner),
            _ => ApiError::internal(message),
        }
    }
}
