//! OAuth: single-flight refresh, crash recovery at every point of a refresh, expiry mid-sync,
//! a revoked grant that stops only its location, the agency flow, the login itself, and no
//! secret in any log line at trace level.

use crate::cli::{bin, text};
use crate::kit::{LOC, LOC2, kit_with, seeds};
use ghl_mirror::auth::{AuthSettings, Grant, GrantKind, TokenStore, Tokens, location_subject};
use ghl_mirror::model::now_ms;
use ghl_mirror::sandbox::{Sandbox, SandboxConfig};
use ghl_mirror::upstream::oauth::OAuthApp;
use ghl_mirror::upstream::{Client, Credentials, SearchRequest};
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "sandbox-client-secret";
const CLIENT_ID: &str = "sandbox-client-id";

fn app(sandbox: &Sandbox) -> AuthSettings {
    AuthSettings {
        app: OAuthApp {
            base_url: sandbox.base_url().parse().unwrap(),
            api_version: "2021-07-28".into(),
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(SECRET.to_string()),
            redirect_uri: "http://127.0.0.1:1/callback".into(),
            timeout: Duration::from_secs(5),
        },
        refresh_margin: Duration::from_secs(3600),
        agency: None,
    }
}

/// Stores a location grant the sandbox issued, whose stored expiry is `expires_in_ms` away.
fn seed_grant(sandbox: &Sandbox, store: &TokenStore, location: &str, expires_in_ms: i64) -> Grant {
    let (access, refresh) = sandbox.issue_tokens(location, &["contacts.readonly"]);
    let now = now_ms();
    let g = Grant {
        subject: location_subject(location),
        kind: GrantKind::Location,
        location_id: Some(location.into()),
        company_id: None,
        access: SecretString::from(access),
        access_expires_ms: now + expires_in_ms,
        issued_ms: now - 86_399_000 + expires_in_ms.max(0),
        refresh: Some(SecretString::from(refresh)),
        scopes: vec!["contacts.readonly".into()],
        generation: 1,
        refresh_started_ms: None,
        reauth: None,
    };
    store.put(&g).unwrap();
    g
}

fn client(sandbox: &Sandbox, tokens: &Arc<Tokens>, location: &str) -> Client {
    let k = crate::kit::Kit::settings_for(sandbox, location);
    Client::new(ghl_mirror::upstream::ClientSettings {
        credentials: Credentials::Managed(tokens.source(location)),
        ..k
    })
    .unwrap()
}

fn one_page() -> SearchRequest {
    SearchRequest {
        since_ms: None,
        descending: false,
        after: None,
        page_limit: 5,
    }
}

async fn sandbox(contacts: &[usize]) -> crate::kit::Kit {
    kit_with(SandboxConfig::new(7, seeds(contacts))).await
}

#[tokio::test]
async fn thirty_two_concurrent_requests_on_an_expiring_token_refresh_it_once() {
    let k = sandbox(&[50]).await;
    let path = k.dir.path().join("mirror.db.tokens");
    let store = TokenStore::open(&path).unwrap();
    // Due for refresh (30 min left, margin 1 h): the proactive path.
    seed_grant(&k.sandbox, &store, LOC, 30 * 60_000);
    let tokens = Arc::new(Tokens::new(store, app(&k.sandbox)));
    let c = client(&k.sandbox, &tokens, LOC);
    let runs: Vec<_> = (0..32)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.search_contacts(&one_page()).await })
        })
        .collect();
    for r in runs {
        r.await.unwrap().unwrap();
    }
    // A second refresh would have spent the rotated token: HighLevel would have refused it.
    let stats = k.sandbox.oauth_stats();
    assert_eq!((stats.refresh_grants, stats.refused_refreshes), (1, 0));
    let g = tokens.store().get(&location_subject(LOC)).unwrap().unwrap();
    assert_eq!((g.generation, g.reauth), (2, None));

    // HighLevel says the token expired before its time (401): again exactly one refresh,
    // across two token managers on the same store (two processes).
    k.sandbox.expire_access_tokens();
    let other = Arc::new(Tokens::new(
        TokenStore::open(&path).unwrap(),
        app(&k.sandbox),
    ));
    let c2 = client(&k.sandbox, &other, LOC);
    let runs: Vec<_> = (0..32)
        .map(|i| {
            let c = if i % 2 == 0 { c.clone() } else { c2.clone() };
            tokio::spawn(async move { c.search_contacts(&one_page()).await })
        })
        .collect();
    for r in runs {
        r.await.unwrap().unwrap();
    }
    assert_eq!(k.sandbox.oauth_stats().refresh_grants, 2);
    assert_eq!(tokens.renewals() + other.renewals(), 2);
}

