//! Configuration in two stages: the raw TOML tree (`RawConfig`, every key optional with a default)
//! and the validated `Config` (URLs parsed, durations parsed, secrets resolved from the
//! environment into `SecretString`).
//!
//! Architecture invariant: this is the only module that reads environment variables for
//! configuration; every error names the offending key and says what to do.

use crate::model::SubKind;
use secrecy::SecretString;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

pub const DEFAULT_BASE_URL: &str = "https://services.leadconnectorhq.com";
pub const API_VERSION: &str = "2021-07-28";
pub const DEFAULT_TOKEN_ENV: &str = "GHL_TOKEN";
pub const DEFAULT_LOCATION_ENV: &str = "GHL_LOCATION_ID";
pub const DEFAULT_API_TOKEN_ENV: &str = "GHL_MIRROR_API_TOKEN";
pub const DEFAULT_CLIENT_SECRET_ENV: &str = "GHL_CLIENT_SECRET";
pub const DEFAULT_AUTHORIZE_URL: &str =
    "https://marketplace.gohighlevel.com/v2/oauth/chooselocation";
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:8485/callback";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}` is invalid: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// How contacts are listed upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `POST /contacts/search`, sorted by (dateUpdated, id), `searchAfter` paging, incremental.
    Search,
    /// `GET /contacts/` (deprecated), `startAfter` + `startAfterId` paging, always a full sweep.
    LegacyList,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database: PathBuf,
    pub upstream: UpstreamConfig,
    pub sync: SyncConfig,
    pub subresources: SubresourcesConfig,
    pub businesses: BusinessesConfig,
    pub budget: BudgetConfig,
    pub schedule: ScheduleConfig,
    pub serve: ServeConfig,
    pub sql: SqlConfig,
    /// `None`: no `[oauth]` section (Private Integration Tokens only).
    pub oauth: Option<OAuthConfig>,
    pub locations: Vec<LocationConfig>,
}

/// The OAuth app (`[oauth]`): authorization-code login, refresh, and agency installs.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    pub client_id: String,
    pub client_secret_env: String,
    pub client_secret: SecretString,
    pub redirect_uri: Url,
    pub authorize_url: Url,
    /// Asked for besides what the enabled features need.
    pub scopes: Vec<String>,
    pub refresh_margin: Duration,
    /// The agency install (both set, or neither).
    pub agency: Option<(String, String)>,
    /// Mirror every location the agency install covers, besides `[[locations]]`.
    pub discover: bool,
    /// Where tokens are kept; `None`: beside the database (see [`Config::token_store`]).
    pub token_store: Option<PathBuf>,
}

impl Config {
    /// The token store's path: `oauth.token_store`, or `<database>.tokens`.
    pub fn token_store(&self) -> PathBuf {
        self.oauth
            .as_ref()
            .and_then(|o| o.token_store.clone())
            .unwrap_or_else(|| crate::auth::TokenStore::path_for(&self.database))
    }

    /// The OAuth scopes the enabled features use: `contacts.readonly` (required), then the
    /// optional ones (a feature without its scope is skipped with a warning), the agency's,
    /// and `oauth.scopes`.
    pub fn wanted_scopes(&self) -> Vec<String> {
        let mut s = vec![REQUIRED_SCOPE.to_string()];
        if self.businesses.enabled {
            s.push("businesses.readonly".into());
            s.push("locations/customFields.readonly".into());
        }
        if self.subresources.bulk_tasks && self.subresources.kinds.contains(&SubKind::Tasks) {
            s.push("locations/tasks.readonly".into());
        }
        if let Some(o) = &self.oauth {
            if o.agency.is_some() {
                s.push("oauth.readonly".into());
                s.push("oauth.write".into());
            }
            s.extend(o.scopes.iter().cloned());
        }
        let mut seen = std::collections::HashSet::new();
        s.retain(|x| seen.insert(x.clone()));
        s
    }
}

/// The scope without which no location can be mirrored.
pub const REQUIRED_SCOPE: &str = "contacts.readonly";

