//! The local HTTP API (axum): HighLevel's read paths answered from the mirror with HighLevel's
//! JSON shapes and status codes (`highlevel`), and the mirror's own routes (`mirror`):
//! `/mirror/status`, `/mirror/search`, `/metrics`, `/health`.
//!
//! Every response carries how fresh its data is (`X-Mirror-Synced-At`, `X-Mirror-Age-Seconds`).
//! A bearer token, when configured, guards every route but `/health`; listening beyond loopback
//! without one is refused. Bad input of any kind gets a 4xx JSON body naming what was wrong;
//! a database failure gets a 503 with the reason.
//!
//! Architecture invariant: reads only, through `store`; the only module that knows the local
//! API's HTTP shapes.

mod highlevel;
mod metrics;
mod mirror;
pub mod params;
mod write_deadline;

use crate::model::{iso_from_ms, now_ms};
use crate::store::{Store, StoreError};
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve on {addr}: it is reachable from other machines and no API token is set; \
         export {token_env}=<a long random string> (clients then send `Authorization: Bearer <it>`), \
         or listen on 127.0.0.1"
    )]
    ExposedWithoutToken { addr: SocketAddr, token_env: String },
    #[error(
        "the API token in {token_env} contains whitespace inside it, so no client could send it \
         in an `Authorization: Bearer` header; set {token_env} to one word (e.g. the output of \
         `openssl rand -hex 32`)"
    )]
    TokenWithSpace { token_env: String },
    #[error("cannot listen on {addr}: {source}; pick a free port with --listen or serve.listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the local API stopped: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Refuses a token no client can send (whitespace inside it; the config trims the ends) and
/// an address beyond loopback without a token.
pub fn check_exposure(
    addr: SocketAddr,
    token: Option<&SecretString>,
    token_env: &str,
) -> Result<(), ServeError> {
    if token.is_some_and(|t| t.expose_secret().chars().any(char::is_whitespace)) {
        return Err(ServeError::TokenWithSpace {
            token_env: token_env.to_string(),
        });
    }
    if addr.ip().is_loopback() || token.is_some() {
        return Ok(());
    }
    Err(ServeError::ExposedWithoutToken {
        addr,
        token_env: token_env.to_string(),
    })
}

/// Binds `addr` (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// How long the local API waits on clients, and how many it serves at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A request's line and headers must arrive within this, else the connection is closed
    /// (this also closes a keep-alive connection idle for this long).
    pub header: Duration,
    /// Reading a request's body and answering it; past this the client gets a 408. Also the
    /// longest a response write waits on a client that does not read (then it is closed).
    pub request: Duration,
    /// On shutdown, requests in flight get this long to finish; connections still open are
    /// then closed.
    pub grace: Duration,
    /// Connections open at once; more clients wait (in the listen queue) until one closes.
    pub max_connections: usize,
}

