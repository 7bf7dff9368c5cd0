//! HighLevel's OAuth 2.0, simulated: the one marketplace app the sandbox
//! knows ([`OAuthApp`]), the authorization page that auto-approves, the
//! token endpoints of `apps/oauth.json`, and the token table the data routes
//! consult.
//!
//! Endpoints (none costs a request against the rate limiter, none draws
//! faults; all get the configured latency):
//! - `GET /oauth/chooselocation` stands in for marketplace.gohighlevel.com:
//!   it approves at once and redirects (302) to `redirect_uri` with a one-time
//!   `code` and the echoed `state`. Sandbox extension: `locationId` picks the
//!   location the code is for (default: the first).
//! - `POST /oauth/token` (form body): the `authorization_code` and
//!   `refresh_token` grants, for a location (`user_type=Location`, the
//!   default) or the agency (`user_type=Company`).
//! - `POST /oauth/locationToken` (agency token, form body): a location token
//!   for one of the agency's locations.
//! - `GET /oauth/installedLocations` (agency token): every location, each
//!   with the app installed.
//!
//! Token rules, as HighLevel documents or shows them: access tokens live
//! `access_ttl` (86399 s) and stay valid until then even after a refresh
//! (they are JWTs; nothing revokes them); refresh tokens live a year and
//! are single use, except that within `refresh_grace` of its first use a
//! refresh token replays the pair it first returned; codes live 10 minutes
//! and are single use. Tokens are JWT-shaped (header, claims, random
//! signature) but the sandbox only ever looks them up by their whole text.
//!
//! Time: every expiry is measured on an OAuth clock that is the monotonic
//! clock plus a skew the control surface can advance, so tests reach an
//! expiry without sleeping.
//!
//! Request bodies must be `application/x-www-form-urlencoded` (or carry no
//! `Content-Type`); any other content type is refused with 422, which makes
//! the sandbox stricter than HighLevel may be, on purpose.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::render::unprocessable_body;
use super::routes::{Reply, bearer_token, check_version, pause, query_pairs};
use super::state::App;

/// How long an authorization code can be exchanged.
const CODE_TTL: Duration = Duration::from_secs(10 * 60);

/// How long an unused refresh token lives (HighLevel: one year).
const REFRESH_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The user every grant says performed the installation.
const USER_ID: &str = "sandboxUser000000001";

/// Largest accepted form body.
const MAX_FORM: usize = 64 * 1024;

/// The `grant_type` values the spec allows.
const GRANT_TYPES: &str = "authorization_code, refresh_token, client_credentials";

/// The marketplace app the sandbox plays the authorization server for: its
/// credentials, the agency (company) it is installed in, and how long the
/// tokens it gets live.
#[derive(Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    /// The agency every location belongs to; agency tokens are for it.
    pub company_id: String,
    /// Also the `versionId` of the one app version.
    pub app_id: String,
    /// Lifetime of every access token issued from now on (`expires_in`).
    pub access_ttl: Duration,
    /// How long after its first use a refresh token may be replayed and
    /// answer the same pair again; zero means strictly single use.
    pub refresh_grace: Duration,
}

impl Default for OAuthApp {
    /// `sandbox-client-id` / `sandbox-client-secret`, company
    /// `sandboxCompany000001`, app `sandboxApp0000000001`, HighLevel's
    /// 86399 s access tokens and no refresh grace.
    fn default() -> Self {
        OAuthApp {
            client_id: "sandbox-client-id".to_string(),
            client_secret: "sandbox-client-secret".to_string(),
            company_id: "sandboxCompany000001".to_string(),
            app_id: "sandboxApp0000000001".to_string(),
            access_ttl: Duration::from_secs(86_399),
            refresh_grace: Duration::ZERO,
        }
    }
}

impl fmt::Debug for OAuthApp {
    /// Everything but the client secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("company_id", &self.company_id)
            .field("app_id", &self.app_id)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_grace", &self.refresh_grace)
            .finish()
    }
}

