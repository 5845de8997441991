//! Bearer-token authentication: with an API key configured, every route but
//! `/health`, the dashboard's login page and its static assets needs
//! `Authorization: Bearer <key>`, or the dashboard's session cookie (a
//! token `POST /login` gave for the key). A browser asking for a page
//! without either is sent to the login page; every other request gets 401.
//! The request then carries a [`Caller`]: which door it came through, which
//! is what the journal records as who approved a tool call.
//!
//! The comparison takes the same time wherever the first differing byte is,
//! so the key cannot be guessed byte by byte from response times.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::dashboard;
use super::error::ApiError;
use super::AppState;

/// How a request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Caller(pub troupe_store::Approver);

/// Middleware refusing requests without the configured key (401).
pub(super) async fn require_api_key(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(key) = state.api_key.as_deref() else {
        request
            .extensions_mut()
            .insert(Caller(troupe_store::Approver::LocalHttp));
        return next.run(request).await;
    };
    let path = request.uri().path();
    if path == "/health" || dashboard::is_public(path) {
        return next.run(request).await;
    }
    if dashboard::session_token(request.headers()).is_some_and(|t| state.sessions.is_open(key, &t))
    {
        request
            .extensions_mut()
            .insert(Caller(troupe_store::Approver::Dashboard));
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let error = match given {
        None => ApiError::unauthorized(
            "this server needs an API key: send `Authorization: Bearer <key>`",
        ),
        Some(given) if constant_time_eq(given.as_bytes(), key.as_bytes()) => {
            request
                .extensions_mut()
                .insert(Caller(troupe_store::Approver::ApiKey));
            return next.run(request).await;
        }
        Some(_) => ApiError::unauthorized("incorrect API key"),
    };
    if wants_page(&request) {
        let next = percent_encode(request.uri().path());
        return Redirect::to(&format!("/login?next={next}")).into_response();
    }
    let mut response = error.into_response_for(request.uri().path());
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Whether a browser is navigating to a page (rather than a script calling
/// the API): it is then better served by the login page than by a 401.
fn wants_page(request: &Request) -> bool {
    request.method() == Method::GET
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
}

/// `text` with everything but unreserved characters and `/` percent-encoded,
/// to travel as a query value.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether `a == b`, in a time that depends only on the lengths.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, percent_encode};

    #[test]
    fn encodes_the_page_to_return_to() {
        assert_eq!(percent_encode("/tasks/t-1"), "/tasks/t-1");
        assert_eq!(percent_encode("/a b&c"), "/a%20b%26c");
    }

    #[test]
    fn compares_bytes() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
