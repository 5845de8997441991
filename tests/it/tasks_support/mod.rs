//! The harness of `tests/it/tasks_api.rs`: a troupe over the scripted fib
//! script, served on 127.0.0.1:0, and a small client that reads its JSON and
//! server-sent events.

use serde_json::{json, Value};

use crate::in_process::{self, Running};

/// The key every request but `/health` must carry.
pub(crate) const API_KEY: &str = "tasks-key-51c2";
/// The job the fib script answers.
pub(crate) const JOB: &str = "write a Python fibonacci function with tests";
pub(crate) use crate::in_process::{write_config, MODEL};

/// A troupe served over HTTP in this test's runtime.
pub(crate) struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The client the helpers use.
    pub http: reqwest::Client,
    running: Running,
}

/// A server over a fresh data dir.
pub(crate) async fn start(execute: &str) -> Server {
    start_in(tempfile::tempdir().expect("temp dir"), execute).await
}

/// A server over the data dir in `dir` (a second start resumes its tasks).
pub(crate) async fn start_in(dir: tempfile::TempDir, execute: &str) -> Server {
    start_with_key(dir, execute, Some(API_KEY)).await
}

/// A server with no API key (the default of `troupe serve`): the helpers'
/// bearer header is then ignored.
pub(crate) async fn start_keyless(execute: &str) -> Server {
    start_with_key(tempfile::tempdir().expect("temp dir"), execute, None).await
}

async fn start_with_key(dir: tempfile::TempDir, execute: &str, key: Option<&str>) -> Server {
    let running = in_process::start(dir, execute, 0, key).await;
    Server {
        base: running.base.clone(),
        http: reqwest::Client::new(),
        running,
    }
}

impl Server {
    /// The full URL of `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with the key: status and JSON body.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("request sent");
        answer(response).await
    }

    /// POST JSON with the key: status and JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string()).await
    }

    /// POST raw bytes as JSON with the key.
    pub(crate) async fn post_raw(&self, path: &str, body: String) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        answer(response).await
    }

    /// Submits the fib job; its id.
    pub(crate) async fn submit(&self) -> String {
        let (status, body) = self.post("/api/tasks", &json!({ "request": JOB })).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("an id").to_string()
    }

    /// Opens a task's event stream, optionally resuming after `last_id`.
    pub(crate) async fn events(&self, id: &str, last_id: Option<u64>) -> reqwest::Response {
        let mut request = self
            .http
            .get(self.url(&format!("/api/tasks/{id}/events")))
            .bearer_auth(API_KEY);
        if let Some(last) = last_id {
            request = request.header("last-event-id", last.to_string());
        }
        let response = request.send().await.expect("request sent");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        response
    }

    /// A whole event stream (it ends after `finished`).
    pub(crate) async fn all_events(&self, id: &str, last_id: Option<u64>) -> Vec<Sse> {
        let text = self.events(id, last_id).await.text().await.expect("stream");
        parse_sse(&text)
    }

    /// Stops the server and the troupe; the server must return. The data
    /// dir is handed back for a restart.
    pub(crate) async fn stop(self) -> tempfile::TempDir {
        self.running.stop().await
    }
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub(crate) struct Sse {
    /// The journal seq, for journal entries.
    pub id: Option<u64>,
    /// The event name (`step_started`, `progress`, ...).
    pub event: String,
    /// The data, as JSON.
    pub data: Value,
}

/// Every event of a stream's text.
pub(crate) fn parse_sse(text: &str) -> Vec<Sse> {
    text.split("\n\n").filter_map(parse_one).collect()
}

fn parse_one(block: &str) -> Option<Sse> {
    let (mut id, mut event, mut data) = (None, String::from("message"), Vec::new());
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.parse().ok(),
            "event" => event = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    (!data.is_empty()).then(|| Sse {
        id,
        event,
        data: serde_json::from_str(&data.join("\n")).unwrap_or(Value::Null),
    })
}

/// Reads `response` until an event of kind `name` arrives; every event up
/// to and including it.
pub(crate) async fn read_until(
    response: &mut reqwest::Response,
    buffer: &mut String,
    name: &str,
) -> Vec<Sse> {
    let mut seen = Vec::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(event) = parse_one(&block) {
                let found = event.event == name;
                seen.push(event);
                if found {
                    return seen;
                }
            }
        }
        match response.chunk().await.expect("stream readable") {
            Some(bytes) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            None => panic!("the stream ended before `{name}`: {seen:?}"),
        }
    }
}

/// The journal entries of a stream (events with an id), checking that the
/// ids are the entries' seqs.
pub(crate) fn journal(events: &[Sse]) -> Vec<&Sse> {
    let entries: Vec<&Sse> = events.iter().filter(|e| e.id.is_some()).collect();
    for entry in &entries {
        assert_eq!(entry.data["seq"].as_u64(), entry.id, "{entry:?}");
        assert_eq!(
            entry.data["event"]["type"],
            entry.event.as_str(),
            "{entry:?}"
        );
    }
    entries
}

/// Asserts an OpenAI-style error object with `code`.
pub(crate) fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}
