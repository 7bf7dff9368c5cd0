//! HTTP layer: route matching, the per-request check pipeline (auth →
//! scope → version → body/location → rate limit → faults → latency →
//! handler), the contact handlers, NestJS-style errors, rate-limit headers
//! and truncated bodies. Sub-resource and business handlers live in
//! `subroutes`; the `/oauth/*` endpoints in `oauth`, which only borrows
//! this module's helpers (they skip the limiter and the faults).
//!
//! A data route accepts a location's static token (PIT) or an OAuth access
//! token of that location. PITs keep the per-location scope switches
//! (`set_task_search_scope`, `set_custom_fields_scope`); OAuth tokens must
//! carry the route's scope from the specs' `security` entries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::ACCEPTED_VERSIONS;
use super::data::Id;
use super::limits::{RateHeaders, RouteKind};
use super::list::{self, ListQuery};
use super::oauth::{self, AccessCheck, Endpoint};
use super::render::{
    ContactJson, error_body, get_body, unprocessable_body, write_contacts, write_json,
};
use super::search::{self, Invalid, SearchQuery, body_location};
use super::state::{App, lock};
use super::subroutes;

/// Largest accepted request body.
const MAX_BODY: usize = 1 << 20;

/// The sandbox router: everything goes through one dispatcher so unknown
/// paths and methods get NestJS-style 404s.
pub(super) fn router(app: Arc<App>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(axum::middleware::map_response_with_state(
            app.clone(),
            offset_date,
        ))
        .with_state(app)
}

/// A sandbox whose clock is off sets its own `Date` header (hyper's says this machine's time).
async fn offset_date(State(app): State<Arc<App>>, mut res: Response) -> Response {
    if app.clock_offset_ms != 0
        && let Some(date) =
            super::time_fmt::http_date(super::time_fmt::now_ms() + app.clock_offset_ms)
        && let Ok(v) = HeaderValue::from_str(&date)
    {
        res.headers_mut().insert(axum::http::header::DATE, v);
    }
    res
}

/// A matched route with its path parameters.
#[derive(Debug)]
enum Route {
    List,
    Search,
    Duplicate,
    Get(String),
    Tasks(String),
    Task(String, String),
    Notes(String),
    Note(String, String),
    Appointments(String),
    /// Path `locationId`.
    TaskSearch(String),
    Businesses,
    Business(String),
    BusinessContacts(String),
    /// Path `locationId`.
    CustomFields(String),
}

impl Route {
    fn parse(method: &Method, path: &str) -> Option<Route> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return None;
        }
        let s = |x: &str| x.to_string();
        let get = method == Method::GET;
        Some(match segs.as_slice() {
            ["contacts"] if get => Route::List,
            ["contacts", "search"] if method == Method::POST => Route::Search,
            ["contacts", "search", "duplicate"] if get => Route::Duplicate,
            ["contacts", "business", b] if get => Route::BusinessContacts(s(b)),
            ["contacts", id] if get => Route::Get(s(id)),
            ["contacts", id, "tasks"] if get => Route::Tasks(s(id)),
            ["contacts", id, "tasks", t] if get => Route::Task(s(id), s(t)),
            ["contacts", id, "notes"] if get => Route::Notes(s(id)),
            ["contacts", id, "notes", n] if get => Route::Note(s(id), s(n)),
            ["contacts", id, "appointments"] if get => Route::Appointments(s(id)),
            ["locations", l, "tasks", "search"] if method == Method::POST => {
                Route::TaskSearch(s(l))
            }
            ["businesses"] if get => Route::Businesses,
            ["businesses", b] if get => Route::Business(s(b)),
            ["locations", l, "customFields"] if get => Route::CustomFields(s(l)),
            _ => return None,
        })
    }

    fn kind(&self) -> RouteKind {
        match self {
            Route::List => RouteKind::List,
            Route::Search | Route::Duplicate => RouteKind::Search,
            Route::Get(_) => RouteKind::Get,
            Route::Tasks(_) | Route::Task(..) => RouteKind::Tasks,
            Route::Notes(_) | Route::Note(..) => RouteKind::Notes,
            Route::Appointments(_) => RouteKind::Appointments,
            Route::TaskSearch(_) => RouteKind::TaskSearch,
            Route::Businesses | Route::Business(_) => RouteKind::Business,
            Route::BusinessContacts(_) => RouteKind::BusinessContacts,
            Route::CustomFields(_) => RouteKind::CustomFields,
        }
    }

    /// The OAuth scope the route needs (the `security` entries of
    /// apps/contacts.json, businesses.json and locations.json).
    fn scope(&self) -> &'static str {
        match self {
            Route::List
            | Route::Search
            | Route::Duplicate
            | Route::Get(_)
            | Route::Tasks(_)
            | Route::Task(..)
            | Route::Notes(_)
            | Route::Note(..)
            | Route::Appointments(_)
            | Route::BusinessContacts(_) => "contacts.readonly",
            Route::TaskSearch(_) => "locations/tasks.readonly",
            Route::Businesses | Route::Business(_) => "businesses.readonly",
            Route::CustomFields(_) => "locations/customFields.readonly",
        }
    }
}