#[tokio::test]
async fn an_access_token_expiring_mid_sync_is_renewed_transparently() {
    let mut cfg = SandboxConfig::new(7, seeds(&[3_000]));
    cfg.latency = Duration::from_millis(100);
    let k = kit_with(cfg).await;
    k.sandbox.set_access_ttl(Duration::from_secs(1));
    let store = TokenStore::open(&k.dir.path().join("t.tokens")).unwrap();
    seed_grant(&k.sandbox, &store, LOC, 86_000_000);
    // The seeded token dies on the sandbox at once: the first request gets a 401.
    k.sandbox.expire_access_tokens();
    let tokens = Arc::new(Tokens::new(store, app(&k.sandbox)));
    let c = client(&k.sandbox, &tokens, LOC);
    let mut opts = crate::kit::opts();
    opts.page_limit = 100;
    let r = k.sync(&c, &opts).await;
    crate::kit::assert_success(&r);
    k.assert_mirrors(LOC);
    let refreshes = k.sandbox.oauth_stats().refresh_grants;
    assert!(
        refreshes >= 2,
        "{refreshes} refreshes over a 3 s sync with 1 s tokens"
    );
}

/// A config for `ghl-mirror` against the kit's sandbox with OAuth locations.
fn oauth_config(dir: &Path, base_url: &str, oauth_extra: &str, locations: &str) -> PathBuf {
    let p = dir.join("config.toml");
    let text = format!(
        "[database]\npath = {:?}\n[upstream]\nbase_url = {base_url:?}\n\
         [upstream.rate_limit]\nburst_max = 10000\nsafety_margin = \"0ms\"\n\
         [subresources]\nkinds = []\n[businesses]\nenabled = false\n\
         [oauth]\nclient_id = \"{CLIENT_ID}\"\nclient_secret_env = \"TEST_CLIENT_SECRET\"\n\
         redirect_uri = \"http://127.0.0.1:0/callback\"\n\
         authorize_url = \"{base_url}/oauth/chooselocation\"\n{oauth_extra}\n{locations}",
        dir.join("mirror.db").display().to_string()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn ghl(config: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("TEST_CLIENT_SECRET", SECRET)
        .env("RUST_LOG", "trace");
    c
}

async fn run(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

/// Every token the store holds and every secret the test knows, absent from `out`.
fn assert_no_secrets(out: &Output, secrets: &[String]) {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.len() > 100, "expected trace output, got {all:?}");
    for s in secrets {
        assert!(!s.is_empty());
        assert!(
            !all.contains(s.as_str()),
            "a secret appears in the output:\n{all}"
        );
    }
}

fn secrets_of(store: &TokenStore, extra: &[&Grant]) -> Vec<String> {
    let mut v = vec![SECRET.to_string()];
    for g in store.all().unwrap().iter().chain(extra.iter().copied()) {
        v.push(g.access.expose_secret().to_string());
        if let Some(r) = &g.refresh {
            v.push(r.expose_secret().to_string());
        }
    }
    v
}

const ONE_OAUTH_LOCATION: &str = "[[locations]]\nid = \"sandboxLocation00001\"\nauth = \"oauth\"\n";

/// One OAuth location of `contacts` contacts whose grant is due for refresh (30 min left,
/// margin 1 h), and a `sync` that aborted at `failpoint` (`GHL_MIRROR_FAILPOINT`).
struct Crashed {
    k: crate::kit::Kit,
    cfg: PathBuf,
    store: TokenStore,
    seeded: Grant,
    crashed: Output,
}

async fn crashed_at(failpoint: &str, contacts: usize, grace: Option<Duration>) -> Crashed {
    let k = sandbox(&[contacts]).await;
    if let Some(g) = grace {
        k.sandbox.set_refresh_grace(g);
    }
    let cfg = oauth_config(k.dir.path(), &k.sandbox.base_url(), "", ONE_OAUTH_LOCATION);
    let store = TokenStore::open(&k.dir.path().join("mirror.db.tokens")).unwrap();
    let seeded = seed_grant(&k.sandbox, &store, LOC, 30 * 60_000);
    let mut c = ghl(&cfg, &["sync"]);
    c.env("GHL_MIRROR_FAILPOINT", failpoint);
    let crashed = run(c).await;
    assert!(!crashed.status.success(), "{}", text(&crashed.stderr));
    Crashed {
        k,
        cfg,
        store,
        seeded,
        crashed,
    }
}

#[tokio::test]
async fn a_crash_between_receiving_and_storing_a_new_pair_keeps_syncing_and_says_what_to_do() {
    let Crashed {
        k,
        cfg,
        store,
        seeded,
        crashed,
    } = crashed_at("refresh-received", 40, None).await;
    assert_eq!(k.sandbox.oauth_stats().refresh_grants, 1);
    // The new pair was lost with the process: the store still has the old one, marked.
    let g = store.get(&location_subject(LOC)).unwrap().unwrap();
    assert_eq!(g.generation, 1);
    assert!(g.refresh_started_ms.is_some());

    // The next start: HighLevel refuses the spent refresh token, the still-valid access token
    // keeps the location syncing, and the grant is flagged with what to run.
    let out = run(ghl(&cfg, &["sync"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        k.count("SELECT COUNT(*) FROM contacts WHERE deleted_at IS NULL"),
        40
    );
    let status = run(ghl(&cfg, &["auth", "status"])).await;
    let shown = text(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{shown}");
    assert!(shown.contains("NEEDS RE-AUTHORIZATION"), "{shown}");
    assert!(shown.contains("did not finish"), "{shown}");
    assert!(shown.contains("ghl-mirror auth login"), "{shown}");
    assert_no_secrets(&out, &secrets_of(&store, &[&seeded]));
    assert_no_secrets(&crashed, &secrets_of(&store, &[&seeded]));
    assert_no_secrets(&status, &secrets_of(&store, &[&seeded]));
}

#[tokio::test]
async fn with_a_reuse_grace_window_the_interrupted_refresh_recovers_fully() {
    let Crashed { k, cfg, store, .. } =
        crashed_at("refresh-received", 40, Some(Duration::from_secs(60))).await;
    let out = run(ghl(&cfg, &["sync"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let g = store.get(&location_subject(LOC)).unwrap().unwrap();
    assert_eq!((g.generation, g.reauth.is_none()), (2, true));
    assert_eq!(k.sandbox.oauth_stats().grace_replays, 1);
    let status = run(ghl(&cfg, &["auth", "status"])).await;
    assert!(status.status.success(), "{}", text(&status.stdout));
}

#[tokio::test]
async fn a_crash_between_storing_and_using_a_new_pair_recovers_with_it() {
    let Crashed { k, cfg, store, .. } = crashed_at("refresh-persisted", 40, None).await;
    let g = store.get(&location_subject(LOC)).unwrap().unwrap();
    assert_eq!((g.generation, g.refresh_started_ms), (2, None));
    let out = run(ghl(&cfg, &["sync"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        k.sandbox.oauth_stats().refresh_grants,
        1,
        "no second refresh"
    );
    assert_eq!(
        k.count("SELECT COUNT(*) FROM contacts WHERE deleted_at IS NULL"),
        40
    );
    let status = run(ghl(&cfg, &["auth", "status"])).await;
    assert!(status.status.success(), "{}", text(&status.stdout));
}

#[tokio::test]
async fn a_revoked_refresh_token_stops_only_its_location() {
    let k = sandbox(&[30, 20]).await;
    let locations = format!(
        "[[locations]]\nid = \"{LOC}\"\nauth = \"oauth\"\n[[locations]]\nid = \"{LOC2}\"\nauth = \"oauth\"\n"
    );
    let cfg = oauth_config(k.dir.path(), &k.sandbox.base_url(), "", &locations);
    let store = TokenStore::open(&k.dir.path().join("mirror.db.tokens")).unwrap();
    let a = seed_grant(&k.sandbox, &store, LOC, -1_000);
    let b = seed_grant(&k.sandbox, &store, LOC2, -1_000);
    k.sandbox.expire_access_tokens();
    k.sandbox.revoke_refresh_tokens(LOC);
    let out = run(ghl(&cfg, &["sync"])).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(
        k.count(&format!(
            "SELECT COUNT(*) FROM contacts WHERE location_id = '{LOC2}'"
        )),
        20
    );
    assert_eq!(
        k.count(&format!(
            "SELECT COUNT(*) FROM contacts WHERE location_id = '{LOC}'"
        )),
        0
    );
    assert!(stdout.contains("auth login"), "{stdout}");
    let g = store.get(&location_subject(LOC)).unwrap().unwrap();
    assert!(
        g.reauth
            .as_deref()
            .unwrap()
            .contains("refresh token is invalid")
    );
    assert!(
        store
            .get(&location_subject(LOC2))
            .unwrap()
            .unwrap()
            .reauth
            .is_none()
    );
    // The flag stops further refresh attempts: a second run sends none for LOC.
    let before = k.sandbox.oauth_stats().refused_refreshes;
    run(ghl(&cfg, &["sync"])).await;
    assert_eq!(k.sandbox.oauth_stats().refused_refreshes, before);
    assert_no_secrets(&out, &secrets_of(&store, &[&a, &b]));
}

/// Starts `ghl-mirror auth login ARGS` and returns it with the authorize URL it printed.
async fn start_login(cfg: &Path, args: &[&str]) -> (std::process::Child, String) {
    let mut c = ghl(cfg, &["auth", "login"]);
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let url = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        line.trim().to_string()
    })
    .await
    .unwrap();
    (child, url)
}

#[tokio::test]
async fn login_receives_the_redirect_and_stores_an_owner_only_grant() {
    let k = sandbox(&[10]).await;
    let cfg = oauth_config(k.dir.path(), &k.sandbox.base_url(), "", ONE_OAUTH_LOCATION);
    let (child, url) = start_login(&cfg, &["--timeout", "20s"]).await;
    assert!(url.contains("scope=contacts.readonly"), "{url}");
    // The "browser": the sandbox approves and redirects to the login's listener.
    let page = reqwest::get(&url).await.unwrap();
    assert!(page.status().is_success(), "{}", page.status());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let store = TokenStore::open(&k.dir.path().join("mirror.db.tokens")).unwrap();
    let g = store.get(&location_subject(LOC)).unwrap().unwrap();
    assert_eq!(g.kind, GrantKind::Location);
    assert!(g.scopes.contains(&"contacts.readonly".to_string()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let sync = run(ghl(&cfg, &["sync"])).await;
    assert!(sync.status.success(), "{}", text(&sync.stderr));
    assert_no_secrets(&out, &secrets_of(&store, &[]));
    assert_no_secrets(&sync, &secrets_of(&store, &[]));
}

#[tokio::test]
async fn an_agency_login_mints_location_tokens_for_every_installed_location_and_syncs_them() {
    let k = sandbox(&[15, 25, 35]).await;
    let cfg = oauth_config(
        k.dir.path(),
        &k.sandbox.base_url(),
        "company_id = \"sandboxCompany000001\"\napp_id = \"sandboxApp0000000001\"\ndiscover = true\n",
        "",
    );
    // The login, pasting the redirect URL the "browser" was sent to.
    let (mut child, url) = start_login(&cfg, &["--agency", "--paste"]).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = no_redirects.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 302);
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, format!("{location}\n").as_bytes()).unwrap();
    drop(stdin);
    let login = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(login.status.success(), "{}", text(&login.stderr));
    assert!(
        text(&login.stderr).contains("installed in 3 location(s)"),
        "{}",
        text(&login.stderr)
    );

    let out = run(ghl(&cfg, &["sync"])).await;
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for (i, n) in [15, 25, 35].iter().enumerate() {
        let loc = format!("sandboxLocation{:05}", i + 1);
        assert_eq!(
            k.count(&format!(
                "SELECT COUNT(*) FROM contacts WHERE location_id = '{loc}'"
            )),
            *n
        );
    }
    assert_eq!(k.sandbox.oauth_stats().location_tokens, 3);
    let store = TokenStore::open(&k.dir.path().join("mirror.db.tokens")).unwrap();
    let kinds: Vec<GrantKind> = store.all().unwrap().iter().map(|g| g.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == GrantKind::Minted).count(), 3);
    // A second run reuses the minted tokens.
    let again = run(ghl(&cfg, &["sync"])).await;
    assert!(again.status.success());
    assert_eq!(k.sandbox.oauth_stats().location_tokens, 3);
    let status = run(ghl(&cfg, &["auth", "status"])).await;
    assert!(status.status.success(), "{}", text(&status.stdout));
    for o in [&login, &out, &again, &status] {
        assert_no_secrets(o, &secrets_of(&store, &[]));
    }
}

#[tokio::test]
async fn a_grant_without_the_contacts_scope_is_refused_with_the_scope_to_add() {
    let k = sandbox(&[10, 12]).await;
    let locations = format!(
        "[[locations]]\nid = \"{LOC}\"\nauth = \"oauth\"\n[[locations]]\nid = \"{LOC2}\"\nauth = \"oauth\"\n"
    );
    let cfg = oauth_config(k.dir.path(), &k.sandbox.base_url(), "", &locations);
    let store = TokenStore::open(&k.dir.path().join("mirror.db.tokens")).unwrap();
    let mut g = seed_grant(&k.sandbox, &store, LOC, 86_000_000);
    g.scopes = vec!["businesses.readonly".into()];
    store.put(&g).unwrap();
    seed_grant(&k.sandbox, &store, LOC2, 86_000_000);
    let out = run(ghl(&cfg, &["sync"])).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lacks the contacts.readonly scope") && stderr.contains("auth login"),
        "{stderr}"
    );
    assert_eq!(
        k.count(&format!(
            "SELECT COUNT(*) FROM contacts WHERE location_id = '{LOC2}'"
        )),
        12
    );
}

#[tokio::test]
async fn a_crash_after_marking_a_refresh_before_sending_it_recovers_without_a_person() {
    let Crashed { k, cfg, store, .. } = crashed_at("refresh-marked", 20, None).await;
    assert_eq!(k.sandbox.oauth_stats().refresh_grants, 0);
    let out = run(ghl(&cfg, &["sync"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let g = store.get(&location_subject(LOC)).unwrap().unwrap();
    assert_eq!(
        (g.generation, g.refresh_started_ms, g.reauth),
        (2, None, None)
    );
    assert_eq!(k.sandbox.oauth_stats().refresh_grants, 1);
}

#[tokio::test]
async fn a_wrong_client_secret_never_flags_the_grant_and_the_right_one_refreshes_it() {
    let k = sandbox(&[20]).await;
    let cfg = oauth_config(k.dir.path(), &k.sandbox.base_url(), "", ONE_OAUTH_LOCATION);
    let store = TokenStore::open(&k.dir.path().join("mirror.db.tokens")).unwrap();
    seed_grant(&k.sandbox, &store, LOC, 30 * 60_000);
    // Due for refresh, still valid: the run syncs on the current token.
    let mut c = ghl(&cfg, &["sync"]);
    c.env("TEST_CLIENT_SECRET", "not-the-secret");
    let out = run(c).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let g = store.get(&location_subject(LOC)).unwrap().unwrap();
    assert_eq!(
        (g.generation, g.refresh_started_ms, g.reauth.clone()),
        (1, None, None)
    );
    assert!(!text(&out.stderr).contains("not-the-secret"));
    // Expired: the run fails, naming the app's credentials, and still flags nothing.
    k.sandbox.expire_access_tokens();
    let mut expired = g.clone();
    expired.access_expires_ms = now_ms() - 1;
    store.put(&expired).unwrap();
    let mut c = ghl(&cfg, &["sync"]);
    c.env("TEST_CLIENT_SECRET", "not-the-secret");
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("client secret"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        store
            .get(&location_subject(LOC))
            .unwrap()
            .unwrap()
            .reauth
            .is_none()
    );
    // The right secret: refreshed, synced.
    let out = run(ghl(&cfg, &["sync"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        store
            .get(&location_subject(LOC))
            .unwrap()
            .unwrap()
            .generation,
        2
    );
    assert_eq!(
        k.count("SELECT COUNT(*) FROM contacts WHERE deleted_at IS NULL"),
        20
    );
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_is_not_asked_again_by_every_request() {
    let k = sandbox(&[20]).await;
    let store = TokenStore::open(&k.dir.path().join("t.tokens")).unwrap();
    seed_grant(&k.sandbox, &store, LOC, 30 * 60_000);
    let mut settings = app(&k.sandbox);
    // Nothing listens there: every refresh fails to connect.
    settings.app.base_url = "http://127.0.0.1:9/".parse().unwrap();
    let tokens = Arc::new(Tokens::new(store, settings));
    let c = client(&k.sandbox, &tokens, LOC);
    for _ in 0..20 {
        c.search_contacts(&one_page()).await.unwrap();
    }
    assert_eq!(tokens.renewals(), 1, "one attempt, then a backoff");
    let g = tokens.store().get(&location_subject(LOC)).unwrap().unwrap();
    assert!(
        g.refresh_started_ms.is_some(),
        "unknown outcome: the mark stays"
    );
    assert!(g.reauth.is_none());
}
