//! Helpers of the HTTP tests: the shared server and a small client for it.

pub(crate) mod server;

use serde_json::Value;

pub(crate) use server::{server, API_KEY};

/// A client of the test server that sends the API key.
pub(crate) struct Client {
    /// The underlying HTTP client.
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Client {
    /// A client of the shared server (started on first use).
    pub(crate) fn connect() -> Client {
        Client {
            http: reqwest::Client::new(),
            base: server().base.clone(),
        }
    }

    /// The full URL of `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with the key: status and body text.
    pub(crate) async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// GET with the key: status and JSON body.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path).await;
        (status, parse(&text))
    }

    /// POST a JSON body with the key: status and JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().into_bytes()).await
    }

    /// POST raw bytes as JSON with the key: status and JSON body.
    pub(crate) async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, parse(&text))
    }

    /// POST a streaming request and read the whole event stream: status and
    /// the `data:` payloads in order.
    pub(crate) async fn post_stream(&self, path: &str, body: &Value) -> (u16, Vec<String>) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(API_KEY)
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, sse_data(&text))
    }
}

/// The `data:` payloads of a server-sent-event stream, in order (comment
/// lines, used as keep-alives, are skipped).
pub(crate) fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// JSON of a body, or the text as a JSON string when it is not JSON (so a
/// failing assertion shows what came back).
pub(crate) fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The value of an unlabelled or labelled sample in Prometheus text, e.g.
/// `metric(text, "troupe_http_requests_total{route=\"/health\",status=\"200\"}")`.
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}