/// A response before headers are attached.
pub(super) struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    loc: Option<usize>,
    truncate: bool,
    /// The `Location` header of a redirect.
    redirect: Option<HeaderValue>,
}

impl Reply {
    pub(super) fn new(loc: Option<usize>, status: StatusCode, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            loc,
            truncate: false,
            redirect: None,
        }
    }

    /// A bodiless 302 to `target`.
    pub(super) fn redirect(target: HeaderValue) -> Reply {
        Reply {
            redirect: Some(target),
            ..Reply::new(None, StatusCode::FOUND, Vec::new())
        }
    }

    /// A missing, malformed, unknown or revoked token.
    pub(super) fn invalid_token() -> Reply {
        let msg = "Invalid token: access token is invalid";
        Reply::error(None, StatusCode::UNAUTHORIZED, msg, Some("Unauthorized"))
    }

    /// An OAuth access token past its expiry (HighLevel's wording, issue #213).
    pub(super) fn invalid_jwt() -> Reply {
        Reply::error(
            None,
            StatusCode::UNAUTHORIZED,
            "Invalid JWT",
            Some("Unauthorized"),
        )
    }

    /// A token without the route's scope.
    pub(super) fn scope_refused(loc: Option<usize>) -> Reply {
        let msg = "The token is not authorized for this scope.";
        Reply::error(loc, StatusCode::UNAUTHORIZED, msg, None)
    }

    pub(super) fn error(
        loc: Option<usize>,
        status: StatusCode,
        message: &str,
        error: Option<&str>,
    ) -> Reply {
        Reply::new(loc, status, error_body(status.as_u16(), message, error))
    }

    pub(super) fn unprocessable(loc: usize, messages: &[String]) -> Reply {
        Reply::new(
            Some(loc),
            StatusCode::UNPROCESSABLE_ENTITY,
            unprocessable_body(messages),
        )
    }

    pub(super) fn forbidden(loc: usize) -> Reply {
        let mut reply = Reply::no_location_access();
        reply.loc = Some(loc);
        reply
    }

    /// The 403 of `forbidden`, for a token that has no location (an agency token).
    pub(super) fn no_location_access() -> Reply {
        let msg = "The token does not have access to this location.";
        Reply::error(None, StatusCode::FORBIDDEN, msg, None)
    }
}

/// Whom an authenticated data-route request acts as.
enum Caller {
    /// A location's static token (PIT).
    Pit(usize),
    /// An OAuth access token of a location, with its granted scopes.
    OAuth(usize, Arc<[String]>),
}

impl Caller {
    fn location(&self) -> usize {
        match self {
            Caller::Pit(loc) | Caller::OAuth(loc, _) => *loc,
        }
    }
}

/// What a request carries into its handler once all checks pass.
enum Input {
    List(Vec<(String, String)>),
    Search(Value),
    Duplicate(Vec<(String, String)>),
    Get(String),
    Tasks(String),
    Task(String, String),
    Notes(String),
    Note(String, String),
    Appointments(String),
    TaskSearch {
        location: String,
        body: Value,
    },
    Businesses(Vec<(String, String)>),
    Business(String),
    BusinessContacts(String, Vec<(String, String)>),
    CustomFields {
        location: String,
        params: Vec<(String, String)>,
    },
}

