//! The scheduler's sense of time, behind a trait so tests can drive it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A boxed future, to keep [`Clock`] object-safe.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the scheduler reads the time and waits for it.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Resolve once `now_ms() >= deadline_ms`, or earlier (the scheduler re-checks,
    /// so an early wake-up is harmless; a late one delays firings).
    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_>;
}

/// Longest real sleep in one go, so a wall-clock jump (NTP, suspend) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The host's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        nimbus_core::now_ms()
    }

    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_> {
        let wait = (deadline_ms - self.now_ms()).max(0) as u64;
        Box::pin(tokio::time::sleep(
            Duration::from_millis(wait).min(MAX_SLEEP),
        ))
    }
}

/// The host's clock run `speed` times faster from `origin_ms` on:
/// `now = origin + (real_now - origin) × speed`. Only for end-to-end tests of the
/// real binary (`nimbus up --schedule-clock-speed`), so that `rate(1 minute)` fires
/// every second; `origin_ms` is kept in the data dir so that time stays monotonic
/// across restarts.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    origin_ms: i64,
    speed: u32,
}

impl ScaledClock {
    pub fn new(origin_ms: i64, speed: u32) -> Self {
        Self {
            origin_ms,
            speed: speed.max(1),
        }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> i64 {
        self.origin_ms + (nimbus_core::now_ms() - self.origin_ms) * self.speed as i64
    }

    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_> {
        let wait = ((deadline_ms - self.now_ms()).max(0) as u64).div_ceil(self.speed as u64);
        Box::pin(tokio::time::sleep(
            Duration::from_millis(wait).min(MAX_SLEEP),
        ))
    }
}

/// A clock that moves only when told to. Sleepers wake when it passes their deadline.
#[derive(Debug, Clone)]
pub struct FakeClock {
    now: Arc<watch::Sender<i64>>,
}

impl FakeClock {
    pub fn new(now_ms: i64) -> Self {
        Self {
            now: Arc::new(watch::channel(now_ms).0),
        }
    }

    /// Set the time (never backwards).
    pub fn set(&self, now_ms: i64) {
        self.now.send_modify(|t| *t = (*t).max(now_ms));
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by.as_millis() as i64);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|t| *t >= deadline_ms).await;
        })
    }
}
