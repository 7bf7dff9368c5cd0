//! Tests of the OAuth 2.0 endpoints over loopback: the code flow, refresh
//! rotation and its grace window, expiry, location and scope checks of
//! OAuth tokens on the data routes, the agency endpoints, deactivated
//! locations, revocation, and every body's fields against apps/oauth.json
//! and common/common-schemas.json.

use std::time::Duration;

use serde_json::{Value, json};

use super::oauth::base64url;
use super::tests::{Fields, LOC, LOC2, TOKEN, check_shape, start, two_locations};
use super::*;

const CLIENT_ID: &str = "sandbox-client-id";
const CLIENT_SECRET: &str = "sandbox-client-secret";
const COMPANY: &str = "sandboxCompany000001";
const APP_ID: &str = "sandboxApp0000000001";
const CALLBACK: &str = "https://app.example/oauth/callback";
const READ: &[&str] = &["contacts.readonly"];
const AGENCY_SCOPES: &str = "contacts.readonly oauth.readonly oauth.write";

/// `GetAccessCodeSuccessfulResponseDto` (required: userId).
const TOKEN_FIELDS: Fields = &[
    ("access_token", "string"),
    ("token_type", "string"),
    ("expires_in", "number"),
    ("refresh_token", "string"),
    ("scope", "string"),
    ("userType", "string"),
    ("locationId", "string"),
    ("companyId", "string"),
    ("approvedLocations", "string[]"),
    ("userId", "string"),
    ("planId", "string"),
    ("isBulkInstallation", "boolean"),
    ("installToFutureLocations", "boolean"),
    ("approveAllLocations", "boolean"),
];
/// `GetLocationAccessTokenSuccessfulResponseDto` (required: userId).
const LOCATION_TOKEN_FIELDS: Fields = &[
    ("access_token", "string"),
    ("token_type", "string"),
    ("expires_in", "number"),
    ("scope", "string"),
    ("locationId", "string"),
    ("planId", "string"),
    ("userId", "string"),
    ("appId", "string"),
    ("versionId", "string"),
];
/// `GetInstalledLocationsSuccessfulResponseDto`.
const INSTALLED_FIELDS: Fields = &[
    ("locations", "array"),
    ("count", "number"),
    ("installToFutureLocations", "boolean"),
];
/// `InstalledLocationSchema` (required: _id, name, address).
const INSTALLED_LOCATION_FIELDS: Fields = &[
    ("_id", "string"),
    ("name", "string"),
    ("address", "string"),
    ("isInstalled", "boolean"),
    ("versionId", "string"),
    ("installedAt", "string"),
];
/// `BadRequestDTO`.
const BAD_REQUEST_FIELDS: Fields = &[("statusCode", "number"), ("message", "string")];
/// `UnauthorizedDTO`.
const UNAUTHORIZED_FIELDS: Fields = &[
    ("statusCode", "number"),
    ("message", "string"),
    ("error", "string"),
];
/// `UnprocessableDTO`.
const UNPROCESSABLE_FIELDS: Fields = &[
    ("statusCode", "number"),
    ("message", "string[]"),
    ("error", "string"),
];

/// An error body of the spec's shape for its status, with this message.
fn check_error(status: u16, v: &Value, expected_status: u16, message: &str) {
    assert_eq!(status, expected_status, "{v}");
    let fields = match status {
        401 => UNAUTHORIZED_FIELDS,
        422 => UNPROCESSABLE_FIELDS,
        _ => BAD_REQUEST_FIELDS,
    };
    check_shape(v, fields, &["statusCode", "message"], false);
    assert_eq!(v["statusCode"], json!(expected_status));
    assert_eq!(v["message"], json!(message), "{v}");
}

/// A client that shows redirects instead of following them.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// `GET /oauth/chooselocation` with these query parameters: the status and
/// the `Location` header (redirects) or the JSON body (errors).
async fn choose(sb: &Sandbox, query: &[(&str, &str)]) -> (u16, Result<url::Url, Value>) {
    let url = format!("{}/oauth/chooselocation", sb.base_url());
    let resp = http().get(url).query(query).send().await.unwrap();
    let status = resp.status().as_u16();
    match resp.headers().get("location") {
        Some(target) => {
            let target = url::Url::parse(target.to_str().unwrap()).unwrap();
            (status, Ok(target))
        }
        None => (status, Err(resp.json().await.unwrap())),
    }
}

