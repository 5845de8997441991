//! The running incarnation of a supervised actor that a restart replaces:
//! the ModelHost's actor, a worker pool's factory. Every clone of the
//! handle that holds it sees the new one, and a caller that finds the
//! actor dead waits for the supervisor's restart instead of failing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

/// Longest wait of a caller for a dead actor's restart.
pub const RESTART_WAIT: Duration = Duration::from_secs(30);

/// The current incarnation `A` (an actor reference) of something a
/// supervisor restarts. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Incarnations<A> {
    current: Arc<RwLock<A>>,
    /// Counts restarts, so a caller that finds the actor dead can wait for
    /// the next one.
    restarts: Arc<watch::Sender<u64>>,
    /// Set when it was stopped on purpose: a dead actor is then no restart
    /// to wait for.
    retired: Arc<AtomicBool>,
}

impl<A> std::fmt::Debug for Incarnations<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incarnations")
            .field("restarts", &*self.restarts.borrow())
            .field("retired", &self.retired.load(Ordering::SeqCst))
            .finish()
    }
}

impl<A: Clone> Incarnations<A> {
    /// Starts with `first`.
    pub fn new(first: A) -> Self {
        Self {
            current: Arc::new(RwLock::new(first)),
            restarts: Arc::new(watch::channel(0).0),
            retired: Arc::default(),
        }
    }

    /// The incarnation running now (or dead, not yet replaced).
    pub fn current(&self) -> A {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A restart: `next` replaces the dead one, and callers waiting in
    /// [`Incarnations::live`] go on with it.
    pub fn replace(&self, next: A) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        self.restarts.send_modify(|n| *n += 1);
    }

    /// Stopped on purpose: no restart will come.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// The incarnation to send to: the current one, or, when `is_dead`
    /// says it has died and it was not retired, the next one (waited for
    /// at most [`RESTART_WAIT`]), so that calls in that window are not lost.
    pub async fn live(&self, is_dead: impl Fn(&A) -> bool) -> A {
        let current = self.current();
        if !is_dead(&current) || self.retired.load(Ordering::SeqCst) {
            return current;
        }
        let mut restarts = self.restarts.subscribe();
        let _ = tokio::time::timeout(RESTART_WAIT, restarts.changed()).await;
        self.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_caller_that_finds_it_dead_gets_the_next_incarnation() {
        let incarnations = Incarnations::new(1_u32);
        let dead = |n: &u32| *n == 1;
        let waiting = tokio::spawn({
            let incarnations = incarnations.clone();
            async move { incarnations.live(dead).await }
        });
        tokio::task::yield_now().await;
        incarnations.replace(2);
        assert_eq!(waiting.await.unwrap(), 2);
        assert_eq!(incarnations.live(dead).await, 2);
    }

    #[tokio::test]
    async fn a_retired_one_is_not_waited_for() {
        let incarnations = Incarnations::new(1_u32);
        incarnations.retire();
        let started = std::time::Instant::now();
        assert_eq!(incarnations.live(|_| true).await, 1);
        assert!(started.elapsed() < RESTART_WAIT);
    }
}
