//! HTTP tools: `http_get` and `http_post` to hosts on the `[tools.http]`
//! allow-list (redirects included), with a time limit and a body size cap
//! (the body is streamed and reading stops at the cap).

use crate::observation::{truncation_note, Observation};
use crate::schema::object_schema;
use crate::tool::{args, RiskLevel, Tool, ToolContext, ToolError};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Most redirects followed.
const MAX_REDIRECTS: usize = 5;

/// Hosts the http tools may reach: exact names, or `*.domain` for any
/// subdomain of `domain` (not `domain` itself). An entry with a port
/// (`127.0.0.1:8080`) matches only that port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAllowList {
    entries: Vec<String>,
}

impl HostAllowList {
    /// An allow-list of these entries.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(entries: I) -> HostAllowList {
        HostAllowList {
            entries: entries
                .into_iter()
                .map(|e| e.as_ref().trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `url`'s host is allowed.
    pub fn allows(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let with_port = url.port_or_known_default().map(|p| format!("{host}:{p}"));
        self.entries.iter().any(|e| {
            if let Some(domain) = e.strip_prefix("*.") {
                host.ends_with(&format!(".{domain}"))
            } else if e.contains(':') && !host.contains(':') {
                with_port.as_deref() == Some(e.as_str())
            } else {
                host == *e
            }
        })
    }

    /// The entries, for messages.
    pub fn describe(&self) -> String {
        if self.entries.is_empty() {
            "none; [tools.http] allow_hosts is empty".to_string()
        } else {
            self.entries.join(", ")
        }
    }
}

/// Why the http tools could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpSetupError {
    /// reqwest could not build a client (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What the http tools share.
#[derive(Debug)]
pub struct HttpEnv {
    client: reqwest::Client,
    allow: HostAllowList,
    max_bytes: usize,
    timeout: Duration,
}

impl HttpEnv {
    /// Settings from `[tools.http]`.
    pub fn from_config(
        cfg: &troupe_config::tools::HttpConfig,
    ) -> Result<Arc<HttpEnv>, HttpSetupError> {
        HttpEnv::new(
            HostAllowList::new(&cfg.allow_hosts),
            cfg.max_bytes,
            cfg.timeout,
        )
    }

    /// An HTTP environment with these limits.
    pub fn new(
        allow: HostAllowList,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Arc<HttpEnv>, HttpSetupError> {
        let for_redirects = allow.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if for_redirects.allows(attempt.url()) {
                attempt.follow()
            } else {
                let host = attempt.url().host_str().unwrap_or("?").to_string();
                attempt.error(format!(
                    "a redirect led to `{host}`, which is not on the allow-list"
                ))
            }
        });
        let client = reqwest::Client::builder()
            .redirect(policy)
            .timeout(timeout)
            .user_agent(concat!("troupe/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(HttpEnv {
            client,
            allow,
            max_bytes,
            timeout,
        }))
    }

    /// Sends `req` and reads at most `max_bytes` of the body. `Err` is the
    /// observation for the model.
    pub(crate) async fn fetch(&self, req: reqwest::RequestBuilder) -> Result<Fetched, Observation> {
        let mut resp = req.send().await.map_err(|e| self.explain(&e))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let length = resp.content_length();
        let mut body = Vec::new();
        let mut cut = false;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.explain(&e))? {
            let room = self.max_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                cut = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            content_type,
            length,
            body,
            cut,
            url: resp.url().to_string(),
        })
    }

    fn explain(&self, e: &reqwest::Error) -> Observation {
        let url = e.url().map(|u| u.to_string()).unwrap_or_default();
        let text = if e.is_timeout() {
            format!(
                "the request to {url} timed out after {} s",
                self.timeout.as_secs_f64()
            )
        } else {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                source = s.source();
            }
            format!("the request failed: {chain}")
        };
        Observation::error_with(text, json!({ "url": url, "timed_out": e.is_timeout() }))
    }

    fn check(&self, raw: &str) -> Result<url::Url, Observation> {
        let url = url::Url::parse(raw)
            .map_err(|e| Observation::error(format!("`url` is not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Observation::error(format!(
                "only http and https URLs are allowed, not {}",
                url.scheme()
            )));
        }
        if !self.allow.allows(&url) {
            let host = url.host_str().unwrap_or("").to_string();
            tracing::warn!(%host, "http request to a host not on the allow-list refused");
            return Err(Observation::error_with(
                format!(
                    "the host `{host}` is not on the allow-list (allowed: {})",
                    self.allow.describe()
                ),
                json!({ "refused": true, "host": host }),
            ));
        }
        Ok(url)
    }
}