/// A query parameter of a URL.
fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A fresh code for `location` with `scopes` (space separated).
async fn code_for(sb: &Sandbox, location: &str, scopes: &str) -> String {
    let (status, target) = choose(
        sb,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", CALLBACK),
            ("scope", scopes),
            ("locationId", location),
        ],
    )
    .await;
    assert_eq!(status, 302);
    param(&target.unwrap(), "code").unwrap()
}

/// `POST /oauth/token` with this form.
async fn token(sb: &Sandbox, form: &[(&str, &str)]) -> (u16, Value) {
    let url = format!("{}/oauth/token", sb.base_url());
    answer(http().post(url).form(form)).await
}

/// The authorization_code grant with the sandbox's client credentials.
async fn exchange(sb: &Sandbox, code: &str, user_type: &str) -> (u16, Value) {
    token(
        sb,
        &[
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("user_type", user_type),
            ("redirect_uri", CALLBACK),
        ],
    )
    .await
}

/// The refresh_token grant with the sandbox's client credentials.
async fn refresh(sb: &Sandbox, refresh_token: &str) -> (u16, Value) {
    token(
        sb,
        &[
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// The grant's body after a full code flow (200 checked).
async fn login(sb: &Sandbox, location: &str, scopes: &str, user_type: &str) -> Value {
    let code = code_for(sb, location, scopes).await;
    let (status, v) = exchange(sb, &code, user_type).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// A data-route GET with a bearer token and the Version header.
async fn api(sb: &Sandbox, bearer: &str, path_and_query: &str) -> (u16, Value) {
    let url = format!("{}{path_and_query}", sb.base_url());
    let req = http()
        .get(url)
        .bearer_auth(bearer)
        .header("Version", VERSION_HEADER_VALUE);
    answer(req).await
}

fn list_path(location: &str) -> String {
    format!("/contacts/?locationId={location}&limit=1")
}

/// `POST /oauth/locationToken` with an agency token and this form.
async fn location_token(sb: &Sandbox, bearer: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let url = format!("{}/oauth/locationToken", sb.base_url());
    let req = http()
        .post(url)
        .bearer_auth(bearer)
        .header("Version", VERSION_HEADER_VALUE)
        .form(form);
    answer(req).await
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key}: {v}"))
}

#[tokio::test]
async fn code_flow_redirects_with_code_and_state_and_the_code_works_once() {
    let sb = start(two_locations(20)).await;
    let callback = format!("{CALLBACK}?tenant=7");
    let (status, target) = choose(
        &sb,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", &callback),
            ("scope", "contacts.readonly businesses.readonly"),
            ("state", "xyz 123"),
        ],
    )
    .await;
    assert_eq!(status, 302);
    let target = target.unwrap();
    assert_eq!(target.as_str().split('?').next(), Some(CALLBACK));
    assert_eq!(param(&target, "tenant").as_deref(), Some("7"));
    assert_eq!(param(&target, "state").as_deref(), Some("xyz 123"));
    let code = param(&target, "code").unwrap();

    let form = [
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", callback.as_str()),
    ];
    let (status, v) = token(&sb, &form).await;
    assert_eq!(status, 200, "{v}");
    check_shape(
        &v,
        TOKEN_FIELDS,
        &["userId", "access_token", "refresh_token"],
        false,
    );
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 86_399);
    assert_eq!(v["scope"], "contacts.readonly businesses.readonly");
    assert_eq!(v["userType"], "Location");
    assert_eq!(v["locationId"], LOC, "the first location by default");
    assert_eq!(v["companyId"], COMPANY);
    assert!(v.get("approvedLocations").is_none());
    let access = str_of(&v, "access_token");
    assert_eq!(api(&sb, access, &list_path(LOC)).await.0, 200);

    let (status, again) = token(&sb, &form).await;
    check_error(
        status,
        &again,
        400,
        "Invalid grant: authorization code is invalid",
    );
    assert_eq!(sb.oauth_stats().code_grants, 1);
    assert_eq!(
        sb.stats(LOC).requests,
        1,
        "only the data route counts against the limiter"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn chooselocation_picks_the_asked_location_and_needs_no_version_header() {
    let sb = start(two_locations(20)).await;
    let v = login(&sb, LOC2, "contacts.readonly", "Location").await;
    assert_eq!(v["locationId"], LOC2);
    let (status, target) = choose(
        &sb,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", CALLBACK),
        ],
    )
    .await;
    assert_eq!(status, 302);
    let target = target.unwrap();
    assert!(param(&target, "code").is_some());
    assert_eq!(param(&target, "state"), None, "no state asked, none echoed");
    sb.shutdown().await;
}

#[tokio::test]
async fn chooselocation_refuses_a_bad_client_redirect_response_type_or_location() {
    let sb = start(two_locations(20)).await;
    let good = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", CALLBACK),
        ("locationId", LOC),
    ];
    let cases: [(usize, &str, &str); 5] = [
        (0, "token", "response_type must be code"),
        (
            1,
            "someone-else",
            "Invalid client_id: no app has this client id",
        ),
        (2, "", "redirect_uri should not be empty"),
        (2, "/relative", "redirect_uri must be an absolute URL"),
        (3, "noSuchLocation000000", "Location not found"),
    ];
    for (i, value, message) in cases {
        let mut query = good.to_vec();
        query[i].1 = value;
        let (status, body) = choose(&sb, &query).await;
        check_error(status, &body.unwrap_err(), 400, message);
    }
    let (status, body) = choose(&sb, &good[..2]).await;
    check_error(
        status,
        &body.unwrap_err(),
        400,
        "redirect_uri should not be empty",
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_validates_the_form_then_the_client_then_the_code() {
    let sb = start(two_locations(20)).await;
    let (status, v) = token(&sb, &[("grant_type", "password"), ("user_type", "Agency")]).await;
    assert_eq!(status, 422);
    check_shape(
        &v,
        UNPROCESSABLE_FIELDS,
        &["statusCode", "message", "error"],
        false,
    );
    assert_eq!(
        v["message"],
        json!([
            "client_id should not be empty",
            "client_id must be a string",
            "client_secret should not be empty",
            "client_secret must be a string",
            "grant_type must be one of the following values: authorization_code, refresh_token, client_credentials",
            "user_type must be one of the following values: Company, Location",
        ])
    );

    let url = format!("{}/oauth/token", sb.base_url());
    let json_body = json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "refresh_token"});
    let (status, v) = answer(http().post(&url).json(&json_body)).await;
    assert_eq!(status, 422);
    assert_eq!(
        v["message"],
        json!(["Content-Type must be application/x-www-form-urlencoded"])
    );

    let code = code_for(&sb, LOC, "contacts.readonly").await;
    let bad_secret = [
        ("client_id", CLIENT_ID),
        ("client_secret", "wrong"),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
    ];
    let (status, v) = token(&sb, &bad_secret).await;
    check_error(
        status,
        &v,
        401,
        "Invalid client: client credentials are invalid",
    );
    assert_eq!(v["error"], "Unauthorized");

    let other_redirect = [
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://evil.example/cb"),
    ];
    let (status, v) = token(&sb, &other_redirect).await;
    check_error(
        status,
        &v,
        400,
        "Invalid grant: redirect_uri does not match the authorization request",
    );

    let (status, v) = exchange(&sb, "no-such-code", "Location").await;
    check_error(
        status,
        &v,
        400,
        "Invalid grant: authorization code is invalid",
    );

    sb.advance_oauth_clock(Duration::from_secs(601));
    let (status, v) = exchange(&sb, &code, "Location").await;
    check_error(
        status,
        &v,
        400,
        "Invalid grant: authorization code is invalid",
    );

    let credentials = [
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("grant_type", "client_credentials"),
    ];
    let (status, v) = token(&sb, &credentials).await;
    check_error(
        status,
        &v,
        400,
        "Invalid grant: client_credentials is not supported",
    );
    assert_eq!(sb.oauth_stats(), OAuthStats::default());
    sb.shutdown().await;
}

#[tokio::test]
async fn refresh_tokens_are_single_use_while_old_access_tokens_live_on() {
    let sb = start(two_locations(20)).await;
    let first = login(&sb, LOC, "contacts.readonly", "Location").await;
    let (old_access, old_refresh) = (
        str_of(&first, "access_token"),
        str_of(&first, "refresh_token"),
    );

    let (status, second) = refresh(&sb, old_refresh).await;
    assert_eq!(status, 200, "{second}");
    check_shape(
        &second,
        TOKEN_FIELDS,
        &["userId", "access_token", "refresh_token"],
        false,
    );
    assert_eq!(second["userType"], "Location");
    assert_eq!(second["locationId"], LOC);
    assert_eq!(second["scope"], "contacts.readonly");
    assert_eq!(second["expires_in"], 86_399);
    let new_access = str_of(&second, "access_token");
    assert_ne!(new_access, old_access);
    assert_ne!(str_of(&second, "refresh_token"), old_refresh);

    let (status, v) = refresh(&sb, old_refresh).await;
    assert_eq!(status, 400);
    assert_eq!(
        v,
        json!({"statusCode": 400, "message": "Invalid grant: refresh token is invalid"})
    );
    assert_eq!(api(&sb, old_access, &list_path(LOC)).await.0, 200);
    assert_eq!(api(&sb, new_access, &list_path(LOC)).await.0, 200);

    let (status, third) = refresh(&sb, str_of(&second, "refresh_token")).await;
    assert_eq!(status, 200, "{third}");
    let stats = sb.oauth_stats();
    assert_eq!(
        (
            stats.refresh_grants,
            stats.refused_refreshes,
            stats.grace_replays
        ),
        (2, 1, 0)
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn grace_window_replays_the_same_pair_then_refuses() {
    let sb = start(two_locations(20)).await;
    sb.set_refresh_grace(Duration::from_secs(30));
    let (_, old_refresh) = sb.issue_tokens(LOC, READ);
    let (status, fresh) = refresh(&sb, &old_refresh).await;
    assert_eq!(status, 200, "{fresh}");

    sb.advance_oauth_clock(Duration::from_secs(10));
    let (status, replay) = refresh(&sb, &old_refresh).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["access_token"], fresh["access_token"]);
    assert_eq!(replay["refresh_token"], fresh["refresh_token"]);
    assert_eq!(
        replay["expires_in"], 86_389,
        "what is left of the same token"
    );
    check_shape(&replay, TOKEN_FIELDS, &["userId"], false);

    sb.advance_oauth_clock(Duration::from_secs(20));
    let (status, v) = refresh(&sb, &old_refresh).await;
    check_error(status, &v, 400, "Invalid grant: refresh token is invalid");
    let (status, next) = refresh(&sb, str_of(&fresh, "refresh_token")).await;
    assert_eq!(status, 200, "{next}");
    let stats = sb.oauth_stats();
    assert_eq!(
        (
            stats.refresh_grants,
            stats.grace_replays,
            stats.refused_refreshes
        ),
        (3, 1, 1)
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn expired_access_tokens_get_invalid_jwt_until_refreshed() {
    let sb = start(two_locations(20)).await;
    let invalid_jwt = json!({"statusCode": 401, "message": "Invalid JWT", "error": "Unauthorized"});
    let (access, refresh_token) = sb.issue_tokens(LOC, READ);
    sb.expire_access_tokens();
    assert_eq!(
        api(&sb, &access, &list_path(LOC)).await,
        (401, invalid_jwt.clone())
    );
    assert_eq!(
        api(&sb, TOKEN, &list_path(LOC)).await.0,
        200,
        "PITs do not expire"
    );

    sb.set_access_ttl(Duration::from_secs(60));
    let (status, v) = refresh(&sb, &refresh_token).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["expires_in"], 60);
    let access = str_of(&v, "access_token");
    assert_eq!(api(&sb, access, &list_path(LOC)).await.0, 200);
    sb.advance_oauth_clock(Duration::from_secs(60));
    assert_eq!(api(&sb, access, &list_path(LOC)).await, (401, invalid_jwt));
    let unknown = api(&sb, "not-a-token", &list_path(LOC)).await;
    check_error(
        unknown.0,
        &unknown.1,
        401,
        "Invalid token: access token is invalid",
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn location_tokens_open_only_their_location() {
    let sb = start(two_locations(20)).await;
    let forbidden =
        json!({"statusCode": 403, "message": "The token does not have access to this location."});
    let (access, _) = sb.issue_tokens(LOC, READ);
    assert_eq!(api(&sb, &access, &list_path(LOC)).await.0, 200);
    assert_eq!(
        api(&sb, &access, &list_path(LOC2)).await,
        (403, forbidden.clone())
    );
    let other = sb.live_contact_ids(LOC2).remove(0);
    assert_eq!(
        api(&sb, &access, &format!("/contacts/{other}")).await,
        (403, forbidden.clone())
    );
    let url = format!("{}/contacts/search", sb.base_url());
    let req = http()
        .post(url)
        .bearer_auth(&access)
        .header("Version", VERSION_HEADER_VALUE)
        .json(&json!({"locationId": LOC2, "pageLimit": 1}));
    assert_eq!(answer(req).await, (403, forbidden));
    assert_eq!(sb.stats(LOC).requests, 4, "counted on the token's location");
    assert_eq!(sb.stats(LOC2).requests, 0);
    sb.shutdown().await;
}

#[tokio::test]
async fn oauth_tokens_need_the_route_scope_while_pits_keep_their_switches() {
    let sb = start(two_locations(20)).await;
    let (access, _) = sb.issue_tokens(LOC, &["businesses.readonly"]);
    let (status, v) = api(&sb, &access, &list_path(LOC)).await;
    check_error(
        status,
        &v,
        401,
        "The token is not authorized for this scope.",
    );
    let businesses = format!("/businesses/?locationId={LOC}");
    assert_eq!(api(&sb, &access, &businesses).await.0, 200);

    let fields = format!("/locations/{LOC}/customFields?model=contact");
    let (status, _) = api(&sb, &access, &fields).await;
    assert_eq!(status, 401);
    let (scoped, _) = sb.issue_tokens(LOC, &["locations/customFields.readonly"]);
    assert_eq!(api(&sb, &scoped, &fields).await.0, 200);

    assert_eq!(api(&sb, TOKEN, &list_path(LOC)).await.0, 200);
    assert_eq!(api(&sb, TOKEN, &fields).await.0, 200);
    sb.set_custom_fields_scope(LOC, false);
    assert_eq!(api(&sb, TOKEN, &fields).await.0, 401);
    assert_eq!(
        api(&sb, &scoped, &fields).await.0,
        200,
        "the PIT switch leaves OAuth tokens alone"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn agency_token_lists_installed_locations_and_mints_location_tokens() {
    let sb = start(two_locations(20)).await;
    let agency = login(&sb, LOC, AGENCY_SCOPES, "Company").await;
    check_shape(
        &agency,
        TOKEN_FIELDS,
        &["userId", "access_token", "refresh_token"],
        false,
    );
    assert_eq!(agency["userType"], "Company");
    assert_eq!(agency["companyId"], COMPANY);
    assert_eq!(agency["approvedLocations"], json!([LOC, LOC2]));
    assert!(agency.get("locationId").is_none());
    let bearer = str_of(&agency, "access_token");

    let (status, v) = api(&sb, bearer, &list_path(LOC)).await;
    check_error(
        status,
        &v,
        403,
        "The token does not have access to this location.",
    );

    let base = format!("/oauth/installedLocations?companyId={COMPANY}&appId={APP_ID}");
    let (status, v) = api(&sb, bearer, &base).await;
    assert_eq!(status, 200, "{v}");
    check_shape(&v, INSTALLED_FIELDS, &[], false);
    assert_eq!(v["count"], 2);
    assert_eq!(v["installToFutureLocations"], true);
    let listed = v["locations"].as_array().unwrap();
    let ids: Vec<&str> = listed.iter().map(|l| str_of(l, "_id")).collect();
    assert_eq!(ids, [LOC, LOC2]);
    for l in listed {
        check_shape(
            l,
            INSTALLED_LOCATION_FIELDS,
            &["_id", "name", "address"],
            false,
        );
        assert_eq!(l["isInstalled"], true);
    }
    let (_, page) = api(&sb, bearer, &format!("{base}&skip=1&limit=1")).await;
    assert_eq!(page["count"], 2);
    assert_eq!(page["locations"][0]["_id"], LOC2);
    assert_eq!(page["locations"].as_array().map(Vec::len), Some(1));
    let (_, found) = api(&sb, bearer, &format!("{base}&query=location%202")).await;
    assert_eq!(found["count"], 1);
    assert_eq!(found["locations"][0]["_id"], LOC2);

    let (status, minted) =
        location_token(&sb, bearer, &[("companyId", COMPANY), ("locationId", LOC2)]).await;
    assert_eq!(status, 200, "{minted}");
    check_shape(&minted, LOCATION_TOKEN_FIELDS, &["userId"], false);
    assert!(minted.get("refresh_token").is_none());
    assert_eq!(minted["locationId"], LOC2);
    assert_eq!(minted["scope"], AGENCY_SCOPES);
    assert_eq!(minted["expires_in"], 86_399);
    assert_eq!(minted["appId"], APP_ID);
    let access = str_of(&minted, "access_token");
    assert_eq!(api(&sb, access, &list_path(LOC2)).await.0, 200);
    assert_eq!(api(&sb, access, &list_path(LOC)).await.0, 403);

    let (status, renewed) = refresh(&sb, str_of(&agency, "refresh_token")).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["userType"], "Company");
    assert_eq!(renewed["approvedLocations"], json!([LOC, LOC2]));

    let stats = sb.oauth_stats();
    assert_eq!(
        (
            stats.code_grants,
            stats.location_tokens,
            stats.installed_location_calls
        ),
        (1, 1, 3)
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn agency_endpoints_refuse_other_tokens_companies_locations_and_bad_input() {
    let sb = start(two_locations(20)).await;
    let agency = login(&sb, LOC, AGENCY_SCOPES, "Company").await;
    let bearer = str_of(&agency, "access_token");
    let form = [("companyId", COMPANY), ("locationId", LOC)];
    let class_refusal = "This authClass type is not allowed to access this scope. Please reach out to support team.";

    let (location_access, _) = sb.issue_tokens(LOC, &["oauth.write"]);
    for token in [location_access.as_str(), TOKEN] {
        let (status, v) = location_token(&sb, token, &form).await;
        check_error(status, &v, 401, class_refusal);
    }
    let (status, v) = location_token(&sb, "not-a-token", &form).await;
    check_error(status, &v, 401, "Invalid token: access token is invalid");

    let (status, v) = location_token(
        &sb,
        bearer,
        &[("companyId", "otherCompany00000001"), ("locationId", LOC)],
    )
    .await;
    assert_eq!(status, 403);
    check_shape(&v, BAD_REQUEST_FIELDS, &["statusCode", "message"], false);
    assert_eq!(
        v["message"],
        "The token does not have access to this company."
    );

    let (status, v) = location_token(
        &sb,
        bearer,
        &[("companyId", COMPANY), ("locationId", "nowhere")],
    )
    .await;
    check_error(status, &v, 400, "Location not found");

    let (status, v) = location_token(&sb, bearer, &[("companyId", COMPANY)]).await;
    assert_eq!(status, 422);
    assert_eq!(
        v["message"],
        json!([
            "locationId should not be empty",
            "locationId must be a string"
        ])
    );

    let url = format!("{}/oauth/locationToken", sb.base_url());
    let (status, v) = answer(http().post(url).bearer_auth(bearer).form(&form)).await;
    check_error(status, &v, 400, "Version header was not found");

    let read_only = login(&sb, LOC, "oauth.readonly", "Company").await;
    let (status, v) = location_token(&sb, str_of(&read_only, "access_token"), &form).await;
    check_error(
        status,
        &v,
        401,
        "The token is not authorized for this scope.",
    );

    let (status, v) = api(&sb, bearer, "/oauth/installedLocations?skip=x").await;
    assert_eq!(status, 422);
    check_shape(
        &v,
        UNPROCESSABLE_FIELDS,
        &["statusCode", "message", "error"],
        false,
    );
    let path = format!("/oauth/installedLocations?companyId={COMPANY}&appId=otherApp");
    let (status, v) = api(&sb, bearer, &path).await;
    check_error(status, &v, 400, "App not found");

    sb.expire_access_tokens();
    let (status, v) = location_token(&sb, bearer, &form).await;
    check_error(status, &v, 401, "Invalid JWT");
    assert_eq!(sb.oauth_stats().location_tokens, 0);
    sb.shutdown().await;
}

#[tokio::test]
async fn deactivated_locations_refuse_refresh_codes_and_location_tokens() {
    let sb = start(two_locations(20)).await;
    let agency = login(&sb, LOC, AGENCY_SCOPES, "Company").await;
    let (access, refresh_token) = sb.issue_tokens(LOC, READ);
    let code = code_for(&sb, LOC, "contacts.readonly").await;
    sb.deactivate_location(LOC);

    let (status, v) = refresh(&sb, &refresh_token).await;
    assert_eq!(status, 400);
    assert_eq!(
        v,
        json!({"statusCode": 400, "message": "Location is not active"})
    );
    let (status, v) = exchange(&sb, &code, "Location").await;
    check_error(status, &v, 400, "Location is not active");
    let bearer = str_of(&agency, "access_token");
    let (status, v) =
        location_token(&sb, bearer, &[("companyId", COMPANY), ("locationId", LOC)]).await;
    check_error(status, &v, 400, "Location is not active");

    assert_eq!(
        api(&sb, &access, &list_path(LOC)).await.0,
        200,
        "until it expires"
    );
    let (status, _) =
        location_token(&sb, bearer, &[("companyId", COMPANY), ("locationId", LOC2)]).await;
    assert_eq!(status, 200);
    let (status, _) = refresh(&sb, str_of(&agency, "refresh_token")).await;
    assert_eq!(status, 200, "the agency is still active");
    assert_eq!(sb.oauth_stats().refused_refreshes, 1);
    sb.shutdown().await;
}

#[tokio::test]
async fn revoked_refresh_tokens_are_refused_even_within_the_grace_window() {
    let sb = start(two_locations(20)).await;
    sb.set_refresh_grace(Duration::from_secs(60));
    let (access, first) = sb.issue_tokens(LOC, READ);
    let (_, second) = sb.issue_tokens(LOC, READ);
    let (_, elsewhere) = sb.issue_tokens(LOC2, READ);
    let (status, _) = refresh(&sb, &first).await;
    assert_eq!(status, 200);

    sb.revoke_refresh_tokens(LOC);
    for spent_or_live in [&first, &second] {
        let (status, v) = refresh(&sb, spent_or_live).await;
        check_error(status, &v, 400, "Invalid grant: refresh token is invalid");
    }
    assert_eq!(refresh(&sb, &elsewhere).await.0, 200);
    assert_eq!(api(&sb, &access, &list_path(LOC)).await.0, 200);

    let agency = login(&sb, LOC, AGENCY_SCOPES, "Company").await;
    sb.revoke_refresh_tokens(COMPANY);
    let (status, _) = refresh(&sb, str_of(&agency, "refresh_token")).await;
    assert_eq!(status, 400);
    sb.shutdown().await;
}

#[tokio::test]
async fn issued_tokens_are_jwt_shaped_and_unique() {
    let sb = start(two_locations(20)).await;
    let (a, r) = sb.issue_tokens(LOC, READ);
    let (b, _) = sb.issue_tokens(LOC, READ);
    assert_ne!(a, b);
    for t in [&a, &r] {
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3, "{t}");
        let b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        assert!(parts.iter().all(|p| !p.is_empty() && p.chars().all(b64)));
    }
    assert_eq!(
        sb.issue_tokens("nowhere", READ),
        (String::new(), String::new())
    );
    sb.shutdown().await;
}

#[test]
fn base64url_matches_rfc_4648_vectors_without_padding() {
    let cases: [(&[u8], &str); 6] = [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foobar", "Zm9vYmFy"),
        (&[0xfb, 0xff, 0xbf], "-_-_"),
    ];
    for (input, expected) in cases {
        assert_eq!(base64url(input), expected);
    }
}

#[test]
fn oauth_app_debug_output_hides_the_client_secret() {
    let shown = format!("{:?}", SandboxConfig::default());
    assert!(shown.contains("sandbox-client-id"));
    assert!(!shown.contains(CLIENT_SECRET));
}
