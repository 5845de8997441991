//! What keeps a web page from using the API through the user's browser
//! (cross-site request forgery, DNS rebinding), checked before
//! authentication:
//!
//! - without a key, `Host` must be a loopback name (`localhost`,
//!   `127.0.0.1`, `[::1]`), the address the server is bound to, or one of
//!   `[serve] allowed_hosts`: a page whose own name was rebound to 127.0.0.1
//!   sends its own name;
//! - a request that changes state (any method but GET, HEAD and OPTIONS)
//!   must come from this server's own pages when a browser sends it:
//!   `Sec-Fetch-Site` `same-origin` (or `none`, typed by the person), or
//!   without that header an `Origin` naming this server;
//! - without a key, a request with a body must say `application/json`
//!   (except the dashboard's login form and `/mcp`, which checks its own):
//!   a `text/plain` body is what a page can send without a preflight.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};

/// The host part of a `Host` or `Origin` authority, lower case, without the
/// port (an IPv6 literal keeps its brackets).
fn host_of(authority: &str) -> String {
    let authority = authority.trim().to_ascii_lowercase();
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => authority[..=end].to_string(),
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
        _ => authority,
    }
}

fn is_loopback_name(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `host` (from [`host_of`]) names this server.
fn known_host(state: &AppState, host: &str) -> bool {
    is_loopback_name(host)
        || state.allowed_hosts.iter().any(|h| h == host)
        || state.bound_hosts.iter().any(|h| h == host)
}

fn refuse(path: &str, status: StatusCode, message: String, code: &'static str) -> Response {
    ApiError {
        status,
        message,
        kind: "invalid_request_error",
        param: None,
        code: Some(code),
    }
    .into_response_for(path)
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The middleware (see the module documentation).
pub(super) async fn check_site(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let headers = request.headers();
    let keyless = state.api_key.is_none();
    let host = header_text(headers, header::HOST)
        .map(host_of)
        .or_else(|| request.uri().host().map(host_of));
    if keyless {
        match &host {
            Some(host) if known_host(&state, host) => {}
            Some(host) => {
                return refuse(
                    &path,
                    StatusCode::FORBIDDEN,
                    format!(
                        "the Host `{host}` is not this server's: without an API key troupe answers only to loopback names and [serve] allowed_hosts"
                    ),
                    "host_not_allowed",
                )
            }
            None => {
                return refuse(
                    &path,
                    StatusCode::BAD_REQUEST,
                    "the request names no Host".to_string(),
                    "host_missing",
                )
            }
        }
    }
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes_state {
        // A browser says where a request comes from: `Sec-Fetch-Site`
        // (every current browser), else `Origin`. The dashboard's own login
        // form arrives with `Origin: null` (its pages send no referrer) and
        // `Sec-Fetch-Site: same-origin`; a sandboxed frame elsewhere also
        // sends `Origin: null`, but `cross-site`.
        let origin = header_text(headers, header::ORIGIN);
        let cross = match header_text(headers, header::HeaderName::from_static("sec-fetch-site")) {
            Some("same-origin") | Some("none") => false,
            Some(_) => true,
            None => origin.is_some_and(|origin| {
                !origin
                    .split_once("://")
                    .map(|(_, authority)| host_of(authority))
                    .is_some_and(|o| {
                        Some(&o) == host.as_ref() || (keyless && known_host(&state, &o))
                    })
            }),
        };
        if cross {
            return refuse(
                &path,
                StatusCode::FORBIDDEN,
                format!(
                    "a request from the page at `{}` may not change anything here (cross-site)",
                    origin.unwrap_or("another site")
                ),
                "cross_site",
            );
        }
    }
    let form_route = path == "/login" || path == "/logout" || path.starts_with("/mcp");
    if keyless && changes_state && !form_route {
        let has_body = headers.contains_key(header::CONTENT_TYPE)
            || header_text(headers, header::CONTENT_LENGTH).is_some_and(|n| n.trim() != "0")
            || headers.contains_key(header::TRANSFER_ENCODING);
        let json = header_text(headers, header::CONTENT_TYPE).is_some_and(|t| {
            let t = t
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        });
        if has_body && !json {
            return refuse(
                &path,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "{path} takes a JSON body: send `Content-Type: application/json` (got `{}`)",
                    header_text(headers, header::CONTENT_TYPE).unwrap_or("none")
                ),
                "unsupported_media_type",
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_drops_ports_and_case() {
        assert_eq!(host_of("LocalHost:8080"), "localhost");
        assert_eq!(host_of("[::1]:8080"), "[::1]");
        assert_eq!(host_of("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_of("evil.example:80"), "evil.example");
    }

    #[test]
    fn loopback_names() {
        for ok in [
            "localhost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "app.localhost",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_name(no), "{no}");
        }
    }
}
