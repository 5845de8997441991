//! Web search: the `web_search` tool over a [`SearchProvider`] chosen in
//! `[tools.search]`. The one provider so far reads DuckDuckGo's HTML
//! endpoint (no API key); its base URL is configurable, which is also how
//! tests point it at a local server.

use crate::observation::Observation;
use crate::schema::object_schema;
use crate::tool::{args, RiskLevel, Tool, ToolContext, ToolError};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One search hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    /// The page title.
    pub title: String,
    /// The page's address.
    pub url: String,
    /// The text shown under it.
    pub snippet: String,
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The request did not complete.
    #[error("the search request failed: {0}")]
    Request(String),
    /// The provider answered with an error status.
    #[error("the search provider answered HTTP {0}")]
    Status(u16),
}

/// A web search backend.
#[async_trait::async_trait]
pub trait SearchProvider: Send + Sync + std::fmt::Debug {
    /// Its name, for messages.
    fn name(&self) -> &str;
    /// Up to `max` results for `query`.
    async fn search(&self, query: &str, max: usize) -> Result<Vec<SearchResult>, SearchError>;
}

/// DuckDuckGo's HTML endpoint (`https://html.duckduckgo.com/html/?q=...`).
#[derive(Debug)]
pub struct DuckDuckGoHtml {
    base_url: String,
    client: reqwest::Client,
    max_bytes: usize,
}

impl DuckDuckGoHtml {
    /// A provider asking `base_url`, within a time and response size limit.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<DuckDuckGoHtml, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("troupe/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(DuckDuckGoHtml {
            base_url: base_url.to_string(),
            client,
            max_bytes,
        })
    }
}

#[async_trait::async_trait]
impl SearchProvider for DuckDuckGoHtml {
    fn name(&self) -> &str {
        "DuckDuckGo"
    }

    async fn search(&self, query: &str, max: usize) -> Result<Vec<SearchResult>, SearchError> {
        let url = url::Url::parse_with_params(&self.base_url, [("q", query)])
            .map_err(|e| SearchError::Request(format!("bad base URL {}: {e}", self.base_url)))?;
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| SearchError::Request(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(SearchError::Status(resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| SearchError::Request(e.to_string()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() >= self.max_bytes {
                break;
            }
        }
        let html = String::from_utf8_lossy(&body);
        let mut results = parse_duckduckgo_html(&html);
        results.truncate(max);
        Ok(results)
    }
}

fn anchor_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r#"(?is)<a\s([^>]*)>(.*?)</a>"#).expect("a literal regex"))
}

fn attr_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r#"(?is)([a-z_-]+)\s*=\s*"([^"]*)""#).expect("a literal regex"))
}

fn tag_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?s)<[^>]*>").expect("a literal regex"))
}

/// Decodes the HTML entities DuckDuckGo uses (named basics and numeric).
pub fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn clean(html: &str) -> String {
    let text = decode_entities(&tag_re().replace_all(html, ""));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// DuckDuckGo wraps result links as `//duckduckgo.com/l/?uddg=<target>`;
/// this returns the target.
fn unwrap_link(href: &str) -> String {
    let href = decode_entities(href);
    let absolute = if href.starts_with("//") {
        format!("https:{href}")
    } else {
        href.clone()
    };
    if let Ok(u) = url::Url::parse(&absolute) {
        if let Some((_, target)) = u.query_pairs().find(|(k, _)| k == "uddg") {
            return target.into_owned();
        }
    }
    href
}

/// Reads the results of a DuckDuckGo HTML results page: each `result__a`
/// link (title and target) and the `result__snippet` after it. Ads (links
/// through `duckduckgo.com/y.js`) are skipped.
pub fn parse_duckduckgo_html(html: &str) -> Vec<SearchResult> {
    let mut results: Vec<SearchResult> = Vec::new();
    let mut last_was_ad = false;
    for cap in anchor_re().captures_iter(html) {
        let attrs = &cap[1];
        let mut class = String::new();
        let mut href = String::new();
        for a in attr_re().captures_iter(attrs) {
            match a[1].to_ascii_lowercase().as_str() {
                "class" => class = a[2].to_string(),
                "href" => href = a[2].to_string(),
                _ => {}
            }
        }
        let classes: Vec<&str> = class.split_whitespace().collect();
        if classes.contains(&"result__a") {
            last_was_ad = href.contains("duckduckgo.com/y.js");
            if !last_was_ad {
                results.push(SearchResult {
                    title: clean(&cap[2]),
                    url: unwrap_link(&href),
                    snippet: String::new(),
                });
            }
        } else if classes.contains(&"result__snippet") && !last_was_ad {
            if let Some(r) = results.last_mut() {
                if r.snippet.is_empty() {
                    r.snippet = clean(&cap[2]);
                }
            }
        }
    }
    results
}

/// `web_search`.
#[derive(Debug, Clone)]
pub struct WebSearch {
    provider: Arc<dyn SearchProvider>,
}

impl WebSearch {
    /// A search tool over `provider`.
    pub fn new(provider: Arc<dyn SearchProvider>) -> WebSearch {
        WebSearch { provider }
    }
}

#[async_trait::async_trait]
impl Tool for WebSearch {
    fn name(&self) -> &str {
        "web_search"
    }

    fn description(&self) -> &str {
        "Searches the web and returns result titles, URLs and snippets."
    }

    fn risk(&self) -> RiskLevel {
        RiskLevel::Network
    }

    fn schema(&self) -> Value {
        object_schema(
            json!({
                "query": { "type": "string", "description": "What to search for." },
                "max_results": { "type": "integer", "minimum": 1, "maximum": 30, "description": "How many results (default 8)." }
            }),
            &["query"],
        )
    }

    async fn call(&self, _ctx: &ToolContext, a: Value) -> Result<Observation, ToolError> {
        let query = args::string(&a, "query");
        if query.trim().is_empty() {
            return Ok(Observation::error("`query` is empty"));
        }
        let max = usize::try_from(args::u64(&a, "max_results").unwrap_or(8)).unwrap_or(8);
        let results = match self.provider.search(&query, max).await {
            Ok(r) => r,
            Err(e) => {
                return Ok(Observation::error(format!(
                    "{} search failed: {e}",
                    self.provider.name()
                )))
            }
        };
        if results.is_empty() {
            return Ok(Observation::ok(
                format!("no results for `{query}`"),
                json!({ "results": [] }),
            ));
        }
        let text = results
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}. {}\n   {}\n   {}", i + 1, r.title, r.url, r.snippet))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Observation::ok(text, json!({ "results": results })))
    }
}
