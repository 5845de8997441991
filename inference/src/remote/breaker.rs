//! A circuit breaker per provider: after `failures` consecutive failed
//! requests it opens and refuses requests at once, so a dead provider costs
//! a router nothing; after `reset` it lets one trial request through
//! (half-open); the trial's success closes it, its failure opens it again.
//!
//! Time comes from a [`Clock`] so that tests can move it by hand
//! ([`ManualClock`]) instead of sleeping.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::RemoteError;

/// Where a breaker reads the time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> ManualClock {
        ManualClock {
            now: Mutex::new(Instant::now()),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a breaker does with the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go through.
    Closed,
    /// Requests are refused until the reset time has passed.
    Open,
    /// The reset time has passed: one trial request may go through (or is
    /// in flight).
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `trial` is when the trial request was let through, if one was.
    HalfOpen {
        trial: Option<Instant>,
    },
}

/// One provider's circuit breaker; shared by every request to it.
#[derive(Debug)]
pub struct CircuitBreaker {
    provider: String,
    threshold: u32,
    reset: Duration,
    clock: Arc<dyn Clock>,
    // A std Mutex, not a tokio one: it is held for a few instructions and
    // never across an await.
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker for `provider` that opens after `failures`
    /// consecutive failures (at least 1) and tries again after `reset`.
    pub fn new(provider: &str, failures: u32, reset: Duration) -> CircuitBreaker {
        CircuitBreaker::with_clock(provider, failures, reset, Arc::new(SystemClock))
    }

    /// [`CircuitBreaker::new`] reading the time from `clock`.
    pub fn with_clock(
        provider: &str,
        failures: u32,
        reset: Duration,
        clock: Arc<dyn Clock>,
    ) -> CircuitBreaker {
        CircuitBreaker {
            provider: provider.to_string(),
            threshold: failures.max(1),
            reset,
            clock,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is plain data, valid whatever a panicking holder did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a request may be sent now. In the half-open state the first
    /// caller gets the trial and later ones are refused until it is
    /// recorded (or until a whole `reset` has passed without an outcome, so
    /// a trial whose caller vanished cannot wedge the breaker).
    ///
    /// # Errors
    /// [`RemoteError::BreakerOpen`] with the time until the next trial.
    pub fn allow(&self) -> Result<(), RemoteError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } if now >= until => {
                *inner = Inner::HalfOpen { trial: Some(now) };
                Ok(())
            }
            Inner::Open { until } => Err(self.open(until - now)),
            Inner::HalfOpen { trial: None } => {
                *inner = Inner::HalfOpen { trial: Some(now) };
                Ok(())
            }
            Inner::HalfOpen { trial: Some(at) } if now >= at + self.reset => {
                *inner = Inner::HalfOpen { trial: Some(now) };
                Ok(())
            }
            Inner::HalfOpen { trial: Some(_) } => Err(self.open(Duration::ZERO)),
        }
    }

    fn open(&self, retry_in: Duration) -> RemoteError {
        RemoteError::BreakerOpen {
            provider: self.provider.clone(),
            retry_in,
        }
    }

    /// A request succeeded: the breaker closes and the failure count restarts.
    pub fn record_success(&self) {
        *self.lock() = Inner::Closed { failures: 0 };
    }

    /// A request failed (after its retries). The threshold-th consecutive
    /// failure opens the breaker; a failed trial opens it again at once.
    pub fn record_failure(&self) {
        let now = self.clock.now();
        let mut inner = self.lock();
        *inner = match *inner {
            Inner::Closed { failures } if failures + 1 < self.threshold => Inner::Closed {
                failures: failures + 1,
            },
            // A request let through before the breaker opened may finish
            // after it did: it does not push the reset time further out.
            Inner::Open { until } => Inner::Open { until },
            _ => Inner::Open {
                until: now + self.reset,
            },
        };
    }

    /// The state the next [`CircuitBreaker::allow`] sees.
    pub fn state(&self) -> BreakerState {
        let now = self.clock.now();
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        match *self.lock() {
            Inner::Closed { failures } => failures,
            _ => self.threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> (CircuitBreaker, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let breaker = CircuitBreaker::with_clock("p", 3, Duration::from_secs(30), clock.clone());
        (breaker, clock)
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let (b, _) = breaker();
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow().is_ok());
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        match b.allow() {
            Err(RemoteError::BreakerOpen { provider, retry_in }) => {
                assert_eq!(provider, "p");
                assert_eq!(retry_in, Duration::from_secs(30));
            }
            other => panic!("expected BreakerOpen, got {other:?}"),
        }
    }

    #[test]
    fn a_success_restarts_the_count() {
        let (b, _) = breaker();
        b.record_failure();
        b.record_failure();
        b.record_success();
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_lets_one_trial_through_and_its_outcome_decides() {
        let (b, clock) = breaker();
        for _ in 0..3 {
            b.record_failure();
        }
        clock.advance(Duration::from_secs(29));
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.allow().is_ok(), "the trial");
        assert!(
            matches!(b.allow(), Err(RemoteError::BreakerOpen { retry_in, .. }) if retry_in.is_zero()),
            "a second request waits for the trial"
        );
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open, "a failed trial reopens");
        clock.advance(Duration::from_secs(30));
        assert!(b.allow().is_ok());
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow().is_ok());
    }

    #[test]
    fn a_trial_whose_outcome_never_comes_is_replaced_after_reset() {
        let (b, clock) = breaker();
        for _ in 0..3 {
            b.record_failure();
        }
        clock.advance(Duration::from_secs(30));
        assert!(b.allow().is_ok());
        assert!(b.allow().is_err());
        clock.advance(Duration::from_secs(30));
        assert!(b.allow().is_ok());
    }
}
