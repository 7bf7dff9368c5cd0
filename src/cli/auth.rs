//! `ghl-mirror auth login|status`, and the composition of each location's credentials
//! (a Private Integration Token, its own OAuth grant, or a token minted from the agency grant).

use crate::auth::{
    AuthSettings, Grant, GrantKind, TokenStore, Tokens, company_subject, location_subject,
};
use crate::config::{Config, LocationAuth, LocationConfig, OAuthConfig};
use crate::model::{iso_from_ms, now_ms};
use crate::upstream::Credentials;
use crate::upstream::oauth::{OAuthApp, UserType};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Authorize ghl-mirror with HighLevel (OAuth 2.0 authorization code): prints the URL to
    /// open, receives the redirect on oauth.redirect_uri (or takes the pasted redirect URL or
    /// code with --paste), and stores the tokens owner-only.
    Login(LoginArgs),
    /// Show each location's token kind, scopes, expiry and health (never a token); exits 1 when
    /// one needs a person.
    Status,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Authorize the agency (Company) install instead of one location; location tokens are
    /// then minted from it.
    #[arg(long)]
    pub agency: bool,
    /// Do not listen for the redirect: paste the URL the browser was sent to (or the code).
    #[arg(long)]
    pub paste: bool,
    /// How long to wait for the redirect.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// The token manager, when the config has an `[oauth]` section.
pub fn tokens(config: &Config) -> Result<Option<Arc<Tokens>>> {
    let Some(o) = &config.oauth else {
        return Ok(None);
    };
    let store = TokenStore::open(&config.token_store())?;
    Ok(Some(Arc::new(Tokens::new(
        store,
        auth_settings(config, o, o.redirect_uri.to_string()),
    ))))
}

fn auth_settings(config: &Config, o: &OAuthConfig, redirect_uri: String) -> AuthSettings {
    let up = &config.upstream;
    AuthSettings {
        app: OAuthApp {
            base_url: up.base_url.clone(),
            api_version: up.api_version.clone(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            redirect_uri,
            timeout: up.timeout,
        },
        refresh_margin: o.refresh_margin,
        agency: o
            .agency
            .clone()
            .map(|(company_id, app_id)| crate::auth::Agency { company_id, app_id }),
    }
}

/// The locations to mirror: `[[locations]]`, plus (with `oauth.discover`) every location the
/// agency install covers, minted from the agency grant.
pub async fn locations(
    config: &Config,
    tokens: Option<&Arc<Tokens>>,
) -> Result<Vec<LocationConfig>> {
    let mut out = config.locations.clone();
    let (Some(o), Some(t)) = (&config.oauth, tokens) else {
        return Ok(out);
    };
    if !o.discover {
        return Ok(out);
    }
    // Without discovery the configured locations still sync.
    let installed = match t.installed_locations().await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "cannot discover the agency's installed locations (oauth.discover): {e}; syncing the configured locations only"
            );
            return Ok(out);
        }
    };
    for l in installed {
        if !out.iter().any(|c| c.id == l.id) {
            out.push(LocationConfig {
                id: l.id,
                name: l.name,
                auth: LocationAuth::Agency,
            });
        }
    }
    Ok(out)
}

/// How `loc`'s requests are authorized. An OAuth location's grant must have every scope of
/// `required` ([`Config::required_scopes`]).
pub fn credentials(
    loc: &LocationConfig,
    tokens: Option<&Arc<Tokens>>,
    required: &[&str],
) -> Result<Credentials> {
    let t = match (&loc.auth, tokens) {
        (LocationAuth::Private { token, .. }, _) => return Ok(Credentials::Static(token.clone())),
        (_, Some(t)) => t,
        (_, None) => bail!(
            "location {} uses OAuth but the config has no [oauth] section",
            loc.id
        ),
    };
    if let Some(g) = t.store().get(&location_subject(&loc.id))?
        && !g.scopes.is_empty()
    {
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|r| !g.scopes.iter().any(|s| s == r))
            .collect();
        if !missing.is_empty() {
            bail!(
                "location {}: its OAuth {} lacks the {} scope (it has: {}); add it to the app's scopes and run `ghl-mirror auth login{}` again",
                loc.id,
                if g.kind == GrantKind::Minted {
                    "token (minted from the agency grant)"
                } else {
                    "grant"
                },
                missing.join(" and "),
                g.scopes.join(" "),
                if g.kind == GrantKind::Minted {
                    " --agency"
                } else {
                    ""
                }
            );
        }
    }
    Ok(Credentials::Managed(t.source(&loc.id)))
}

