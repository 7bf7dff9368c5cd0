//! OAuth tokens that never lock the user out.
//!
//! HighLevel's refresh tokens are single use: a refresh returns a new pair and the old refresh
//! token dies. [`Tokens`] therefore:
//! - refreshes one grant at a time: a per-grant async mutex in the process, and an OS file lock
//!   (`flock`, released by the kernel even on SIGKILL) across processes sharing the database;
//!   whoever waited re-reads the store and uses the pair the first one stored;
//! - commits a "refresh started" mark before sending a refresh, and commits the new pair
//!   (`synchronous = FULL`) before the new access token is used or returned;
//! - never needs the old pair after a refresh succeeded, and keeps using a still-valid access
//!   token when a refresh cannot be done, so a lost rotation costs nothing until that token
//!   expires, and `auth status` says so and what to run;
//! - marks a grant HighLevel refused (`invalid_grant`, "Location is not active") as needing
//!   re-authorization, with the reason and the command; other locations are not affected.
//!
//! Location tokens of an agency install are minted from the agency token
//! (`POST /oauth/locationToken`) and minted again when they expire.

pub use crate::store::tokens::{Grant, GrantKind, TokenStore, TokenStoreError};

use crate::model::{iso_from_ms, now_ms};
use crate::upstream::oauth::{InstalledLocation, OAuthApp, OAuthError, TokenGrant, UserType};
use crate::upstream::{TokenSource, UpstreamError};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The OAuth side of the config.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub app: OAuthApp,
    /// Refresh when the access token has less than this left (at most half its lifetime).
    pub refresh_margin: Duration,
    pub agency: Option<Agency>,
}

