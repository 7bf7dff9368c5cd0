//! Per-location request accounting: the sliding-window burst limiter, the
//! daily quota, rate-limit storms, the `X-RateLimit-*` header values and the
//! `SandboxStats` counters.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{RateLimits, SandboxStats};

/// Header values advertised when limits are off.
const UNLIMITED: u32 = 1_000_000_000;

/// Which route a counted request hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RouteKind {
    List,
    Search,
    Get,
    /// A contact's tasks, or one task.
    Tasks,
    /// A contact's notes, or one note.
    Notes,
    Appointments,
    TaskSearch,
    /// The business list, or one business.
    Business,
    BusinessContacts,
    CustomFields,
}

/// The five `X-RateLimit-*` values.
#[derive(Clone, Copy, Debug)]
pub(super) struct RateHeaders {
    pub limit_daily: u32,
    pub daily_remaining: u32,
    pub interval_ms: u64,
    pub max: u32,
    pub remaining: u32,
}

impl RateHeaders {
    /// Values for a response with no known location.
    pub fn unknown(limits: Option<RateLimits>) -> RateHeaders {
        let l = limits.unwrap_or_else(unlimited);
        RateHeaders {
            limit_daily: l.daily_max,
            daily_remaining: l.daily_max,
            interval_ms: millis(l.interval),
            max: l.burst_max,
            remaining: l.burst_max,
        }
    }
}

fn unlimited() -> RateLimits {
    RateLimits {
        burst_max: UNLIMITED,
        daily_max: UNLIMITED,
        ..RateLimits::default()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Request accounting for one location.
#[derive(Debug)]
pub(super) struct Limiter {
    /// Instants of every counted request (for `max_in_window`).
    seen: VecDeque<Instant>,
    /// Instants of admitted requests (for the burst limit).
    admitted: VecDeque<Instant>,
    daily_remaining: u32,
    storm_left: u32,
    pub stats: SandboxStats,
}

impl Limiter {
    pub fn new(limits: Option<RateLimits>) -> Limiter {
        Limiter {
            seen: VecDeque::new(),
            admitted: VecDeque::new(),
            daily_remaining: limits.unwrap_or_else(unlimited).daily_max,
            storm_left: 0,
            stats: SandboxStats::default(),
        }
    }

    /// Counts a request that passed auth.
    pub fn record(&mut self, now: Instant, limits: Option<RateLimits>, kind: RouteKind) {
        let interval = limits.unwrap_or_default().interval;
        prune(&mut self.seen, now, interval);
        self.seen.push_back(now);
        let in_window = u32::try_from(self.seen.len()).unwrap_or(u32::MAX);
        let s = &mut self.stats;
        s.max_in_window = s.max_in_window.max(in_window);
        s.requests += 1;
        match kind {
            RouteKind::List => s.list_requests += 1,
            RouteKind::Search => s.search_requests += 1,
            RouteKind::Get => s.get_requests += 1,
            RouteKind::Tasks => s.tasks_requests += 1,
            RouteKind::Notes => s.notes_requests += 1,
            RouteKind::Appointments => s.appointments_requests += 1,
            RouteKind::TaskSearch => s.task_search_requests += 1,
            RouteKind::Business => s.business_requests += 1,
            RouteKind::BusinessContacts => s.business_contacts_requests += 1,
            RouteKind::CustomFields => s.custom_fields_requests += 1,
        }
    }

    /// Admits the request against the burst window and daily quota, or
    /// counts a 429 and returns false.
    pub fn admit(&mut self, now: Instant, limits: Option<RateLimits>) -> bool {
        let l = limits.unwrap_or_else(unlimited);
        prune(&mut self.admitted, now, l.interval);
        let burst_full = self.admitted.len() >= l.burst_max as usize;
        if burst_full || self.daily_remaining == 0 {
            self.stats.rate_limited += 1;
            return false;
        }
        self.admitted.push_back(now);
        self.daily_remaining -= 1;
        true
    }

    /// Whether an ongoing storm 429s this request (counting it).
    pub fn in_storm(&mut self) -> bool {
        if self.storm_left == 0 {
            return false;
        }
        self.storm_left -= 1;
        self.stats.rate_limited += 1;
        true
    }

    /// Starts a storm: this request and the next `len` get 429.
    pub fn start_storm(&mut self, len: u32) {
        self.storm_left = len;
        self.stats.rate_limited += 1;
    }

    pub fn count_server_error(&mut self) {
        self.stats.server_errors += 1;
    }

    pub fn set_daily_remaining(&mut self, remaining: u32) {
        self.daily_remaining = remaining;
    }

    /// Resets the daily quota for new limits.
    pub fn reset_daily(&mut self, limits: Option<RateLimits>) {
        self.daily_remaining = limits.unwrap_or_else(unlimited).daily_max;
    }

    /// Header values as of `now`.
    pub fn headers(&mut self, now: Instant, limits: Option<RateLimits>) -> RateHeaders {
        let l = limits.unwrap_or_else(unlimited);
        prune(&mut self.admitted, now, l.interval);
        let used = u32::try_from(self.admitted.len()).unwrap_or(u32::MAX);
        RateHeaders {
            limit_daily: l.daily_max,
            daily_remaining: self.daily_remaining,
            interval_ms: millis(l.interval),
            max: l.burst_max,
            remaining: l.burst_max.saturating_sub(used),
        }
    }
}

/// Drops instants older than `interval` before `now`.
fn prune(q: &mut VecDeque<Instant>, now: Instant, interval: Duration) {
    while q
        .front()
        .is_some_and(|t| now.duration_since(*t) >= interval)
    {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_window_slides() {
        let limits = Some(RateLimits {
            burst_max: 2,
            interval: Duration::from_millis(100),
            daily_max: 10,
        });
        let mut l = Limiter::new(limits);
        let t0 = Instant::now();
        assert!(l.admit(t0, limits));
        assert!(l.admit(t0, limits));
        assert!(!l.admit(t0, limits));
        assert!(l.admit(t0 + Duration::from_millis(100), limits));
        assert_eq!(l.stats.rate_limited, 1);
        assert_eq!(
            l.headers(t0 + Duration::from_millis(100), limits)
                .daily_remaining,
            7
        );
    }
}
