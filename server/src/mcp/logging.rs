//! MCP logging: `logging/setLevel` and `notifications/message`. The 2025
//! MCP spec (which troupe's clients and the conformance suite speak) has
//! it; rmcp marks its types deprecated by SEP-2577, hence the `allow`.
#![allow(deprecated)]

use std::sync::{Arc, Mutex, PoisonError};

use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, ServerCapabilities};
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use serde_json::{json, Value};

/// What the server offers: tools, and logging.
pub(super) fn capabilities() -> ServerCapabilities {
    ServerCapabilities::builder()
        .enable_tools()
        .enable_logging()
        .build()
}

/// How bad a log message is, least severe first (RFC 5424's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Severity {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl Severity {
    fn of(level: LoggingLevel) -> Severity {
        match level {
            LoggingLevel::Debug => Severity::Debug,
            LoggingLevel::Info => Severity::Info,
            LoggingLevel::Notice => Severity::Notice,
            LoggingLevel::Warning => Severity::Warning,
            LoggingLevel::Error => Severity::Error,
            LoggingLevel::Critical => Severity::Critical,
            LoggingLevel::Alert => Severity::Alert,
            LoggingLevel::Emergency => Severity::Emergency,
        }
    }

    fn level(self) -> LoggingLevel {
        match self {
            Severity::Debug => LoggingLevel::Debug,
            Severity::Info => LoggingLevel::Info,
            Severity::Notice => LoggingLevel::Notice,
            Severity::Warning => LoggingLevel::Warning,
            Severity::Error => LoggingLevel::Error,
            Severity::Critical => LoggingLevel::Critical,
            Severity::Alert => LoggingLevel::Alert,
            Severity::Emergency => LoggingLevel::Emergency,
        }
    }
}

/// The least severe level one client asked to hear; none until it asks, so
/// a client that never calls `logging/setLevel` gets no messages.
#[derive(Debug, Clone, Default)]
pub(super) struct ClientLog {
    wanted: Arc<Mutex<Option<Severity>>>,
}

impl ClientLog {
    /// `logging/setLevel`: from now on, messages at `level` or worse; the
    /// change itself is told at info (so only to a client that hears info).
    pub(super) async fn set(&self, context: &RequestContext<RoleServer>, level: LoggingLevel) {
        let severity = Severity::of(level);
        *self.wanted.lock().unwrap_or_else(PoisonError::into_inner) = Some(severity);
        let data = json!({ "message": "log level set", "level": level });
        self.send(context, Severity::Info, data).await;
    }

    /// Sends `data` as a `notifications/message` when the client asked for
    /// `severity` or less severe.
    pub(super) async fn send(
        &self,
        context: &RequestContext<RoleServer>,
        severity: Severity,
        data: Value,
    ) {
        let wanted = *self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        if wanted.is_some_and(|w| severity >= w) {
            let message =
                LoggingMessageNotificationParam::new(severity.level(), data).with_logger("troupe");
            if let Err(error) = context.peer.notify_logging_message(message).await {
                tracing::debug!(%error, "a log message did not reach the MCP client");
            }
        }
    }
}