/// A request that passed every check.
struct Ready {
    input: Input,
    delay: Duration,
    truncate: bool,
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Some(endpoint) = Endpoint::parse(&parts.method, parts.uri.path()) {
        let reply = oauth::serve(&app, endpoint, &parts, body).await;
        return finish(&app, reply);
    }
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
pub(super) async fn pause(app: &App, extra: Duration) {
    let d = app.settings().latency + extra;
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

async fn process(app: &App, route: Route, parts: &Parts, body: Body) -> Reply {
    let caller = match authenticate(app, &parts.headers) {
        Ok(caller) => caller,
        Err(reply) => {
            pause(app, Duration::ZERO).await;
            return reply;
        }
    };
    let loc = caller.location();
    let limits = app.limits();
    lock(&app.locations[loc].limiter).record(Instant::now(), limits, route.kind());
    match precheck(app, &caller, route, parts, body).await {
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

/// The token of an `Authorization: Bearer <token>` header.
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let raw = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = raw.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The request's location and token kind: 401 for a missing, unknown or
/// revoked token ("Invalid JWT" for an expired OAuth token), 403 for an
/// agency token (it has no location).
fn authenticate(app: &App, headers: &HeaderMap) -> Result<Caller, Reply> {
    let token = bearer_token(headers).ok_or_else(Reply::invalid_token)?;
    if let Some(loc) = app.location_of_token(token) {
        return Ok(Caller::Pit(loc));
    }
    match app.oauth().check(token) {
        AccessCheck::Location { loc, scopes } => Ok(Caller::OAuth(loc, scopes)),
        AccessCheck::Company { .. } => Err(Reply::no_location_access()),
        AccessCheck::Expired => Err(Reply::invalid_jwt()),
        AccessCheck::Unknown => Err(Reply::invalid_token()),
    }
}

/// Scope, version, body, location, rate-limit and fault checks.
async fn precheck(
    app: &App,
    caller: &Caller,
    route: Route,
    parts: &Parts,
    body: Body,
) -> Result<Ready, Reply> {
    let loc = caller.location();
    check_scope(app, caller, &route)?;
    check_version(Some(loc), &parts.headers)?;
    let input = match route {
        Route::List => Input::List(query_pairs(parts)),
        Route::Search => Input::Search(read_json(loc, body).await?),
        Route::Duplicate => Input::Duplicate(query_pairs(parts)),
        Route::Get(id) => Input::Get(id),
        Route::Tasks(c) => Input::Tasks(c),
        Route::Task(c, t) => Input::Task(c, t),
        Route::Notes(c) => Input::Notes(c),
        Route::Note(c, n) => Input::Note(c, n),
        Route::Appointments(c) => Input::Appointments(c),
        Route::TaskSearch(location) => Input::TaskSearch {
            location,
            body: read_json(loc, body).await?,
        },
        Route::Businesses => Input::Businesses(query_pairs(parts)),
        Route::Business(b) => Input::Business(b),
        Route::BusinessContacts(b) => Input::BusinessContacts(b, query_pairs(parts)),
        Route::CustomFields(location) => Input::CustomFields {
            location,
            params: query_pairs(parts),
        },
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

/// 401 when the token lacks the route's scope: for a PIT, only task
/// search and custom fields are gated (by the location's switches); an
/// OAuth token needs the route's scope among those granted.
fn check_scope(app: &App, caller: &Caller, route: &Route) -> Result<(), Reply> {
    let allowed = match caller {
        Caller::Pit(loc) => match route {
            Route::TaskSearch(_) => app.locations[*loc].task_scope.load(Ordering::Relaxed),
            Route::CustomFields(_) => app.locations[*loc].fields_scope.load(Ordering::Relaxed),
            _ => true,
        },
        Caller::OAuth(_, scopes) => scopes.iter().any(|s| s == route.scope()),
    };
    if allowed {
        return Ok(());
    }
    Err(Reply::scope_refused(Some(caller.location())))
}

/// 400 unless the `Version` header is one of [`ACCEPTED_VERSIONS`].
pub(super) fn check_version(loc: Option<usize>, headers: &HeaderMap) -> Result<(), Reply> {
    let msg = match headers.get("version").map(HeaderValue::to_str) {
        None => "Version header was not found",
        Some(Ok(v)) if ACCEPTED_VERSIONS.contains(&v.trim()) => return Ok(()),
        Some(_) => "Version header is invalid. Supported versions: 2021-07-28, 2023-02-21, v3",
    };
    Err(Reply::error(loc, StatusCode::BAD_REQUEST, msg, None))
}

pub(super) fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
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

/// The `locationId` query parameter.
fn location_param(params: &[(String, String)]) -> Option<&str> {
    params
        .iter()
        .find(|(k, _)| k == "locationId")
        .map(|(_, v)| v.as_str())
}

/// 403 when the request names a location other than the token's.
fn check_location(app: &App, loc: usize, input: &Input) -> Result<(), Reply> {
    let asked = match input {
        Input::List(params)
        | Input::Duplicate(params)
        | Input::Businesses(params)
        | Input::BusinessContacts(_, params) => location_param(params),
        Input::Search(body) => body_location(body),
        Input::TaskSearch { location, .. } | Input::CustomFields { location, .. } => {
            Some(location.as_str())
        }
        Input::Get(_)
        | Input::Tasks(_)
        | Input::Task(..)
        | Input::Notes(_)
        | Input::Note(..)
        | Input::Appointments(_)
        | Input::Business(_) => None,
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
        Input::Duplicate(params) => handle_duplicate(app, loc, &params),
        Input::Get(id) => handle_get(app, loc, &id),
        Input::Tasks(c) => subroutes::tasks(app, loc, &c),
        Input::Task(c, t) => subroutes::task(app, loc, &c, &t),
        Input::Notes(c) => subroutes::notes(app, loc, &c),
        Input::Note(c, n) => subroutes::note(app, loc, &c, &n),
        Input::Appointments(c) => subroutes::appointments(app, loc, &c),
        Input::TaskSearch { body, .. } => subroutes::task_search(app, loc, &body),
        Input::Businesses(params) => subroutes::businesses(app, loc, &params),
        Input::Business(b) => subroutes::business(app, loc, &b),
        Input::BusinessContacts(b, params) => subroutes::business_contacts(app, loc, &b, &params),
        Input::CustomFields { params, .. } => subroutes::custom_fields(app, loc, &params),
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

/// GET /contacts/search/duplicate: the oldest live contact (by dateAdded, then id) with the
/// `email` (ASCII case-insensitive), else with the `number` (its digits, in any format).
fn handle_duplicate(app: &App, loc: usize, params: &[(String, String)]) -> Reply {
    let text = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    if text("locationId").is_none() {
        return Reply::unprocessable(loc, &["locationId should not be empty".to_string()]);
    }
    let store = lock(&app.locations[loc].store);
    let oldest_first = || {
        store
            .legacy_index()
            .iter()
            .filter_map(|(_, id)| store.get(id))
    };
    let by_email = text("email").and_then(|email| {
        oldest_first().find(|c| {
            c.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
    });
    let found = by_email.or_else(|| {
        let wanted = digits(text("number")?);
        oldest_first().find(|c| {
            c.phone
                .as_deref()
                .is_some_and(|p| same_number(&digits(p), &wanted))
        })
    });
    match found {
        Some(c) => Reply::new(Some(loc), StatusCode::OK, get_body(&c, &store.info)),
        None => Reply::new(Some(loc), StatusCode::OK, b"{\"contact\":null}".to_vec()),
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Equal digits, or one number (at least 10 digits) with a 1-3 digit country code in front,
/// or one written nationally with a trunk 0 (`020 7946 0958`) whose rest (at least 7 digits)
/// follows a 1-3 digit country code in the other (`+442079460958`).
fn same_number(a: &str, b: &str) -> bool {
    let after_code = |national: &str, full: &str, min: usize| {
        national.len() >= min
            && full.len() > national.len()
            && full.len() - national.len() <= 3
            && full.ends_with(national)
    };
    let trunk = |national: &str, full: &str| {
        national
            .strip_prefix('0')
            .is_some_and(|rest| !rest.starts_with('0') && after_code(rest, full, 7))
    };
    !a.is_empty()
        && !b.is_empty()
        && (a == b || after_code(a, b, 10) || after_code(b, a, 10) || trunk(a, b) || trunk(b, a))
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
    contact_missing(app, loc, id)
}

/// The reply for a contact id that is not live in location `loc`: the
/// 403 body when another location has it, else 400 "Contact not found".
pub(super) fn contact_missing(app: &App, loc: usize, id: Option<Id>) -> Reply {
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
    match reply.redirect {
        Some(target) => h.insert(LOCATION, target),
        None => h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json")),
    };
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