/// What the OAuth endpoints have answered so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OAuthStats {
    /// Successful `authorization_code` grants.
    pub code_grants: u64,
    /// Successful `refresh_token` grants, grace replays included.
    pub refresh_grants: u64,
    /// The part of `refresh_grants` that replayed an earlier answer.
    pub grace_replays: u64,
    /// `refresh_token` grants refused (400, or 401 for bad client credentials).
    pub refused_refreshes: u64,
    /// Location tokens minted by `POST /oauth/locationToken`.
    pub location_tokens: u64,
    /// `GET /oauth/installedLocations` calls answered 200.
    pub installed_location_calls: u64,
}

/// The scopes granted at authorization, in the order they were asked for.
type Scopes = Arc<[String]>;

/// Whom a token acts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    /// A location (sub-account), by index.
    Location(usize),
    /// The agency (company).
    Company,
}

/// An access token as a route sees it.
pub(super) enum AccessCheck {
    Location {
        loc: usize,
        scopes: Scopes,
    },
    Company {
        scopes: Scopes,
    },
    /// Known, but past its expiry.
    Expired,
    Unknown,
}

/// An authorization code waiting to be exchanged.
struct Code {
    client_id: String,
    redirect_uri: String,
    scopes: Scopes,
    loc: usize,
    expires: Instant,
}

struct Access {
    subject: Subject,
    scopes: Scopes,
    expires: Instant,
}

struct Refresh {
    subject: Subject,
    scopes: Scopes,
    client_id: String,
    expires: Instant,
    /// Set by its first use: when, and the pair that use returned.
    spent: Option<Spent>,
}

struct Spent {
    at: Instant,
    access: String,
    refresh: String,
}

/// A token grant's outcome, before it is rendered.
struct Issued {
    subject: Subject,
    scopes: Scopes,
    access: String,
    refresh: Option<String>,
    expires_in: u64,
}

/// Why a grant was refused (all answered 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    InvalidCode,
    RedirectMismatch,
    InvalidRefresh,
    Inactive,
}

impl Refusal {
    fn message(self) -> &'static str {
        match self {
            Refusal::InvalidCode => "Invalid grant: authorization code is invalid",
            Refusal::RedirectMismatch => {
                "Invalid grant: redirect_uri does not match the authorization request"
            }
            Refusal::InvalidRefresh => "Invalid grant: refresh token is invalid",
            Refusal::Inactive => "Location is not active",
        }
    }

    fn reply(self) -> Reply {
        Reply::error(None, StatusCode::BAD_REQUEST, self.message(), None)
    }
}

/// Every code and token issued, the inactive locations, the OAuth clock and
/// the counters.
pub(super) struct OAuthState {
    app: OAuthApp,
    /// Location ids, by index (the same order as `App::locations`).
    location_ids: Vec<String>,
    skew: Duration,
    rng: SmallRng,
    serial: u64,
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    inactive: HashSet<usize>,
    stats: OAuthStats,
}

impl OAuthState {
    pub fn new(app: OAuthApp, seed: u64, location_ids: Vec<String>) -> OAuthState {
        OAuthState {
            app,
            location_ids,
            skew: Duration::ZERO,
            rng: SmallRng::seed_from_u64(seed ^ 0x0A07_4C0D_E5EE_D000),
            serial: 0,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            inactive: HashSet::new(),
            stats: OAuthStats::default(),
        }
    }

    /// The OAuth clock: monotonic time plus the skew tests add.
    fn now(&self) -> Instant {
        Instant::now() + self.skew
    }

    pub fn stats(&self) -> OAuthStats {
        self.stats
    }

    pub fn set_access_ttl(&mut self, ttl: Duration) {
        self.app.access_ttl = ttl;
    }

    pub fn set_refresh_grace(&mut self, grace: Duration) {
        self.app.refresh_grace = grace;
    }

    pub fn advance_clock(&mut self, by: Duration) {
        self.skew += by;
    }

    /// Every access token issued so far expires now.
    pub fn expire_access_tokens(&mut self) {
        let now = self.now();
        for a in self.access.values_mut() {
            a.expires = a.expires.min(now);
        }
    }

