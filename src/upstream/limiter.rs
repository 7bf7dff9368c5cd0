//! Proactive pacing: a sliding-window limiter per location that never lets more than `max`
//! requests start in any `interval + margin`, tightened by what the `X-RateLimit-*` headers say.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The longest window a `X-RateLimit-Interval-Milliseconds` header may impose (HighLevel's is 10 s).
const MAX_INTERVAL_MS: u64 = 60_000;

#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    max: u32,
    interval: Duration,
    margin: Duration,
    /// Start instants of the requests in the current window (including phantom entries for
    /// requests other clients made, learned from the headers).
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl State {
    fn window(&self) -> Duration {
        self.interval + self.margin
    }

    fn prune(&mut self, now: Instant) {
        let window = self.window();
        while self.sent.front().is_some_and(|t| *t + window <= now) {
            self.sent.pop_front();
        }
    }

    /// `None` when a request may start now (and records it), else how long to wait.
    fn try_take(&mut self, now: Instant) -> Option<Duration> {
        if let Some(p) = self.paused_until {
            if p > now {
                return Some(p - now);
            }
            self.paused_until = None;
        }
        self.prune(now);
        if (self.sent.len() as u32) < self.max {
            self.sent.push_back(now);
            return None;
        }
        let oldest = self.sent.front().copied().unwrap_or(now);
        Some((oldest + self.window()).saturating_duration_since(now))
    }
}

impl Limiter {
    pub fn new(max: u32, interval: Duration, margin: Duration) -> Limiter {
        Limiter {
            state: Mutex::new(State {
                max: max.max(1),
                interval,
                margin,
                sent: VecDeque::new(),
                paused_until: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until one more request may start, and counts it.
    pub async fn acquire(&self) {
        loop {
            let wait = self.lock().try_take(Instant::now());
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// Learns from a response's headers: a lower `X-RateLimit-Max`, a longer interval, and
    /// requests counted upstream that this process did not make (another tool on the same app).
    /// A higher upstream maximum never raises ours.
    pub fn observe(&self, max: Option<u32>, remaining: Option<u32>, interval_ms: Option<u64>) {
        let mut s = self.lock();
        let now = Instant::now();
        if let Some(m) = max.filter(|m| *m > 0 && *m < s.max) {
            s.max = m;
        }
        // Clamped: a wild header must not stall a location for hours (or overflow `Instant`).
        if let Some(i) = interval_ms
            .map(|ms| Duration::from_millis(ms.min(MAX_INTERVAL_MS)))
            .filter(|i| *i > s.interval)
        {
            s.interval = i;
        }
        if let Some(r) = remaining {
            // Upstream leaves fewer requests than our own count does: someone else (another
            // tool on the same app and location) used them. Count those as ours.
            s.prune(now);
            let headroom = s.max.saturating_sub(s.sent.len() as u32);
            for _ in r.min(headroom)..headroom {
                s.sent.push_back(now);
            }
        }
    }

    /// Stops every request of this location for `d` (after a 429: our count was wrong).
    pub fn pause(&self, d: Duration) {
        let mut s = self.lock();
        let until = Instant::now() + d;
        if s.paused_until.is_none_or(|p| p < until) {
            s.paused_until = Some(until);
        }
    }

    pub fn interval(&self) -> Duration {
        self.lock().interval
    }

    /// The pace: at most this many requests in any window this long.
    pub fn pace(&self) -> (u32, Duration) {
        let s = self.lock();
        (s.max, s.window())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_in_a_window() {
        let l = Limiter::new(3, Duration::from_secs(1), Duration::from_millis(100));
        let start = Instant::now();
        for _ in 0..3 {
            l.acquire().await;
        }
        assert_eq!(Instant::now(), start);
        l.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(1100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wild_interval_header_is_clamped() {
        let l = Limiter::new(1, Duration::from_secs(1), Duration::ZERO);
        let start = Instant::now();
        l.acquire().await;
        l.observe(Some(1), Some(0), Some(u64::MAX));
        l.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_generous_upstream_never_raises_our_limit() {
        let l = Limiter::new(2, Duration::from_secs(1), Duration::ZERO);
        let start = Instant::now();
        l.acquire().await;
        l.observe(Some(1_000_000), Some(999_000), Some(1000));
        l.acquire().await;
        assert_eq!(Instant::now(), start);
        l.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_counted_upstream_by_others_slow_us_down() {
        let l = Limiter::new(10, Duration::from_secs(1), Duration::ZERO);
        let start = Instant::now();
        l.acquire().await;
        l.observe(Some(10), Some(0), Some(1000));
        l.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }
}
