//! The HighLevel client: one per location. Auth and `Version` headers, proactive pacing
//! (`limiter`), retries with exponential backoff and full jitter, daily-quota tracking, and the
//! single funnel that turns HTTP responses into `UpstreamError`s. `wire` owns the JSON.
//!
//! Architecture invariant: the only module that knows HighLevel's URLs, headers and JSON (the
//! sandbox has its own copy, being the other side of the wire). It knows `model` only.

pub mod limiter;
pub mod oauth;
pub mod wire;

use crate::model::{Record, SortKey, SubKind};
use bytes::Bytes;
use futures::future::BoxFuture;
use limiter::Limiter;
use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use url::Url;
pub use wire::{ContactsPage, Position, RecordPage};

/// Everything a client needs; built by the composition root from `Config`.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub base_url: Url,
    pub api_version: String,
    pub location_id: String,
    pub credentials: Credentials,
    pub timeout: Duration,
    pub burst_max: u32,
    pub interval: Duration,
    pub safety_margin: Duration,
    pub daily_reserve: u32,
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// Where a location's bearer token comes from.
#[derive(Clone)]
pub enum Credentials {
    /// A Private Integration Token (or any token that never changes), from the environment.
    Static(SecretString),
    /// OAuth tokens, kept current (refreshed before expiry and after a 401) by their source.
    Managed(std::sync::Arc<dyn TokenSource>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Static(_) => f.write_str("Static([REDACTED])"),
            Credentials::Managed(s) => write!(f, "Managed({})", s.describe()),
        }
    }
}

/// A bearer token that can change: the OAuth token manager implements it.
pub trait TokenSource: Send + Sync {
    /// The token for the next request, refreshed first when it is about to expire.
    fn bearer(&self) -> BoxFuture<'_, Result<SecretString, UpstreamError>>;
    /// HighLevel refused `used` as invalid or expired (401): a new token, refreshing unless
    /// another request already did; or the error that needs a person.
    fn refused(&self, used: SecretString) -> BoxFuture<'_, Result<SecretString, UpstreamError>>;
    /// What the source is, for logs ("OAuth location token of ..."); never a token.
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("location {location}: {message}")]
    Auth { location: String, message: String },
    #[error(
        "{endpoint}: HighLevel rejected the token of location {location} (401: {message}); check the token in its environment variable, or create a new Private Integration Token"
    )]
    Unauthorized {
        endpoint: &'static str,
        location: String,
        message: String,
    },
    #[error(
        "{endpoint}: the token has no access to location {location} (403: {message}); use a token issued for this location, with the contacts.readonly scope"
    )]
    Forbidden {
        endpoint: &'static str,
        location: String,
        message: String,
    },
    #[error(
        "{endpoint}: HighLevel rejected the Version header {version:?} ({status}: {message}); set upstream.api_version = \"2021-07-28\" in the config"
    )]
    VersionRejected {
        endpoint: &'static str,
        version: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint}: HighLevel rejected the request ({status}: {message})")]
    Rejected {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    #[error("{endpoint}: rate limited by HighLevel (429: {message})")]
    RateLimited {
        endpoint: &'static str,
        message: String,
    },
    #[error("{endpoint}: HighLevel server error ({status}: {message})")]
    Server {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    #[error("{endpoint}: no response within {timeout:?}")]
    Timeout {
        endpoint: &'static str,
        timeout: Duration,
    },
    #[error("{endpoint}: connection failed: {detail}")]
    Transport {
        endpoint: &'static str,
        detail: String,
    },
    #[error("gave up after {attempts} attempts; last error: {last}")]
    Exhausted {
        attempts: u32,
        last: Box<UpstreamError>,
    },
    #[error(
        "{endpoint}: not sent: this run's request budget of {limit} is spent (budget.run_requests / budget.daily_share); the next run continues"
    )]
    BudgetSpent { endpoint: &'static str, limit: u64 },
    #[error("{endpoint}: abandoned: the run was asked to stop")]
    Stopped { endpoint: &'static str },
    #[error(
        "{endpoint}: malformed response from HighLevel: {detail}; nothing from this page was stored"
    )]
    Malformed {
        endpoint: &'static str,
        detail: String,
    },
}

