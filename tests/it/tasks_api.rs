//! The agent API of `troupe serve` end to end: a real troupe (store, actors,
//! tools, git workspaces, ModelHost) whose model replies come from
//! `examples/fib-script.json` through the scripted backend, served over a
//! socket on 127.0.0.1:0 and driven the way an HTTP client drives it. Each
//! test has its own troupe and data dir; the `troupe serve` binary is
//! tested once at the end.

use crate::tasks_support;

use serde_json::{json, Value};
use tasks_support::{
    assert_error, journal, parse_sse, read_until, start, start_in, write_config, API_KEY, JOB,
    MODEL,
};

#[tokio::test]
async fn a_task_runs_to_the_end_and_its_journal_streams_in_order() {
    let server = start("allow").await;
    let id = server.submit().await;
    assert!(id.starts_with("t-"), "{id}");

    let events = server.all_events(&id, None).await;
    let entries = journal(&events);
    let seqs: Vec<u64> = entries.iter().filter_map(|e| e.id).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "gapless from 0"
    );
    let kinds: Vec<&str> = entries.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"submitted"), "{kinds:?}");
    assert_eq!(kinds.get(1), Some(&"planned"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"finished"), "{kinds:?}");
    let position = |kind: &str| kinds.iter().position(|k| *k == kind);
    for kind in [
        "subtask_started",
        "step_started",
        "step_observed",
        "step_committed",
        "subtask_finished",
    ] {
        assert!(position(kind).is_some(), "no {kind} in {kinds:?}");
    }
    assert!(position("step_started") < position("step_committed"));
    assert_eq!(
        kinds.iter().filter(|k| **k == "subtask_finished").count(),
        2,
        "{kinds:?}"
    );
    let finished = &entries.last().unwrap().data["event"];
    assert_eq!(finished["state"], "succeeded", "{finished}");

    let (status, task) = server.get(&format!("/api/tasks/{id}")).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["id"], id.as_str());
    assert_eq!(task["state"], "succeeded");
    assert_eq!(task["request"], JOB);
    assert!(
        task["answer"].as_str().is_some_and(|a| a.contains("fib")),
        "{task}"
    );
    let subtasks: Vec<(&str, &str)> = task["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(subtasks, [("s1", "succeeded"), ("s2", "succeeded")]);
    assert_eq!(task["events"].as_array().unwrap().len(), entries.len());

    let (status, list) = server.get("/api/tasks").await;
    assert_eq!(status, 200, "{list}");
    let listed = &list["data"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["state"], "succeeded");
    assert_eq!(listed["request"], JOB);
    assert_eq!(listed["subtasks"]["total"], 2);
    assert_eq!(listed["subtasks"]["succeeded"], 2);
    assert!(
        listed["created_ms"].as_u64() <= listed["updated_ms"].as_u64(),
        "{listed}"
    );

    for action in ["cancel", "pause", "resume"] {
        let (status, body) = server
            .post(&format!("/api/tasks/{id}/{action}"), &json!({}))
            .await;
        assert_eq!(status, 409, "{action}: {body}");
        assert_error(&body, "invalid_task_state");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_reconnecting_stream_sends_only_later_entries() {
    let server = start("allow").await;
    let id = server.submit().await;
    let whole = server.all_events(&id, None).await;
    let whole = journal(&whole);
    assert!(whole.len() > 5, "{whole:?}");

    let resumed = server.all_events(&id, Some(4)).await;
    let resumed = journal(&resumed);
    let ids: Vec<u64> = resumed.iter().filter_map(|e| e.id).collect();
    assert_eq!(ids, (5..whole.len() as u64).collect::<Vec<_>>());
    assert_eq!(resumed.last().unwrap().event, "finished");

    let text = server
        .http
        .get(server.url(&format!("/api/tasks/{id}/events?from=3")))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let from = parse_sse(&text);
    assert_eq!(journal(&from).first().and_then(|e| e.id), Some(3));
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_error_objects() {
    let server = start("allow").await;
    for path in [
        "/api/tasks/t-000000000000",
        "/api/tasks/t-000000000000/events",
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_error(&body, "task_not_found");
    }
    let (status, body) = server
        .post("/api/tasks/t-000000000000/cancel", &json!({}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "task_not_found");

    let (status, body) = server
        .post_raw("/api/tasks", "{\"request\": ".to_string())
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let (status, _) = server.post("/api/tasks", &json!({ "model": "fib" })).await;
    assert_eq!(status, 400, "a task needs a request");
    let (status, body) = server
        .post("/api/tasks", &json!({ "request": "   " }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "request", "{body}");
    let huge = "x".repeat(200_000);
    let (status, body) = server.post("/api/tasks", &json!({ "request": huge })).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = server
        .post("/api/approvals/nothing-waits", &json!({ "approved": true }))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "approval_not_found");
    let (status, body) = server.post("/api/agent/chat", &json!({ "text": "" })).await;
    assert_eq!(status, 400, "{body}");

    let (status, list) = server.get("/api/tasks").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"], json!([]), "refused jobs are not tasks");
    server.stop().await;
}

#[tokio::test]
async fn the_agent_api_needs_the_key() {
    let server = start("allow").await;
    let missing = server
        .http
        .get(server.url("/api/tasks"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    let wrong = server
        .http
        .post(server.url("/api/tasks"))
        .bearer_auth("wrong")
        .json(&json!({ "request": JOB }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let (status, body) = server.get("/api/tasks").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]), "the refused POST started nothing");
    server.stop().await;
}

#[tokio::test]
async fn agents_lists_the_supervised_actors_and_the_model_host() {
    let server = start("allow").await;
    let (status, body) = server.get("/api/agents").await;
    assert_eq!(status, 200, "{body}");
    let children = body["children"].as_array().unwrap();
    for name in ["learner", "director", "ux"] {
        let child = children
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {body}"));
        assert_eq!(child["alive"], true, "{child}");
        assert_eq!(child["restarts"], 0, "{child}");
    }
    assert_eq!(body["model_host"]["budget_bytes"], 1u64 << 30, "{body}");
    // The OpenAI routes serve the same host.
    let (status, models) = server.get("/v1/models").await;
    assert_eq!(status, 200);
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == MODEL),
        "{models}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_tool_call_waits_for_approval_over_http() {
    let server = start("ask").await;
    let id = server.submit().await;
    let mut stream = server.events(&id, None).await;
    let mut buffer = String::new();
    let before = read_until(&mut stream, &mut buffer, "approval").await;
    let asked = before.last().unwrap();
    assert_eq!(asked.data["task_id"], id.as_str(), "{asked:?}");
    assert_eq!(asked.data["request"]["tool"], "shell", "{asked:?}");
    assert!(asked.id.is_none(), "live events carry no id");

    let (status, pending) = server.get("/api/approvals").await;
    assert_eq!(status, 200);
    let waiting = pending["data"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{pending}");
    let call = waiting[0]["request"]["id"].as_str().unwrap().to_string();
    assert_eq!(waiting[0]["task_id"], id.as_str());

    let (status, decided) = server
        .post(
            &format!("/api/approvals/{call}"),
            &json!({ "approved": true, "reason": "tests may run" }),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["approved"], true);
    assert_eq!(decided["by"], "api_key", "{decided}");
    let after = read_until(&mut stream, &mut buffer, "finished").await;
    let kinds: Vec<&str> = after.iter().map(|e| e.event.as_str()).collect();
    assert!(kinds.contains(&"approval_decided"), "{kinds:?}");
    let journaled = after
        .iter()
        .find(|e| e.event == "approval_decided")
        .expect("approval_decided");
    assert_eq!(journaled.data["event"]["by"], "api_key", "{journaled:?}");
    assert_eq!(after.last().unwrap().data["event"]["state"], "succeeded");
    assert!(
        stream.chunk().await.unwrap().is_none(),
        "the stream ends after `finished`"
    );
    let (_, pending) = server.get("/api/approvals").await;
    assert_eq!(pending["data"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn chat_answers_and_can_start_work() {
    let server = start("allow").await;
    let (status, reply) = server
        .post(
            "/api/agent/chat",
            &json!({ "conversation": "c1", "text": "hello there" }),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply["text"].as_str().is_some_and(|t| !t.is_empty()),
        "{reply}"
    );
    assert_eq!(reply["intent"], "chat", "{reply}");

    let (status, reply) = server
        .post("/api/agent/chat", &json!({ "text": JOB }))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["intent"], "work", "{reply}");
    let id = reply["task_id"]
        .as_str()
        .expect("a task started")
        .to_string();
    let events = server.all_events(&id, None).await;
    assert_eq!(events.last().unwrap().data["event"]["state"], "succeeded");
    server.stop().await;
}

#[tokio::test]
async fn stopping_the_server_ends_open_streams_and_keeps_the_task() {
    let server = start("ask").await;
    let id = server.submit().await;
    let mut stream = server.events(&id, None).await;
    let mut buffer = String::new();
    read_until(&mut stream, &mut buffer, "approval").await;
    // The task waits for a person; the server stops all the same.
    let base = server.base.clone();
    let http = server.http.clone();
    let dir = server.stop().await;
    while stream.chunk().await.ok().flatten().is_some() {}
    assert!(
        http.get(format!("{base}/health")).send().await.is_err(),
        "the listener is closed"
    );

    // The next start picks the task up where it stopped.
    let server = start_in(dir, "allow").await;
    let (status, task) = server.get(&format!("/api/tasks/{id}")).await;
    assert_eq!(status, 200, "{task}");
    let events = server.all_events(&id, None).await;
    let entries = journal(&events);
    let kinds: Vec<&str> = entries.iter().map(|e| e.event.as_str()).collect();
    assert!(kinds.contains(&"recovered"), "{kinds:?}");
    assert_eq!(
        entries.last().unwrap().data["event"]["state"],
        "succeeded",
        "{kinds:?}"
    );
    server.stop().await;
}

#[cfg(unix)]
#[test]
fn the_serve_command_boots_the_troupe_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "allow");
    let data = dir.path().join("elsewhere");
    let mut child = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--addr",
            "127.0.0.1:0",
        ])
        .args(["--data-dir", data.to_str().unwrap(), "--api-key", API_KEY])
        .env_remove("TROUPE_CONFIG")
        .env("TROUPE_LOG", "warn")
        .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("troupe serve starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let base = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve exited early"
        );
        if let Some(rest) = line.trim().strip_prefix("troupe serve: ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{base}/api/tasks"))
            .bearer_auth(API_KEY)
            .json(&json!({ "request": JOB }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let text = http
            .get(format!("{base}/api/tasks/{id}/events"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events = parse_sse(&text);
        assert_eq!(
            events.last().unwrap().data["event"]["state"],
            "succeeded",
            "{text}"
        );
        let workspace = data.join("workspaces").join(&id);
        assert!(
            workspace.join("src/fib.py").is_file(),
            "the task's files are under --data-dir"
        );
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "serve exits cleanly on SIGTERM: {status:?}"
    );
}

/// Attack 8 of the hostile-model review: without a key (the default), a
/// web page in the user's browser POSTed `text/plain` to
/// `/api/approvals/{id}` and ran the pending shell command; a rebound DNS
/// name reached the API. Refused now, and the call stays pending.
#[tokio::test]
async fn a_web_page_cannot_approve_or_reach_the_api_without_a_key() {
    let server = tasks_support::start_keyless("ask").await;
    let id = server.submit().await;
    let mut stream = server.events(&id, None).await;
    let mut buffer = String::new();
    read_until(&mut stream, &mut buffer, "approval").await;
    let (_, pending) = server.get("/api/approvals").await;
    let call = pending["data"][0]["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = server.url(&format!("/api/approvals/{call}"));
    let body = r#"{"approved": true}"#;
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body)
    };
    // A form or fetch without preflight from another site.
    let (status, answer) = send(
        server
            .http
            .post(&url)
            .header("content-type", "text/plain")
            .header("origin", "http://evil.example")
            .body(body),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_error(&answer, "cross_site");
    // A sandboxed frame elsewhere: `Origin: null`, cross-site.
    let (status, answer) = send(
        server
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("origin", "null")
            .header("sec-fetch-site", "cross-site")
            .body(body),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_error(&answer, "cross_site");
    // The same body as text/plain with no Origin (a non-browser client
    // must say what it sends).
    let (status, answer) = send(
        server
            .http
            .post(&url)
            .header("content-type", "text/plain")
            .body(body),
    )
    .await;
    assert_eq!(status, 415, "{answer}");
    assert_error(&answer, "unsupported_media_type");
    // DNS rebinding: the page's own name resolved to 127.0.0.1.
    let (status, answer) = send(
        server
            .http
            .get(server.url("/api/approvals"))
            .header("host", "evil.example:8080"),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_error(&answer, "host_not_allowed");
    let (_, still) = server.get("/api/approvals").await;
    assert_eq!(still["data"].as_array().map(Vec::len), Some(1), "{still}");
    // The dashboard's own same-origin JSON request still works.
    let (status, decided) = send(
        server
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("origin", server.base.clone())
            .body(r#"{"approved": false, "reason": "not from a page"}"#),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["by"], "local_http", "{decided}");
    server.stop().await;
}

/// Attack 9: thousands of idle connections filled the descriptors and
/// `/health` went unanswered. With 4,000 open and silent it answers within
/// 15 s, and a silent connection is closed (after 5 s).
#[tokio::test]
async fn health_answers_while_thousands_of_connections_sit_idle() {
    let server = tasks_support::start_keyless("allow").await;
    let addr = server.base.trim_start_matches("http://").to_string();
    // Client and server share this process's descriptors (the server
    // raised the soft limit to the hard one): 4,000 when the limit allows.
    let soft = {
        // SAFETY: getrlimit writes the struct.
        let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        lim.rlim_cur as usize
    };
    let target = 4000.min(soft.saturating_sub(300) / 2);
    let mut idle = Vec::new();
    while idle.len() < target {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(stream) => idle.push(stream),
            Err(error) => panic!("connection {} of {target}: {error}", idle.len() + 1),
        }
    }
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        server.http.get(server.url("/health")).send(),
    )
    .await
    .expect("/health answered within 15 s")
    .expect("request sent");
    assert_eq!(response.status(), 200);
    eprintln!(
        "{} idle connections; /health answered in {:?}",
        idle.len(),
        started.elapsed()
    );
    // A connection that never speaks is closed by the server (after 5 s).
    let mut silent = idle.pop().expect("an idle connection");
    drop(idle);
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .expect("the server closed the silent connection");
    assert_eq!(read.expect("clean close"), 0, "EOF");
    server.stop().await;
}
