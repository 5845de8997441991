//! The web dashboard of `troupe serve`: server-rendered page shells with one
//! small vanilla script per page, every asset compiled into the binary.
//!
//! The server renders each page's skeleton (layout, navigation, headings,
//! forms); the page's script fills it from the JSON API and keeps it current
//! from one server-sent event stream. Dynamic text reaches the DOM only
//! through `textContent`, and what the server puts in a template is escaped
//! by [`escape_html`]; a Content-Security-Policy that allows no inline script
//! backs both up.
//!
//! # Layout
//! - this file: the routes, the page shells and the assets.
//! - `login`: the login page and the session cookie the auth middleware
//!   accepts besides the bearer header (`EventSource` cannot send headers).
//! - `stream`: `GET /api/dashboard/events`, every troupe and host event.
//! - `workspace`: a task workspace's files, checkpoints and their diffs.
//! - `timeline`: the ModelHost's loads and evictions, kept in a ring buffer.
//! - `learner`: the outcome table and the model choices.
//! - `assets/`: HTML templates, CSS and JavaScript.
//!
//! Pages: `/` and `/tasks`, `/tasks/{id}`, `/chat`, `/approvals`, `/models`,
//! `/learner`, `/login`. JSON: `/api/dashboard/models`,
//! `/api/models/timeline`, `/api/learner`, `/api/conversations/{id}`,
//! `/api/tasks/{id}/files[/{path}]`, `/api/tasks/{id}/checkpoints`,
//! `/api/tasks/{id}/checkpoints/{commit}/diff`.

mod learner;
mod login;
mod stream;
mod timeline;
mod workspace;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use troupe_agents::runtime::AgentError;

use super::error::ApiError;
use super::tasks::running;
use super::AppState;

pub(super) use login::session_token;

/// What the browser may load and run: only troupe's own files, no inline
/// script, so that text that slipped past escaping still cannot run.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The dashboard's routes. Subscribes to the host's events now, so that the
/// models page's timeline covers everything from the server's start.
pub(super) fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let timeline = timeline::HostTimeline::follow(&state.host);
    let tasks = fixed_page(
        "Tasks",
        "tasks",
        include_str!("assets/tasks.html"),
        "tasks.js",
    );
    Router::new()
        .route("/", get(tasks.clone()))
        .route("/tasks", get(tasks))
        .route("/tasks/{id}", get(task_page))
        .route("/chat", get(chat_page))
        .route(
            "/approvals",
            get(fixed_page(
                "Approvals",
                "approvals",
                include_str!("assets/approvals.html"),
                "approvals.js",
            )),
        )
        .route("/models", get(models_page_or_list))
        .route(
            "/learner",
            get(fixed_page(
                "Learner",
                "learner",
                include_str!("assets/learner.html"),
                "learner.js",
            )),
        )
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/assets/{name}", get(asset))
        .route("/api/dashboard/events", get(stream::events))
        .route("/api/dashboard/models", get(timeline::models))
        .route("/api/models/timeline", get(timeline::timeline))
        .route("/api/learner", get(learner::learner))
        .route("/api/conversations/{id}", get(conversation))
        .route("/api/tasks/{id}/files", get(workspace::files))
        .route("/api/tasks/{id}/files/{*path}", get(workspace::file))
        .route("/api/tasks/{id}/checkpoints", get(workspace::checkpoints))
        .route(
            "/api/tasks/{id}/checkpoints/{commit}/diff",
            get(workspace::diff),
        )
        .layer(Extension(timeline))
}

/// Whether `path` is served without the key: the login page and the static
/// assets (which hold nothing secret; the login page needs its stylesheet).
pub(super) fn is_public(path: &str) -> bool {
    path == "/login"
        || path
            .strip_prefix("/assets/")
            .is_some_and(|name| !name.contains('/'))
}

/// `text` with the five characters that mean something in HTML escaped, for
/// text content and quoted attribute values.
pub(super) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One page of the app.
struct Page {
    /// The `<title>` and the navigation entry to highlight.
    title: &'static str,
    name: &'static str,
    /// The page's HTML inside `<main>`, already escaped where it holds data.
    body: String,
    /// The page's own script under `/assets/`.
    script: &'static str,
}

