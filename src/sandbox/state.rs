//! Shared server state (`App`): the locations with their stores and
//! limiters, static-token lookup, the OAuth codes and tokens, mutable
//! settings (faults, latency, limits, malformed-page budget) and the seeded
//! fault/trace-id randomness.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::limits::Limiter;
use super::oauth::OAuthState;
use super::store::Store;
use super::{Faults, RateLimits, SandboxConfig};

/// Locks a mutex, ignoring poisoning (state stays usable after a panic).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One location: identity, token state, contacts and request accounting.
pub(super) struct Location {
    pub id: String,
    pub revoked: AtomicBool,
    /// Whether the token has the task-search scope.
    pub task_scope: AtomicBool,
    /// Whether the token has the custom-field scope.
    pub fields_scope: AtomicBool,
    pub store: Mutex<Store>,
    pub limiter: Mutex<Limiter>,
}

/// Settings changeable at run time through the control surface.
pub(super) struct Settings {
    pub faults: Faults,
    pub latency: Duration,
    pub limits: Option<RateLimits>,
    pub broken_pages: u32,
    rng: SmallRng,
    rotation: usize,
}

/// The outcome of the per-request fault draw.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Drawn {
    pub storm: bool,
    pub storm_len: u32,
    pub server_error: Option<u16>,
    pub delay: Duration,
    pub truncate: bool,
}

impl Settings {
    /// Draws this request's faults (only for non-zero probabilities).
    pub fn draw(&mut self) -> Drawn {
        let f = self.faults;
        let mut d = Drawn::default();
        if self.hit(f.rate_limit_storm) {
            d.storm = true;
            d.storm_len = f.storm_len;
            return d;
        }
        if self.hit(f.server_error) {
            const CODES: [u16; 3] = [500, 502, 503];
            d.server_error = Some(CODES[self.rotation % CODES.len()]);
            self.rotation += 1;
            return d;
        }
        if self.hit(f.timeout) {
            d.delay = f.timeout_delay;
        }
        d.truncate = self.hit(f.truncated);
        d
    }

    fn hit(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }

    /// Consumes one malformed-page credit, if any.
    pub fn take_broken_page(&mut self) -> bool {
        let broken = self.broken_pages > 0;
        self.broken_pages = self.broken_pages.saturating_sub(1);
        broken
    }
}

/// Everything the request handlers and the control surface share.
pub(super) struct App {
    pub locations: Vec<Location>,
    tokens: HashMap<String, usize>,
    pub settings: Mutex<Settings>,
    /// Codes, OAuth tokens, inactive locations, the OAuth clock.
    oauth: Mutex<OAuthState>,
    trace_counter: AtomicU64,
    seed: u64,
    pub base_url: String,
    /// `SandboxConfig::clock_offset_ms`: the `Date` header is set by this clock when not 0.
    pub clock_offset_ms: i64,
}

impl App {
    /// Builds all locations' data from the config (CPU-bound).
    pub fn new(config: &SandboxConfig, base_url: String) -> App {
        let locations = config
            .locations
            .iter()
            .map(|l| Location {
                id: l.id.clone(),
                store: Mutex::new({
                    let mut store = Store::generate(
                        config.seed,
                        &l.id,
                        l.contacts,
                        config.search_lag,
                        config.subresources,
                    );
                    store.clock_offset_ms = config.clock_offset_ms;
                    store
                }),
                revoked: AtomicBool::new(false),
                task_scope: AtomicBool::new(true),
                fields_scope: AtomicBool::new(true),
                limiter: Mutex::new(Limiter::new(config.limits)),
            })
            .collect();
        let tokens = config
            .locations
            .iter()
            .enumerate()
            .map(|(i, l)| (l.token.clone(), i))
            .collect();
        let settings = Settings {
            faults: config.faults,
            latency: config.latency,
            limits: config.limits,
            broken_pages: 0,
            rng: SmallRng::seed_from_u64(config.seed ^ 0xFA17_5EED),
            rotation: 0,
        };
        let ids = config.locations.iter().map(|l| l.id.clone()).collect();
        let oauth = OAuthState::new(config.oauth.clone(), config.seed, ids);
        App {
            locations,
            tokens,
            settings: Mutex::new(settings),
            oauth: Mutex::new(oauth),
            trace_counter: AtomicU64::new(0),
            seed: config.seed,
            base_url,
            clock_offset_ms: config.clock_offset_ms,
        }
    }

    /// The location index a (non-revoked) static token (PIT) belongs to.
    pub fn location_of_token(&self, token: &str) -> Option<usize> {
        let i = *self.tokens.get(token)?;
        let loc = self.locations.get(i)?;
        (!loc.revoked.load(Ordering::Relaxed)).then_some(i)
    }

    /// The location with this id.
    pub fn location(&self, id: &str) -> Option<&Location> {
        self.locations.iter().find(|l| l.id == id)
    }

    pub fn settings(&self) -> MutexGuard<'_, Settings> {
        lock(&self.settings)
    }

    pub fn oauth(&self) -> MutexGuard<'_, OAuthState> {
        lock(&self.oauth)
    }

    pub fn limits(&self) -> Option<RateLimits> {
        self.settings().limits
    }

    /// A fresh uuid-like trace id (deterministic sequence per seed).
    pub fn trace_id(&self) -> String {
        let n = self.trace_counter.fetch_add(1, Ordering::Relaxed);
        let a = splitmix(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let b = splitmix(a);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFF,
            0x8000 | (b >> 48) & 0x3FFF,
            b & 0xFFFF_FFFF_FFFF
        )
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
