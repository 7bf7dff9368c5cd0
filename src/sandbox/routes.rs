//! HTTP layer: route matching, the per-request check pipeline (auth →
//! version → body/location → rate limit → faults → latency → handler), the
//! three handlers, NestJS-style errors, rate-limit headers and truncated
//! bodies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::VERSION_HEADER_VALUE;
use super::data::Id;
use super::limits::{RateHeaders, RouteKind};
use super::list::{self, ListQuery};
use super::render::{
    ContactJson, error_body, get_body, unprocessable_body, write_contacts, write_json,
};
use super::search::{self, Invalid, SearchQuery, body_location};
use super::state::{App, lock};

/// Largest accepted request body.
const MAX_BODY: usize = 1 << 20;

/// The sandbox router: everything goes through one dispatcher so unknown
/// paths and methods get NestJS-style 404s.
pub(super) fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// A matched route.
#[derive(Debug)]
enum Route {
    List,
    Search,
    Get(String),
}

impl Route {
    fn parse(method: &Method, path: &str) -> Option<Route> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let rest = path.strip_prefix("/contacts")?;
        match (method, rest) {
            (&Method::GET, "") => Some(Route::List),
            (&Method::POST, "/search") => Some(Route::Search),
            (&Method::GET, r) => {
                let id = r.strip_prefix('/')?;
                (!id.is_empty() && !id.contains('/')).then(|| Route::Get(id.to_string()))
            }
            _ => None,
        }
    }

    fn kind(&self) -> RouteKind {
        match self {
            Route::List => RouteKind::List,
            Route::Search => RouteKind::Search,
            Route::Get(_) => RouteKind::Get,
        }
    }
}

/// A response before headers are attached.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    loc: Option<usize>,
    truncate: bool,
}

impl Reply {
    fn new(loc: Option<usize>, status: StatusCode, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            loc,
            truncate: false,
        }
    }

    fn error(loc: Option<usize>, status: StatusCode, message: &str, error: Option<&str>) -> Reply {
        Reply::new(loc, status, error_body(status.as_u16(), message, error))
    }

    fn unprocessable(loc: usize, messages: &[String]) -> Reply {
        Reply::new(
            Some(loc),
            StatusCode::UNPROCESSABLE_ENTITY,
            unprocessable_body(messages),
        )
    }

    fn forbidden(loc: usize) -> Reply {
        let msg = "The token does not have access to this location.";
        Reply::error(Some(loc), StatusCode::FORBIDDEN, msg, None)
    }
}

/// What a request carries into its handler once all checks pass.
enum Input {
    List(Vec<(String, String)>),
    Search(Value),
    Get(String),
}

/// A request that passed every check.
struct Ready {
    input: Input,
    delay: Duration,
    truncate: bool,
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let reply = match Route::parse(&parts.method, parts.uri.path()) {
        Some(route) => process(&app, route, &parts, body).await,
        None => {
            pause(&app, Duration::ZERO).await;
            let msg = format!("Cannot {} {}", parts.method, parts.uri.path());
            Reply::error(None, StatusCode::NOT_FOUND, &msg, Some("Not Found"))
        }
    };
    finish(&app, reply)
}