impl Page {
    fn render(self, state: &AppState) -> Response {
        // Without a key there is no session to end.
        let logout = if state.api_key.is_some() {
            r#"<form method="post" action="/logout" class="logout"><button type="submit">Log out</button></form>"#
        } else {
            ""
        };
        let html = include_str!("assets/layout.html")
            .replace("{{title}}", self.title)
            .replace("{{page}}", self.name)
            .replace("{{script}}", self.script)
            .replace("{{logout}}", logout)
            .replace("{{body}}", &self.body);
        html_response(StatusCode::OK, html)
    }
}

/// An HTML response with the dashboard's security headers.
pub(super) fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page whose shell has nothing to fill in: its script does the rest.
fn fixed_page(
    title: &'static str,
    name: &'static str,
    body: &'static str,
    script: &'static str,
) -> impl Fn(State<Arc<AppState>>) -> std::future::Ready<Response> + Clone {
    move |State(state): State<Arc<AppState>>| {
        std::future::ready(
            Page {
                title,
                name,
                body: body.to_string(),
                script,
            }
            .render(&state),
        )
    }
}

/// `GET /models`: the models page for a browser (it asks for HTML), the
/// OpenAI model list for an API client (llama-server answers `/models`
/// without the `/v1` prefix).
async fn models_page_or_list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if !wants_html {
        return super::models::list(State(state)).await.into_response();
    }
    Page {
        title: "Models",
        name: "models",
        body: include_str!("assets/models.html").to_string(),
        script: "models.js",
    }
    .render(&state)
}

async fn task_page(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    Page {
        title: "Task",
        name: "tasks",
        body: include_str!("assets/task.html").replace("{{id}}", &escape_html(&id)),
        script: "task.js",
    }
    .render(&state)
}

async fn chat_page(State(state): State<Arc<AppState>>) -> Response {
    Page {
        title: "Chat",
        name: "chat",
        body: include_str!("assets/chat.html").replace(
            "{{conversation}}",
            &escape_html(super::DEFAULT_CONVERSATION),
        ),
        script: "chat.js",
    }
    .render(&state)
}

/// `GET /assets/{name}`: the compiled-in static files.
async fn asset(Path(name): Path<String>) -> Response {
    let (kind, body): (&str, &'static str) = match name.as_str() {
        "style.css" => ("text/css", include_str!("assets/style.css")),
        "app.js" => ("text/javascript", include_str!("assets/app.js")),
        "tasks.js" => ("text/javascript", include_str!("assets/tasks.js")),
        "task.js" => ("text/javascript", include_str!("assets/task.js")),
        "chat.js" => ("text/javascript", include_str!("assets/chat.js")),
        "approvals.js" => ("text/javascript", include_str!("assets/approvals.js")),
        "models.js" => ("text/javascript", include_str!("assets/models.js")),
        "learner.js" => ("text/javascript", include_str!("assets/learner.js")),
        "favicon.svg" => ("image/svg+xml", include_str!("assets/favicon.svg")),
        _ => {
            return ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("no asset named {name:?}"),
                kind: "invalid_request_error",
                param: None,
                code: Some("not_found"),
            }
            .into_response()
        }
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!("{kind}; charset=utf-8"))
            .unwrap_or(HeaderValue::from_static("text/plain")),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Revalidated on every load: a new binary's assets show at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /api/conversations/{id}`: a conversation with the UX, in order.
async fn conversation(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = running(&state)?.get().await?.store().clone();
    let messages = store.conversation(&id).await.map_err(AgentError::from)?;
    Ok(Json(json!({ "object": "list", "data": messages })))
}

#[cfg(test)]
mod tests {
    use super::{escape_html, is_public};

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn only_the_login_page_and_assets_are_public() {
        assert!(is_public("/login"));
        assert!(is_public("/assets/style.css"));
        assert!(!is_public("/"));
        assert!(!is_public("/tasks"));
        assert!(!is_public("/api/dashboard/events"));
        assert!(!is_public("/login/../tasks"));
        assert!(!is_public("/assets/../api/tasks"));
    }
}