impl Default for Timeouts {
    /// 10 s for the headers, 30 s for a whole request, 3 s of grace on shutdown, 512
    /// connections.
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            request: Duration::from_secs(30),
            grace: Duration::from_secs(3),
            max_connections: 512,
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, with the default [`Timeouts`].
pub async fn serve(
    store: Store,
    token: Option<SecretString>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(store, token, listener, shutdown, Timeouts::default()).await
}

/// Serves the API on `listener` until `shutdown` completes: then it stops accepting, lets the
/// requests in flight finish for `timeouts.grace`, closes every connection still open (a slow
/// or stalled client included) and returns.
pub async fn serve_with(
    store: Store,
    token: Option<SecretString>,
    mut listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    timeouts: Timeouts,
) -> Result<(), ServeError> {
    let reader = store.reader(READ_CONNECTIONS, CONNECTION_WAIT)?;
    let app = router_with(reader, token, timeouts.request);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let (stopping, _) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(Semaphore::new(timeouts.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A connection slot first: past `max_connections`, new clients wait in the listen
        // queue until one closes.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                log_panic(done);
                continue;
            }
        };
        let io = tokio::select! {
            () = &mut shutdown => break,
            (io, _) = axum::serve::Listener::accept(&mut listener) => io,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                log_panic(done);
                continue;
            }
        };
        let io = write_deadline::WriteDeadline::new(io, timeouts.request);
        let conn = http.serve_connection(
            hyper_util::rt::TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(app.clone()),
        );
        let mut stop = stopping.subscribe();
        connections.spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let finished = tokio::select! {
                _ = conn.as_mut() => true,
                () = stopped => false,
            };
            if !finished {
                // Finish the request in flight, then close.
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    let drained = tokio::time::timeout(timeouts.grace, async {
        while let Some(done) = connections.join_next().await {
            log_panic(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            "local API: closing the connections still open after the shutdown grace period"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// A connection task that panicked is a bug: say so (the other connections go on).
fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "local API: a connection task panicked; its client was disconnected");
    }
}

/// Searches, lists, status and metrics that may run at once; more wait their turn.
const HEAVY_SLOTS: usize = 4;
/// How long a request waits for a slot before it gets a 503.
const HEAVY_WAIT: Duration = Duration::from_secs(10);
/// The API's own connections: the heavy slots plus room for point reads (which run on the
/// async workers, at most one per worker) and the freshness refresh.
const READ_CONNECTIONS: u32 = HEAVY_SLOTS as u32 + 4;
/// A read that finds every connection busy for this long gets a 503.
const CONNECTION_WAIT: Duration = Duration::from_secs(5);

/// What every handler shares.
pub(crate) struct Api {
    store: Store,
    token: Option<SecretString>,
    freshness: RwLock<Arc<Freshness>>,
    refreshing: AtomicBool,
    heavy: Arc<Semaphore>,
    metrics: metrics::HttpMetrics,
    /// The database's figures for `/metrics`, with when they were read.
    db_metrics: tokio::sync::Mutex<Option<(Instant, Arc<crate::store::Metrics>)>>,
    /// Reading a request's body and answering it.
    request_timeout: Duration,
}

/// Each location's last successful contacts sync, as of `read_at`.
struct Freshness {
    read_at: Instant,
    synced_ms: HashMap<String, Option<i64>>,
}

impl Freshness {
    /// Reads the figures; on an error the previous ones stand (handlers report their own).
    fn read(store: &Store, previous: Option<&Freshness>) -> Freshness {
        let synced_ms = match store.contacts_synced_ms() {
            Ok(rows) => rows.into_iter().collect(),
            Err(_) => previous.map(|p| p.synced_ms.clone()).unwrap_or_default(),
        };
        Freshness {
            read_at: Instant::now(),
            synced_ms,
        }
    }
}

/// How old the freshness figures may get before a request triggers a re-read.
const FRESHNESS_TTL: Duration = Duration::from_secs(1);

impl Api {
    /// The freshness figures. When they are older than [`FRESHNESS_TTL`], one re-read starts
    /// off the async workers; requests meanwhile use the figures they have.
    fn freshness(self: &Arc<Self>) -> Arc<Freshness> {
        let current = self
            .freshness
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if current.read_at.elapsed() >= FRESHNESS_TTL
            && !self.refreshing.swap(true, Ordering::AcqRel)
        {
            let api = self.clone();
            let previous = current.clone();
            tokio::task::spawn_blocking(move || {
                let next = Arc::new(Freshness::read(&api.store, Some(&previous)));
                *api.freshness
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
                api.refreshing.store(false, Ordering::Release);
            });
        }
        current
    }

    /// The locations the mirror holds (as of about a second ago).
    fn mirrored_locations(self: &Arc<Self>) -> Vec<String> {
        let mut ids: Vec<String> = self.freshness().synced_ms.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The last successful contacts sync of `location`, or the least recent across locations.
    fn synced_ms(self: &Arc<Self>, location: Option<&str>) -> Option<i64> {
        let f = self.freshness();
        match location {
            Some(loc) => f.synced_ms.get(loc).copied().flatten(),
            None if f.synced_ms.values().any(Option::is_none) => None,
            None => f.synced_ms.values().copied().flatten().min(),
        }
    }

    /// Runs a read that may take a while (a search, a list, a count) off the async workers,
    /// in one of [`HEAVY_SLOTS`]; a request that waits longer than [`HEAVY_WAIT`] for a slot
    /// gets a 503 instead. The slot is held until the read has ended; when the request is
    /// given up (its timeout, a client gone), its query is stopped.
    async fn heavy<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(HEAVY_WAIT, self.heavy.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                ApiError::unavailable(format!(
                    "the mirror is busy answering {HEAVY_SLOTS} other searches; retry in a moment"
                ))
            })?;
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let flag = stop.0.clone();
        let api = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crate::store::stoppable(flag, || f(&api.store))
        })
        .await
        .map_err(|e| ApiError::unavailable(format!("the query was aborted: {e}")))?
    }
}

/// Stops the [`crate::store::stoppable`] read it flags when dropped (with the request future).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The local API's routes, with the default request timeout.
pub fn router(store: Store, token: Option<SecretString>) -> Router {
    router_with(store, token, Timeouts::default().request)
}

