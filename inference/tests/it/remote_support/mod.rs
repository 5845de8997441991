//! A fake OpenAI-compatible server on 127.0.0.1:0 for the remote provider's
//! tests: a raw HTTP/1.1 loop, so that it can also send garbage, hold a
//! connection silently, or notice the client hanging up.
// Each test file uses only some of these.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use troupe_config::ProviderConfig;
use troupe_inference::backend::{GenerateRequest, GenerationEvent};
use troupe_inference::chat::ChatMessage;
use troupe_inference::remote::{RemoteError, RemoteProvider};

/// One request the fake server received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub at: Instant,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the fake server does with a request.
pub(crate) enum Reply {
    /// A complete answer with a Content-Length.
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// An event stream: each chunk written on its own, then the connection
    /// closed; `hold` keeps it open after the chunks until the client leaves.
    Events { chunks: Vec<String>, hold: bool },
    /// An event stream with `gap` between its chunks, then closed.
    Paced { chunks: Vec<String>, gap: Duration },
    /// Reads the request and never answers.
    Silence,
}

pub(crate) type Script = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

pub(crate) struct FakeServer {
    /// `http://127.0.0.1:PORT/v1`.
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections whose client went away while the server held them open.
    pub hung_up: Arc<AtomicUsize>,
}

impl FakeServer {
    pub(crate) async fn start(
        script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hung_up = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (seen2, hung_up2) = (seen.clone(), hung_up.clone());
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (script, seen, hung_up) = (script.clone(), seen2.clone(), hung_up2.clone());
                tokio::spawn(serve_one(socket, script, seen, hung_up));
            }
        });
        FakeServer {
            base,
            seen,
            hung_up,
        }
    }

    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn read_request(socket: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[header_end..header_end + length]).unwrap_or(Value::Null);
    Some(Seen {
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

async fn serve_one(
    mut socket: TcpStream,
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
    hung_up: Arc<AtomicUsize>,
) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push(request.clone());
        seen.len() - 1
    };
    match script(index, &request) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut text = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str("\r\n");
            text.push_str(&body);
            let _ = socket.write_all(text.as_bytes()).await;
        }
        Reply::Events { chunks, hold } => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for chunk in chunks {
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                let _ = socket.flush().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if hold {
                let mut rest = [0u8; 64];
                // A read of 0 bytes (or an error) means the client closed.
                while matches!(socket.read(&mut rest).await, Ok(n) if n > 0) {}
                hung_up.fetch_add(1, Ordering::SeqCst);
            }
        }
        Reply::Paced { chunks, gap } => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for chunk in chunks {
                tokio::time::sleep(gap).await;
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                let _ = socket.flush().await;
            }
        }
        Reply::Silence => {
            let mut rest = [0u8; 64];
            while matches!(socket.read(&mut rest).await, Ok(n) if n > 0) {}
        }
    }
    let _ = socket.shutdown().await;
}

pub(crate) fn json_reply(status: u16, body: Value) -> Reply {
    Reply::Full {
        status,
        headers: vec![("Content-Type", "application/json".into())],
        body: body.to_string(),
    }
}

pub(crate) fn chunk(delta: Value, finish: Option<&str>) -> String {
    let data = json!({
        "id": "c1", "object": "chat.completion.chunk", "model": "m",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    });
    format!("data: {data}\n\n")
}

/// A stream of `pieces`, a `stop` chunk, a usage chunk and `[DONE]`.
pub(crate) fn stream_of(pieces: &[&str], usage: Option<(u32, u32)>) -> Reply {
    let mut chunks = vec![chunk(json!({ "role": "assistant" }), None)];
    for piece in pieces {
        chunks.push(chunk(json!({ "content": piece }), None));
    }
    chunks.push(chunk(json!({}), Some("stop")));
    if let Some((prompt, completion)) = usage {
        let data = json!({
            "choices": [],
            "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion },
        });
        chunks.push(format!("data: {data}\n\n"));
    }
    chunks.push("data: [DONE]\n\n".into());
    Reply::Events {
        chunks,
        hold: false,
    }
}

pub(crate) fn config(base: &str) -> ProviderConfig {
    let mut config = ProviderConfig::new("fake", base, "fake-model");
    config.backoff = Duration::from_millis(5);
    config.backoff_max = Duration::from_millis(50);
    config.timeout = Duration::from_secs(10);
    config
}

pub(crate) fn provider(config: &ProviderConfig) -> RemoteProvider {
    RemoteProvider::with_api_key(config, None).unwrap()
}

pub(crate) fn hello() -> GenerateRequest {
    let mut request = GenerateRequest::chat(vec![
        ChatMessage::system("Be brief."),
        ChatMessage::user("Say hello."),
    ]);
    request.max_tokens = 16;
    request
}

/// The stream's pieces and its last event.
pub(crate) async fn collect(
    provider: &RemoteProvider,
    request: GenerateRequest,
) -> Result<(Vec<String>, GenerationEvent), RemoteError> {
    let mut stream = provider.generate(request).await?;
    let mut pieces = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            GenerationEvent::Token(piece) => pieces.push(piece),
            last => return Ok((pieces, last)),
        }
    }
    panic!("the stream ended without Done or Error");
}