impl Config {
    /// The scopes an OAuth location's grant must have for the enabled features to start (the
    /// others in [`Config::wanted_scopes`] are optional: their feature is skipped with a
    /// warning). Reading needs `contacts.readonly`; a feature that writes to HighLevel adds
    /// `contacts.write` here, so that it refuses to start without it.
    pub fn required_scopes(&self) -> Vec<&'static str> {
        vec![REQUIRED_SCOPE]
    }
}

/// The local HTTP API (`ghl-mirror serve`).
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: std::net::SocketAddr,
    /// The variable holding the API's bearer token.
    pub token_env: String,
    /// Required of every request when set; `serve` refuses to listen beyond loopback without it.
    /// Surrounding whitespace (a trailing newline from `$(cat file)`) is trimmed.
    pub token: Option<SecretString>,
    /// Header-read and request timeouts and the connection limit (the shutdown grace period
    /// is fixed).
    pub timeouts: crate::serve::Timeouts,
}

/// `ghl-mirror sql`.
#[derive(Clone, Debug)]
pub struct SqlConfig {
    /// A query still running after this long is stopped (`--timeout` overrides it).
    pub timeout: Duration,
}

/// Each contact's tasks, notes and appointments.
#[derive(Clone, Debug)]
pub struct SubresourcesConfig {
    /// Empty: the stream is off.
    pub kinds: Vec<SubKind>,
    /// A contact's lists are re-fetched (rolling refresh) once their last fetch is this old.
    pub refresh_after: Duration,
    /// Read all tasks through `POST /locations/:id/tasks/search` when the token allows it.
    pub bulk_tasks: bool,
    pub bulk_page_limit: u32,
}

#[derive(Clone, Debug)]
pub struct BusinessesConfig {
    pub enabled: bool,
    pub page_limit: u32,
}

/// What one sub-resource or business run may spend, per location.
#[derive(Clone, Debug)]
pub struct BudgetConfig {
    pub run_requests: u64,
    pub daily_share: f64,
}

/// Cron expressions (with seconds: `sec min hour day month weekday`) for `daemon`; `None` = off.
#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    pub contacts: Option<String>,
    pub subresources: Option<String>,
    pub businesses: Option<String>,
    pub reconcile: Option<String>,
    pub run_at_start: bool,
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub base_url: Url,
    pub api_version: String,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub burst_max: u32,
    pub interval: Duration,
    pub safety_margin: Duration,
    pub daily_reserve: u32,
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub strategy: Strategy,
    pub page_limit: u32,
    pub legacy_page_limit: u32,
    pub lookback: Duration,
    pub reconcile_every: Duration,
    pub max_tombstone_share: f64,
}

#[derive(Clone, Debug)]
pub struct LocationConfig {
    pub id: String,
    pub name: Option<String>,
    pub auth: LocationAuth,
}

/// How a location's requests are authorized (`[[locations]] auth`).
#[derive(Clone, Debug)]
pub enum LocationAuth {
    /// `"private"` (default): a Private Integration Token from `token_env`.
    Private {
        token_env: String,
        token: SecretString,
    },
    /// `"oauth"`: the location's own OAuth grant, from `ghl-mirror auth login`.
    OAuth,
    /// `"agency"`: location tokens minted from the agency grant.
    Agency,
}

// ---- stage one: the raw tree, exactly as written in the file ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    database: RawDatabase,
    upstream: RawUpstream,
    sync: RawSync,
    subresources: RawSubresources,
    businesses: RawBusinesses,
    budget: RawBudget,
    schedule: RawSchedule,
    serve: RawServe,
    sql: RawSql,
    oauth: Option<RawOAuth>,
    locations: Vec<RawLocation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOAuth {
    client_id: String,
    client_id_env: String,
    client_secret_env: String,
    redirect_uri: String,
    authorize_url: String,
    scopes: Vec<String>,
    refresh_margin: String,
    company_id: String,
    app_id: String,
    discover: bool,
    token_store: String,
}

