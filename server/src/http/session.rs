//! The dashboard's sessions and its login's rate limit.
//!
//! Logging in with the API key gives the browser a session token, not the
//! key: an expiry time, a random nonce and a BLAKE3 MAC of both under a key
//! derived from the API key. A leaked cookie (a proxy log, a shared
//! profile) is worth only that session, ends at logout or after
//! [`SESSION_TTL`], and never tells anyone the key; since the server needs
//! no table of sessions, an open page survives a restart of `troupe serve`
//! with the same key, and changing the key ends every session. A logout
//! is remembered until that token would have expired, in this server run.
//! Failed logins are limited per client address: after
//! [`MAX_FAILURES`] within [`FAILURE_WINDOW`] that address gets 429 until
//! the oldest failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a session lasts.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins one address may make within [`FAILURE_WINDOW`].
pub(super) const MAX_FAILURES: usize = 5;
/// The window failed logins are counted in.
pub(super) const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Most logged-out tokens remembered.
const MAX_ENDED: usize = 4096;
/// Most addresses whose failures are remembered.
const MAX_TRACKED: usize = 4096;

/// Ended sessions and recent failed logins. Shared by the routes.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Tokens logged out → their expiry (unix seconds).
    ended: HashMap<String, u64>,
    /// Address → times of its recent failures.
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(api_key: &str, expiry: u64, nonce: &[u8]) -> blake3::Hash {
    let key = blake3::derive_key("troupe dashboard session v1", api_key.as_bytes());
    let mut hasher = blake3::Hasher::new_keyed(&key);
    hasher.update(&expiry.to_be_bytes());
    hasher.update(nonce);
    hasher.finalize()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

impl Sessions {
    /// Starts a session for the holder of `api_key`; its token for the
    /// cookie (112 hex digits).
    pub fn start(&self, api_key: &str) -> String {
        let expiry = unix_now() + SESSION_TTL.as_secs();
        let nonce: [u8; 16] = rand::random();
        let tag = mac(api_key, expiry, &nonce);
        let mut bytes = expiry.to_be_bytes().to_vec();
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(tag.as_bytes());
        hex(&bytes)
    }

    /// Whether `token` is a session of `api_key` that has neither expired
    /// nor been logged out.
    pub fn is_open(&self, api_key: &str, token: &str) -> bool {
        let Some(bytes) = unhex(token) else {
            return false;
        };
        if bytes.len() != 8 + 16 + 32 {
            return false;
        }
        let expiry = u64::from_be_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        if expiry <= unix_now() {
            return false;
        }
        let Ok(given): Result<[u8; 32], _> = bytes[24..].try_into() else {
            return false;
        };
        // blake3::Hash compares in constant time.
        if mac(api_key, expiry, &bytes[8..24]) != blake3::Hash::from(given) {
            return false;
        }
        self.inner
            .lock()
            .is_ok_and(|inner| !inner.ended.contains_key(token))
    }

    /// Ends the session `token` (logout).
    pub fn end(&self, token: &str) {
        let now = unix_now();
        let expiry = unhex(token)
            .filter(|b| b.len() >= 8)
            .map_or(now + SESSION_TTL.as_secs(), |b| {
                u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]))
            });
        if let Ok(mut inner) = self.inner.lock() {
            inner.ended.retain(|_, until| *until > now);
            if inner.ended.len() < MAX_ENDED {
                inner.ended.insert(token.to_string(), expiry);
            }
        }
    }

    /// `Err(wait)` when `addr` has failed too often lately.
    pub fn may_try(&self, addr: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(());
        };
        let Some(times) = inner.failures.get_mut(&addr) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            times.pop_front();
        }
        if times.len() < MAX_FAILURES {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        Err(FAILURE_WINDOW.saturating_sub(now.duration_since(oldest)))
    }

    /// Records a failed login from `addr`.
    pub fn failed(&self, addr: IpAddr) {
        let now = Instant::now();
        if let Ok(mut inner) = self.inner.lock() {
            if inner.failures.len() >= MAX_TRACKED && !inner.failures.contains_key(&addr) {
                inner.failures.retain(|_, times| {
                    times
                        .back()
                        .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
                });
                if inner.failures.len() >= MAX_TRACKED {
                    return;
                }
            }
            inner.failures.entry(addr).or_default().push_back(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_open_until_it_ends() {
        let sessions = Sessions::default();
        let token = sessions.start("the key");
        assert_eq!(token.len(), 112);
        assert!(!token.contains(&hex(b"the key")));
        assert!(sessions.is_open("the key", &token));
        // Another server run with the same key accepts it; another key not.
        assert!(Sessions::default().is_open("the key", &token));
        assert!(!sessions.is_open("another key", &token));
        assert!(!sessions.is_open("the key", "not-a-token"));
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        assert!(!sessions.is_open("the key", &String::from_utf8(forged).unwrap()));
        assert_ne!(sessions.start("the key"), token);
        sessions.end(&token);
        assert!(!sessions.is_open("the key", &token));
    }

    #[test]
    fn failures_are_limited_per_address() {
        let sessions = Sessions::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(sessions.may_try(a).is_ok());
            sessions.failed(a);
        }
        let wait = sessions.may_try(a).expect_err("limited");
        assert!(wait <= FAILURE_WINDOW && wait > Duration::ZERO);
        assert!(sessions.may_try(b).is_ok());
    }
}