pub async fn run(config: &Config, cmd: &AuthCommand) -> Result<ExitCode> {
    match cmd {
        AuthCommand::Login(a) => login(config, a).await,
        AuthCommand::Status => status(config),
    }
}

async fn login(config: &Config, a: &LoginArgs) -> Result<ExitCode> {
    let o = config.oauth.as_ref().ok_or_else(|| {
        anyhow!("`auth login` needs an [oauth] section in the config (client_id, client_secret_env, redirect_uri); see config.example.toml")
    })?;
    if o.client_id.is_empty() {
        bail!(
            "oauth.client_id is empty: set it (or the variable oauth.client_id_env names) to your app's Client ID"
        );
    }
    if o.client_secret.expose_secret().is_empty() {
        bail!(
            "environment variable {} is not set; export it with your app's Client Secret",
            o.client_secret_env
        );
    }
    if a.agency && o.agency.is_none() {
        bail!("--agency needs oauth.company_id and oauth.app_id in the config");
    }
    let state = random_state();
    let mut redirect = o.redirect_uri.clone();
    let listener = if a.paste {
        None
    } else {
        let listener = bind_redirect(&redirect).await?;
        redirect
            .set_port(Some(listener.local_addr()?.port()))
            .map_err(|()| anyhow!("cannot set the port of {redirect}"))?;
        Some(listener)
    };
    let scopes = config.wanted_scopes();
    let mut url = o.authorize_url.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", redirect.as_str())
        .append_pair("client_id", &o.client_id)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &state);
    eprintln!(
        "Open this URL in a browser, sign in to HighLevel and choose the {}:",
        if a.agency { "agency" } else { "location" }
    );
    println!("{url}");
    std::io::stdout().flush()?;
    let code = match listener {
        Some(l) => {
            eprintln!(
                "Waiting for HighLevel's redirect on {redirect} (up to {}) ...",
                humantime::format_duration(a.timeout)
            );
            receive_code(l, redirect.path().to_string(), &state, a.timeout).await?
        }
        None => {
            eprintln!(
                "Then paste the whole URL the browser was sent to (or just its code) and press Enter:"
            );
            pasted_code(&state)?
        }
    };
    let store = TokenStore::open(&config.token_store())?;
    let tokens = Tokens::new(store, auth_settings(config, o, redirect.to_string()));
    let user_type = if a.agency {
        UserType::Company
    } else {
        UserType::Location
    };
    let g = tokens.login(&code, user_type).await?;
    let who = match (&g.location_id, &g.company_id, g.kind) {
        (_, Some(c), GrantKind::Company) => format!("agency {c}"),
        (Some(l), _, _) => format!("location {l}"),
        _ => g.subject.clone(),
    };
    eprintln!(
        "Authorized {who}: scopes {}; access token valid until {}; stored owner-only in {}.",
        if g.scopes.is_empty() {
            "(none listed)".into()
        } else {
            g.scopes.join(" ")
        },
        iso_from_ms(g.access_expires_ms),
        tokens.store().path().display()
    );
    let missing: Vec<&String> = scopes.iter().filter(|s| !g.scopes.contains(s)).collect();
    if !g.scopes.is_empty() && !missing.is_empty() {
        eprintln!(
            "Not granted: {} (the features that need them are skipped; add them to the app's scopes and log in again)",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if g.kind == GrantKind::Location
        && let Some(l) = &g.location_id
        && !config.locations.iter().any(|c| &c.id == l)
    {
        eprintln!(
            "Location {l} is not in the config yet: add\n\n[[locations]]\nid = \"{l}\"\nauth = \"oauth\"\n"
        );
    }
    if g.kind == GrantKind::Company {
        match tokens.installed_locations().await {
            Ok(ls) => eprintln!(
                "The app is installed in {} location(s): {}{}",
                ls.len(),
                ls.iter()
                    .take(10)
                    .map(|l| l.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if o.discover {
                    "; all are mirrored (oauth.discover)"
                } else {
                    "; set oauth.discover = true to mirror them all, or list them with auth = \"agency\""
                }
            ),
            Err(e) => eprintln!("Cannot list the installed locations yet: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A random `state` for the authorization request (checked on the redirect).
fn random_state() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

/// Listens where the redirect URI points; it must be a loopback http address.
async fn bind_redirect(redirect: &Url) -> Result<tokio::net::TcpListener> {
    let host = redirect.host_str().unwrap_or_default();
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
    if redirect.scheme() != "http" || !loopback {
        bail!(
            "oauth.redirect_uri {redirect} is not a loopback http address, so ghl-mirror cannot receive the redirect itself: run `ghl-mirror auth login --paste`, or use e.g. http://127.0.0.1:8485/callback"
        );
    }
    let ip = if host.contains(':') {
        "[::1]"
    } else {
        "127.0.0.1"
    };
    let addr = format!("{ip}:{}", redirect.port().unwrap_or(80));
    tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the OAuth redirect (oauth.redirect_uri); is another `auth login` running?"))
}

/// The code of a redirect (`?code=..&state=..`), after checking its state (which a redirect to
/// the listener must carry: any local process could send one).
fn code_of(query: &[(String, String)], state: &str, state_required: bool) -> Result<String> {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(e) = get("error") {
        bail!(
            "HighLevel did not authorize: {e} {}",
            get("error_description").unwrap_or_default()
        );
    }
    match get("state") {
        Some(s) if s != state => bail!(
            "the redirect's state does not match this login (another login's redirect, or a forged one); run `ghl-mirror auth login` again"
        ),
        None if state_required => bail!(
            "the redirect carries no state, so it cannot be told from a forged one; run `ghl-mirror auth login` again"
        ),
        _ => {}
    }
    get("code")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| anyhow!("the redirect carries no code"))
}

async fn receive_code(
    listener: tokio::net::TcpListener,
    path: String,
    state: &str,
    timeout: Duration,
) -> Result<String> {
    use axum::extract::RawQuery;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(String, String)>>(4);
    let app = axum::Router::new().route(
        &path,
        axum::routing::get(move |RawQuery(q): RawQuery| {
            let tx = tx.clone();
            async move {
                let pairs: Vec<(String, String)> =
                    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                        .into_owned()
                        .collect();
                let _ = tx.send(pairs).await;
                "ghl-mirror received HighLevel's answer; you can close this tab and return to the terminal."
            }
        }),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let got = tokio::time::timeout(timeout, rx.recv()).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    match got {
        Ok(Some(q)) => code_of(&q, state, true),
        Ok(None) => bail!("the redirect listener stopped"),
        Err(_) => bail!(
            "no redirect from HighLevel within {}; run `ghl-mirror auth login` again (or with --paste)",
            humantime::format_duration(timeout)
        ),
    }
}

/// A pasted redirect URL (its `code` and `state`) or a bare code, from stdin.
fn pasted_code(state: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the pasted code")?;
    let line = line.trim();
    if line.is_empty() {
        bail!(
            "nothing was pasted; run `ghl-mirror auth login --paste` again and paste the redirect URL"
        );
    }
    match Url::parse(line) {
        Ok(u) => code_of(
            &u.query_pairs().into_owned().collect::<Vec<_>>(),
            state,
            true,
        ),
        Err(_) => Ok(line.to_string()),
    }
}

/// One row of `auth status`.
struct Row {
    who: String,
    kind: String,
    scopes: String,
    expires: String,
    health: String,
    bad: bool,
}

fn status(config: &Config) -> Result<ExitCode> {
    let grants: Vec<Grant> = match &config.oauth {
        Some(_) => TokenStore::open(&config.token_store())?.all()?,
        None => Vec::new(),
    };
    let now = now_ms();
    let grant_row = |who: String, g: &Grant| -> Row {
        let expired = now >= g.access_expires_ms;
        let (health, bad) = match (&g.reauth, g.refresh_started_ms, expired) {
            (Some(why), _, true) => (format!("NEEDS RE-AUTHORIZATION: {why}"), true),
            (Some(why), _, false) => (
                format!("NEEDS RE-AUTHORIZATION (token works until it expires): {why}"),
                true,
            ),
            (None, Some(at), _) => (
                format!(
                    "a refresh started at {} did not finish; the next request retries it",
                    iso_from_ms(at)
                ),
                false,
            ),
            (None, None, true) if g.kind == GrantKind::Minted => {
                ("expired; minted again at the next request".into(), false)
            }
            (None, None, true) => ("expired; refreshed at the next request".into(), false),
            (None, None, false) => ("ok".into(), false),
        };
        Row {
            who,
            kind: g.kind.as_str().into(),
            scopes: g.scopes.join(" "),
            expires: format!(
                "{} ({})",
                iso_from_ms(g.access_expires_ms),
                if expired {
                    "expired".to_string()
                } else {
                    format!(
                        "in {}",
                        humantime::format_duration(Duration::from_secs(
                            ((g.access_expires_ms - now) / 1000).max(0) as u64
                        ))
                    )
                }
            ),
            health,
            bad,
        }
    };
    let mut rows = Vec::new();
    if let Some((company, _)) = config.oauth.as_ref().and_then(|o| o.agency.as_ref()) {
        let subject = company_subject(company);
        rows.push(match grants.iter().find(|g| g.subject == subject) {
            Some(g) => grant_row(format!("agency {company}"), g),
            None => Row {
                who: format!("agency {company}"),
                kind: "company".into(),
                scopes: "-".into(),
                expires: "-".into(),
                health: "NOT AUTHORIZED: run `ghl-mirror auth login --agency`".into(),
                bad: true,
            },
        });
    }
    let mut listed = std::collections::HashSet::new();
    for loc in &config.locations {
        listed.insert(location_subject(&loc.id));
        let subject = location_subject(&loc.id);
        let grant = grants.iter().find(|g| g.subject == subject);
        rows.push(match (&loc.auth, grant) {
            (LocationAuth::Private { token_env, .. }, _) => Row {
                who: loc.id.clone(),
                kind: format!("private token (${token_env})"),
                scopes: "-".into(),
                expires: "-".into(),
                health: "set".into(),
                bad: false,
            },
            (_, Some(g)) => grant_row(loc.id.clone(), g),
            (LocationAuth::Agency, None) => Row {
                who: loc.id.clone(),
                kind: "agency-minted".into(),
                scopes: "-".into(),
                expires: "-".into(),
                health: "not minted yet; minted from the agency grant at the first request".into(),
                bad: false,
            },
            (LocationAuth::OAuth, None) => Row {
                who: loc.id.clone(),
                kind: "location".into(),
                scopes: "-".into(),
                expires: "-".into(),
                health: "NOT AUTHORIZED: run `ghl-mirror auth login` and choose this location"
                    .into(),
                bad: true,
            },
        });
    }
    for g in grants
        .iter()
        .filter(|g| g.kind != GrantKind::Company && !listed.contains(&g.subject))
    {
        let who = g.location_id.clone().unwrap_or_else(|| g.subject.clone());
        let mut r = grant_row(who, g);
        r.kind.push_str(" (not in the config)");
        rows.push(r);
    }
    if rows.is_empty() {
        println!("no location configured and no OAuth grant stored");
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = crate::output::stdout();
    for r in &rows {
        writeln!(
            out,
            "{}\n  auth     {}\n  scopes   {}\n  expires  {}\n  health   {}",
            r.who, r.kind, r.scopes, r.expires, r.health
        )?;
    }
    out.flush()?;
    Ok(if rows.iter().any(|r| r.bad) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_redirect_gives_its_code_only_with_this_logins_state() {
        let ok = q(&[("code", "c1"), ("state", "s")]);
        assert_eq!(code_of(&ok, "s", true).unwrap(), "c1");
        assert!(code_of(&q(&[("code", "c1"), ("state", "other")]), "s", true).is_err());
        assert!(code_of(&q(&[("code", "c1")]), "s", true).is_err());
        assert_eq!(code_of(&q(&[("code", "c1")]), "s", false).unwrap(), "c1");
        assert!(code_of(&q(&[("state", "s")]), "s", true).is_err());
        let e = code_of(&q(&[("error", "access_denied")]), "s", true).unwrap_err();
        assert!(e.to_string().contains("access_denied"));
    }
}
