//! A simulated HighLevel (GoHighLevel) Contacts API server ("the sandbox")
//! for tests, the demo and benchmarks.
//!
//! It serves `GET /contacts/` (legacy list), `POST /contacts/search` and
//! `GET /contacts/:contactId` over seeded, deterministic contacts, with
//! HighLevel's auth/version/location checks, error bodies, rate limits and
//! headers, plus injectable faults (5xx, 429 storms, hangs, truncated
//! bodies, malformed pages), latency and search eventual consistency.
//! [`Sandbox`] is the handle: it exposes the base URL and a synchronous
//! control surface (churn, faults, limits, stats).

mod data;
mod filter;
mod limits;
mod list;
mod render;
mod routes;
mod search;
mod state;
mod store;
#[cfg(test)]
mod tests;
mod time_fmt;
mod vocab;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::data::Id;
use self::render::ContactJson;
use self::state::{App, Location, lock};

/// The only `Version` header value the contacts API accepts.
pub const VERSION_HEADER_VALUE: &str = "2021-07-28";

/// How long `shutdown` waits for in-flight requests before aborting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Sandbox configuration.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// All generated data and fault draws are deterministic from it.
    pub seed: u64,
    pub locations: Vec<LocationSeed>,
    /// Added before every response (after the request is counted).
    pub latency: Duration,
    /// `None` = unlimited (headers still sent, with big numbers).
    pub limits: Option<RateLimits>,
    pub faults: Faults,
    /// Delay before churned changes become visible to search.
    pub search_lag: Duration,
}

/// One location (sub-account): its id, its bearer token and contact count.
#[derive(Clone, Debug)]
pub struct LocationSeed {
    pub id: String,
    pub token: String,
    pub contacts: usize,
}

/// Burst and daily limits, per location.
#[derive(Clone, Copy, Debug)]
pub struct RateLimits {
    pub burst_max: u32,
    pub interval: Duration,
    pub daily_max: u32,
}

impl Default for RateLimits {
    /// HighLevel's real limits: 100 per 10 s, 200,000 per day.
    fn default() -> Self {
        RateLimits {
            burst_max: 100,
            interval: Duration::from_secs(10),
            daily_max: 200_000,
        }
    }
}

/// Injectable faults (probabilities in 0..=1 per request).
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// A 500/502/503 (rotating) with `{"statusCode":N,"message":"..."}`.
    pub server_error: f64,
    /// Starts a storm: this and the next `storm_len` requests get 429.
    pub rate_limit_storm: f64,
    pub storm_len: u32,
    /// Hangs `timeout_delay` before answering normally.
    pub timeout: f64,
    pub timeout_delay: Duration,
    /// Streams half of a 200 body, then aborts it.
    pub truncated: f64,
}

impl SandboxConfig {
    /// No latency, no limits, no faults, no search lag.
    pub fn new(seed: u64, locations: Vec<LocationSeed>) -> Self {
        SandboxConfig {
            seed,
            locations,
            latency: Duration::ZERO,
            limits: None,
            faults: Faults::default(),
            search_lag: Duration::ZERO,
        }
    }
}

impl Default for SandboxConfig {
    /// Seed 42, one location `sandboxLocation00001` / `pit-sandbox-token-1` with 1000 contacts.
    fn default() -> Self {
        let loc = LocationSeed {
            id: "sandboxLocation00001".to_string(),
            token: "pit-sandbox-token-1".to_string(),
            contacts: 1000,
        };
        SandboxConfig::new(42, vec![loc])
    }
}

/// Contacts touched by one `churn` call.
#[derive(Clone, Debug, Default)]
pub struct ChurnReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
}

/// Request counters of one location.
#[derive(Clone, Debug, Default)]
pub struct SandboxStats {
    /// Requests that passed auth.
    pub requests: u64,
    pub search_requests: u64,
    pub list_requests: u64,
    pub get_requests: u64,
    /// 429s sent (limits and storms).
    pub rate_limited: u64,
    /// Injected 5xx sent.
    pub server_errors: u64,
    /// Most requests seen within any sliding `interval` window.
    pub max_in_window: u32,
}

/// A running sandbox server. Cloning is cheap; the server stops on
/// `shutdown` or when the last clone is dropped.
#[derive(Clone)]
pub struct Sandbox {
    app: Arc<App>,
    addr: SocketAddr,
    control: Arc<ServerControl>,
}