/// Sleeps the configured latency plus `extra`.
async fn pause(app: &App, extra: Duration) {
    let d = app.settings().latency + extra;
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

async fn process(app: &App, route: Route, parts: &Parts, body: Body) -> Reply {
    let Some(loc) = authenticate(app, &parts.headers) else {
        pause(app, Duration::ZERO).await;
        let msg = "Invalid token: access token is invalid";
        return Reply::error(None, StatusCode::UNAUTHORIZED, msg, Some("Unauthorized"));
    };
    let limits = app.limits();
    lock(&app.locations[loc].limiter).record(Instant::now(), limits, route.kind());
    match precheck(app, loc, route, parts, body).await {
        Err(reply) => {
            pause(app, Duration::ZERO).await;
            reply
        }
        Ok(ready) => {
            pause(app, ready.delay).await;
            let mut reply = run_handler(app, loc, ready.input);
            reply.truncate = ready.truncate && reply.status == StatusCode::OK;
            reply
        }
    }
}

/// The token's location index.
fn authenticate(app: &App, headers: &HeaderMap) -> Option<usize> {
    let raw = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = raw.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    app.location_of_token(token.trim())
}

/// Version, body, location, rate-limit and fault checks.
async fn precheck(
    app: &App,
    loc: usize,
    route: Route,
    parts: &Parts,
    body: Body,
) -> Result<Ready, Reply> {
    check_version(loc, &parts.headers)?;
    let input = match route {
        Route::List => Input::List(query_pairs(parts)),
        Route::Search => Input::Search(read_json(loc, body).await?),
        Route::Get(id) => Input::Get(id),
    };
    check_location(app, loc, &input)?;
    check_rate(app, loc)?;
    let drawn = app.settings().draw();
    let mut limiter = lock(&app.locations[loc].limiter);
    if drawn.storm {
        limiter.start_storm(drawn.storm_len);
        return Err(too_many(loc));
    }
    if let Some(code) = drawn.server_error {
        limiter.count_server_error();
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let msg = status.canonical_reason().unwrap_or("Internal Server Error");
        return Err(Reply::error(Some(loc), status, msg, None));
    }
    Ok(Ready {
        input,
        delay: drawn.delay,
        truncate: drawn.truncate,
    })
}

fn check_version(loc: usize, headers: &HeaderMap) -> Result<(), Reply> {
    let msg = match headers.get("version").map(HeaderValue::to_str) {
        None => "Version header was not found",
        Some(Ok(v)) if v.trim() == VERSION_HEADER_VALUE => return Ok(()),
        Some(_) => "Version header is invalid. Supported version: 2021-07-28",
    };
    Err(Reply::error(Some(loc), StatusCode::BAD_REQUEST, msg, None))
}

fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    let q = parts.uri.query().unwrap_or("");
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

/// Reads a JSON body; empty means `{}`.
async fn read_json(loc: usize, body: Body) -> Result<Value, Reply> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Reply::error(
            Some(loc),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request entity too large",
            Some("Payload Too Large"),
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let msg = format!(
            "Unexpected token in JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        );
        Reply::error(
            Some(loc),
            StatusCode::BAD_REQUEST,
            &msg,
            Some("Bad Request"),
        )
    })
}

/// 403 when the request names a location other than the token's.
fn check_location(app: &App, loc: usize, input: &Input) -> Result<(), Reply> {
    let asked = match input {
        Input::List(params) => params
            .iter()
            .find(|(k, _)| k == "locationId")
            .map(|(_, v)| v.as_str()),
        Input::Search(body) => body_location(body),
        Input::Get(_) => None,
    };
    match asked {
        Some(id) if !id.is_empty() && id != app.locations[loc].id => Err(Reply::forbidden(loc)),
        _ => Ok(()),
    }
}

fn too_many(loc: usize) -> Reply {
    Reply::error(
        Some(loc),
        StatusCode::TOO_MANY_REQUESTS,
        "Too Many Requests",
        None,
    )
}

fn check_rate(app: &App, loc: usize) -> Result<(), Reply> {
    let limits = app.limits();
    let mut limiter = lock(&app.locations[loc].limiter);
    if limiter.in_storm() || !limiter.admit(Instant::now(), limits) {
        return Err(too_many(loc));
    }
    Ok(())
}

fn run_handler(app: &App, loc: usize, input: Input) -> Reply {
    match input {
        Input::List(params) => handle_list(app, loc, &params),
        Input::Search(body) => handle_search(app, loc, &body),
        Input::Get(id) => handle_get(app, loc, &id),
    }
}

