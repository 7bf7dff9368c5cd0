//! The HighLevel client: one per location. Auth and `Version` headers, proactive pacing
//! (`limiter`), retries with exponential backoff and full jitter, daily-quota tracking, and the
//! single funnel that turns HTTP responses into `UpstreamError`s. `wire` owns the JSON.
//!
//! Architecture invariant: the only module that knows HighLevel's URLs, headers and JSON (the
//! sandbox has its own copy, being the other side of the wire). It knows `model` only.

pub mod limiter;
pub mod wire;

use crate::model::SortKey;
use bytes::Bytes;
use limiter::Limiter;
use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use url::Url;
pub use wire::{ContactsPage, Position};

/// Everything a client needs; built by the composition root from `Config`.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub base_url: Url,
    pub api_version: String,
    pub location_id: String,
    pub token: SecretString,
    pub timeout: Duration,
    pub burst_max: u32,
    pub interval: Duration,
    pub safety_margin: Duration,
    pub daily_reserve: u32,
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
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

    /// Whether the location cannot sync until a person changes something (token, config).
    pub fn needs_attention(&self) -> bool {
        match self {
            UpstreamError::Unauthorized { .. }
            | UpstreamError::Forbidden { .. }
            | UpstreamError::VersionRejected { .. } => true,
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

/// A cheap, clonable handle; all clones share one limiter and one set of counters.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    s: ClientSettings,
    limiter: Limiter,
    requests: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    /// Last `X-RateLimit-Daily-Remaining` seen; -1 when never seen.
    daily_remaining: AtomicI64,
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
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
                daily_remaining: AtomicI64::new(-1),
            }),
        })
    }

    pub fn location_id(&self) -> &str {
        &self.inner.s.location_id
    }

    pub fn counters(&self) -> Counters {
        Counters {
            requests: self.inner.requests.load(Ordering::Relaxed),
            retries: self.inner.retries.load(Ordering::Relaxed),
            rate_limited: self.inner.rate_limited.load(Ordering::Relaxed),
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
        let bytes = self
            .send(EP, || self.inner.http.post(url.clone()).json(&body))
            .await?;
        parse(EP, &bytes, Position::DateUpdated)
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
        let max_attempts = self.inner.s.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.inner.limiter.acquire().await;
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let t = std::time::Instant::now();
            let result = self.once(endpoint, build()).await;
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
            if matches!(err, UpstreamError::RateLimited { .. }) {
                self.inner.rate_limited.fetch_add(1, Ordering::Relaxed);
                self.inner.limiter.pause(self.inner.limiter.interval());
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
            self.inner.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(endpoint, attempt, error = %err, "retrying");
            tokio::time::sleep(self.backoff(attempt)).await;
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
    ) -> Result<Bytes, UpstreamError> {
        let s = &self.inner.s;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", s.token.expose_secret()))
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
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport(endpoint, e))?;
        if status.is_success() {
            return Ok(body);
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