impl UpstreamError {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            UpstreamError::RateLimited { .. }
                | UpstreamError::Server { .. }
                | UpstreamError::Timeout { .. }
                | UpstreamError::Transport { .. }
        )
    }

    /// An error about one request's answer (a 4xx, a body that does not parse), not about the
    /// token or the connection: other requests may well succeed.
    pub fn is_item_error(&self) -> bool {
        matches!(
            self,
            UpstreamError::Rejected { .. } | UpstreamError::Malformed { .. }
        )
    }

    /// A 401/403 that is about what the token may do (a missing scope), not about the token
    /// itself being invalid, expired or revoked. Endpoints that need an optional scope fall back
    /// on this; an invalid token must fail the run instead.
    pub fn is_scope_refusal(&self) -> bool {
        match self {
            UpstreamError::Unauthorized { message, .. }
            | UpstreamError::Forbidden { message, .. } => {
                let m = message.to_ascii_lowercase();
                ![
                    "invalid token",
                    "invalid jwt",
                    "expired",
                    "access token is invalid",
                ]
                .iter()
                .any(|p| m.contains(p))
                    && !m.contains("access to this location")
            }
            _ => false,
        }
    }

    /// Whether the location cannot sync until a person changes something (token, config).
    pub fn needs_attention(&self) -> bool {
        match self {
            UpstreamError::Unauthorized { .. }
            | UpstreamError::Forbidden { .. }
            | UpstreamError::VersionRejected { .. }
            | UpstreamError::Auth { .. } => true,
            UpstreamError::Exhausted { last, .. } => last.needs_attention(),
            _ => false,
        }
    }
}

/// Request counts since the client was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
}

/// One search request of a sweep.
#[derive(Clone, Debug)]
pub struct SearchRequest {
    pub since_ms: Option<i64>,
    pub descending: bool,
    pub after: Option<SortKey>,
    pub page_limit: u32,
}

/// A cheap, clonable handle on one location's connection, limiter and daily-quota figure.
/// [`Client::for_run`] gives a run its own request counters and, optionally, a [`Budget`]; every
/// handle of a location shares the limiter, so concurrent runs never exceed the burst limit.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    scope: Arc<Scope>,
}

struct Inner {
    http: reqwest::Client,
    s: ClientSettings,
    limiter: Limiter,
    /// Last `X-RateLimit-Daily-Remaining` seen; -1 when never seen.
    daily_remaining: AtomicI64,
}

/// What one run (or the whole client, before `for_run`) has spent, and its stop signal.
#[derive(Default)]
struct Scope {
    requests: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    budget: Option<Budget>,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
}

/// How long a request in flight may still finish after a stop signal.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A run's request allowance: at most `max_requests` HTTP requests (retries included), and at
/// most `daily_share` of the daily quota HighLevel reported left when the run started.
#[derive(Debug)]
pub struct Budget {
    limit: AtomicU64,
    used: AtomicU64,
    daily_share: f64,
    daily_applied: std::sync::atomic::AtomicBool,
}

impl Budget {
    pub fn new(max_requests: u64, daily_share: f64) -> Budget {
        Budget {
            limit: AtomicU64::new(max_requests),
            used: AtomicU64::new(0),
            daily_share: daily_share.clamp(0.0, 1.0),
            daily_applied: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Takes one request from the allowance; false when it is spent.
    fn try_take(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < limit).then_some(u + 1)
            })
            .is_ok()
    }

    /// The first daily-quota figure of the run caps the allowance at `daily_share` of what was
    /// left when the run started (what is left now plus what this run already spent).
    fn observe_daily(&self, remaining: u64) {
        if self.daily_applied.swap(true, Ordering::AcqRel) {
            return;
        }
        let at_start = remaining.saturating_add(self.used.load(Ordering::Acquire));
        let cap = (at_start as f64 * self.daily_share).floor() as u64;
        self.limit.fetch_min(cap, Ordering::AcqRel);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Acquire)
    }
}

