//! The login page. With an API key set, the person types it here once; the
//! answer is an HttpOnly, SameSite=Strict session cookie holding it, which
//! the browser then sends on every request, `fetch` and `EventSource` alike
//! (an `EventSource` cannot send an `Authorization` header). HttpOnly keeps
//! it from scripts; SameSite=Strict keeps other sites from riding on it.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::super::auth::constant_time_eq;
use super::super::AppState;
use super::{escape_html, html_response};

/// The cookie's name.
const SESSION_COOKIE: &str = "troupe_key";

/// The key carried by the request's session cookie, if it has one.
pub(in crate::http) fn session_key(headers: &HeaderMap) -> Option<Vec<u8>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .and_then(|(_, value)| hex_decode(value))
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

/// `POST /login`: the right key sets the cookie and goes on to `next`; a
/// wrong one shows the form again (401).
pub(super) async fn submit(
    State(state): State<Arc<AppState>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let Some(key) = state.api_key.as_deref() else {
        return Redirect::to(&next).into_response();
    };
    if !constant_time_eq(form.key.trim().as_bytes(), key.as_bytes()) {
        return render(
            StatusCode::UNAUTHORIZED,
            Some("That is not this server's API key."),
            &next,
        );
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        hex_encode(key.as_bytes())
    );
    with_cookie(Redirect::to(&next).into_response(), &cookie)
}

/// `POST /logout`: forgets the cookie.
pub(super) async fn logout() -> Response {
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

/// Hex, so that any key fits in a cookie value.
fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_round_trips_any_key() {
        let key = "k; é=\"x\"";
        let mut headers = HeaderMap::new();
        let cookie = format!("other=1; {SESSION_COOKIE}={}", hex_encode(key.as_bytes()));
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert_eq!(session_key(&headers).as_deref(), Some(key.as_bytes()));
        headers.insert(header::COOKIE, HeaderValue::from_static("troupe_key=zz"));
        assert_eq!(session_key(&headers), None);
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
