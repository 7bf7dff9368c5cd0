//! A simulated HighLevel (GoHighLevel) Contacts API server ("the sandbox")
//! for tests, the demo and benchmarks.
//!
//! Routes, over seeded, deterministic data (each request costs one against
//! the rate limiter):
//! - `GET /contacts/` (legacy list), `POST /contacts/search`,
//!   `GET /contacts/search/duplicate`, `GET /contacts/:contactId`;
//! - `GET /contacts/:contactId/tasks`, `.../tasks/:taskId`,
//!   `GET /contacts/:contactId/notes`, `.../notes/:id`,
//!   `GET /contacts/:contactId/appointments` (sub-resources, generated per
//!   contact with [`SubresourceMix`] average counts);
//! - `POST /locations/:locationId/tasks/search` (skip/limit paging in
//!   task-id order; scope-gated, see [`Sandbox::set_task_search_scope`]);
//! - `GET /businesses/?locationId=`, `GET /businesses/:businessId`,
//!   `GET /contacts/business/:businessId?locationId=`;
//! - `GET /locations/:locationId/customFields`.
//!
//! Every route has HighLevel's auth/scope/version/location checks, error
//! bodies, rate limits and headers, plus injectable faults (5xx, 429
//! storms, hangs, truncated bodies, malformed pages), latency and search
//! eventual consistency. A route takes the location's static token
//! ([`LocationSeed::token`], a PIT) or an OAuth access token of the
//! location.
//!
//! OAuth 2.0 (free of rate-limit cost and faults; see `oauth`): the
//! auto-approving `GET /oauth/chooselocation`, `POST /oauth/token`,
//! `POST /oauth/locationToken` and `GET /oauth/installedLocations`, for the
//! one app of [`OAuthApp`].
//!
//! [`Sandbox`] is the handle: it exposes the base URL and a synchronous
//! control surface (churn of contacts and sub-resources, faults, limits,
//! scopes, token expiry and revocation, stats, inspection).

mod business;
mod data;
mod fields;
mod filter;
mod limits;
mod list;
mod oauth;
mod render;
mod routes;
mod search;
mod state;
mod store;
mod subrender;
mod subroutes;
mod subs;
mod tasks;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_oauth;
#[cfg(test)]
mod tests_subs;
mod time_fmt;
mod vocab;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use serde_json::Value;

use self::data::Id;
use self::render::ContactJson;
use self::state::{App, Location, lock};
use self::subs::{Action, Kind};

pub use self::oauth::{OAuthApp, OAuthStats};

/// The `Version` header value of the v2 specs (`apps/contacts.json`), the one `sync` sends.
pub const VERSION_HEADER_VALUE: &str = "2021-07-28";

/// Every `Version` the sandbox accepts: the v2 specs' value, the official Node SDK's default
/// (`2023-02-21`, which HighLevel answers though no spec lists it) and the v3 specs' value that
/// the Python SDK sends on every call (`apps/v3/contacts-v3.json`).
pub const ACCEPTED_VERSIONS: [&str; 3] = [VERSION_HEADER_VALUE, "2023-02-21", "v3"];

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
    /// Average tasks, notes and appointments per contact.
    pub subresources: SubresourceMix,
    /// The OAuth app the sandbox authorizes, and its token lifetimes.
    pub oauth: OAuthApp,
    /// HighLevel's clock minus this machine's, in ms: churn is stamped (`dateAdded`,
    /// `dateUpdated`) and the `Date` header is set by a clock this far off. 0 = the same clock.
    pub clock_offset_ms: i64,
}

/// Average sub-resources per contact. Each contact's counts are Poisson
/// draws with these means (so some contacts have none); means above 1000
/// are capped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SubresourceMix {
    pub tasks: f64,
    pub notes: f64,
    pub appointments: f64,
}