impl Client {
    pub fn new(s: ClientSettings) -> Result<Client, UpstreamError> {
        let http = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(8)
            .user_agent(concat!("ghl-mirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::Transport {
                endpoint: "client",
                detail: e.to_string(),
            })?;
        let limiter = Limiter::new(s.burst_max, s.interval, s.safety_margin);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                s,
                limiter,
                daily_remaining: AtomicI64::new(-1),
            }),
            scope: Arc::default(),
        })
    }

    /// A handle for one run: same connection, limiter and quota figure; its own counters,
    /// optional budget, and optional stop signal. Once the signal is up, no request starts, none
    /// is retried, and one in flight gets `STOP_GRACE` to finish before it is abandoned.
    pub fn for_run(
        &self,
        budget: Option<Budget>,
        stop: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Client {
        Client {
            inner: self.inner.clone(),
            scope: Arc::new(Scope {
                budget,
                stop,
                ..Scope::default()
            }),
        }
    }

    fn stopping(&self) -> bool {
        self.scope.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Resolves once the stop signal is up, plus `grace`; never without a signal.
    async fn stopped(&self, grace: Duration) {
        let Some(mut stop) = self.scope.stop.clone() else {
            return std::future::pending().await;
        };
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
        tokio::time::sleep(grace).await;
    }

    /// The pace this location's requests go at: at most this many in any window this long.
    pub fn pace(&self) -> (u32, Duration) {
        self.inner.limiter.pace()
    }

    pub fn budget(&self) -> Option<&Budget> {
        self.scope.budget.as_ref()
    }

    pub fn location_id(&self) -> &str {
        &self.inner.s.location_id
    }

    pub fn counters(&self) -> Counters {
        Counters {
            requests: self.scope.requests.load(Ordering::Relaxed),
            retries: self.scope.retries.load(Ordering::Relaxed),
            rate_limited: self.scope.rate_limited.load(Ordering::Relaxed),
        }
    }

    pub fn daily_remaining(&self) -> Option<i64> {
        Some(self.inner.daily_remaining.load(Ordering::Relaxed)).filter(|v| *v >= 0)
    }

    /// True once HighLevel says fewer requests are left today than the configured reserve.
    pub fn quota_low(&self) -> bool {
        self.daily_remaining()
            .is_some_and(|r| r < i64::from(self.inner.s.daily_reserve))
    }

    pub fn daily_reserve(&self) -> u32 {
        self.inner.s.daily_reserve
    }

    /// `POST /contacts/search`, sorted by dateUpdated (HighLevel breaks ties by id, as the
    /// `searchAfter` pair `[ms, id]` shows).
    pub async fn search_contacts(
        &self,
        req: &SearchRequest,
    ) -> Result<ContactsPage, UpstreamError> {
        const EP: &str = "POST /contacts/search";
        let mut body = serde_json::json!({
            "locationId": self.inner.s.location_id,
            "pageLimit": req.page_limit,
            "sort": [{"field": "dateUpdated", "direction": if req.descending { "desc" } else { "asc" }}],
        });
        if let Some(since) = req.since_ms {
            body["filters"] = serde_json::json!([{
                "field": "dateUpdated",
                "operator": "range",
                "value": {"gte": crate::model::iso_from_ms(since)},
            }]);
        }
        if let Some(k) = &req.after {
            body["searchAfter"] = serde_json::json!([k.ms, k.id]);
        }
        let url = self.url("contacts/search")?;
        let (bytes, date) = self
            .send_dated(EP, || self.inner.http.post(url.clone()).json(&body))
            .await?;
        let mut page = parse(EP, &bytes, Position::DateUpdated)?;
        page.server_date_ms = date;
        Ok(page)
    }

    /// `GET /contacts/` (deprecated legacy list), ordered by dateAdded, paged by
    /// `startAfter` (ms) + `startAfterId`.
    pub async fn list_contacts(
        &self,
        after: Option<&SortKey>,
        limit: u32,
    ) -> Result<ContactsPage, UpstreamError> {
        const EP: &str = "GET /contacts/";
        let mut url = self.url("contacts/")?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("locationId", &self.inner.s.location_id);
            q.append_pair("limit", &limit.to_string());
            if let Some(k) = after {
                q.append_pair("startAfter", &k.ms.to_string());
                q.append_pair("startAfterId", &k.id);
            }
        }
        let bytes = self.send(EP, || self.inner.http.get(url.clone())).await?;
        parse(EP, &bytes, Position::DateAdded)
    }

    /// `GET /contacts/:contactId/{tasks,notes,appointments}`: the contact's whole list (HighLevel
    /// does not page these).
    pub async fn contact_list(
        &self,
        kind: SubKind,
        contact_id: &str,
    ) -> Result<Vec<Record>, UpstreamError> {
        let (ep, key) = match kind {
            SubKind::Tasks => ("GET /contacts/:contactId/tasks", "tasks"),
            SubKind::Notes => ("GET /contacts/:contactId/notes", "notes"),
            SubKind::Appointments => ("GET /contacts/:contactId/appointments", "events"),
        };
        let url = self.url_segments(&["contacts", contact_id, kind.as_str()])?;
        let bytes = self.send(ep, || self.inner.http.get(url.clone())).await?;
        Ok(records(ep, &bytes, key)?.records)
    }

    /// `POST /locations/:locationId/tasks/search` for the given contacts (completed or not):
    /// one page of `limit` from `skip`. Needs the `locations/tasks.readonly` scope; without it
    /// HighLevel answers 401 or 403.
    pub async fn search_tasks(
        &self,
        contact_ids: &[&str],
        skip: u64,
        limit: u32,
    ) -> Result<Vec<Record>, UpstreamError> {
        const EP: &str = "POST /locations/:locationId/tasks/search";
        let url =
            self.url_segments(&["locations", &self.inner.s.location_id, "tasks", "search"])?;
        let body = serde_json::json!({"contactId": contact_ids, "limit": limit, "skip": skip});
        let bytes = self
            .send(EP, || self.inner.http.post(url.clone()).json(&body))
            .await?;
        Ok(records(EP, &bytes, "tasks")?.records)
    }

    /// `GET /businesses/?locationId=`: one page of the location's businesses.
    pub async fn businesses(&self, skip: u64, limit: u32) -> Result<Vec<Record>, UpstreamError> {
        const EP: &str = "GET /businesses/";
        let mut url = self.url("businesses/")?;
        url.query_pairs_mut()
            .append_pair("locationId", &self.inner.s.location_id)
            .append_pair("limit", &limit.to_string())
            .append_pair("skip", &skip.to_string());
        let bytes = self.send(EP, || self.inner.http.get(url.clone())).await?;
        Ok(records(EP, &bytes, "businesses")?.records)
    }

    /// `GET /contacts/business/:businessId`: one page of the business's contacts and the total.
    pub async fn business_contacts(
        &self,
        business_id: &str,
        skip: u64,
        limit: u32,
    ) -> Result<RecordPage, UpstreamError> {
        const EP: &str = "GET /contacts/business/:businessId";
        let mut url = self.url_segments(&["contacts", "business", business_id])?;
        url.query_pairs_mut()
            .append_pair("locationId", &self.inner.s.location_id)
            .append_pair("limit", &limit.to_string())
            .append_pair("skip", &skip.to_string());
        let bytes = self.send(EP, || self.inner.http.get(url.clone())).await?;
        records(EP, &bytes, "contacts")
    }

    /// `GET /locations/:locationId/customFields?model=contact`: the location's contact custom
    /// field definitions (names for the ids in each contact's `customFields`).
    pub async fn custom_fields(&self) -> Result<Vec<Record>, UpstreamError> {
        const EP: &str = "GET /locations/:locationId/customFields";
        let mut url =
            self.url_segments(&["locations", &self.inner.s.location_id, "customFields"])?;
        url.query_pairs_mut().append_pair("model", "contact");
        let bytes = self.send(EP, || self.inner.http.get(url.clone())).await?;
        Ok(records(EP, &bytes, "customFields")?.records)
    }

    /// The base URL plus path segments, each percent-encoded (ids never break the path).
    fn url_segments(&self, segments: &[&str]) -> Result<Url, UpstreamError> {
        let mut url = self.url("")?;
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| UpstreamError::Transport {
                    endpoint: "url",
                    detail: "upstream.base_url cannot have a path".into(),
                })?;
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    fn url(&self, path: &str) -> Result<Url, UpstreamError> {
        let mut base = self.inner.s.base_url.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        base.join(path).map_err(|e| UpstreamError::Transport {
            endpoint: "url",
            detail: format!("cannot build a URL from upstream.base_url: {e}"),
        })
    }

    /// Sends with pacing and retries; returns the body of a 2xx response.
    async fn send(
        &self,
        endpoint: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Bytes, UpstreamError> {
        self.send_dated(endpoint, build).await.map(|(body, _)| body)
    }

    /// [`Client::send`], with HighLevel's clock when it answered (its `Date` header, in ms).
    async fn send_dated(
        &self,
        endpoint: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(Bytes, Option<i64>), UpstreamError> {
        let max_attempts = self.inner.s.max_attempts.max(1);
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            if self.stopping() {
                return Err(UpstreamError::Stopped { endpoint });
            }
            if let Some(b) = &self.scope.budget
                && !b.try_take()
            {
                return Err(UpstreamError::BudgetSpent {
                    endpoint,
                    limit: b.limit(),
                });
            }
            tokio::select! {
                biased;
                () = self.stopped(Duration::ZERO) => return Err(UpstreamError::Stopped { endpoint }),
                () = self.inner.limiter.acquire() => {}
            }
            // A token that cannot be had now (the token endpoint is down) is retried like a
            // failed request.
            let bearer = match &self.inner.s.credentials {
                Credentials::Static(t) => Ok(t.clone()),
                Credentials::Managed(src) => src.bearer().await,
            };
            let t = std::time::Instant::now();
            let (token, result) = match bearer {
                Ok(token) => {
                    self.scope.requests.fetch_add(1, Ordering::Relaxed);
                    let r = tokio::select! {
                        r = self.once(endpoint, build(), &token) => r,
                        () = self.stopped(STOP_GRACE) => Err(UpstreamError::Stopped { endpoint }),
                    };
                    (Some(token), r)
                }
                Err(e) => (None, Err(e)),
            };
            tracing::debug!(
                endpoint,
                attempt,
                ms = t.elapsed().as_millis() as u64,
                ok = result.is_ok(),
                "request"
            );
            let err = match result {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            // An OAuth token HighLevel calls invalid or expired is renewed once, and the
            // request sent again at once (a missing scope is not the token's fault).
            if let (Credentials::Managed(src), UpstreamError::Unauthorized { .. }, false, Some(t)) =
                (&self.inner.s.credentials, &err, renewed, token)
                && !err.is_scope_refusal()
            {
                renewed = true;
                tracing::debug!(endpoint, "token refused (401): renewing it once");
                src.refused(t).await?;
                attempt -= 1;
                continue;
            }
            if matches!(err, UpstreamError::RateLimited { .. }) {
                self.scope.rate_limited.fetch_add(1, Ordering::Relaxed);
                self.inner.limiter.pause(self.inner.limiter.interval());
            }
            if self.stopping() && err.is_retryable() {
                return Err(UpstreamError::Stopped { endpoint });
            }
            if !err.is_retryable() {
                return Err(err);
            }
            if attempt >= max_attempts {
                return Err(UpstreamError::Exhausted {
                    attempts: attempt,
                    last: Box::new(err),
                });
            }
            self.scope.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(endpoint, attempt, error = %err, "retrying");
            tokio::select! {
                () = tokio::time::sleep(self.backoff(attempt)) => {}
                () = self.stopped(Duration::ZERO) => return Err(UpstreamError::Stopped { endpoint }),
            }
        }
    }

    /// Full jitter: a random delay in [0, min(max_delay, base_delay * 2^(attempt-1))].
    fn backoff(&self, attempt: u32) -> Duration {
        let s = &self.inner.s;
        let exp = s.base_delay.saturating_mul(1u32 << (attempt - 1).min(20));
        let cap = exp.min(s.max_delay);
        let ms = cap.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }

    async fn once(
        &self,
        endpoint: &'static str,
        rb: reqwest::RequestBuilder,
        token: &SecretString,
    ) -> Result<(Bytes, Option<i64>), UpstreamError> {
        let s = &self.inner.s;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| UpstreamError::Unauthorized {
                endpoint,
                location: s.location_id.clone(),
                message: "the token contains characters not allowed in an HTTP header".into(),
            })?;
        auth.set_sensitive(true);
        let resp = rb
            .header(AUTHORIZATION, auth)
            .header("Version", &s.api_version)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.transport(endpoint, e))?;
        self.observe(resp.headers());
        let date = http_date_ms(resp.headers());
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport(endpoint, e))?;
        if status.is_success() {
            return Ok((body, date));
        }
        Err(self.status_error(endpoint, status.as_u16(), &body))
    }

    fn transport(&self, endpoint: &'static str, e: reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            return UpstreamError::Timeout {
                endpoint,
                timeout: self.inner.s.timeout,
            };
        }
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            src = s.source();
        }
        UpstreamError::Transport { endpoint, detail }
    }

    fn observe(&self, h: &HeaderMap) {
        let num = |name: &str| -> Option<u64> { h.get(name)?.to_str().ok()?.trim().parse().ok() };
        if let Some(d) = num("x-ratelimit-daily-remaining") {
            if let Some(b) = &self.scope.budget {
                b.observe_daily(d);
            }
            self.inner
                .daily_remaining
                .store(i64::try_from(d).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
        let max = num("x-ratelimit-max").and_then(|v| u32::try_from(v).ok());
        let remaining = num("x-ratelimit-remaining").and_then(|v| u32::try_from(v).ok());
        self.inner
            .limiter
            .observe(max, remaining, num("x-ratelimit-interval-milliseconds"));
    }

    /// The one funnel from a non-2xx response to an error.
    fn status_error(&self, endpoint: &'static str, status: u16, body: &[u8]) -> UpstreamError {
        let s = &self.inner.s;
        let message = error_message(body);
        if matches!(status, 400 | 401 | 422) && message.to_ascii_lowercase().contains("version") {
            return UpstreamError::VersionRejected {
                endpoint,
                version: s.api_version.clone(),
                status,
                message,
            };
        }
        match status {
            401 => UpstreamError::Unauthorized {
                endpoint,
                location: s.location_id.clone(),
                message,
            },
            403 => UpstreamError::Forbidden {
                endpoint,
                location: s.location_id.clone(),
                message,
            },
            429 => UpstreamError::RateLimited { endpoint, message },
            500..=599 => UpstreamError::Server {
                endpoint,
                status,
                message,
            },
            _ => UpstreamError::Rejected {
                endpoint,
                status,
                message,
            },
        }
    }
}

/// HighLevel's error bodies carry `message` as a string (400/401) or a list (422).
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrBody {
        message: serde_json::Value,
    }
    match serde_json::from_slice::<ErrBody>(body) {
        Ok(ErrBody {
            message: serde_json::Value::String(s),
        }) => s,
        Ok(ErrBody {
            message: serde_json::Value::Array(items),
        }) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join("; "),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "empty body".into()
            } else {
                text.chars().take(200).collect()
            }
        }
    }
}