/// The agency (Company) install that location tokens are minted from.
#[derive(Clone, Debug)]
pub struct Agency {
    pub company_id: String,
    pub app_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A person has to act: the message says what happened and what to run.
    #[error("{message}")]
    Reauthorize { subject: String, message: String },
    #[error(transparent)]
    Store(#[from] TokenStoreError),
    /// HighLevel could not be reached or answered 5xx: try again later.
    #[error("{0}")]
    Unavailable(OAuthError),
    #[error("{0}")]
    NotConfigured(String),
}

/// The subject (store key) of a location's grant.
pub fn location_subject(location_id: &str) -> String {
    format!("location:{location_id}")
}

/// The subject (store key) of an agency grant.
pub fn company_subject(company_id: &str) -> String {
    format!("company:{company_id}")
}

/// Environment variable naming a point at which the process aborts, to test crash recovery:
/// `refresh-marked`, `refresh-received` (the new pair is in memory, not stored),
/// `refresh-persisted` (stored, not yet used).
pub const FAILPOINT_ENV: &str = "GHL_MIRROR_FAILPOINT";

pub struct Tokens {
    store: TokenStore,
    settings: AuthSettings,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The last grant read or written per subject: requests use it while it is not due, so
    /// the token store is read only around renewals (an access token stays valid until it
    /// expires, whoever refreshed since).
    cache: Mutex<HashMap<String, Grant>>,
    /// Renewals that failed without an answer (or with a refusal that is not the grant's
    /// fault), per subject: the next attempt waits, so a token endpoint that is down is not
    /// asked again by every request.
    failures: Mutex<HashMap<String, Failure>>,
    failpoint: Option<String>,
    refreshes: std::sync::atomic::AtomicU64,
}

#[derive(Clone, Debug)]
struct Failure {
    at: Instant,
    retry_at: Instant,
    count: u32,
    message: String,
}

/// The first wait after a failed renewal; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("store", &self.store.path())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tokens {
    pub fn new(store: TokenStore, settings: AuthSettings) -> Tokens {
        Tokens {
            store,
            settings,
            flights: Mutex::default(),
            cache: Mutex::default(),
            failures: Mutex::default(),
            failpoint: std::env::var(FAILPOINT_ENV).ok(),
            refreshes: Default::default(),
        }
    }

    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    /// Refresh and mint requests this process sent.
    pub fn renewals(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A [`TokenSource`] for the upstream client of `location_id`.
    pub fn source(self: &Arc<Self>, location_id: &str) -> Arc<dyn TokenSource> {
        Arc::new(Source {
            tokens: self.clone(),
            location: location_id.to_string(),
        })
    }

    fn fail_at(&self, point: &str) {
        if self.failpoint.as_deref() == Some(point) {
            eprintln!("{FAILPOINT_ENV}={point}: aborting");
            std::process::abort();
        }
    }

    /// Reads `subject` from the store, remembering it.
    fn load(&self, subject: &str) -> Result<Option<Grant>, AuthError> {
        let g = self.store.get(subject)?;
        if let Some(g) = &g {
            lock(&self.cache).insert(subject.to_string(), g.clone());
        }
        Ok(g)
    }

    /// Stores `g` durably (then remembers it).
    fn save(&self, g: &Grant) -> Result<(), AuthError> {
        self.store.put(g)?;
        lock(&self.cache).insert(g.subject.clone(), g.clone());
        lock(&self.failures).remove(&g.subject);
        Ok(())
    }

    /// Whether `g` should be renewed now: it can be, and it is within the margin of its
    /// expiry, or a refresh of it was interrupted.
    fn due(&self, g: &Grant, now: i64) -> bool {
        let renewable = g.reauth.is_none() && (g.kind == GrantKind::Minted || g.refresh.is_some());
        renewable
            && (now >= g.access_expires_ms - self.margin_ms(g) || g.refresh_started_ms.is_some())
    }

    /// The access token to use now for `subject`, renewed first when it is about to expire.
    pub async fn bearer(&self, subject: &str) -> Result<SecretString, AuthError> {
        let now = now_ms();
        let cached = lock(&self.cache).get(subject).cloned();
        if let Some(g) = cached
            && !self.due(&g, now)
            && now < g.access_expires_ms
        {
            return Ok(g.access);
        }
        let Some(g) = self.load(subject)? else {
            return self.renew(subject, None).await.map(|g| g.access);
        };
        if self.due(&g, now) {
            let backoff = self.backing_off(subject);
            let backing_off = backoff.is_some();
            let renewed = match backoff {
                None => self.renew(subject, Some(g.generation)).await,
                Some(f) => Err(AuthError::Unavailable(OAuthError::Unavailable {
                    endpoint: "POST /oauth/token",
                    detail: format!(
                        "renewing the token of {subject} failed {} time(s), last: {}; next attempt in {} s",
                        f.count,
                        f.message,
                        f.retry_at
                            .saturating_duration_since(Instant::now())
                            .as_secs()
                    ),
                })),
            };
            match renewed {
                Ok(new) => return Ok(new.access),
                // The current token still works: use it (the grant is flagged, or the
                // renewal is retried after its backoff).
                Err(e) if now < g.access_expires_ms && !matches!(e, AuthError::Store(_)) => {
                    if !backing_off {
                        tracing::warn!(subject, error = %e, "cannot renew the token; using the current one until it expires");
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if now >= g.access_expires_ms {
            let g = self.load(subject)?.unwrap_or(g);
            return Err(AuthError::Reauthorize {
                subject: subject.to_string(),
                message: g.reauth.clone().unwrap_or_else(|| {
                    format!(
                        "the access token of {subject} expired and cannot be renewed; {}",
                        login_hint(&g)
                    )
                }),
            });
        }
        Ok(g.access)
    }

    /// HighLevel refused `used` (401): the token another request already renewed, or a new one.
    pub async fn refused(
        &self,
        subject: &str,
        used: &SecretString,
    ) -> Result<SecretString, AuthError> {
        match self.load(subject)? {
            Some(g) if g.access.expose_secret() != used.expose_secret() => Ok(g.access),
            Some(g) => self
                .renew(subject, Some(g.generation))
                .await
                .map(|g| g.access),
            None => self.renew(subject, None).await.map(|g| g.access),
        }
    }

    /// Refresh when less than this is left: the configured margin, at most half the lifetime.
    fn margin_ms(&self, g: &Grant) -> i64 {
        let margin = self.settings.refresh_margin.as_millis() as i64;
        margin.min((g.access_expires_ms - g.issued_ms).max(0) / 2)
    }

    fn flight(&self, subject: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.flights)
            .entry(subject.to_string())
            .or_default()
            .clone()
    }

    /// The failed renewal of `subject` whose backoff has not run out.
    fn backing_off(&self, subject: &str) -> Option<Failure> {
        lock(&self.failures)
            .get(subject)
            .filter(|f| Instant::now() < f.retry_at)
            .cloned()
    }

    /// Records a failed renewal of `subject` and returns `e`.
    fn failed(&self, subject: &str, e: AuthError) -> AuthError {
        let mut failures = lock(&self.failures);
        let count = failures.get(subject).map_or(0, |f| f.count) + 1;
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << (count - 1).min(10))
            .min(MAX_BACKOFF);
        let now = Instant::now();
        failures.insert(
            subject.to_string(),
            Failure {
                at: now,
                retry_at: now + wait,
                count,
                message: e.to_string(),
            },
        );
        e
    }

    /// The file lock that makes one process at a time renew `subject`.
    async fn cross_process(&self, subject: &str) -> Result<std::fs::File, AuthError> {
        let file = self.store.refresh_lock_file(subject)?;
        let lock_err = |detail: String| {
            AuthError::Store(TokenStoreError::File {
                path: self.store.path().to_path_buf(),
                detail,
            })
        };
        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| lock_err(format!("the refresh lock task failed: {e}")))?
            .map_err(|e| lock_err(format!("cannot take the refresh lock of {subject}: {e}")))
    }

    /// Renews `subject` unless someone else did since `seen` (its generation then): refreshes
    /// its refresh token, or mints a location token from the agency grant. A renewal that
    /// failed while this one waited for the locks is not tried again at once.
    async fn renew(&self, subject: &str, seen: Option<i64>) -> Result<Grant, AuthError> {
        let asked = Instant::now();
        let flight = self.flight(subject);
        let _in_process = flight.lock().await;
        let _across = self.cross_process(subject).await?;
        let current = self.load(subject)?;
        if let Some(g) = &current
            && Some(g.generation) != seen
            && now_ms() < g.access_expires_ms - self.margin_ms(g)
        {
            return Ok(g.clone());
        }
        if let Some(f) = lock(&self.failures).get(subject).filter(|f| f.at > asked) {
            return Err(AuthError::Unavailable(OAuthError::Unavailable {
                endpoint: "POST /oauth/token",
                detail: format!("renewing the token of {subject} just failed: {}", f.message),
            }));
        }
        match current {
            Some(g) if g.kind != GrantKind::Minted => self.refresh(g).await,
            _ => self.mint(subject, current).await,
        }
    }

    async fn refresh(&self, g: Grant) -> Result<Grant, AuthError> {
        if let Some(why) = &g.reauth {
            return Err(AuthError::Reauthorize {
                subject: g.subject.clone(),
                message: why.clone(),
            });
        }
        let Some(refresh) = g.refresh.clone() else {
            return Err(self.flag(&g, "it has no refresh token".into())?);
        };
        let settings = &self.settings;
        let user_type = match g.kind {
            GrantKind::Company => UserType::Company,
            _ => UserType::Location,
        };
        let interrupted = g.refresh_started_ms;
        self.store.mark_refresh_started(&g.subject, now_ms())?;
        self.fail_at("refresh-marked");
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(subject = %g.subject, generation = g.generation, "refreshing the access token");
        match settings.app.refresh(&refresh, user_type).await {
            Ok(new) => {
                self.fail_at("refresh-received");
                let next = next_grant(&g, new, g.kind);
                self.save(&next)?;
                self.fail_at("refresh-persisted");
                tracing::info!(subject = %g.subject, expires = %iso_from_ms(next.access_expires_ms), "access token refreshed");
                Ok(next)
            }
            // 400 is HighLevel's answer about the grant itself ("Invalid grant", "Location is
            // not active"): only a person can fix that.
            Err(OAuthError::Refused {
                message,
                status: 400,
                ..
            }) => {
                let why = match interrupted {
                    Some(at) => format!(
                        "a refresh started at {} did not finish (the process stopped, or the answer was lost) and HighLevel now refuses the refresh token it replaced (400: {message})",
                        iso_from_ms(at)
                    ),
                    None => format!("HighLevel refused its refresh token (400: {message})"),
                };
                Err(self.flag(&g, why)?)
            }
            // Any other refusal (401 for the app's client id or secret, 422 for the request)
            // happened before HighLevel looked at the refresh token: it is still the good one.
            Err(OAuthError::Refused {
                status, message, ..
            }) => {
                self.store.clear_refresh_started(&g.subject)?;
                lock(&self.cache).remove(&g.subject);
                Err(self.failed(
                    &g.subject,
                    AuthError::NotConfigured(format!(
                        "HighLevel refused to refresh {} ({status}: {message}); check oauth.client_id and the client secret (oauth.client_secret_env): the stored tokens are kept and used again once the app's credentials are right",
                        g.subject
                    )),
                ))
            }
            // Unknown whether HighLevel rotated: the mark stays, and the next attempt (with
            // the same refresh token) finds out.
            Err(e) => Err(self.failed(&g.subject, AuthError::Unavailable(e))),
        }
    }

    /// Flags `g` as needing re-authorization and returns the error saying so.
    fn flag(&self, g: &Grant, why: String) -> Result<AuthError, AuthError> {
        let until = if now_ms() < g.access_expires_ms {
            format!(
                "; its current access token keeps working until {}",
                iso_from_ms(g.access_expires_ms)
            )
        } else {
            String::new()
        };
        let message = format!(
            "{} cannot be renewed: {why}{until}. {}",
            g.subject,
            login_hint(g)
        );
        tracing::error!(subject = %g.subject, "{message}");
        self.store.mark_reauth(&g.subject, g.generation, &message)?;
        lock(&self.cache).remove(&g.subject);
        Ok(AuthError::Reauthorize {
            subject: g.subject.clone(),
            message,
        })
    }

    /// Mints a location token from the agency grant (`subject` is `location:<id>`). An agency
    /// token HighLevel calls invalid is renewed once and the mint tried again.
    async fn mint(&self, subject: &str, current: Option<Grant>) -> Result<Grant, AuthError> {
        let settings = &self.settings;
        let location = subject.strip_prefix("location:").unwrap_or(subject);
        let Some(agency) = &settings.agency else {
            return Err(AuthError::Reauthorize {
                subject: subject.to_string(),
                message: format!(
                    "location {location} has no OAuth grant in {}: run `ghl-mirror auth login` and approve it (or set auth = \"private\" and a token_env for it)",
                    self.store.path().display()
                ),
            });
        };
        let company = company_subject(&agency.company_id);
        let mut agency_token = Box::pin(self.bearer(&company)).await?;
        let mut retried = false;
        let new = loop {
            self.refreshes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match settings
                .app
                .location_token(&agency_token, &agency.company_id, location)
                .await
            {
                Ok(new) => break new,
                Err(OAuthError::Refused { status: 401, .. }) if !retried => {
                    retried = true;
                    agency_token = Box::pin(self.refused(&company, &agency_token)).await?;
                }
                Err(OAuthError::Refused {
                    status, message, ..
                }) => {
                    return Err(self.failed(
                        subject,
                        AuthError::Reauthorize {
                            subject: subject.to_string(),
                            message: format!(
                                "HighLevel refused a location token for {location} from agency {} ({status}: {message}); check that the app is installed in this location and that the agency grant has the oauth.write scope (`ghl-mirror auth status`)",
                                agency.company_id
                            ),
                        },
                    ));
                }
                Err(e) => return Err(self.failed(subject, AuthError::Unavailable(e))),
            }
        };
        let base = current.unwrap_or_else(|| {
            Grant::placeholder(
                subject,
                GrantKind::Minted,
                Some(location.to_string()),
                Some(agency.company_id.clone()),
                0,
            )
        });
        let mut next = next_grant(&base, new, GrantKind::Minted);
        next.company_id = Some(agency.company_id.clone());
        self.save(&next)?;
        tracing::info!(subject, expires = %iso_from_ms(next.access_expires_ms), "location token minted from the agency token");
        Ok(next)
    }

    /// Exchanges an authorization code and stores the grant; returns it.
    pub async fn login(&self, code: &str, user_type: UserType) -> Result<Grant, AuthError> {
        let settings = &self.settings;
        let new = settings
            .app
            .exchange_code(code, user_type)
            .await
            .map_err(|e| match e {
                OAuthError::Refused {
                    status, message, ..
                } => AuthError::NotConfigured(format!(
                    "HighLevel refused the authorization code ({status}: {message}); codes are single use and expire within minutes: run `ghl-mirror auth login` again, and check oauth.client_id, the client secret and oauth.redirect_uri"
                )),
                e => AuthError::Unavailable(e),
            })?;
        let (kind, subject) = match (user_type, &new.location_id, &new.company_id) {
            (UserType::Location, Some(l), _) => (GrantKind::Location, location_subject(l)),
            (UserType::Company, _, Some(c)) => (GrantKind::Company, company_subject(c)),
            _ => {
                return Err(AuthError::NotConfigured(format!(
                    "HighLevel's token answer names no {}: cannot tell which grant this is",
                    match user_type {
                        UserType::Location => "locationId",
                        UserType::Company => "companyId",
                    }
                )));
            }
        };
        if new.refresh_token.is_none() {
            return Err(AuthError::NotConfigured(
                "HighLevel's token answer has no refresh_token; without it the grant would stop working in a day".into(),
            ));
        }
        // A renewal of the same grant in flight (a sync of this location) finishes first, and
        // its result is replaced; the new generation tells it apart.
        let flight = self.flight(&subject);
        let _in_process = flight.lock().await;
        let _across = self.cross_process(&subject).await?;
        let previous = self.store.get(&subject)?;
        let base = Grant::placeholder(
            &subject,
            kind,
            new.location_id.clone(),
            new.company_id.clone(),
            previous.map_or(0, |p| p.generation),
        );
        let g = next_grant(&base, new, kind);
        self.save(&g)?;
        Ok(g)
    }

    /// The locations the agency install covers (`GET /oauth/installedLocations`).
    pub async fn installed_locations(&self) -> Result<Vec<InstalledLocation>, AuthError> {
        let settings = &self.settings;
        let Some(agency) = &settings.agency else {
            return Err(AuthError::NotConfigured(
                "no agency configured: set oauth.company_id and oauth.app_id".into(),
            ));
        };
        let token = self.bearer(&company_subject(&agency.company_id)).await?;
        settings
            .app
            .installed_locations(&token, &agency.company_id, &agency.app_id)
            .await
            .map_err(|e| match e {
                OAuthError::Refused {
                    status, message, ..
                } => AuthError::Reauthorize {
                    subject: company_subject(&agency.company_id),
                    message: format!(
                        "HighLevel refused to list the agency's installed locations ({status}: {message}); the agency grant needs the oauth.readonly scope: run `ghl-mirror auth login --agency`"
                    ),
                },
                e => AuthError::Unavailable(e),
            })
    }
}

/// The grant after `new` replaced `g`'s tokens.
fn next_grant(g: &Grant, new: TokenGrant, kind: GrantKind) -> Grant {
    let now = now_ms();
    Grant {
        subject: g.subject.clone(),
        kind,
        location_id: new.location_id.or_else(|| g.location_id.clone()),
        company_id: new.company_id.or_else(|| g.company_id.clone()),
        access: new.access_token,
        access_expires_ms: now + new.expires_in.as_millis() as i64,
        issued_ms: now,
        refresh: new.refresh_token,
        scopes: if new.scopes.is_empty() {
            g.scopes.clone()
        } else {
            new.scopes
        },
        generation: g.generation + 1,
        refresh_started_ms: None,
        reauth: None,
    }
}

/// What to run to authorize `g` again.
fn login_hint(g: &Grant) -> String {
    match g.kind {
        GrantKind::Location => "Run `ghl-mirror auth login` and approve this location again".into(),
        GrantKind::Company => {
            "Run `ghl-mirror auth login --agency` and approve the agency install again".into()
        }
        GrantKind::Minted => format!(
            "Check the agency grant (`ghl-mirror auth status`); if it is healthy, check that the app is still installed in {}",
            g.location_id.as_deref().unwrap_or("the location")
        ),
    }
}

struct Source {
    tokens: Arc<Tokens>,
    location: String,
}

impl Source {
    fn upstream(&self, e: AuthError) -> UpstreamError {
        match e {
            AuthError::Unavailable(OAuthError::Malformed { endpoint, detail }) => {
                UpstreamError::Malformed { endpoint, detail }
            }
            AuthError::Unavailable(
                OAuthError::Unavailable { endpoint, detail }
                | OAuthError::Refused {
                    endpoint,
                    message: detail,
                    ..
                },
            ) => UpstreamError::Transport { endpoint, detail },
            e => UpstreamError::Auth {
                location: self.location.clone(),
                message: e.to_string(),
            },
        }
    }
}

impl TokenSource for Source {
    fn bearer(&self) -> BoxFuture<'_, Result<SecretString, UpstreamError>> {
        Box::pin(async move {
            self.tokens
                .bearer(&location_subject(&self.location))
                .await
                .map_err(|e| self.upstream(e))
        })
    }

    fn refused(&self, used: SecretString) -> BoxFuture<'_, Result<SecretString, UpstreamError>> {
        Box::pin(async move {
            self.tokens
                .refused(&location_subject(&self.location), &used)
                .await
                .map_err(|e| self.upstream(e))
        })
    }

    fn describe(&self) -> String {
        format!("OAuth token of location {}", self.location)
    }
}
