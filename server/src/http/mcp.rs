//! `/mcp`: troupe's MCP server (see [`crate::mcp`]) over streamable HTTP,
//! mounted when the server runs a troupe, behind the same bearer key as
//! every other route.

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::sync::RwLockReadGuard;

use super::tasks::RunningTroupe;
use crate::mcp::{TroupeAccess, TroupeMcp};
use troupe_supervision::Troupe;

impl TroupeAccess for RunningTroupe {
    type Guard<'a> = RwLockReadGuard<'a, Troupe>;

    async fn troupe(&self) -> Option<Self::Guard<'_>> {
        self.get().await.ok()
    }
}

/// The MCP service for `running`. Without an API key, rmcp's default
/// check of the `Host` header (loopback names only) guards against DNS
/// rebinding; with one, the key does, and any host name may be used.
pub(super) fn service(
    running: RunningTroupe,
    api_key: bool,
) -> StreamableHttpService<TroupeMcp<RunningTroupe>, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default();
    if api_key {
        config = config.disable_allowed_hosts();
    }
    // Open event streams would hold the graceful shutdown forever: they end
    // when the troupe stops.
    let cancel = config.cancellation_token.clone();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let mut stopping = running.stopping();
        runtime.spawn(async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
            cancel.cancel();
        });
    }
    StreamableHttpService::new(
        move || Ok(TroupeMcp::new(running.clone())),
        Default::default(),
        config,
    )
}
