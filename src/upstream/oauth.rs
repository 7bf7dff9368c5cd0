//! HighLevel's OAuth 2.0 endpoints (`apps/oauth.json`): the authorization-code and refresh
//! grants at `POST /oauth/token`, agency → location tokens at `POST /oauth/locationToken`, and
//! the agency's installs at `GET /oauth/installedLocations`. Tokens come back as
//! [`SecretString`]s; nothing here logs a request body or a response body.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// The app's OAuth identity and where HighLevel answers.
#[derive(Clone, Debug)]
pub struct OAuthApp {
    /// The API base (`https://services.leadconnectorhq.com`, or the sandbox).
    pub base_url: Url,
    pub api_version: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: String,
    pub timeout: Duration,
}

/// Whose token a grant is: HighLevel's `user_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserType {
    Location,
    Company,
}

impl UserType {
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Location => "Location",
            UserType::Company => "Company",
        }
    }
}

/// A token answer of `/oauth/token` or `/oauth/locationToken`.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    pub access_token: SecretString,
    /// Absent on location tokens minted from an agency token.
    pub refresh_token: Option<SecretString>,
    pub expires_in: Duration,
    pub scopes: Vec<String>,
    pub user_type: Option<String>,
    pub location_id: Option<String>,
    pub company_id: Option<String>,
    pub user_id: Option<String>,
}

/// One location the app is installed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledLocation {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// HighLevel answered and said no (a used or revoked refresh token, an inactive location,
    /// a wrong client secret): trying again with the same input cannot succeed.
    #[error("{endpoint}: HighLevel refused ({status}: {message})")]
    Refused {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    /// No answer, or a 5xx / 429: whether HighLevel acted on the request is unknown.
    #[error("{endpoint}: no usable answer from HighLevel: {detail}")]
    Unavailable {
        endpoint: &'static str,
        detail: String,
    },
    #[error("{endpoint}: malformed answer from HighLevel: {detail}")]
    Malformed {
        endpoint: &'static str,
        detail: String,
    },
}

#[derive(Deserialize)]
struct WireInstalled {
    locations: Vec<WireInstalledLocation>,
    #[serde(default)]
    count: Option<f64>,
}

#[derive(Deserialize)]
struct WireInstalledLocation {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "isInstalled")]
    is_installed: Option<bool>,
}

/// Installed locations are read this many at a time.
const INSTALLED_PAGE: u32 = 100;

impl OAuthApp {
    fn client(&self) -> Result<reqwest::Client, OAuthError> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            // A redirect would send the client secret and the refresh token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ghl-mirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Unavailable {
                endpoint: "oauth client",
                detail: e.to_string(),
            })
    }

    fn url(&self, path: &str) -> Result<Url, OAuthError> {
        let mut base = self.base_url.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        base.join(path).map_err(|e| OAuthError::Malformed {
            endpoint: "url",
            detail: format!("cannot build a URL from upstream.base_url: {e}"),
        })
    }

    /// Exchanges an authorization code (`grant_type=authorization_code`).
    pub async fn exchange_code(
        &self,
        code: &str,
        user_type: UserType,
    ) -> Result<TokenGrant, OAuthError> {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("user_type", user_type.as_str()),
            ("redirect_uri", &self.redirect_uri),
        ])
        .await
    }

    /// Spends `refresh_token` for a new pair (`grant_type=refresh_token`). HighLevel's refresh
    /// tokens are single use: once this returns, only the new pair is good.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
        user_type: UserType,
    ) -> Result<TokenGrant, OAuthError> {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("user_type", user_type.as_str()),
        ])
        .await
    }

    async fn token_request(&self, fields: &[(&str, &str)]) -> Result<TokenGrant, OAuthError> {
        const EP: &str = "POST /oauth/token";
        let mut form = vec![
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        form.extend_from_slice(fields);
        let rb = self.client()?.post(self.url("oauth/token")?).form(&form);
        let body = self.send(EP, rb).await?;
        grant(EP, &body)
    }

    /// Mints a location token from an agency (Company) token (`POST /oauth/locationToken`).
    pub async fn location_token(
        &self,
        agency_token: &SecretString,
        company_id: &str,
        location_id: &str,
    ) -> Result<TokenGrant, OAuthError> {
        const EP: &str = "POST /oauth/locationToken";
        let rb = self
            .client()?
            .post(self.url("oauth/locationToken")?)
            .bearer_auth(agency_token.expose_secret())
            .form(&[("companyId", company_id), ("locationId", location_id)]);
        let body = self.send(EP, rb).await?;
        let mut g = grant(EP, &body)?;
        g.location_id.get_or_insert_with(|| location_id.to_string());
        Ok(g)
    }

    /// Every location the app is installed in under `company_id` (`GET
    /// /oauth/installedLocations`, read a page at a time).
    pub async fn installed_locations(
        &self,
        agency_token: &SecretString,
        company_id: &str,
        app_id: &str,
    ) -> Result<Vec<InstalledLocation>, OAuthError> {
        const EP: &str = "GET /oauth/installedLocations";
        let http = self.client()?;
        let mut out = Vec::new();
        let mut skip = 0u32;
        loop {
            let mut url = self.url("oauth/installedLocations")?;
            url.query_pairs_mut()
                .append_pair("companyId", company_id)
                .append_pair("appId", app_id)
                .append_pair("isInstalled", "true")
                .append_pair("skip", &skip.to_string())
                .append_pair("limit", &INSTALLED_PAGE.to_string());
            let rb = http.get(url).bearer_auth(agency_token.expose_secret());
            let body = self.send(EP, rb).await?;
            let page: WireInstalled =
                serde_json::from_slice(&body).map_err(|e| OAuthError::Malformed {
                    endpoint: EP,
                    detail: json_problem(&e),
                })?;
            let n = page.locations.len() as u32;
            out.extend(
                page.locations
                    .into_iter()
                    .filter(|l| l.is_installed != Some(false))
                    .map(|l| InstalledLocation {
                        id: l.id,
                        name: l.name,
                    }),
            );
            skip += n;
            let total = page.count.map_or(u32::MAX, |c| c.max(0.0) as u32);
            if n < INSTALLED_PAGE || skip >= total {
                return Ok(out);
            }
        }
    }

    async fn send(
        &self,
        endpoint: &'static str,
        rb: reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, OAuthError> {
        let unavailable = |e: reqwest::Error| OAuthError::Unavailable {
            endpoint,
            detail: e.without_url().to_string(),
        };
        let resp = rb
            .header("Version", &self.api_version)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(unavailable)?;
        if status.is_success() {
            return Ok(body);
        }
        let message = error_message(&body);
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(OAuthError::Unavailable {
                endpoint,
                detail: format!("{}: {message}", status.as_u16()),
            });
        }
        Err(OAuthError::Refused {
            endpoint,
            status: status.as_u16(),
            message,
        })
    }
}