    /// Forgets the refresh tokens of a location (or, given the company id,
    /// the agency's), spent ones included so they cannot replay either.
    pub fn revoke_refresh_tokens(&mut self, id: &str) {
        let subject = if id == self.app.company_id {
            Subject::Company
        } else {
            match self.location_index(id) {
                Some(loc) => Subject::Location(loc),
                None => return,
            }
        };
        self.refresh.retain(|_, r| r.subject != subject);
    }

    pub fn deactivate(&mut self, location_id: &str) {
        if let Some(loc) = self.location_index(location_id) {
            self.inactive.insert(loc);
        }
    }

    fn location_index(&self, id: &str) -> Option<usize> {
        self.location_ids.iter().position(|l| l == id)
    }

    /// A location access + refresh pair, as a code exchange would give it
    /// (not counted in the stats); `None` for an unknown location.
    pub fn issue_for(&mut self, location_id: &str, scopes: &[&str]) -> Option<(String, String)> {
        let loc = self.location_index(location_id)?;
        let scopes: Scopes = scopes.iter().map(|s| s.to_string()).collect();
        let client_id = self.app.client_id.clone();
        let issued = self.issue(Subject::Location(loc), scopes, &client_id, true);
        Some((issued.access, issued.refresh.unwrap_or_default()))
    }

    /// What an access token is for, on the OAuth clock.
    pub fn check(&self, token: &str) -> AccessCheck {
        let Some(a) = self.access.get(token) else {
            return AccessCheck::Unknown;
        };
        if self.now() >= a.expires {
            return AccessCheck::Expired;
        }
        let scopes = a.scopes.clone();
        match a.subject {
            Subject::Location(loc) => AccessCheck::Location { loc, scopes },
            Subject::Company => AccessCheck::Company { scopes },
        }
    }

    /// Records a one-time code for the approval of `scopes` on `loc`.
    fn authorize(
        &mut self,
        client_id: &str,
        redirect_uri: &str,
        scopes: Scopes,
        loc: usize,
    ) -> String {
        let code: String = (0..40)
            .map(|_| char::from(b"0123456789abcdef"[self.rng.random_range(0..16)]))
            .collect();
        let entry = Code {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            scopes,
            loc,
            expires: self.now() + CODE_TTL,
        };
        self.codes.insert(code.clone(), entry);
        code
    }

    /// The `authorization_code` grant; the code is spent only by success.
    fn exchange(
        &mut self,
        client_id: &str,
        code: &str,
        redirect_uri: Option<&str>,
        company: bool,
    ) -> Result<Issued, Refusal> {
        let now = self.now();
        let c = self.codes.get(code).ok_or(Refusal::InvalidCode)?;
        if now >= c.expires || c.client_id != client_id {
            return Err(Refusal::InvalidCode);
        }
        if redirect_uri.is_some_and(|r| r != c.redirect_uri) {
            return Err(Refusal::RedirectMismatch);
        }
        let subject = if company {
            Subject::Company
        } else {
            Subject::Location(c.loc)
        };
        if let Subject::Location(loc) = subject
            && self.inactive.contains(&loc)
        {
            return Err(Refusal::Inactive);
        }
        let scopes = c.scopes.clone();
        self.codes.remove(code);
        self.stats.code_grants += 1;
        Ok(self.issue(subject, scopes, client_id, true))
    }

    /// The `refresh_token` grant: a new pair, or within the grace window
    /// after the token's first use the pair that use returned.
    fn refresh(&mut self, client_id: &str, token: &str) -> Result<Issued, Refusal> {
        let now = self.now();
        let grace = self.app.refresh_grace;
        let r = self.refresh.get(token).ok_or(Refusal::InvalidRefresh)?;
        if r.client_id != client_id || now >= r.expires {
            return Err(Refusal::InvalidRefresh);
        }
        if let Subject::Location(loc) = r.subject
            && self.inactive.contains(&loc)
        {
            return Err(Refusal::Inactive);
        }
        let (subject, scopes) = (r.subject, r.scopes.clone());
        if let Some(spent) = &r.spent {
            if now.saturating_duration_since(spent.at) >= grace {
                return Err(Refusal::InvalidRefresh);
            }
            let expires_in = self.access.get(&spent.access).map_or(0, |a| {
                whole_seconds(a.expires.saturating_duration_since(now))
            });
            let issued = Issued {
                subject,
                scopes,
                access: spent.access.clone(),
                refresh: Some(spent.refresh.clone()),
                expires_in,
            };
            self.stats.refresh_grants += 1;
            self.stats.grace_replays += 1;
            return Ok(issued);
        }
        let issued = self.issue(subject, scopes, client_id, true);
        if let Some(r) = self.refresh.get_mut(token) {
            r.spent = Some(Spent {
                at: now,
                access: issued.access.clone(),
                refresh: issued.refresh.clone().unwrap_or_default(),
            });
        }
        self.stats.refresh_grants += 1;
        Ok(issued)
    }

