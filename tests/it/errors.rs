//! Precise error cases: auth, Version header, and malformed upstream JSON (sandbox and wiremock).

use crate::kit::*;
use ghl_mirror::model::Outcome;
use ghl_mirror::store::Store;
use ghl_mirror::upstream::{Client, ClientSettings, SearchRequest, UpstreamError};
use secrecy::SecretString;
use std::time::Duration;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_wrong_token_fails_with_a_clear_401_message_and_stores_nothing() {
    let k = kit(50).await;
    let client = Client::new(k.settings(LOC, "not-a-real-token")).unwrap();
    let r = k.sync(&client, &opts()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(
        e.contains("rejected the token of location sandboxLocation00001"),
        "{e}"
    );
    assert!(e.contains("401"), "{e}");
    assert!(
        !e.contains("not-a-real-token"),
        "the token must never appear in errors: {e}"
    );
    assert_eq!(k.count("SELECT COUNT(*) FROM contacts"), 0);
    assert_eq!(r.progress.requests, 1, "a 401 is not retried");
}

#[tokio::test]
async fn a_token_of_another_location_gets_the_403_message() {
    let k = kit_with(ghl_mirror::sandbox::SandboxConfig::new(1, seeds(&[10, 10]))).await;
    let client = Client::new(k.settings(LOC, TOKEN2)).unwrap();
    let r = k.sync(&client, &opts()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(
        e.contains("no access to location sandboxLocation00001"),
        "{e}"
    );
    assert!(e.contains("403"), "{e}");
}

#[tokio::test]
async fn a_wrong_version_header_names_the_config_key_to_fix() {
    let k = kit(10).await;
    let mut s = k.settings(LOC, TOKEN);
    s.api_version = "2020-01-01".into();
    let r = k.sync(&Client::new(s).unwrap(), &opts()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(e.contains("Version header \"2020-01-01\""), "{e}");
    assert!(e.contains("upstream.api_version"), "{e}");
}

#[tokio::test]
async fn a_revoked_token_mid_life_fails_the_next_run_clearly() {
    let k = kit(100).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    k.sandbox.revoke_token(LOC);
    let r = k.sync(&client, &opts()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.error.unwrap().contains("401"));
    assert_eq!(
        k.store.live_contact_ids(LOC).unwrap().len(),
        100,
        "nothing already stored is lost"
    );
}

pub fn mock_settings(server: &MockServer) -> ClientSettings {
    ClientSettings {
        base_url: server.uri().parse().unwrap(),
        api_version: "2021-07-28".into(),
        location_id: "loc1".into(),
        credentials: ghl_mirror::upstream::Credentials::Static(SecretString::from(
            "secret-token".to_string(),
        )),
        timeout: Duration::from_secs(2),
        burst_max: 100,
        interval: Duration::from_secs(10),
        safety_margin: Duration::ZERO,
        daily_reserve: 0,
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

fn first_page() -> SearchRequest {
    SearchRequest {
        since_ms: None,
        descending: false,
        after: None,
        page_limit: 500,
    }
}

async fn search_with_body(body: &str) -> Result<ghl_mirror::upstream::ContactsPage, UpstreamError> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contacts/search"))
        .and(header("authorization", "Bearer secret-token"))
        .and(header("version", "2021-07-28"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json"),
        )
        .mount(&server)
        .await;
    Client::new(mock_settings(&server))
        .unwrap()
        .search_contacts(&first_page())
        .await
}

#[tokio::test]
async fn invalid_json_is_a_malformed_page_not_retried() {
    let e = search_with_body("{\"contacts\": [").await.unwrap_err();
    assert!(matches!(e, UpstreamError::Malformed { .. }), "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("POST /contacts/search"), "{e}");
}

#[tokio::test]
async fn a_contact_without_an_id_rejects_the_whole_page() {
    let body = r#"{"contacts":[{"id":"a","dateUpdated":"2024-01-01T00:00:00.000Z"},{"firstName":"x","dateUpdated":"2024-01-01T00:00:00.000Z"}],"total":2}"#;
    let e = search_with_body(body).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("contact #1 of the page has no string `id`"),
        "{e}"
    );
}

#[tokio::test]
async fn a_contacts_field_that_is_not_a_list_is_malformed() {
    let e = search_with_body(r#"{"contacts":{"id":"a"},"total":1}"#)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Malformed { .. }), "{e}");
}

#[tokio::test]
async fn a_422_lists_highlevels_messages() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contacts/search"))
        .respond_with(ResponseTemplate::new(422).set_body_json(serde_json::json!({
            "statusCode": 422, "message": ["pageLimit must not be greater than 500", "locationId should not be empty"], "error": "Unprocessable Entity"
        })))
        .mount(&server)
        .await;
    let e = Client::new(mock_settings(&server))
        .unwrap()
        .search_contacts(&first_page())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "POST /contacts/search: HighLevel rejected the request (422: pageLimit must not be greater than 500; locationId should not be empty)"
    );
}

#[tokio::test]
async fn persistent_503s_give_up_after_the_configured_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contacts/search"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            serde_json::json!({"statusCode": 503, "message": "Service Unavailable"}),
        ))
        .expect(3)
        .mount(&server)
        .await;
    let client = Client::new(mock_settings(&server)).unwrap();
    let e = client.search_contacts(&first_page()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "gave up after 3 attempts; last error: POST /contacts/search: HighLevel server error (503: Service Unavailable)"
    );
    assert_eq!(client.counters().requests, 3);
    assert_eq!(client.counters().retries, 2);
}

#[tokio::test]
async fn rate_limit_headers_from_other_clients_slow_the_next_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contacts/search"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-max", "100")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-interval-milliseconds", "300")
                .insert_header("x-ratelimit-daily-remaining", "123456")
                .set_body_json(serde_json::json!({"contacts": [], "total": 0})),
        )
        .mount(&server)
        .await;
    let mut s = mock_settings(&server);
    s.interval = Duration::from_millis(200);
    let client = Client::new(s).unwrap();
    client.search_contacts(&first_page()).await.unwrap();
    assert_eq!(client.daily_remaining(), Some(123_456));
    let t = std::time::Instant::now();
    client.search_contacts(&first_page()).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "waited {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_database_in_a_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let Err(e) = Store::open(&dir.path().join("no/such/dir/mirror.db")) else {
        panic!("opening must fail");
    };
    assert!(e.to_string().contains("no/such/dir/mirror.db"), "{e}");
}