/// A response read within the size cap.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) status: reqwest::StatusCode,
    pub(crate) content_type: String,
    pub(crate) length: Option<u64>,
    pub(crate) body: Vec<u8>,
    pub(crate) cut: bool,
    pub(crate) url: String,
}

impl Fetched {
    fn observation(self) -> Observation {
        let mut text = format!("HTTP {} from {}", self.status, self.url);
        if !self.content_type.is_empty() {
            text.push_str(&format!(" ({})", self.content_type));
        }
        text.push('\n');
        match std::str::from_utf8(&self.body) {
            Ok(s) => text.push_str(s),
            // A cut can split a character; a body that is only bad at its end is text.
            Err(e) if self.cut && e.error_len().is_none() => {
                text.push_str(&String::from_utf8_lossy(&self.body[..e.valid_up_to()]))
            }
            Err(_) => text.push_str(&format!(
                "[binary body of {} bytes not shown]",
                self.body.len()
            )),
        }
        if self.cut {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            match self.length {
                Some(total) => text.push_str(&truncation_note(
                    self.body.len(),
                    usize::try_from(total).unwrap_or(usize::MAX),
                )),
                None => text.push_str(&format!(
                    "[output truncated: {} bytes shown; the body is larger than the limit]",
                    self.body.len()
                )),
            }
        }
        Observation {
            text,
            data: json!({
                "status": self.status.as_u16(),
                "content_type": self.content_type,
                "bytes": self.body.len(),
                "url": self.url,
            }),
            truncated: self.cut,
            is_error: !self.status.is_success(),
        }
    }
}

/// `http_get` or `http_post`.
#[derive(Debug, Clone)]
pub struct HttpTool {
    post: bool,
    env: Arc<HttpEnv>,
}

impl HttpTool {
    /// `http_get`.
    pub fn get(env: Arc<HttpEnv>) -> HttpTool {
        HttpTool { post: false, env }
    }

    /// `http_post`.
    pub fn post(env: Arc<HttpEnv>) -> HttpTool {
        HttpTool { post: true, env }
    }
}

#[async_trait::async_trait]
impl Tool for HttpTool {
    fn name(&self) -> &str {
        if self.post {
            "http_post"
        } else {
            "http_get"
        }
    }

    fn description(&self) -> &str {
        if self.post {
            "Sends an HTTP POST with a text or JSON body to an allowed host and returns the status and response body."
        } else {
            "Fetches a URL on an allowed host with HTTP GET and returns the status and body."
        }
    }

    fn risk(&self) -> RiskLevel {
        RiskLevel::Network
    }

    fn schema(&self) -> Value {
        let url = json!({ "type": "string", "description": "An http:// or https:// URL." });
        if self.post {
            object_schema(
                json!({
                    "url": url,
                    "body": { "type": "string", "description": "The request body." },
                    "content_type": { "type": "string", "description": "Its media type (default: application/json when the body is JSON, else text/plain)." }
                }),
                &["url", "body"],
            )
        } else {
            object_schema(json!({ "url": url }), &["url"])
        }
    }

    async fn call(&self, _ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let url = match self.env.check(&args::string(&a, "url")) {
            Ok(u) => u,
            Err(obs) => return Ok(obs),
        };
        let req = if self.post {
            let body = args::string(&a, "body");
            let ct = args::str(&a, "content_type")
                .map(str::to_string)
                .unwrap_or_else(|| {
                    if serde_json::from_str::<Value>(&body).is_ok() {
                        "application/json".to_string()
                    } else {
                        "text/plain; charset=utf-8".to_string()
                    }
                });
            self.env
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, ct)
                .body(body)
        } else {
            self.env.client.get(url)
        };
        Ok(match self.env.fetch(req).await {
            Ok(f) => f.observation(),
            Err(obs) => obs,
        })
    }
}