    /// A location access token from an agency grant (no refresh token).
    fn mint_location(&mut self, loc: usize, scopes: Scopes) -> Result<Issued, Refusal> {
        if self.inactive.contains(&loc) {
            return Err(Refusal::Inactive);
        }
        let client_id = self.app.client_id.clone();
        self.stats.location_tokens += 1;
        Ok(self.issue(Subject::Location(loc), scopes, &client_id, false))
    }

    /// Records and returns a fresh access token (and refresh token).
    fn issue(
        &mut self,
        subject: Subject,
        scopes: Scopes,
        client_id: &str,
        with_refresh: bool,
    ) -> Issued {
        let now = self.now();
        let ttl = self.app.access_ttl;
        let access = self.jwt(subject, &scopes, "access", ttl);
        let entry = Access {
            subject,
            scopes: scopes.clone(),
            expires: now + ttl,
        };
        self.access.insert(access.clone(), entry);
        let refresh = with_refresh.then(|| {
            let token = self.jwt(subject, &scopes, "refresh", REFRESH_TTL);
            let entry = Refresh {
                subject,
                scopes: scopes.clone(),
                client_id: client_id.to_string(),
                expires: now + REFRESH_TTL,
                spent: None,
            };
            self.refresh.insert(token.clone(), entry);
            token
        });
        Issued {
            subject,
            scopes,
            access,
            refresh,
            expires_in: ttl.as_secs(),
        }
    }

    /// A JWT-shaped token: HighLevel-like claims (readable when decoded,
    /// never verified) and 32 random bytes where the signature goes.
    fn jwt(
        &mut self,
        subject: Subject,
        scopes: &[String],
        kind: &str,
        lifetime: Duration,
    ) -> String {
        self.serial += 1;
        let (class, class_id) = match subject {
            Subject::Location(loc) => (
                "Location",
                self.location_ids.get(loc).cloned().unwrap_or_default(),
            ),
            Subject::Company => ("Company", self.app.company_id.clone()),
        };
        let wall = SystemTime::now() + self.skew;
        let iat = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = json!({
            "authClass": class,
            "authClassId": class_id,
            "source": "INTEGRATION",
            "sourceId": self.app.client_id,
            "channel": "OAUTH",
            "primaryAuthClassId": class_id,
            "oauthMeta": {
                "scopes": scopes,
                "client": self.app.app_id,
                "versionId": self.app.app_id,
            },
            "tokenType": kind,
            "iat": iat,
            "exp": iat + lifetime.as_secs(),
            "jti": format!("{:x}", self.serial),
        });
        let signature: [u8; 32] = self.rng.random();
        format!(
            "{}.{}.{}",
            base64url(br#"{"alg":"HS256","typ":"JWT"}"#),
            base64url(claims.to_string().as_bytes()),
            base64url(&signature)
        )
    }
}

/// A duration in seconds, rounded to the nearest.
fn whole_seconds(d: Duration) -> u64 {
    (d + Duration::from_millis(500)).as_secs()
}

/// Unpadded base64url (RFC 4648 §5), as JWTs use.
pub(super) fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..=chunk.len() {
            let six = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[six as usize]));
        }
    }
    out
}

/// The OAuth endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    ChooseLocation,
    Token,
    LocationToken,
    InstalledLocations,
}

