//! The models page's data: `GET /api/dashboard/models` (the catalog and the
//! host's status) and `GET /api/models/timeline` (loads, evictions and
//! their durations, newest last).
//!
//! The host publishes its events on a broadcast and keeps no history, so the
//! dashboard subscribes when the router is built and keeps the latest
//! [`CAPACITY`] load and unload events in a ring buffer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use troupe_host::{HostEvent, ModelHostHandle};

use super::super::error::ApiError;
use super::super::AppState;

/// Events kept.
const CAPACITY: usize = 500;

/// One event of the timeline.
#[derive(Debug, Clone, Serialize)]
struct TimelineEntry {
    /// When the dashboard saw it, in milliseconds since the Unix epoch.
    time_ms: u64,
    #[serde(flatten)]
    event: HostEvent,
}

/// The latest loads and unloads of the host.
#[derive(Debug, Default)]
pub(super) struct HostTimeline {
    // A std Mutex: it is held only to push or copy, never across an await.
    entries: Mutex<VecDeque<TimelineEntry>>,
}

impl HostTimeline {
    /// A timeline fed from `host`'s events from now on (when called outside
    /// a Tokio runtime, one that stays empty).
    pub(super) fn follow(host: &ModelHostHandle) -> Arc<HostTimeline> {
        let timeline = Arc::new(HostTimeline::default());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(feed(Arc::downgrade(&timeline), host.events()));
        }
        timeline
    }

    fn push(&self, event: HostEvent) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(TimelineEntry {
            time_ms: troupe_store::now_ms(),
            event,
        });
    }

    fn snapshot(&self) -> Vec<TimelineEntry> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// Whether the timeline keeps `event`: loads and unloads, not requests.
fn is_lifecycle(event: &HostEvent) -> bool {
    !matches!(
        event,
        HostEvent::RequestStarted { .. } | HostEvent::RequestFinished { .. }
    )
}

/// Ends when the host stops or the router holding the timeline is dropped.
async fn feed(timeline: Weak<HostTimeline>, mut events: broadcast::Receiver<HostEvent>) {
    loop {
        match events.recv().await {
            Ok(event) if is_lifecycle(&event) => match timeline.upgrade() {
                Some(timeline) => timeline.push(event),
                None => return,
            },
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// `GET /api/models/timeline`.
pub(super) async fn timeline(Extension(timeline): Extension<Arc<HostTimeline>>) -> Json<Value> {
    Json(json!({ "object": "list", "data": timeline.snapshot() }))
}

/// `GET /api/dashboard/models`: `{"catalog": [...], "status": {...}}`.
pub(super) async fn models(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let catalog = state.host.catalog().await?;
    let status = state.host.status().await?;
    Ok(Json(json!({ "catalog": catalog, "status": status })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_events() {
        let timeline = HostTimeline::default();
        for i in 0..CAPACITY + 3 {
            timeline.push(HostEvent::LoadStarted {
                model: format!("m{i}"),
                estimate_bytes: 1,
            });
        }
        let entries = timeline.snapshot();
        assert_eq!(entries.len(), CAPACITY);
        let first = serde_json::to_value(&entries[0]).unwrap();
        assert_eq!(first["model"], "m3");
        assert_eq!(first["event"], "load_started");
        assert!(is_lifecycle(&HostEvent::LoadFailed {
            model: "m".into(),
            error: "e".into()
        }));
        assert!(!is_lifecycle(&HostEvent::RequestStarted {
            model: "m".into()
        }));
    }
}
