//! The login page. With an API key set, the person types it here once; the
//! answer is an HttpOnly, SameSite=Strict cookie holding a random session
//! token (never the key: a MAC under a key derived from it; see
//! `http::session`), which the browser then sends
//! on every request, `fetch` and `EventSource` alike (an `EventSource`
//! cannot send an `Authorization` header). HttpOnly keeps it from scripts;
//! SameSite=Strict keeps other sites from riding on it. Failed logins are
//! rate-limited per client address.

use std::sync::Arc;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::super::auth::constant_time_eq;
use super::super::AppState;
use super::{escape_html, html_response};

/// The cookie's name.
const SESSION_COOKIE: &str = "troupe_key";

/// The session token the request's cookie carries, if it has one.
pub(in crate::http) fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// Where to go after logging in.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Next {
    #[serde(default)]
    next: Option<String>,
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    key: String,
    #[serde(default)]
    next: Option<String>,
}

/// `GET /login`.
pub(super) async fn page(State(state): State<Arc<AppState>>, Query(next): Query<Next>) -> Response {
    if state.api_key.is_none() {
        return Redirect::to("/").into_response();
    }
    render(StatusCode::OK, None, &safe_next(next.next.as_deref()))
}

/// `POST /login`: the right key starts a session (its token in the
/// cookie) and goes on to `next`; a wrong one shows the form again (401);
/// too many wrong ones from one address get 429 for a while.
pub(super) async fn submit(
    State(state): State<Arc<AppState>>,
    extensions: axum::http::Extensions,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let Some(key) = state.api_key.as_deref() else {
        return Redirect::to(&next).into_response();
    };
    let addr = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if let Err(wait) = state.sessions.may_try(addr) {
        return render(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many wrong keys from this address; try again in {} s.",
                wait.as_secs().max(1)
            )),
            &next,
        );
    }
    if !constant_time_eq(form.key.trim().as_bytes(), key.as_bytes()) {
        state.sessions.failed(addr);
        return render(
            StatusCode::UNAUTHORIZED,
            Some("That is not this server's API key."),
            &next,
        );
    }
    let token = state.sessions.start(key);
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    with_cookie(Redirect::to(&next).into_response(), &cookie)
}

/// `POST /logout`: ends the session and forgets the cookie.
pub(super) async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers) {
        state.sessions.end(&token);
    }
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    with_cookie(Redirect::to("/login").into_response(), &cookie)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn render(status: StatusCode, error: Option<&str>, next: &str) -> Response {
    let error = error.map_or_else(String::new, |e| {
        format!(
            r#"<p class="error" id="login-error">{}</p>"#,
            escape_html(e)
        )
    });
    let html = include_str!("assets/login.html")
        .replace("{{error}}", &error)
        .replace("{{next}}", &escape_html(next));
    html_response(status, html)
}

/// `next` when it is a path on this server, else `/`: the login page must
/// not send people on to another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_carries_the_session_token() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; troupe_key=abc123"),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("abc123"));
        headers.insert(header::COOKIE, HeaderValue::from_static("troupe_key="));
        assert_eq!(session_token(&headers), None);
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/tasks/t-1")), "/tasks/t-1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
