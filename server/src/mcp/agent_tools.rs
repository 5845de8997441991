//! The three MCP tools that reach the running troupe rather than a
//! workspace: `submit_task {job, model?}` → a task id, `task_status {id}` →
//! its state and answer, `ask {message, conversation?}` → the UX agent's
//! reply.

use rmcp::model::{CallToolResult, JsonObject, Tool};
use serde_json::{json, Value};

use super::{error_result, ok_result};
use troupe_supervision::{TaskSpec, Troupe};

/// The conversation `ask` talks in unless the call names one.
pub const DEFAULT_CONVERSATION: &str = "mcp";

/// The three tools' definitions.
pub fn definitions() -> Vec<Tool> {
    vec![
        tool(
            "submit_task",
            "Start a job for troupe's agents (planned, done with tools in its own workspace, \
             checked). Answers with the task id at once; poll task_status for the result.",
            json!({
                "type": "object",
                "properties": {
                    "job": {"type": "string", "description": "The job, in plain words."},
                    "model": {"type": "string", "description": "A model for every call of the task (a catalog name); default: the configured ones."},
                },
                "required": ["job"],
            }),
        ),
        tool(
            "task_status",
            "The state of a task (queued, running, succeeded, failed, ...) and, once it has \
             ended, its answer or error.",
            json!({
                "type": "object",
                "properties": {
                    "id": {"type": "string", "description": "The id submit_task answered with."},
                },
                "required": ["id"],
            }),
        ),
        tool(
            "ask",
            "Say something to troupe's UX agent and get its reply. Asking for work starts a \
             task (its id is in the reply).",
            json!({
                "type": "object",
                "properties": {
                    "message": {"type": "string", "description": "What to say."},
                    "conversation": {"type": "string", "description": "A conversation id to continue (default: \"mcp\")."},
                },
                "required": ["message"],
            }),
        ),
    ]
}

fn tool(name: &'static str, description: &'static str, schema: Value) -> Tool {
    let schema: JsonObject = match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    Tool::new(name, description, schema)
}

/// Runs `name` when it is one of the three; `None` otherwise.
pub async fn call(troupe: &Troupe, name: &str, args: &Value) -> Option<CallToolResult> {
    let str_arg = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_string);
    Some(match name {
        "submit_task" => match str_arg("job") {
            Some(job) => submit(troupe, job, str_arg("model")).await,
            None => missing("submit_task", "job"),
        },
        "task_status" => match str_arg("id") {
            Some(id) => status(troupe, &id).await,
            None => missing("task_status", "id"),
        },
        "ask" => match str_arg("message") {
            Some(message) => {
                let conversation =
                    str_arg("conversation").unwrap_or_else(|| DEFAULT_CONVERSATION.to_string());
                ask(troupe, &conversation, &message).await
            }
            None => missing("ask", "message"),
        },
        _ => return None,
    })
}

fn missing(tool: &str, arg: &str) -> CallToolResult {
    error_result(
        format!("`{tool}` needs the string argument `{arg}`"),
        json!({ "missing": arg }),
    )
}

async fn submit(troupe: &Troupe, job: String, model: Option<String>) -> CallToolResult {
    let spec = TaskSpec {
        model,
        ..TaskSpec::new(job)
    };
    match troupe.submit(spec).await {
        Ok(id) => ok_result(
            format!("task {id} submitted; poll task_status with this id for its answer"),
            json!({ "id": id.to_string() }),
        ),
        Err(e) => error_result(
            format!("the task was not accepted: {e}"),
            json!({ "error": e.to_string() }),
        ),
    }
}

async fn status(troupe: &Troupe, id: &str) -> CallToolResult {
    match troupe.task(id).await {
        Ok(Some(view)) => {
            let task = &view.task;
            let mut text = format!("task {}: {}", task.id, task.state);
            if let Some(answer) = &task.answer {
                text.push_str(&format!("\nanswer: {answer}"));
            }
            if let Some(error) = &task.error {
                text.push_str(&format!("\nerror: {error}"));
            }
            ok_result(
                text,
                json!({
                    "id": task.id.to_string(),
                    "state": task.state.to_string(),
                    "answer": task.answer,
                    "error": task.error,
                    "subtasks": view.subtasks.len(),
                }),
            )
        }
        Ok(None) => error_result(format!("there is no task {id}"), json!({ "id": id })),
        Err(e) => error_result(
            format!("cannot read task {id}: {e}"),
            json!({ "error": e.to_string() }),
        ),
    }
}

async fn ask(troupe: &Troupe, conversation: &str, message: &str) -> CallToolResult {
    match troupe.chat(conversation, message).await {
        Ok(reply) => ok_result(
            reply.text.clone(),
            json!({
                "reply": reply.text,
                "intent": format!("{:?}", reply.intent).to_lowercase(),
                "task_id": reply.task_id.map(|id| id.to_string()),
            }),
        ),
        Err(e) => error_result(
            format!("the UX agent did not answer: {e}"),
            json!({ "error": e.to_string() }),
        ),
    }
}