impl Endpoint {
    /// The endpoint for a method and path (a trailing slash is ignored).
    pub fn parse(method: &Method, path: &str) -> Option<Endpoint> {
        let path = path.strip_suffix('/').unwrap_or(path);
        Some(match (method, path) {
            (&Method::GET, "/oauth/chooselocation") => Endpoint::ChooseLocation,
            (&Method::POST, "/oauth/token") => Endpoint::Token,
            (&Method::POST, "/oauth/locationToken") => Endpoint::LocationToken,
            (&Method::GET, "/oauth/installedLocations") => Endpoint::InstalledLocations,
            _ => return None,
        })
    }
}

/// Answers one OAuth request, after the configured latency.
pub(super) async fn serve(app: &App, endpoint: Endpoint, parts: &Parts, body: Body) -> Reply {
    let reply = match endpoint {
        Endpoint::ChooseLocation => choose_location(app, &Params(query_pairs(parts))),
        Endpoint::Token => match read_form(&parts.headers, body).await {
            Ok(form) => token(app, &form),
            Err(reply) => reply,
        },
        Endpoint::LocationToken => location_token(app, &parts.headers, body)
            .await
            .unwrap_or_else(|reply| reply),
        Endpoint::InstalledLocations => {
            installed_locations(app, parts).unwrap_or_else(|reply| reply)
        }
    };
    pause(app, Duration::ZERO).await;
    reply
}

/// Query or form parameters; the first occurrence of a name wins.
#[derive(Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The class-validator messages of a required string parameter.
    fn require(&self, name: &str, errors: &mut Vec<String>) {
        match self.get(name) {
            Some(v) if !v.is_empty() => {}
            Some(_) => errors.push(format!("{name} should not be empty")),
            None => {
                errors.push(format!("{name} should not be empty"));
                errors.push(format!("{name} must be a string"));
            }
        }
    }
}

fn bad_request(message: &str) -> Reply {
    Reply::error(None, StatusCode::BAD_REQUEST, message, None)
}

fn unprocessable(messages: &[String]) -> Reply {
    Reply::new(
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
        unprocessable_body(messages),
    )
}

fn ok(body: &Value) -> Reply {
    Reply::new(
        None,
        StatusCode::OK,
        serde_json::to_vec(body).unwrap_or_default(),
    )
}

/// A form body: parsed when it is `application/x-www-form-urlencoded` or
/// has no content type; 422 for any other content type, 413 when too big.
async fn read_form(headers: &HeaderMap, body: Body) -> Result<Params, Reply> {
    let content_type = headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or(""));
    let is_form = content_type.is_none_or(|v| {
        let mime = v.split(';').next().unwrap_or("").trim();
        mime.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !is_form {
        let msg = "Content-Type must be application/x-www-form-urlencoded".to_string();
        return Err(unprocessable(&[msg]));
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        Reply::error(
            None,
            status,
            "request entity too large",
            Some("Payload Too Large"),
        )
    })?;
    Ok(Params(
        url::form_urlencoded::parse(&bytes).into_owned().collect(),
    ))
}

/// `GET /oauth/chooselocation`: approves at once and redirects with a code.
fn choose_location(app: &App, params: &Params) -> Reply {
    let settings = app.oauth().app.clone();
    if params.get("response_type") != Some("code") {
        return bad_request("response_type must be code");
    }
    let client_id = params.get("client_id").unwrap_or("");
    if client_id != settings.client_id {
        return bad_request("Invalid client_id: no app has this client id");
    }
    let redirect_uri = match params.get("redirect_uri") {
        Some(r) if !r.is_empty() => r,
        _ => return bad_request("redirect_uri should not be empty"),
    };
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return bad_request("redirect_uri must be an absolute URL");
    };
    let loc = match params.get("locationId") {
        Some(id) => app.locations.iter().position(|l| l.id == id),
        None => (!app.locations.is_empty()).then_some(0),
    };
    let Some(loc) = loc else {
        return bad_request("Location not found");
    };
    let scopes = split_scopes(params.get("scope").unwrap_or(""));
    let code = app.oauth().authorize(client_id, redirect_uri, scopes, loc);
    {
        let mut query = target.query_pairs_mut();
        query.append_pair("code", &code);
        if let Some(state) = params.get("state") {
            query.append_pair("state", state);
        }
    }
    match HeaderValue::try_from(target.as_str()) {
        Ok(target) => Reply::redirect(target),
        Err(_) => bad_request("redirect_uri must be an absolute URL"),
    }
}