/// The `Date` header (IMF-fixdate, as HTTP/1.1 servers send it) in ms since the epoch.
fn http_date_ms(h: &HeaderMap) -> Option<i64> {
    let text = h.get(reqwest::header::DATE)?.to_str().ok()?;
    let t = time::PrimitiveDateTime::parse(
        text.trim(),
        time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ),
    )
    .ok()?;
    Some(t.assume_utc().unix_timestamp() * 1000)
}

fn parse(
    endpoint: &'static str,
    body: &[u8],
    pos: Position,
) -> Result<ContactsPage, UpstreamError> {
    wire::parse_page(body, pos).map_err(|e| UpstreamError::Malformed {
        endpoint,
        detail: e.to_string(),
    })
}

fn records(
    endpoint: &'static str,
    body: &[u8],
    key: &'static str,
) -> Result<RecordPage, UpstreamError> {
    wire::parse_records(body, key).map_err(|e| UpstreamError::Malformed {
        endpoint,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_header_is_read_in_ms_and_anything_else_is_ignored() {
        let mut h = HeaderMap::new();
        assert_eq!(http_date_ms(&h), None);
        h.insert(
            reqwest::header::DATE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(http_date_ms(&h), Some(784_111_777_000));
        h.insert(reqwest::header::DATE, HeaderValue::from_static("yesterday"));
        assert_eq!(http_date_ms(&h), None);
    }

    #[test]
    fn a_missing_scope_is_told_apart_from_a_bad_token() {
        let unauthorized = |m: &str| UpstreamError::Unauthorized {
            endpoint: "x",
            location: "l".into(),
            message: m.into(),
        };
        assert!(unauthorized("The token is not authorized for this scope.").is_scope_refusal());
        assert!(!unauthorized("Invalid token: access token is invalid").is_scope_refusal());
        assert!(!unauthorized("Invalid JWT").is_scope_refusal());
        let forbidden = UpstreamError::Forbidden {
            endpoint: "x",
            location: "l".into(),
            message: "The token does not have access to this location.".into(),
        };
        assert!(!forbidden.is_scope_refusal());
    }

    #[test]
    fn a_budget_hands_out_exactly_its_requests() {
        let b = Budget::new(3, 1.0);
        assert!(b.try_take() && b.try_take() && b.try_take());
        assert!(!b.try_take());
        assert_eq!(b.used(), 3);
        assert_eq!(b.limit(), 3, "nothing is left");
    }

    #[test]
    fn the_first_daily_figure_caps_a_budget_at_its_share() {
        let b = Budget::new(1_000, 0.1);
        assert!(b.try_take());
        // 499 left after this run's first request: 500 at the start, 10% of it is 50.
        b.observe_daily(499);
        assert_eq!(b.limit(), 50);
        b.observe_daily(10);
        assert_eq!(b.limit(), 50, "only the first figure counts");
        let small = Budget::new(20, 0.5);
        small.observe_daily(1_000_000);
        assert_eq!(small.limit(), 20, "the run budget still applies");
    }
}
