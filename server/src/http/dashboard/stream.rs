//! `GET /api/dashboard/events`: everything the dashboard shows changing, as
//! one stream of server-sent events.
//!
//! ```text
//! retry: 2000
//! id: 18c2f3a-0
//! event: hello
//! data: {"boot":"18c2f3a"}
//!
//! id: 18c2f3a-1
//! event: journal
//! data: {"task_id":"t-…","seq":3,"time_ms":…,"event":{"type":"step_started",…}}
//! ```
//!
//! Events: `hello` first, then `journal`, `progress`, `ux` and `approval`
//! (the troupe's bus events) and `host` (the ModelHost's). Nothing is
//! replayed: a page answers every `hello` by reading what it shows afresh
//! from the JSON API, so a reconnect (after a network blip or a server
//! restart: `boot` then differs) leaves it complete. `resync` asks the same
//! when this client fell behind and the bus dropped events for it. Ids are
//! `BOOT-N` so that a client's `Last-Event-ID` names the process it came
//! from; `retry:` tells the browser to come back after two seconds.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use troupe_agents::runtime::TroupeEvent;
use troupe_host::HostEvent;

use super::super::error::ApiError;
use super::super::tasks::running;
use super::super::AppState;

/// How long the browser waits before reconnecting.
const RETRY: Duration = Duration::from_secs(2);

/// How often a quiet stream sends a comment line, so that proxies and the
/// browser keep a page open for hours without a byte otherwise.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Events queued for a client that reads slowly.
const QUEUE: usize = 256;

/// This process's id in event ids: its start time in hex milliseconds.
fn boot() -> &'static str {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(|| format!("{:x}", troupe_store::now_ms()))
}

/// The SSE handler.
pub(in crate::http) async fn events(
    State(state): State<Arc<AppState>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let running = running(&state)?;
    let bus = running.get().await?.subscribe();
    let host = state.host.events();
    let (tx, rx) = mpsc::channel(QUEUE);
    let forwarder = Forwarder {
        tx,
        next_id: AtomicU64::new(0),
    };
    tokio::spawn(forwarder.run(bus, host, running.stopping()));
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Feeds one client. Ends when the client has gone or the server is
/// stopping (so that a graceful shutdown does not wait on open pages).
struct Forwarder {
    tx: mpsc::Sender<Event>,
    next_id: AtomicU64,
}

impl Forwarder {
    async fn run(
        self,
        mut bus: broadcast::Receiver<TroupeEvent>,
        mut host: broadcast::Receiver<HostEvent>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let hello = self.event("hello", &json!({ "boot": boot() })).retry(RETRY);
        if self.tx.send(hello).await.is_err() {
            return;
        }
        let mut host_open = true;
        loop {
            let event = tokio::select! {
                () = self.tx.closed() => return,
                _ = stopping.wait_for(|stop| *stop) => return,
                received = bus.recv() => match received {
                    Ok(event) => self.troupe_event(&event),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        Some(self.event("resync", &json!({})))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                received = host.recv(), if host_open => match received {
                    Ok(event) => Some(self.event("host", &event)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        Some(self.event("resync", &json!({})))
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        host_open = false;
                        None
                    }
                },
            };
            if let Some(event) = event {
                if self.tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    }

    fn troupe_event(&self, event: &TroupeEvent) -> Option<Event> {
        let name = match event {
            TroupeEvent::Journal(entry) => return Some(self.event("journal", entry)),
            TroupeEvent::Progress { .. } => "progress",
            TroupeEvent::Ux { .. } => "ux",
            TroupeEvent::ApprovalPending { .. } => "approval",
            // A kind of event added later: the page has nothing to show for it.
            _ => return None,
        };
        Some(self.event(name, event))
    }

    fn event(&self, name: &'static str, data: &impl Serialize) -> Event {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = serde_json::to_string(data)
            .unwrap_or_else(|e| json!({ "error": e.to_string() }).to_string());
        Event::default()
            .id(format!("{}-{n}", boot()))
            .event(name)
            .data(data)
    }
}