fn handle_list(app: &App, loc: usize, params: &[(String, String)]) -> Reply {
    let q = match ListQuery::parse(params) {
        Ok(q) => q,
        Err(messages) => return Reply::unprocessable(loc, &messages),
    };
    let (page, info) = {
        let store = lock(&app.locations[loc].store);
        (list::run(&store, &q), store.info.clone())
    };
    let broken = app.settings().take_broken_page();
    let body = list::body(&page, &q, &info, &app.base_url, &app.trace_id(), broken);
    Reply::new(Some(loc), StatusCode::OK, body)
}

fn handle_search(app: &App, loc: usize, body: &Value) -> Reply {
    let q = match SearchQuery::parse(body) {
        Ok(q) => q,
        Err(Invalid::Unprocessable(m)) => return Reply::unprocessable(loc, &m),
        Err(Invalid::BadRequest(m)) => {
            return Reply::error(Some(loc), StatusCode::BAD_REQUEST, &m, None);
        }
    };
    let (page, info) = {
        let mut store = lock(&app.locations[loc].store);
        store.catch_up(Instant::now());
        (search::run(&mut store, &q), store.info.clone())
    };
    let broken = app.settings().take_broken_page();
    let mut out = Vec::with_capacity(256 + page.hits.len() * 1500);
    out.push(b'{');
    let after: Vec<_> = page.hits.iter().map(|h| h.search_after()).collect();
    let items = page.hits.iter().zip(&after).map(|(h, sa)| ContactJson {
        c: &h.contact,
        loc: &info,
        search_after: Some(sa),
    });
    write_contacts(&mut out, items, broken);
    out.extend_from_slice(b",\"total\":");
    write_json(&mut out, &page.total);
    out.extend_from_slice(b",\"traceId\":");
    write_json(&mut out, &app.trace_id());
    out.push(b'}');
    Reply::new(Some(loc), StatusCode::OK, out)
}

fn handle_get(app: &App, loc: usize, raw_id: &str) -> Reply {
    let id = Id::parse(raw_id);
    let found = id.and_then(|id| {
        let store = lock(&app.locations[loc].store);
        store.get(&id).map(|c| (c, store.info.clone()))
    });
    if let Some((c, info)) = found {
        return Reply::new(Some(loc), StatusCode::OK, get_body(&c, &info));
    }
    let elsewhere = id.is_some_and(|id| {
        let others = app.locations.iter().enumerate().filter(|(i, _)| *i != loc);
        others
            .into_iter()
            .any(|(_, l)| lock(&l.store).get(&id).is_some())
    });
    if elsewhere {
        return Reply::forbidden(loc);
    }
    Reply::error(
        Some(loc),
        StatusCode::BAD_REQUEST,
        "Contact not found",
        None,
    )
}

/// Attaches content type and rate-limit headers; streams truncated bodies.
fn finish(app: &App, reply: Reply) -> Response {
    let limits = app.limits();
    let headers = match reply.loc {
        Some(i) => lock(&app.locations[i].limiter).headers(Instant::now(), limits),
        None => RateHeaders::unknown(limits),
    };
    let body = if reply.truncate {
        truncated(reply.body)
    } else {
        Body::from(reply.body)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let pairs = [
        ("x-ratelimit-limit-daily", u64::from(headers.limit_daily)),
        (
            "x-ratelimit-daily-remaining",
            u64::from(headers.daily_remaining),
        ),
        ("x-ratelimit-interval-milliseconds", headers.interval_ms),
        ("x-ratelimit-max", u64::from(headers.max)),
        ("x-ratelimit-remaining", u64::from(headers.remaining)),
    ];
    for (name, v) in pairs {
        h.insert(name, HeaderValue::from(v));
    }
    resp
}

/// A chunked body that sends the first half of `bytes`, then fails.
fn truncated(bytes: Vec<u8>) -> Body {
    let mut bytes = Bytes::from(bytes);
    let head = bytes.split_to(bytes.len() / 2);
    let stream = futures::stream::unfold((Some(head), true), |(head, live)| async move {
        if let Some(head) = head {
            return Some((Ok(head), (None, true)));
        }
        if !live {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let err = std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "sandbox: truncated body",
        );
        Some((Err(err), (None, false)))
    });
    Body::from_stream(stream)
}