/// The local API's routes; a request not answered within `request_timeout` gets a 408.
fn router_with(store: Store, token: Option<SecretString>, request_timeout: Duration) -> Router {
    let api = new_api(store, token, request_timeout);
    Router::new()
        .route("/contacts/search", post(highlevel::search))
        .route("/contacts/search/duplicate", get(highlevel::duplicate))
        .route("/contacts/", get(highlevel::list))
        .route("/contacts", get(highlevel::list))
        .route(
            "/contacts/business/{business_id}",
            get(highlevel::by_business),
        )
        .route("/contacts/{contact_id}", get(highlevel::contact))
        .route("/contacts/{contact_id}/tasks", get(highlevel::tasks))
        .route(
            "/contacts/{contact_id}/tasks/{task_id}",
            get(highlevel::task),
        )
        .route("/contacts/{contact_id}/notes", get(highlevel::notes))
        .route(
            "/contacts/{contact_id}/notes/{note_id}",
            get(highlevel::note),
        )
        .route(
            "/contacts/{contact_id}/appointments",
            get(highlevel::appointments),
        )
        .route("/mirror/status", get(mirror::status))
        .route("/mirror/search", get(mirror::search))
        .route("/metrics", get(mirror::metrics))
        .route("/health", get(mirror::health))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(middleware::from_fn_with_state(api.clone(), around))
        .with_state(api)
}

fn new_api(store: Store, token: Option<SecretString>, request_timeout: Duration) -> Arc<Api> {
    let freshness = Freshness::read(&store, None);
    Arc::new(Api {
        store,
        token,
        freshness: RwLock::new(Arc::new(freshness)),
        refreshing: AtomicBool::new(false),
        heavy: Arc::new(Semaphore::new(HEAVY_SLOTS)),
        metrics: metrics::HttpMetrics::default(),
        db_metrics: tokio::sync::Mutex::new(None),
        request_timeout,
    })
}

/// HighLevel's (NestJS) answer to a path or method it does not serve.
async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        json!({
            "statusCode": 404,
            "message": format!("Cannot {method} {}", uri.path()),
            "error": "Not Found",
        }),
    )
}

/// Which location's freshness a response reports (set by handlers as a response extension).
#[derive(Clone)]
pub(crate) struct Scope(pub String);

/// When the list in a response was fetched (`None`: never), for sub-resource lists.
#[derive(Clone)]
pub(crate) struct ListFetched(pub Option<String>);

/// Auth, then the handler, then the freshness headers and request metrics.
async fn around(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = req.method().clone();
    let mut resp = match authorize(&api, &route, req.headers()) {
        Ok(()) => match tokio::time::timeout(api.request_timeout, next.run(req)).await {
            Ok(resp) => resp,
            Err(_) => ApiError::timed_out(api.request_timeout).into_response(),
        },
        Err(e) => e.into_response(),
    };
    let scope = resp.extensions().get::<Scope>().map(|s| s.0.clone());
    let listed = resp.extensions().get::<ListFetched>().cloned();
    let synced = api.synced_ms(scope.as_deref());
    let h = resp.headers_mut();
    match synced {
        Some(ms) => {
            h.insert("x-mirror-synced-at", header_value(&iso_from_ms(ms)));
            let age = (now_ms() - ms).max(0) / 1000;
            h.insert("x-mirror-age-seconds", HeaderValue::from(age));
        }
        None => {
            h.insert("x-mirror-synced-at", HeaderValue::from_static("never"));
        }
    }
    if let Some(ListFetched(at)) = listed {
        let v = at
            .as_deref()
            .map_or(HeaderValue::from_static("never"), header_value);
        h.insert("x-mirror-list-fetched-at", v);
    }
    api.metrics
        .observe(&method, &route, resp.status(), started.elapsed());
    resp
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("invalid"))
}

/// Checks the bearer token (in constant time) when one is configured.
fn authorize(api: &Api, route: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &api.token else {
        return Ok(());
    };
    if route == "/health" {
        return Ok(());
    }
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let expected = token.expose_secret().as_bytes();
    let ok = sent.is_some_and(|s| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), expected).into());
    if ok {
        return Ok(());
    }
    let message = if sent.is_some() {
        "Invalid token: the bearer token does not match this ghl-mirror's API token"
    } else {
        "Missing token: send `Authorization: Bearer <token>` with the value of this ghl-mirror's API token (serve.token_env)"
    };
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        json!({"statusCode": 401, "message": message, "error": "Unauthorized"}),
    ))
}