/// The `message` (or OAuth `error_description` / `error`) of an error body, never more than
/// that: an error body could echo what was sent.
fn error_message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let pick = |k: &str| match v.get(k) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(a)) => Some(
            a.iter()
                .filter_map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    };
    pick("message")
        .or_else(|| pick("error_description"))
        .or_else(|| pick("error"))
        .unwrap_or_else(|| "no message".into())
}

/// What is wrong with a JSON answer, without quoting it: serde_json's "invalid type" and
/// "invalid value" messages include the value found, which may be a token.
fn json_problem(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("invalid type") || text.starts_with("invalid value") {
        return format!(
            "a field has the wrong type or value at line {} column {}",
            e.line(),
            e.column()
        );
    }
    text
}

/// Used when a token answer's `expires_in` cannot be read: HighLevel's tokens last a day, and
/// an hour makes the mirror renew early rather than late.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);

/// Reads a token answer loosely: once HighLevel has answered 200 to a refresh, the old refresh
/// token is spent, so a pair that arrived is kept even when other fields are not as the spec
/// says (`expires_in` as a string, `scope` as a list).
fn grant(endpoint: &'static str, body: &[u8]) -> Result<TokenGrant, OAuthError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| OAuthError::Malformed {
        endpoint,
        detail: json_problem(&e),
    })?;
    let text = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let Some(access) = text("access_token") else {
        return Err(OAuthError::Malformed {
            endpoint,
            detail: "the answer has no access_token".into(),
        });
    };
    let expires_in = match v.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s > 0.0)
    .map_or_else(
        || {
            tracing::warn!(
                endpoint,
                "the token answer's expires_in is missing or not a number; assuming an hour"
            );
            ASSUMED_LIFETIME
        },
        |s| Duration::from_secs_f64(s.min(10.0 * 365.0 * 86_400.0)),
    );
    let scopes = match v.get("scope") {
        Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(serde_json::Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    Ok(TokenGrant {
        access_token: SecretString::from(access),
        refresh_token: text("refresh_token").map(SecretString::from),
        expires_in,
        scopes,
        user_type: text("userType"),
        location_id: text("locationId"),
        company_id: text("companyId"),
        user_id: text("userId"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_keeps_its_tokens_secret_and_splits_scopes() {
        let g = grant(
            "t",
            br#"{"access_token":"AT-123","token_type":"Bearer","expires_in":86399,
                 "refresh_token":"RT-456","scope":"contacts.readonly  businesses.readonly",
                 "userType":"Location","locationId":"L1","userId":"u"}"#,
        )
        .unwrap();
        assert_eq!(g.scopes, ["contacts.readonly", "businesses.readonly"]);
        assert_eq!(g.expires_in, Duration::from_secs(86_399));
        assert_eq!(g.location_id.as_deref(), Some("L1"));
        let shown = format!("{g:?}");
        assert!(
            !shown.contains("AT-123") && !shown.contains("RT-456"),
            "{shown}"
        );
    }

    #[test]
    fn a_pair_that_arrived_is_kept_even_when_other_fields_are_off() {
        let g = grant(
            "t",
            br#"{"access_token":"AT","refresh_token":"RT","expires_in":"86399","scope":["a","b"]}"#,
        )
        .unwrap();
        assert_eq!(g.expires_in, Duration::from_secs(86_399));
        assert_eq!(g.scopes, ["a", "b"]);
        let g = grant(
            "t",
            br#"{"access_token":"AT","refresh_token":"RT","expires_in":"soon"}"#,
        )
        .unwrap();
        assert_eq!(g.expires_in, ASSUMED_LIFETIME);
        assert_eq!(g.refresh_token.unwrap().expose_secret(), "RT");
    }

    #[test]
    fn an_answer_without_an_access_token_is_malformed_and_quotes_nothing() {
        let e = grant("t", br#"{"expires_in":5}"#).unwrap_err();
        assert!(e.to_string().contains("access_token"), "{e}");
        assert!(grant("t", br#"{"access_token":"","expires_in":5}"#).is_err());
        let e = grant("t", br#"{"access_token":"AT-SECRET" "#).unwrap_err();
        assert!(!e.to_string().contains("AT-SECRET"), "{e}");
    }

    #[test]
    fn error_messages_come_from_message_or_oauth_fields() {
        assert_eq!(
            error_message(br#"{"statusCode":400,"message":"Location is not active"}"#),
            "Location is not active"
        );
        assert_eq!(
            error_message(br#"{"error":"invalid_grant","error_description":"used"}"#),
            "used"
        );
        assert_eq!(error_message(b"<html>"), "no message");
    }
}