impl Default for RawOAuth {
    fn default() -> Self {
        RawOAuth {
            client_id: String::new(),
            client_id_env: String::new(),
            client_secret_env: DEFAULT_CLIENT_SECRET_ENV.into(),
            redirect_uri: DEFAULT_REDIRECT_URI.into(),
            authorize_url: DEFAULT_AUTHORIZE_URL.into(),
            scopes: Vec::new(),
            refresh_margin: "1h".into(),
            company_id: String::new(),
            app_id: String::new(),
            discover: false,
            token_store: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServe {
    listen: String,
    token_env: String,
    header_timeout: String,
    request_timeout: String,
    max_connections: usize,
}

impl Default for RawServe {
    fn default() -> Self {
        RawServe {
            listen: "127.0.0.1:8484".into(),
            token_env: DEFAULT_API_TOKEN_ENV.into(),
            header_timeout: "10s".into(),
            request_timeout: "30s".into(),
            max_connections: crate::serve::Timeouts::default().max_connections,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSql {
    timeout: String,
}

impl Default for RawSql {
    fn default() -> Self {
        RawSql {
            timeout: DEFAULT_SQL_TIMEOUT.into(),
        }
    }
}

/// How long `sql` lets a query run by default.
pub const DEFAULT_SQL_TIMEOUT: &str = "5s";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSubresources {
    kinds: Vec<String>,
    refresh_after: String,
    bulk_tasks: bool,
    bulk_page_limit: i64,
}

impl Default for RawSubresources {
    fn default() -> Self {
        RawSubresources {
            kinds: SubKind::ALL
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            refresh_after: "7d".into(),
            bulk_tasks: true,
            bulk_page_limit: 100,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBusinesses {
    enabled: bool,
    page_limit: i64,
}

impl Default for RawBusinesses {
    fn default() -> Self {
        RawBusinesses {
            enabled: true,
            page_limit: 100,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBudget {
    run_requests: i64,
    daily_share: f64,
}

impl Default for RawBudget {
    fn default() -> Self {
        RawBudget {
            run_requests: 5_000,
            daily_share: 0.5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSchedule {
    contacts: String,
    subresources: String,
    businesses: String,
    reconcile: String,
    run_at_start: bool,
}

impl Default for RawSchedule {
    fn default() -> Self {
        RawSchedule {
            contacts: "0 */5 * * * *".into(),
            subresources: "0 7 * * * *".into(),
            businesses: "0 37 */6 * * *".into(),
            reconcile: "0 23 3 * * *".into(),
            run_at_start: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    path: String,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            path: "./ghl-mirror.db".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    base_url: String,
    api_version: String,
    timeout: String,
    max_in_flight: i64,
    rate_limit: RawRateLimit,
    retry: RawRetry,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            base_url: DEFAULT_BASE_URL.into(),
            api_version: API_VERSION.into(),
            timeout: "30s".into(),
            max_in_flight: 2,
            rate_limit: RawRateLimit::default(),
            retry: RawRetry::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRateLimit {
    burst_max: i64,
    interval: String,
    safety_margin: String,
    daily_reserve: i64,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        RawRateLimit {
            burst_max: 100,
            interval: "10s".into(),
            safety_margin: "200ms".into(),
            daily_reserve: 5_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetry {
    max_attempts: i64,
    base_delay: String,
    max_delay: String,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            max_attempts: 6,
            base_delay: "250ms".into(),
            max_delay: "20s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSync {
    strategy: String,
    page_limit: i64,
    legacy_page_limit: i64,
    lookback: String,
    reconcile_every: String,
    max_tombstone_share: f64,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            strategy: "search".into(),
            page_limit: 500,
            legacy_page_limit: 100,
            lookback: "5m".into(),
            reconcile_every: "24h".into(),
            max_tombstone_share: 0.5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

// ---- stage two: validation ----

/// Where configuration comes from besides the file.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Config {
    /// Loads `path` (or only defaults when `None`) and validates it against `env`.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Self::parse_raw(&text, p)?
            }
            None => RawConfig::default(),
        };
        Self::validate(raw, env)
    }

    /// Parses TOML text (used by `load` and by tests).
    pub fn from_toml(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw = Self::parse_raw(text, Path::new("<inline>"))?;
        Self::validate(raw, env)
    }

    fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    fn validate(raw: RawConfig, env: &dyn Env) -> Result<Config, ConfigError> {
        if raw.database.path.trim().is_empty() {
            return Err(invalid(
                "database.path",
                "must not be empty; use e.g. \"./ghl-mirror.db\"",
            ));
        }
        let oauth = raw.oauth.map(|o| validate_oauth(o, env)).transpose()?;
        let locations = validate_locations(raw.locations, env, oauth.as_ref())?;
        Ok(Config {
            oauth,
            locations,
            database: PathBuf::from(raw.database.path),
            upstream: validate_upstream(raw.upstream)?,
            sync: validate_sync(raw.sync)?,
            subresources: validate_subresources(raw.subresources)?,
            businesses: BusinessesConfig {
                enabled: raw.businesses.enabled,
                page_limit: in_range("businesses.page_limit", raw.businesses.page_limit, 1, 100)?
                    as u32,
            },
            budget: BudgetConfig {
                run_requests: in_range(
                    "budget.run_requests",
                    raw.budget.run_requests,
                    1,
                    10_000_000,
                )? as u64,
                daily_share: share("budget.daily_share", raw.budget.daily_share)?,
            },
            schedule: validate_schedule(raw.schedule)?,
            serve: validate_serve(raw.serve, env)?,
            sql: SqlConfig {
                timeout: at_most(
                    "sql.timeout",
                    positive_duration("sql.timeout", &raw.sql.timeout)?,
                    86_400,
                )?,
            },
        })
    }
}

fn validate_oauth(raw: RawOAuth, env: &dyn Env) -> Result<OAuthConfig, ConfigError> {
    let client_id = match (raw.client_id.trim(), raw.client_id_env.trim()) {
        ("", "") => {
            return Err(invalid(
                "oauth.client_id",
                "is missing: copy the Client ID of your HighLevel app (Marketplace > My Apps > Auth), or name a variable holding it with oauth.client_id_env",
            ));
        }
        (id, "") => id.to_string(),
        ("", var) => env.var(var).map(|v| v.trim().to_string()).ok_or_else(|| {
            invalid(
                "oauth.client_id_env",
                format!(
                    "environment variable {var} is not set; export it with your app's Client ID"
                ),
            )
        })?,
        _ => {
            return Err(invalid(
                "oauth.client_id",
                "give client_id or client_id_env, not both",
            ));
        }
    };
    let secret_env = raw.client_secret_env.trim().to_string();
    if secret_env.is_empty() {
        return Err(invalid(
            "oauth.client_secret_env",
            format!(
                "must name an environment variable, e.g. \"{DEFAULT_CLIENT_SECRET_ENV}\" (the secret itself never goes in the file)"
            ),
        ));
    }
    let client_secret = env.var(&secret_env).map(SecretString::from).ok_or_else(|| {
        invalid(
            "oauth.client_secret_env",
            format!("environment variable {secret_env} is not set; export it with your app's Client Secret"),
        )
    })?;
    let redirect_uri = Url::parse(raw.redirect_uri.trim()).map_err(|e| {
        invalid(
            "oauth.redirect_uri",
            format!(
                "{:?} is not a URL ({e}); use e.g. \"{DEFAULT_REDIRECT_URI}\"",
                raw.redirect_uri
            ),
        )
    })?;
    let authorize_url = Url::parse(raw.authorize_url.trim()).map_err(|e| {
        invalid(
            "oauth.authorize_url",
            format!(
                "{:?} is not a URL ({e}); use \"{DEFAULT_AUTHORIZE_URL}\"",
                raw.authorize_url
            ),
        )
    })?;
    for (key, url) in [
        ("oauth.redirect_uri", &redirect_uri),
        ("oauth.authorize_url", &authorize_url),
    ] {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(key, format!("{url} must be an http(s) URL")));
        }
    }
    let agency = match (raw.company_id.trim(), raw.app_id.trim()) {
        ("", "") => None,
        ("", _) | (_, "") => {
            return Err(invalid(
                "oauth.company_id",
                "an agency install needs both oauth.company_id (the agency's id) and oauth.app_id (the app's id from the Marketplace)",
            ));
        }
        (c, a) => Some((c.to_string(), a.to_string())),
    };
    if raw.discover && agency.is_none() {
        return Err(invalid(
            "oauth.discover",
            "discovering installed locations needs an agency install: set oauth.company_id and oauth.app_id",
        ));
    }
    let token_store = match raw.token_store.trim() {
        "" => None,
        p => Some(PathBuf::from(p)),
    };
    Ok(OAuthConfig {
        client_id,
        client_secret_env: secret_env,
        client_secret,
        redirect_uri,
        authorize_url,
        scopes: raw
            .scopes
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        refresh_margin: duration("oauth.refresh_margin", &raw.refresh_margin)?,
        agency,
        discover: raw.discover,
        token_store,
    })
}

fn validate_serve(raw: RawServe, env: &dyn Env) -> Result<ServeConfig, ConfigError> {
    let listen = raw.listen.trim().parse().map_err(|_| {
        invalid(
            "serve.listen",
            format!(
                "{:?} is not an address and port; use e.g. \"127.0.0.1:8484\" (this machine \
                 only) or \"0.0.0.0:8484\" (every interface, needs a token)",
                raw.listen
            ),
        )
    })?;
    if raw.token_env.trim().is_empty() {
        return Err(invalid(
            "serve.token_env",
            format!("must name an environment variable, e.g. \"{DEFAULT_API_TOKEN_ENV}\""),
        ));
    }
    let header = positive_duration("serve.header_timeout", &raw.header_timeout)?;
    let request = positive_duration("serve.request_timeout", &raw.request_timeout)?;
    if raw.max_connections == 0 {
        return Err(invalid(
            "serve.max_connections",
            "must be at least 1 (the default is 512)".to_string(),
        ));
    }
    let connections = raw.max_connections;
    Ok(ServeConfig {
        listen,
        // Unset and empty are the same: no token (commands that need no upstream token resolve
        // unset variables to ""). Clients' tokens are trimmed too, so surrounding whitespace
        // would otherwise lock every client out.
        token: env
            .var(&raw.token_env)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(SecretString::from),
        token_env: raw.token_env,
        timeouts: crate::serve::Timeouts {
            header: at_most("serve.header_timeout", header, 3600)?,
            request: at_most("serve.request_timeout", request, 3600)?,
            max_connections: connections,
            ..crate::serve::Timeouts::default()
        },
    })
}

fn validate_upstream(raw: RawUpstream) -> Result<UpstreamConfig, ConfigError> {
    let base_url = Url::parse(&raw.base_url).map_err(|e| {
        invalid(
            "upstream.base_url",
            format!(
                "{:?} is not a URL ({e}); the real API is {DEFAULT_BASE_URL}",
                raw.base_url
            ),
        )
    })?;
    if !matches!(base_url.scheme(), "http" | "https") {
        return Err(invalid(
            "upstream.base_url",
            "must start with https:// (or http:// for a local sandbox)",
        ));
    }
    if raw.api_version.trim().is_empty() {
        return Err(invalid(
            "upstream.api_version",
            format!("must not be empty; HighLevel's contacts API accepts {API_VERSION:?}"),
        ));
    }
    let rl = raw.rate_limit;
    let retry = raw.retry;
    Ok(UpstreamConfig {
        base_url,
        api_version: raw.api_version,
        timeout: positive_duration("upstream.timeout", &raw.timeout)?,
        max_in_flight: in_range("upstream.max_in_flight", raw.max_in_flight, 1, 16)? as usize,
        burst_max: in_range("upstream.rate_limit.burst_max", rl.burst_max, 1, 10_000)? as u32,
        interval: positive_duration("upstream.rate_limit.interval", &rl.interval)?,
        safety_margin: duration("upstream.rate_limit.safety_margin", &rl.safety_margin)?,
        daily_reserve: in_range(
            "upstream.rate_limit.daily_reserve",
            rl.daily_reserve,
            0,
            10_000_000,
        )? as u32,
        max_attempts: in_range("upstream.retry.max_attempts", retry.max_attempts, 1, 100)? as u32,
        base_delay: duration("upstream.retry.base_delay", &retry.base_delay)?,
        max_delay: positive_duration("upstream.retry.max_delay", &retry.max_delay)?,
    })
}

fn validate_sync(raw: RawSync) -> Result<SyncConfig, ConfigError> {
    let strategy = match raw.strategy.as_str() {
        "search" => Strategy::Search,
        "legacy-list" => Strategy::LegacyList,
        other => {
            return Err(invalid(
                "sync.strategy",
                format!("{other:?} is not a strategy; use \"search\" or \"legacy-list\""),
            ));
        }
    };
    Ok(SyncConfig {
        strategy,
        page_limit: in_range("sync.page_limit", raw.page_limit, 1, 500)? as u32,
        legacy_page_limit: in_range("sync.legacy_page_limit", raw.legacy_page_limit, 1, 100)?
            as u32,
        lookback: at_most(
            "sync.lookback",
            duration("sync.lookback", &raw.lookback)?,
            7 * 24 * 3600,
        )?,
        reconcile_every: positive_duration("sync.reconcile_every", &raw.reconcile_every)?,
        max_tombstone_share: share("sync.max_tombstone_share", raw.max_tombstone_share)?,
    })
}

fn validate_subresources(raw: RawSubresources) -> Result<SubresourcesConfig, ConfigError> {
    let mut kinds = Vec::new();
    for k in &raw.kinds {
        let kind = SubKind::parse(k).ok_or_else(|| {
            invalid(
                "subresources.kinds",
                format!("{k:?} is not a kind; use any of \"tasks\", \"notes\", \"appointments\" ([] turns the stream off)"),
            )
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(SubresourcesConfig {
        kinds,
        refresh_after: positive_duration("subresources.refresh_after", &raw.refresh_after)?,
        bulk_tasks: raw.bulk_tasks,
        bulk_page_limit: in_range("subresources.bulk_page_limit", raw.bulk_page_limit, 1, 100)?
            as u32,
    })
}

fn validate_schedule(raw: RawSchedule) -> Result<ScheduleConfig, ConfigError> {
    let cron = |key: &str, expr: String| -> Result<Option<String>, ConfigError> {
        let expr = expr.trim().to_string();
        if expr.is_empty() {
            return Ok(None);
        }
        tokio_cron_scheduler::Job::new_async(expr.as_str(), |_, _| Box::pin(async {})).map_err(|_| {
            invalid(
                key,
                format!(
                    "{expr:?} is not a cron expression; use six fields with seconds first, e.g. \"0 */5 * * * *\" (every 5 minutes), or \"\" to turn it off"
                ),
            )
        })?;
        Ok(Some(expr))
    };
    Ok(ScheduleConfig {
        contacts: cron("schedule.contacts", raw.contacts)?,
        subresources: cron("schedule.subresources", raw.subresources)?,
        businesses: cron("schedule.businesses", raw.businesses)?,
        reconcile: cron("schedule.reconcile", raw.reconcile)?,
        run_at_start: raw.run_at_start,
    })
}

fn validate_locations(
    raw: Vec<RawLocation>,
    env: &dyn Env,
    oauth: Option<&OAuthConfig>,
) -> Result<Vec<LocationConfig>, ConfigError> {
    let raw = if raw.is_empty() {
        // No [[locations]]: one location from the environment, if it is set.
        match env.var(DEFAULT_LOCATION_ENV) {
            Some(id) => vec![RawLocation {
                id,
                name: None,
                token_env: None,
                auth: None,
            }],
            None => Vec::new(),
        }
    } else {
        raw
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, loc) in raw.into_iter().enumerate() {
        let key = format!("locations[{i}]");
        let id = loc.id.trim().to_string();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                &format!("{key}.id"),
                format!(
                    "{:?} is not a HighLevel location id (letters and digits, e.g. \"ve9EPM428h8vShlRW1KT\")",
                    loc.id
                ),
            ));
        }
        if !seen.insert(id.clone()) {
            return Err(invalid(
                &format!("{key}.id"),
                format!("location {id} is listed twice"),
            ));
        }
        let auth = match loc.auth.as_deref().map(str::trim).unwrap_or("private") {
            "private" => {
                let token_env = loc
                    .token_env
                    .unwrap_or_else(|| DEFAULT_TOKEN_ENV.to_string());
                let token = env.var(&token_env).ok_or_else(|| {
                    invalid(
                        &format!("{key}.token_env"),
                        format!(
                            "environment variable {token_env} is not set; export it with the Private \
                             Integration Token of location {id} (or set auth = \"oauth\" and run `ghl-mirror auth login`)"
                        ),
                    )
                })?;
                LocationAuth::Private {
                    token_env,
                    token: SecretString::from(token),
                }
            }
            kind @ ("oauth" | "agency") => {
                if loc.token_env.is_some() {
                    return Err(invalid(
                        &format!("{key}.token_env"),
                        format!(
                            "a location with auth = \"{kind}\" takes no token_env (its tokens are in the token store)"
                        ),
                    ));
                }
                let Some(o) = oauth else {
                    return Err(invalid(
                        &format!("{key}.auth"),
                        format!(
                            "auth = \"{kind}\" needs an [oauth] section (client_id, client_secret_env); see config.example.toml"
                        ),
                    ));
                };
                if kind == "agency" && o.agency.is_none() {
                    return Err(invalid(
                        &format!("{key}.auth"),
                        "auth = \"agency\" needs oauth.company_id and oauth.app_id (the agency install its tokens are minted from)",
                    ));
                }
                if kind == "oauth" {
                    LocationAuth::OAuth
                } else {
                    LocationAuth::Agency
                }
            }
            other => {
                return Err(invalid(
                    &format!("{key}.auth"),
                    format!(
                        "{other:?} is not a kind of auth; use \"private\" (a Private Integration Token), \"oauth\" or \"agency\""
                    ),
                ));
            }
        };
        out.push(LocationConfig {
            id,
            name: loc.name,
            auth,
        });
    }
    Ok(out)
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(
            key,
            format!(
                "{text:?} is not a duration ({e}); write e.g. \"250ms\", \"10s\", \"5m\", \"24h\""
            ),
        )
    })
}

fn positive_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let d = duration(key, text)?;
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(d)
}

fn share(key: &str, value: f64) -> Result<f64, ConfigError> {
    if !(0.0..=1.0).contains(&value) {
        return Err(invalid(
            key,
            format!("{value} is not a share; use a number from 0.0 to 1.0 (e.g. 0.5 for half)"),
        ));
    }
    Ok(value)
}

fn at_most(key: &str, d: Duration, max_secs: u64) -> Result<Duration, ConfigError> {
    if d > Duration::from_secs(max_secs) {
        return Err(invalid(
            key,
            format!(
                "{} is too long; use at most {}",
                humantime::format_duration(d),
                humantime::format_duration(Duration::from_secs(max_secs))
            ),
        ));
    }
    Ok(d)
}

fn in_range(key: &str, value: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            key,
            format!("{value} is out of range; use a number from {min} to {max}"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<String, String>);
    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn env(pairs: &[(&str, &str)]) -> MapEnv {
        MapEnv(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_work_with_no_file() {
        let c = Config::load(None, &env(&[])).unwrap();
        assert_eq!(c.database, PathBuf::from("./ghl-mirror.db"));
        assert_eq!(
            c.upstream.base_url.as_str(),
            "https://services.leadconnectorhq.com/"
        );
        assert_eq!(c.upstream.burst_max, 100);
        assert_eq!(c.sync.page_limit, 500);
        assert!(c.locations.is_empty());
    }

    #[test]
    fn sql_queries_stop_after_five_seconds_unless_the_config_says_otherwise() {
        let c = Config::load(None, &env(&[])).unwrap();
        assert_eq!(c.sql.timeout, Duration::from_secs(5));
        let c = Config::from_toml("[sql]\ntimeout = \"90s\"\n", &env(&[])).unwrap();
        assert_eq!(c.sql.timeout, Duration::from_secs(90));
        for bad in ["0s", "soon", "3d"] {
            let e =
                Config::from_toml(&format!("[sql]\ntimeout = {bad:?}\n"), &env(&[])).unwrap_err();
            assert!(e.to_string().contains("sql.timeout"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_example_config_is_valid_and_complete() {
        let text = include_str!("../config.example.toml");
        let c = Config::from_toml(text, &env(&[("GHL_TOKEN", "t")])).unwrap();
        assert_eq!(c.upstream.interval, Duration::from_secs(10));
        assert_eq!(c.locations.len(), 1);
    }

    #[test]
    fn the_api_token_is_trimmed_of_surrounding_whitespace() {
        let c = Config::from_toml("", &env(&[(DEFAULT_API_TOKEN_ENV, "  s3cret\n")])).unwrap();
        let token = c
            .serve
            .token
            .as_ref()
            .map(|t| secrecy::ExposeSecret::expose_secret(t).to_string());
        assert_eq!(token.as_deref(), Some("s3cret"));
        let c = Config::from_toml("", &env(&[(DEFAULT_API_TOKEN_ENV, " \t\n")])).unwrap();
        assert!(c.serve.token.is_none());
    }

    #[test]
    fn serve_timeouts_are_read_from_the_config_and_must_be_positive() {
        let c = Config::from_toml(
            "[serve]\nheader_timeout = \"2s\"\nrequest_timeout = \"1m\"\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.serve.timeouts.header, Duration::from_secs(2));
        assert_eq!(c.serve.timeouts.request, Duration::from_secs(60));
        let e = Config::from_toml("[serve]\nheader_timeout = \"0s\"\n", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("serve.header_timeout"), "{e}");
    }

    #[test]
    fn the_servers_connection_limit_is_read_from_the_config_and_must_be_positive() {
        let c = Config::from_toml("", &env(&[])).unwrap();
        assert_eq!(c.serve.timeouts.max_connections, 512);
        let c = Config::from_toml("[serve]\nmax_connections = 3\n", &env(&[])).unwrap();
        assert_eq!(c.serve.timeouts.max_connections, 3);
        let e = Config::from_toml("[serve]\nmax_connections = 0\n", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("serve.max_connections"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::from_toml("[sync]\npage_limit = 900\n", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("sync.page_limit"), "{e}");
        let e = Config::from_toml("[upstream]\ntimeout = \"soon\"\n", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("upstream.timeout"), "{e}");
        let e = Config::from_toml("[sync]\nlookback = \"30d\"\n", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("sync.lookback"), "{e}");
        let e = Config::from_toml("[sync]\npage_limt = 9\n", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("page_limt"), "{e}");
        let e =
            Config::from_toml("[schedule]\ncontacts = \"*/5 * * * *\"\n", &env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("schedule.contacts") && e.to_string().contains("seconds first"),
            "{e}"
        );
        let e = Config::from_toml(
            "[subresources]\nkinds = [\"tasks\", \"emails\"]\n",
            &env(&[]),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("subresources.kinds") && e.to_string().contains("\"emails\""),
            "{e}"
        );
        let e = Config::from_toml("[budget]\ndaily_share = 1.5\n", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("budget.daily_share"), "{e}");
        let e = Config::from_toml("[budget]\nrun_requests = 0\n", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("budget.run_requests"), "{e}");
        let c = Config::from_toml(
            "[schedule]\nreconcile = \"\"\n[subresources]\nkinds = []\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.schedule.reconcile, None);
        assert!(c.subresources.kinds.is_empty());
        assert_eq!(c.schedule.contacts.as_deref(), Some("0 */5 * * * *"));
    }

    #[test]
    fn a_missing_token_variable_is_named() {
        let text = "[[locations]]\nid = \"abc\"\ntoken_env = \"MY_TOKEN\"\n";
        let e = Config::from_toml(text, &env(&[])).unwrap_err();
        assert!(e.to_string().contains("MY_TOKEN"), "{e}");
    }
}
