//! `GET /api/tasks/{id}/events`: one task's journal as server-sent events,
//! the stored entries first, then the live ones, ending after `finished`.
//!
//! ```text
//! id: 3
//! event: step_started
//! data: {"task_id":"t-…","seq":3,"time_ms":…,"event":{"type":"step_started",…}}
//! ```
//!
//! Journal entries carry their `seq` as the event id, so a client that
//! reconnects with `Last-Event-ID: 3` (or asks `?from=4`) gets entry 4 on.
//! Live progress and approval requests of the task come as `event:
//! progress` and `event: approval` with the bus event as data and no id:
//! they are not journaled and not replayed. A comment line every 15 s
//! keeps proxies from closing a quiet stream.
//!
//! The stream subscribes to the bus before it reads the store, so nothing
//! appended in between is lost; an entry seen both ways is sent once (by
//! seq). When the bus drops events for a slow client, the gap is read back
//! from the store.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream};
use tokio::sync::{broadcast, mpsc, watch};
use troupe_agents::runtime::{AgentError, TroupeEvent};
use troupe_store::{JournalEntry, Store, TaskEvent};

use super::error::ApiError;
use super::tasks::running;
use super::AppState;

/// How often a quiet stream sends a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Events queued for a client that reads slowly before the follower waits.
const QUEUE: usize = 64;

/// The SSE handler.
pub(super) async fn events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let from = first_seq(query.as_deref(), &headers)?;
    let running = running(&state)?;
    let (bus, store) = {
        let troupe = running.get().await?;
        // Subscribe first: an entry appended while the store is read below
        // then still arrives on the bus.
        (troupe.subscribe(), troupe.store().clone())
    };
    if store.task(&id).await.map_err(AgentError::from)?.is_none() {
        return Err(AgentError::UnknownTask(id.into()).into());
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let follower = Follower {
        id,
        next: from,
        store,
        tx,
    };
    tokio::spawn(follower.run(bus, running.stopping()));
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The first journal seq to send: after `Last-Event-ID`, else `?from=N`,
/// else 0; whichever is later when both are given.
fn first_seq(query: Option<&str>, headers: &HeaderMap) -> Result<u64, ApiError> {
    let mut from = 0;
    for pair in query.unwrap_or("").split('&') {
        if let Some(value) = pair.strip_prefix("from=") {
            from = value.parse().map_err(|_| {
                ApiError::invalid(
                    Some("from"),
                    format!("`from` is not a journal seq: `{value}`"),
                )
            })?;
        }
    }
    if let Some(value) = headers.get("last-event-id") {
        let last = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::invalid(None, "the Last-Event-ID header is not a journal seq")
            })?;
        from = from.max(last.saturating_add(1));
    }
    Ok(from)
}

/// Whether the stream goes on after a send.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    More,
    End,
}

/// Feeds one client's stream. Ends when the task has finished, the client
/// has gone, or the server is stopping; dropping `tx` ends the response.
struct Follower {
    id: String,
    /// The seq of the next journal entry to send.
    next: u64,
    store: Store,
    tx: mpsc::Sender<Event>,
}

impl Follower {
    async fn run(
        mut self,
        mut bus: broadcast::Receiver<TroupeEvent>,
        mut stopping: watch::Receiver<bool>,
    ) {
        if self.send_stored().await == Flow::End {
            return;
        }
        loop {
            let received = tokio::select! {
                () = self.tx.closed() => return,
                _ = stopping.wait_for(|stop| *stop) => return,
                received = bus.recv() => received,
            };
            let flow = match received {
                Ok(TroupeEvent::Journal(entry)) if entry.task_id == self.id => {
                    self.on_entry(entry).await
                }
                Ok(event @ TroupeEvent::Progress { .. }) if self.concerns(&event) => {
                    self.send(bus_event("progress", &event)).await
                }
                Ok(event @ TroupeEvent::ApprovalPending { .. }) if self.concerns(&event) => {
                    self.send(bus_event("approval", &event)).await
                }
                Ok(_) => Flow::More,
                // The bus dropped events for this slow client: the journal
                // in the store has every entry.
                Err(broadcast::error::RecvError::Lagged(_)) => self.send_stored().await,
                Err(broadcast::error::RecvError::Closed) => Flow::End,
            };
            if flow == Flow::End {
                return;
            }
        }
    }

    fn concerns(&self, event: &TroupeEvent) -> bool {
        event.task_id() == Some(self.id.as_str())
    }

    /// A live entry: sent unless it was already; a gap before it is read
    /// from the store first.
    async fn on_entry(&mut self, entry: JournalEntry) -> Flow {
        if entry.seq > self.next && self.send_stored().await == Flow::End {
            return Flow::End;
        }
        if entry.seq < self.next {
            return Flow::More;
        }
        self.send_entry(&entry).await
    }

    /// Every stored entry from `next` on.
    async fn send_stored(&mut self) -> Flow {
        let entries = match self.store.journal(&self.id, self.next).await {
            Ok(entries) => entries,
            Err(error) => {
                let error = ApiError::from(AgentError::from(error));
                let _ = self
                    .tx
                    .send(
                        Event::default()
                            .event("error")
                            .data(error.body().to_string()),
                    )
                    .await;
                return Flow::End;
            }
        };
        for entry in entries {
            if entry.seq < self.next {
                continue;
            }
            if self.send_entry(&entry).await == Flow::End {
                return Flow::End;
            }
        }
        Flow::More
    }

    async fn send_entry(&mut self, entry: &JournalEntry) -> Flow {
        let data = serde_json::to_string(entry).unwrap_or_else(|e| {
            serde_json::json!({ "task_id": entry.task_id, "seq": entry.seq, "error": e.to_string() })
                .to_string()
        });
        let event = Event::default()
            .id(entry.seq.to_string())
            .event(entry.event.kind())
            .data(data);
        self.next = entry.seq + 1;
        if self.send(event).await == Flow::End {
            return Flow::End;
        }
        if matches!(entry.event, TaskEvent::Finished { .. }) {
            Flow::End
        } else {
            Flow::More
        }
    }

    async fn send(&self, event: Event) -> Flow {
        match self.tx.send(event).await {
            Ok(()) => Flow::More,
            Err(_) => Flow::End,
        }
    }
}

/// A bus event that is not journaled, without an id.
fn bus_event(name: &'static str, event: &TroupeEvent) -> Event {
    let data = serde_json::to_string(event).unwrap_or_else(|e| e.to_string());
    Event::default().event(name).data(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn resumes_after_the_last_event_id() {
        let mut headers = HeaderMap::new();
        assert_eq!(first_seq(None, &headers).unwrap(), 0);
        assert_eq!(first_seq(Some("from=5"), &headers).unwrap(), 5);
        headers.insert("last-event-id", HeaderValue::from_static("7"));
        assert_eq!(first_seq(None, &headers).unwrap(), 8);
        assert_eq!(first_seq(Some("from=2"), &headers).unwrap(), 8);
        assert!(first_seq(Some("from=x"), &HeaderMap::new()).is_err());
        headers.insert("last-event-id", HeaderValue::from_static("seven"));
        assert!(first_seq(None, &headers).is_err());
    }
}