/// Shutdown signal and task of the server.
struct ServerControl {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Sandbox {
    /// Generates the data (on a blocking thread) and serves on `listener`.
    pub async fn start(
        config: SandboxConfig,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<Sandbox> {
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let base_url = format!("http://{addr}");
        let app = tokio::task::spawn_blocking(move || App::new(&config, base_url))
            .await
            .map_err(std::io::Error::other)?;
        let app = Arc::new(app);
        let (tx, rx) = oneshot::channel::<()>();
        let router = routes::router(app.clone());
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "sandbox server stopped with an error");
            }
        });
        let control = ServerControl {
            stop: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
        };
        Ok(Sandbox {
            app,
            addr,
            control: Arc::new(control),
        })
    }

    /// "http://127.0.0.1:PORT" (no trailing slash).
    pub fn base_url(&self) -> String {
        self.app.base_url.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn shutdown(self) {
        if let Some(tx) = lock(&self.control.stop).take() {
            let _ = tx.send(());
        }
        let Some(mut task) = lock(&self.control.task).take() else {
            return;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }

    fn loc(&self, location: &str) -> Option<&Location> {
        self.app.location(location)
    }

    /// Applies `updates` edits, `deletes` deletions (distinct, seeded picks
    /// among live contacts) then `creates` new contacts, stamped now.
    pub fn churn(
        &self,
        location: &str,
        creates: usize,
        updates: usize,
        deletes: usize,
    ) -> ChurnReport {
        let Some(loc) = self.loc(location) else {
            return ChurnReport::default();
        };
        let mut store = lock(&loc.store);
        let picks = store.pick_live(updates + deletes);
        let (upd, del) = picks.split_at(updates.min(picks.len()));
        let text = |ids: &[Id]| {
            ids.iter()
                .map(|id| id.as_str().to_string())
                .collect::<Vec<_>>()
        };
        for id in upd {
            store.update(id);
        }
        for id in del {
            store.delete(id);
        }
        let created: Vec<Id> = (0..creates).map(|_| store.create()).collect();
        ChurnReport {
            created: text(&created),
            updated: text(upd),
            deleted: text(del),
        }
    }

    /// Creates one contact; returns its id ("" for an unknown location).
    pub fn create_contact(&self, location: &str) -> String {
        self.loc(location)
            .map(|l| lock(&l.store).create().as_str().to_string())
            .unwrap_or_default()
    }

    /// Changes a tag, name or phone and bumps dateUpdated.
    pub fn update_contact(&self, location: &str, id: &str) -> bool {
        let (Some(loc), Some(id)) = (self.loc(location), Id::parse(id)) else {
            return false;
        };
        lock(&loc.store).update(&id)
    }

    /// Deletes a contact entirely (no tombstone).
    pub fn delete_contact(&self, location: &str, id: &str) -> bool {
        let (Some(loc), Some(id)) = (self.loc(location), Id::parse(id)) else {
            return false;
        };
        lock(&loc.store).delete(&id)
    }

    /// Ids of all live contacts, sorted.
    pub fn live_contact_ids(&self, location: &str) -> Vec<String> {
        self.loc(location)
            .map(|l| lock(&l.store).live_ids())
            .unwrap_or_default()
    }

    /// Exactly the `contact` object GET /contacts/:id returns.
    pub fn contact_json(&self, location: &str, id: &str) -> Option<serde_json::Value> {
        let store = lock(&self.loc(location)?.store);
        let c = store.get(&Id::parse(id)?)?;
        let json = ContactJson {
            c: &c,
            loc: &store.info,
            search_after: None,
        };
        serde_json::to_value(json).ok()
    }

    pub fn stats(&self, location: &str) -> SandboxStats {
        self.loc(location)
            .map(|l| lock(&l.limiter).stats.clone())
            .unwrap_or_default()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.app.settings().faults = faults;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.app.settings().latency = latency;
    }

    /// New limits; also resets every location's daily quota to `daily_max`.
    pub fn set_limits(&self, limits: Option<RateLimits>) {
        self.app.settings().limits = limits;
        for l in &self.app.locations {
            lock(&l.limiter).reset_daily(limits);
        }
    }

    /// Sets the remaining daily quota (0 = every request gets 429).
    pub fn set_daily_remaining(&self, location: &str, remaining: u32) {
        if let Some(l) = self.loc(location) {
            lock(&l.limiter).set_daily_remaining(remaining);
        }
    }

    /// The location's token then gets the 401 body.
    pub fn revoke_token(&self, location: &str) {
        if let Some(l) = self.loc(location) {
            l.revoked.store(true, Ordering::Relaxed);
        }
    }

    /// The next `n` list/search 200s carry a non-object element in `contacts`.
    pub fn break_next_pages(&self, n: u32) {
        self.app.settings().broken_pages = n;
    }
}
