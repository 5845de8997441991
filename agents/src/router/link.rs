//! One link of a chain and what it keeps: its breaker and its prices.

use std::sync::Arc;

use troupe_inference::backend::GenerationResult;
use troupe_inference::remote::RemoteProvider;

use super::Router;

/// Where a chain can send a request.
pub(super) enum Link {
    /// This process's ModelHost.
    Local,
    /// A peer node's ModelHost that serves the model.
    Cluster,
    /// A remote OpenAI-compatible server.
    Remote(Arc<RemoteProvider>),
}

impl Link {
    /// The name `[routing]` gives it.
    pub(super) fn name(&self) -> String {
        match self {
            Link::Local => "local".to_owned(),
            Link::Cluster => "cluster".to_owned(),
            Link::Remote(provider) => provider.name().to_owned(),
        }
    }

    /// Closes the cluster link's breaker after an answer.
    pub(super) fn succeeded(&self, router: &Router) {
        match self {
            // A remote provider tells its own breaker, at the end of its stream.
            Link::Local | Link::Remote(_) => {}
            Link::Cluster => router.inner.cluster_breaker.record_success(),
        }
    }

    /// Counts a failed request towards opening the cluster link's breaker
    /// (a remote provider counts its own). The local host has none: its failures (model missing, too large, busy)
    /// are answered at once and say something about the request, not about
    /// a server that may come back.
    pub(super) fn failed(&self, router: &Router) {
        match self {
            Link::Local | Link::Remote(_) => {}
            Link::Cluster => router.inner.cluster_breaker.record_failure(),
        }
    }

    /// Price × tokens for a priced remote provider; 0 otherwise (local cost
    /// is memory × time, which the Learner prices).
    pub(super) fn cost(&self, result: &GenerationResult) -> f64 {
        match self {
            Link::Remote(provider) => {
                let (prompt, completion) = provider.prices();
                prompt * f64::from(result.usage.prompt_tokens)
                    + completion * f64::from(result.usage.completion_tokens)
            }
            Link::Local | Link::Cluster => 0.0,
        }
    }
}