/// An error response in HighLevel's shape: `{statusCode, message[, error]}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, body: Value) -> ApiError {
        ApiError { status, body }
    }

    /// 400 `{statusCode, message}`, as HighLevel answers an unknown id.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            json!({"statusCode": 400, "message": message}),
        )
    }

    /// 422 with a list of validation messages.
    pub(crate) fn unprocessable(messages: Vec<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"statusCode": 422, "message": messages, "error": "Unprocessable Entity"}),
        )
    }

    /// 403 for a location this mirror does not hold.
    pub(crate) fn unknown_location(location: &str, mirrored: &[String]) -> ApiError {
        let held = if mirrored.is_empty() {
            "none yet; run `ghl-mirror sync` first".to_string()
        } else {
            mirrored.join(", ")
        };
        ApiError::new(
            StatusCode::FORBIDDEN,
            json!({
                "statusCode": 403,
                "message": format!(
                    "The token does not have access to this location. ghl-mirror does not mirror location {location:?} (it mirrors: {held})"
                ),
            }),
        )
    }

    /// 408: the request's body or its answer took longer than the request timeout.
    fn timed_out(limit: Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            json!({
                "statusCode": 408,
                "message": format!(
                    "the request was not read and answered within {} (serve.request_timeout); send the whole body at once, or narrow the query",
                    humantime::format_duration(limit)
                ),
                "error": "Request Timeout",
            }),
        )
    }

    /// 503: the mirror cannot answer right now (database unreadable, query aborted).
    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"statusCode": 503, "message": message, "error": "Service Unavailable"}),
        )
    }
}

impl From<StoreError> for ApiError {
    /// The details (SQL, file paths) go to the log, not to the client.
    fn from(e: StoreError) -> ApiError {
        if e.is_stopped() {
            // Its request was given up (timed out, client gone): nobody reads this answer.
            tracing::debug!("local API: a query was stopped with its request");
            return ApiError::unavailable("the query was stopped with its request");
        }
        tracing::error!(error = %e, "local API: database read failed");
        ApiError::unavailable(
            "the mirror's database could not answer this request; the ghl-mirror log has the details",
        )
    }
}

/// axum's `Path`, with HighLevel's JSON error body when a segment is not valid (e.g. not UTF-8).
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct PathOf<T>(pub T);

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> ApiError {
        ApiError::bad_request(format!("the request path is not valid: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    /// A body over the size limit gets HighLevel's 413; a body that broke off (a bad chunk, a
    /// closed connection) a 400, both in HighLevel's JSON shape.
    fn from(e: axum::extract::rejection::BytesRejection) -> ApiError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({
                    "statusCode": 413,
                    "message": "request entity too large",
                    "error": "Payload Too Large",
                }),
            );
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            json!({
                "statusCode": 400,
                "message": format!("the request body could not be read: {}", e.body_text()),
                "error": "Bad Request",
            }),
        )
    }
}

impl From<params::Invalid> for ApiError {
    fn from(e: params::Invalid) -> ApiError {
        match e {
            params::Invalid::Unprocessable(m) => ApiError::unprocessable(m),
            params::Invalid::BadRequest(m) => ApiError::bad_request(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, self.body.to_string())
    }
}

/// A JSON body already rendered.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query that never ends by itself.
    const FOREVER: &str = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) \
                           SELECT COUNT(*) FROM r";

    #[test]
    fn a_heavy_read_given_up_holds_its_slot_until_its_query_is_stopped_and_the_pool_stays_usable() {
        // Were the query not stopped, dropping the runtime would wait for it forever.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(given_up_read_is_stopped())
        }));
        rt.shutdown_background();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    async fn given_up_read_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        // One connection, so the read after the stopped one uses the same connection.
        let api = new_api(
            store.reader(1, CONNECTION_WAIT).unwrap(),
            None,
            Duration::from_secs(30),
        );
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let (done, outcome) = std::sync::mpsc::channel();
        let read = api.heavy(move |s| {
            let _ = gate.recv();
            let r = s.query(FOREVER, 1);
            let _ = done.send(r.map(|_| ()).map_err(|e| e.is_stopped()));
            Ok(())
        });
        // Given up, as the request timeout (or a client that left) gives it up.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), read)
                .await
                .is_err()
        );
        assert_eq!(
            api.heavy.available_permits(),
            HEAVY_SLOTS - 1,
            "the slot was freed while its read still runs"
        );
        go.send(()).unwrap();
        let outcome =
            tokio::task::spawn_blocking(move || outcome.recv_timeout(Duration::from_secs(10)))
                .await
                .unwrap();
        assert_eq!(
            outcome,
            Ok(Err(true)),
            "the query was not stopped with its request"
        );
        let all = tokio::time::timeout(
            Duration::from_secs(5),
            api.heavy.acquire_many(HEAVY_SLOTS as u32),
        )
        .await;
        assert!(
            all.is_ok(),
            "the slot was not freed after the query stopped"
        );
        drop(all);
        let again = api
            .heavy(|s| Ok(s.query("SELECT 1", 1)?.rows))
            .await
            .unwrap();
        assert_eq!(again, vec![vec![Some("1".to_string())]]);
    }
}