/// Space-separated scopes, each kept once, in order.
fn split_scopes(raw: &str) -> Scopes {
    let mut seen = HashSet::new();
    raw.split_whitespace()
        .filter(|s| seen.insert(*s))
        .map(str::to_string)
        .collect()
}

/// `POST /oauth/token`: validation (422), client credentials (401), then
/// the grant (400 when refused).
fn token(app: &App, form: &Params) -> Reply {
    let mut errors = Vec::new();
    form.require("client_id", &mut errors);
    form.require("client_secret", &mut errors);
    let grant = form.get("grant_type").unwrap_or("");
    if grant.is_empty() {
        errors.push("grant_type should not be empty".to_string());
    }
    if !GRANT_TYPES.split(", ").any(|g| g == grant) {
        errors.push(format!(
            "grant_type must be one of the following values: {GRANT_TYPES}"
        ));
    }
    let user_type = form.get("user_type").unwrap_or("Location");
    if user_type != "Location" && user_type != "Company" {
        errors.push("user_type must be one of the following values: Company, Location".into());
    }
    if !errors.is_empty() {
        return unprocessable(&errors);
    }
    let mut oauth = app.oauth();
    let client_id = form.get("client_id").unwrap_or("");
    let secret = form.get("client_secret").unwrap_or("");
    if client_id != oauth.app.client_id || secret != oauth.app.client_secret {
        if grant == "refresh_token" {
            oauth.stats.refused_refreshes += 1;
        }
        let msg = "Invalid client: client credentials are invalid";
        return Reply::error(None, StatusCode::UNAUTHORIZED, msg, Some("Unauthorized"));
    }
    let outcome = match grant {
        "authorization_code" => {
            let code = form.get("code").unwrap_or("");
            let redirect_uri = form.get("redirect_uri");
            oauth.exchange(client_id, code, redirect_uri, user_type == "Company")
        }
        "refresh_token" => {
            let refreshed = oauth.refresh(client_id, form.get("refresh_token").unwrap_or(""));
            if refreshed.is_err() {
                oauth.stats.refused_refreshes += 1;
            }
            refreshed
        }
        _ => return bad_request("Invalid grant: client_credentials is not supported"),
    };
    let settings = oauth.app.clone();
    drop(oauth);
    match outcome {
        Ok(issued) => ok(&token_body(app, &settings, &issued)),
        Err(refusal) => refusal.reply(),
    }
}

/// The spec's `GetAccessCodeSuccessfulResponseDto` for a grant.
fn token_body(app: &App, settings: &OAuthApp, t: &Issued) -> Value {
    let mut v = json!({
        "access_token": t.access,
        "token_type": "Bearer",
        "expires_in": t.expires_in,
        "refresh_token": t.refresh,
        "scope": t.scopes.join(" "),
        "companyId": settings.company_id,
        "userId": USER_ID,
    });
    match t.subject {
        Subject::Location(loc) => {
            v["userType"] = json!("Location");
            v["locationId"] = json!(app.locations.get(loc).map(|l| l.id.as_str()));
            v["isBulkInstallation"] = json!(false);
        }
        Subject::Company => {
            let ids: Vec<&str> = app.locations.iter().map(|l| l.id.as_str()).collect();
            v["userType"] = json!("Company");
            v["approvedLocations"] = json!(ids);
            v["isBulkInstallation"] = json!(true);
            v["installToFutureLocations"] = json!(true);
            v["approveAllLocations"] = json!(true);
        }
    }
    v
}

