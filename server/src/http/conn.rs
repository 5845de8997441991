//! The accept loop: axum's router on hyper, with what `axum::serve` lacks
//! against idle or slow clients.
//!
//! - A cap on open connections (at most [`MAX_CONNECTIONS`], and below the
//!   open-file limit, which is raised to its hard limit first): past it,
//!   the loop waits for a connection to close instead of running out of
//!   descriptors.
//! - A connection must send its first bytes within [`FIRST_BYTE_TIMEOUT`]
//!   and a request's headers within [`HEADER_READ_TIMEOUT`], so thousands
//!   of idle or half-open connections are closed in seconds and `/health`
//!   keeps answering.
//! - Graceful shutdown: when `shutdown` resolves, no new connection is
//!   accepted and open ones (streams included) are waited for.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Most connections open at once.
pub(super) const MAX_CONNECTIONS: usize = 8192;
/// Descriptors kept free for everything else troupe opens (models, redb,
/// workspaces, tool pipes).
const RESERVED_FILES: u64 = 256;
/// How long a new connection may stay silent.
pub(super) const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request's headers may take to arrive (HTTP/1).
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Raises the soft open-file limit to the hard one and returns how many
/// connections fit under it.
fn connection_cap() -> usize {
    // SAFETY: getrlimit/setrlimit read and write the struct passed.
    let soft = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 512;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    let fit = soft.saturating_sub(RESERVED_FILES).max(64);
    usize::try_from(fit)
        .unwrap_or(MAX_CONNECTIONS)
        .min(MAX_CONNECTIONS)
}

/// Serves `app` on `listener` until `shutdown` resolves (see the module
/// documentation).
pub(super) async fn serve_connections(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = connection_cap();
    tracing::debug!(cap, "connection cap");
    let permits = std::sync::Arc::new(Semaphore::new(cap));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut warned_full = false;
    tokio::pin!(shutdown);
    loop {
        let permit = match std::sync::Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !warned_full {
                    tracing::warn!(cap, "connection cap reached; new connections wait");
                    warned_full = true;
                }
                tokio::select! {
                    permit = std::sync::Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE, ECONNABORTED, …: transient; axum::serve does the same.
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer's address for the routes that need it (the login's
        // rate limit), as axum's `ConnectInfo`.
        let app = app.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(app.clone(), request)
            },
        ));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            // hyper's automatic protocol detection waits for the first
            // bytes without a limit: a silent connection ends here.
            // (`peek` waits for a byte; `readable` may report a fresh
            // socket ready before anything arrived.)
            let mut first = [0u8; 1];
            match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let _ = watcher.watch(connection.into_owned()).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