impl Default for SubresourceMix {
    /// 2 tasks, 3 notes and 1 appointment per contact on average.
    fn default() -> Self {
        SubresourceMix {
            tasks: 2.0,
            notes: 3.0,
            appointments: 1.0,
        }
    }
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
    /// No latency, no limits, no faults, no search lag; the default
    /// [`OAuthApp`].
    pub fn new(seed: u64, locations: Vec<LocationSeed>) -> Self {
        SandboxConfig {
            seed,
            locations,
            latency: Duration::ZERO,
            limits: None,
            faults: Faults::default(),
            search_lag: Duration::ZERO,
            subresources: SubresourceMix::default(),
            oauth: OAuthApp::default(),
            clock_offset_ms: 0,
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

/// Sub-resource changes made by one `churn_subresources` call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubChurnReport {
    /// Contacts whose sub-resources changed, in the order they were picked.
    pub contacts: Vec<String>,
    pub tasks_added: usize,
    pub tasks_edited: usize,
    pub tasks_deleted: usize,
    pub notes_added: usize,
    pub notes_edited: usize,
    pub notes_deleted: usize,
    pub appointments_added: usize,
    pub appointments_edited: usize,
    pub appointments_deleted: usize,
}

impl SubChurnReport {
    fn tally(&mut self, kind: Kind, action: Action) {
        let n = match (kind, action) {
            (Kind::Task, Action::Added) => &mut self.tasks_added,
            (Kind::Task, Action::Edited) => &mut self.tasks_edited,
            (Kind::Task, Action::Deleted) => &mut self.tasks_deleted,
            (Kind::Note, Action::Added) => &mut self.notes_added,
            (Kind::Note, Action::Edited) => &mut self.notes_edited,
            (Kind::Note, Action::Deleted) => &mut self.notes_deleted,
            (Kind::Appointment, Action::Added) => &mut self.appointments_added,
            (Kind::Appointment, Action::Edited) => &mut self.appointments_edited,
            (Kind::Appointment, Action::Deleted) => &mut self.appointments_deleted,
        };
        *n += 1;
    }
}

/// Request counters of one location.
#[derive(Clone, Debug, Default)]
pub struct SandboxStats {
    /// Requests that passed auth (all routes).
    pub requests: u64,
    pub search_requests: u64,
    pub list_requests: u64,
    pub get_requests: u64,
    /// GET /contacts/:id/tasks and /contacts/:id/tasks/:taskId.
    pub tasks_requests: u64,
    /// GET /contacts/:id/notes and /contacts/:id/notes/:id.
    pub notes_requests: u64,
    pub appointments_requests: u64,
    /// POST /locations/:id/tasks/search (including scope 401s).
    pub task_search_requests: u64,
    /// GET /businesses/ and /businesses/:id.
    pub business_requests: u64,
    /// GET /contacts/business/:id.
    pub business_contacts_requests: u64,
    /// GET /locations/:id/customFields (including scope 401s).
    pub custom_fields_requests: u64,
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

    /// The location's static token (PIT) then gets the 401 body; its
    /// OAuth tokens are untouched (see [`Sandbox::revoke_refresh_tokens`]).
    pub fn revoke_token(&self, location: &str) {
        if let Some(l) = self.loc(location) {
            l.revoked.store(true, Ordering::Relaxed);
        }
    }

    /// The next `n` list/search 200s carry a non-object element in `contacts`.
    pub fn break_next_pages(&self, n: u32) {
        self.app.settings().broken_pages = n;
    }

    /// Grants (default) or withdraws the task-search scope of the
    /// location's static token; without it, task search answers 401.
    /// OAuth tokens have the scopes granted at authorization instead.
    pub fn set_task_search_scope(&self, location: &str, allowed: bool) {
        if let Some(l) = self.loc(location) {
            l.task_scope.store(allowed, Ordering::Relaxed);
        }
    }

    /// Grants (default) or withdraws the custom-field scope of the location's static
    /// token (`locations/customFields.readonly`); without it, the definitions answer
    /// 401. OAuth tokens have the scopes granted at authorization instead.
    pub fn set_custom_fields_scope(&self, location: &str, allowed: bool) {
        if let Some(l) = self.loc(location) {
            l.fields_scope.store(allowed, Ordering::Relaxed);
        }
    }

    /// What the OAuth endpoints have answered so far.
    pub fn oauth_stats(&self) -> OAuthStats {
        self.app.oauth().stats()
    }

    /// Every OAuth access token issued so far (location and agency) is
    /// expired from now on: data routes answer 401 "Invalid JWT". Refresh
    /// tokens are untouched.
    pub fn expire_access_tokens(&self) {
        self.app.oauth().expire_access_tokens();
    }

    /// The refresh tokens issued so far for the location (spent ones
    /// included, so no grace replay either) are refused from now on with
    /// 400 "Invalid grant: refresh token is invalid". Given the company id
    /// instead, the agency's refresh tokens go. Access tokens stay valid.
    pub fn revoke_refresh_tokens(&self, location_id: &str) {
        self.app.oauth().revoke_refresh_tokens(location_id);
    }

    /// Marks the location inactive (as when its sub-account is suspended):
    /// refreshing its tokens, exchanging a code for it and minting a
    /// location token for it answer 400 "Location is not active". Its
    /// static token and unexpired access tokens keep working.
    pub fn deactivate_location(&self, location_id: &str) {
        self.app.oauth().deactivate(location_id);
    }

    /// Lifetime (`expires_in`) of the access tokens issued from now on.
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.app.oauth().set_access_ttl(ttl);
    }

    /// How long after its first use a refresh token replays the pair it
    /// returned; applies to every later replay, of tokens spent before too.
    pub fn set_refresh_grace(&self, grace: Duration) {
        self.app.oauth().set_refresh_grace(grace);
    }

    /// Moves the OAuth clock forward: codes, access tokens, refresh tokens
    /// and grace windows all see `by` more time pass (no sleeping in tests).
    pub fn advance_oauth_clock(&self, by: Duration) {
        self.app.oauth().advance_clock(by);
    }

    /// A location OAuth pair (access, refresh) with these scopes, as if a
    /// code had been exchanged (not counted in [`OAuthStats`]). Two empty
    /// strings for an unknown location.
    pub fn issue_tokens(&self, location_id: &str, scopes: &[&str]) -> (String, String) {
        self.app
            .oauth()
            .issue_for(location_id, scopes)
            .unwrap_or_default()
    }

    /// Moves a live contact to business `business_id` of its location, or
    /// to none, and bumps its dateUpdated. False for an unknown location,
    /// contact or business.
    pub fn set_contact_business(
        &self,
        location: &str,
        contact_id: &str,
        business_id: Option<&str>,
    ) -> bool {
        let (Some(loc), Some(id)) = (self.loc(location), Id::parse(contact_id)) else {
            return false;
        };
        let mut store = lock(&loc.store);
        let b = match business_id {
            None => None,
            Some(b) => match store.business_index(b) {
                Some(i) => Some(i),
                None => return false,
            },
        };
        store.set_business(&id, b)
    }

    /// Adds, edits or deletes tasks, notes and appointments of `fraction`
    /// (0..=1, rounded) of the live contacts, at least one change each;
    /// with `bump_contact`, each contact's dateUpdated is bumped too (seen
    /// by search after the search lag).
    pub fn churn_subresources(
        &self,
        location: &str,
        fraction: f64,
        bump_contact: bool,
    ) -> SubChurnReport {
        self.loc(location)
            .map(|l| lock(&l.store).churn_subs(fraction, bump_contact))
            .unwrap_or_default()
    }

    /// Exactly the `tasks` GET /contacts/:id/tasks returns; None if the
    /// contact is not live in the location.
    pub fn tasks_json(&self, location: &str, contact_id: &str) -> Option<Vec<Value>> {
        self.sub_json(location, contact_id, subroutes::tasks_body, "tasks")
    }

    /// Exactly the `notes` GET /contacts/:id/notes returns.
    pub fn notes_json(&self, location: &str, contact_id: &str) -> Option<Vec<Value>> {
        self.sub_json(location, contact_id, subroutes::notes_body, "notes")
    }

    /// Exactly the `events` GET /contacts/:id/appointments returns.
    pub fn appointments_json(&self, location: &str, contact_id: &str) -> Option<Vec<Value>> {
        self.sub_json(location, contact_id, subroutes::appointments_body, "events")
    }

    fn sub_json(
        &self,
        location: &str,
        contact_id: &str,
        body: fn(&store::Store, &Id) -> Vec<u8>,
        key: &str,
    ) -> Option<Vec<Value>> {
        let store = lock(&self.loc(location)?.store);
        let id = Id::parse(contact_id)?;
        store.get(&id)?;
        array_of(&body(&store, &id), key)
    }

    /// Every task of the location in task-search order (by task id).
    pub fn all_tasks_json(&self, location: &str) -> Vec<Value> {
        let Some(l) = self.loc(location) else {
            return Vec::new();
        };
        let store = lock(&l.store);
        let all: Vec<(Id, Id)> = store
            .subs
            .task_index
            .iter()
            .map(|(t, c)| (*t, *c))
            .collect();
        array_of(&subroutes::task_page_body(&store, &all), "tasks").unwrap_or_default()
    }

    /// The location's contact custom field definitions, as
    /// GET /locations/:id/customFields?model=contact lists them.
    pub fn custom_fields_json(&self, location: &str) -> Vec<Value> {
        let Some(l) = self.loc(location) else {
            return Vec::new();
        };
        let body = fields::body(&lock(&l.store).info, (true, false));
        match body.get("customFields") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        }
    }

    /// Every business of the location, as GET /businesses/ lists them.
    pub fn businesses_json(&self, location: &str) -> Vec<Value> {
        self.loc(location)
            .and_then(|l| serde_json::to_value(&lock(&l.store).businesses).ok())
            .and_then(|v| match v {
                Value::Array(items) => Some(items),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Ids of the live contacts in a business, in the order
    /// GET /contacts/business/:id pages them (dateAdded, then id).
    pub fn business_contact_ids(&self, location: &str, business_id: &str) -> Vec<String> {
        let Some(l) = self.loc(location) else {
            return Vec::new();
        };
        let store = lock(&l.store);
        let Some(b) = store.business_index(business_id) else {
            return Vec::new();
        };
        store
            .business_members(b)
            .map(|k| k.1.as_str().to_string())
            .collect()
    }
}

/// The array under `key` in a JSON object body.
fn array_of(body: &[u8], key: &str) -> Option<Vec<Value>> {
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Object(mut m) => match m.remove(key)? {
            Value::Array(items) => Some(items),
            _ => None,
        },
        _ => None,
    }
}