/// The scopes of the request's agency token when it has `scope`; else the
/// 401 HighLevel gives a missing, unknown, expired, non-agency or
/// under-scoped token.
fn agency(app: &App, headers: &HeaderMap, scope: &str) -> Result<Scopes, Reply> {
    let token = bearer_token(headers).ok_or_else(Reply::invalid_token)?;
    let class_refusal = || {
        let msg = "This authClass type is not allowed to access this scope. \
                   Please reach out to support team.";
        Reply::error(None, StatusCode::UNAUTHORIZED, msg, None)
    };
    if app.location_of_token(token).is_some() {
        return Err(class_refusal());
    }
    match app.oauth().check(token) {
        AccessCheck::Company { scopes } if scopes.iter().any(|s| s == scope) => Ok(scopes),
        AccessCheck::Company { .. } => Err(Reply::scope_refused(None)),
        AccessCheck::Location { .. } => Err(class_refusal()),
        AccessCheck::Expired => Err(Reply::invalid_jwt()),
        AccessCheck::Unknown => Err(Reply::invalid_token()),
    }
}

/// 403 unless `company_id` is the agency the app is installed in.
fn check_company(settings: &OAuthApp, company_id: &str) -> Result<(), Reply> {
    if company_id == settings.company_id {
        return Ok(());
    }
    let msg = "The token does not have access to this company.";
    Err(Reply::error(None, StatusCode::FORBIDDEN, msg, None))
}

/// `POST /oauth/locationToken`: a location token from the agency token.
async fn location_token(app: &App, headers: &HeaderMap, body: Body) -> Result<Reply, Reply> {
    let scopes = agency(app, headers, "oauth.write")?;
    check_version(None, headers)?;
    let form = read_form(headers, body).await?;
    let mut errors = Vec::new();
    form.require("companyId", &mut errors);
    form.require("locationId", &mut errors);
    if !errors.is_empty() {
        return Err(unprocessable(&errors));
    }
    let settings = app.oauth().app.clone();
    check_company(&settings, form.get("companyId").unwrap_or(""))?;
    let location_id = form.get("locationId").unwrap_or("");
    let loc = app
        .locations
        .iter()
        .position(|l| l.id == location_id)
        .ok_or_else(|| bad_request("Location not found"))?;
    let issued = app
        .oauth()
        .mint_location(loc, scopes)
        .map_err(Refusal::reply)?;
    Ok(ok(&json!({
        "access_token": issued.access,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scopes.join(" "),
        "locationId": location_id,
        "userId": USER_ID,
        "appId": settings.app_id,
        "versionId": settings.app_id,
    })))
}

/// `GET /oauth/installedLocations`: the agency's locations, all installed,
/// filtered by `query` (name substring) and `isInstalled`, paged by
/// `skip`/`limit` (default 0/20); `count` is the total before paging.
fn installed_locations(app: &App, parts: &Parts) -> Result<Reply, Reply> {
    agency(app, &parts.headers, "oauth.readonly")?;
    check_version(None, &parts.headers)?;
    let params = Params(query_pairs(parts));
    let mut errors = Vec::new();
    params.require("companyId", &mut errors);
    params.require("appId", &mut errors);
    let mut number = |name: &str, default: usize| match params.get(name) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            errors.push(format!("{name} must be a number string"));
            default
        }),
    };
    let skip = number("skip", 0);
    let limit = number("limit", 20);
    let installed = match params.get("isInstalled") {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => {
            errors.push("isInstalled must be a boolean value".to_string());
            true
        }
    };
    if !errors.is_empty() {
        return Err(unprocessable(&errors));
    }
    let settings = app.oauth().app.clone();
    check_company(&settings, params.get("companyId").unwrap_or(""))?;
    if params.get("appId") != Some(settings.app_id.as_str()) {
        return Err(bad_request("App not found"));
    }
    let needle = params.get("query").unwrap_or("").to_lowercase();
    let matching: Vec<Value> = app
        .locations
        .iter()
        .enumerate()
        .filter(|_| installed)
        .map(|(i, l)| {
            json!({
                "_id": l.id,
                "name": format!("Sandbox Location {}", i + 1),
                "address": format!("{} Market Street, San Francisco, CA 94103, USA", 100 + i),
                "isInstalled": true,
            })
        })
        .filter(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.to_lowercase().contains(&needle))
        })
        .collect();
    let count = matching.len();
    let page: Vec<Value> = matching.into_iter().skip(skip).take(limit).collect();
    app.oauth().stats.installed_location_calls += 1;
    Ok(ok(&json!({
        "locations": page,
        "count": count,
        "installToFutureLocations": true,
    })))
}
