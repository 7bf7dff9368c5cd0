//! The official SDKs' default requests, header for header (Node `@gohighlevel/api-client`
//! 3.1: `Version: 2023-02-21`, `x-sdk-version`, axios' Accept and User-Agent; Python
//! `gohighlevel-api-client` 3.0: `Version: v3`, httpx's defaults), answered 200 by the sandbox
//! and by `serve`.

use crate::kit::*;
use serde_json::{Value, json};

/// The headers each SDK sends on every call (the token aside).
const NODE: &[(&str, &str)] = &[
    ("Accept", "application/json, text/plain, */*"),
    ("Content-Type", "application/json"),
    ("Version", "2023-02-21"),
    ("x-sdk-version", "3.1.0"),
    ("User-Agent", "axios/1.7.9"),
    ("Accept-Encoding", "gzip, compress, deflate, br"),
];
const PYTHON: &[(&str, &str)] = &[
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Connection", "keep-alive"),
    ("User-Agent", "python-httpx/0.28.1"),
    ("Content-Type", "application/json"),
    ("Version", "v3"),
];

/// A synced mirror served next to its sandbox: (kit, the mirror's base URL, its stop).
pub(crate) async fn served_mirror(
    contacts: usize,
) -> (Kit, String, tokio::sync::oneshot::Sender<()>) {
    let k = kit(contacts).await;
    assert_success(&k.sync(&k.client(), &opts()).await);
    // As `ghl-mirror sync` ends: the full-text index caught up.
    let stop = tokio::sync::watch::channel(false).1;
    ghl_mirror::sync::index_text(&k.store, &stop).await.unwrap();
    assert_eq!(k.store.text_pending().unwrap(), 0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ghl_mirror::serve::serve(
        k.store.clone(),
        None,
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    (k, base, tx)
}

async fn call(
    http: &reqwest::Client,
    headers: &[(&str, &str)],
    method: reqwest::Method,
    url: String,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = http.request(method, &url).bearer_auth(TOKEN);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn the_node_and_python_sdks_default_headers_get_200s_from_the_sandbox_and_the_mirror() {
    let (k, mirror, _stop) = served_mirror(20).await;
    let sandbox = k.sandbox.base_url();
    let id = k.sandbox.live_contact_ids(LOC)[0].clone();
    let http = reqwest::Client::new();
    let search = json!({"locationId": LOC, "pageLimit": 5});
    for (sdk, headers) in [("node", NODE), ("python", PYTHON)] {
        for base in [&sandbox, &mirror] {
            let gets = [
                format!("/contacts/{id}"),
                format!("/contacts/{id}/tasks"),
                format!("/contacts/?locationId={LOC}&limit=5"),
            ];
            for path in gets {
                let (status, body) = call(
                    &http,
                    headers,
                    reqwest::Method::GET,
                    format!("{base}{path}"),
                    None,
                )
                .await;
                assert_eq!(status, 200, "{sdk} GET {base}{path}: {body}");
            }
            let (status, body) = call(
                &http,
                headers,
                reqwest::Method::POST,
                format!("{base}/contacts/search"),
                Some(&search),
            )
            .await;
            assert_eq!(status, 200, "{sdk} POST {base}/contacts/search: {body}");
            assert_eq!(body["contacts"].as_array().map(Vec::len), Some(5), "{body}");
        }
    }
}

#[tokio::test]
async fn the_sandbox_still_refuses_a_version_highlevel_does_not_accept() {
    let k = kit(3).await;
    let http = reqwest::Client::new();
    let id = k.sandbox.live_contact_ids(LOC)[0].clone();
    let (status, body) = call(
        &http,
        &[("Version", "2020-01-01")],
        reqwest::Method::GET,
        format!("{}/contacts/{id}", k.sandbox.base_url()),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "Version header is invalid. Supported versions: 2021-07-28, 2023-02-21, v3"
    );
}

/// `{"contact": ...}` without `dndSettings` (the mirror syncs from search, which omits it).
fn comparable(mut v: Value) -> Value {
    if let Some(c) = v.get_mut("contact").and_then(Value::as_object_mut) {
        c.remove("dndSettings");
    }
    v
}

#[tokio::test]
async fn duplicate_lookup_answers_like_the_sandbox_by_email_phone_in_any_format_and_bad_input() {
    let (k, mirror, _stop) = served_mirror(300).await;
    let sandbox = k.sandbox.base_url();
    let http = reqwest::Client::new();
    let both = |query: String| {
        let (http, sandbox, mirror) = (http.clone(), sandbox.clone(), mirror.clone());
        async move {
            let path = format!("/contacts/search/duplicate?{query}");
            let headers = &[("Version", "2021-07-28")];
            let get = reqwest::Method::GET;
            let up = call(
                &http,
                headers,
                get.clone(),
                format!("{sandbox}{path}"),
                None,
            )
            .await;
            let local = call(&http, headers, get, format!("{mirror}{path}"), None).await;
            assert_eq!(local.0, up.0, "{path}: {} vs {}", local.1, up.1);
            (local.0, comparable(local.1), comparable(up.1))
        }
    };
    // A contact with an email and a North American number.
    let contact = k
        .sandbox
        .live_contact_ids(LOC)
        .iter()
        .map(|id| k.sandbox.contact_json(LOC, id).unwrap())
        .find(|c| {
            c["email"].is_string() && c["phone"].as_str().is_some_and(|p| p.starts_with("+1"))
        })
        .expect("a contact with an email and a +1 phone");
    let email = contact["email"].as_str().unwrap();
    let phone = contact["phone"].as_str().unwrap();
    let national = &phone[2..];
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();

    let (status, local, up) = both(format!(
        "locationId={LOC}&email={}",
        enc(&email.to_uppercase())
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(local, up);
    assert_eq!(local["contact"]["email"].as_str(), Some(email), "{local}");

    let formats = [
        phone.to_string(),
        phone[1..].to_string(),
        national.to_string(),
        format!(
            "+1 ({}) {}-{}",
            &national[..3],
            &national[3..6],
            &national[6..]
        ),
        format!("{}.{}.{}", &national[..3], &national[3..6], &national[6..]),
    ];
    for number in formats {
        let (status, local, up) = both(format!("locationId={LOC}&number={}", enc(&number))).await;
        assert_eq!(status, 200, "{number}");
        assert_eq!(local, up, "{number}");
        let found = local["contact"]["phone"]
            .as_str()
            .map(|p| p[2..].to_string());
        assert_eq!(found.as_deref(), Some(national), "{number}: {local}");
    }

    // A national number written with its trunk 0, as in the UK or Germany.
    let abroad = k
        .sandbox
        .live_contact_ids(LOC)
        .iter()
        .map(|id| k.sandbox.contact_json(LOC, id).unwrap())
        .find(|c| {
            c["phone"]
                .as_str()
                .is_some_and(|p| p.starts_with("+44") || p.starts_with("+49"))
        })
        .expect("a contact with a +44 or +49 phone");
    let full = abroad["phone"].as_str().unwrap();
    let trunk = format!("0{} {}", &full[3..6], &full[6..]);
    let (status, local, up) = both(format!("locationId={LOC}&number={}", enc(&trunk))).await;
    assert_eq!(status, 200, "{trunk}");
    assert_eq!(local, up, "{trunk}");
    assert_eq!(
        local["contact"]["phone"].as_str(),
        Some(full),
        "{trunk}: {local}"
    );

    // Email first; an email nobody has falls back to the number; a miss is `contact: null`.
    let (_, local, up) = both(format!(
        "locationId={LOC}&email=nobody%40example.invalid&number={}",
        enc(phone)
    ))
    .await;
    assert_eq!(local, up);
    assert!(local["contact"].is_object(), "{local}");
    let (status, local, up) = both(format!(
        "locationId={LOC}&email=nobody%40example.invalid&number=%2B19990000000"
    ))
    .await;
    assert_eq!((status, &local), (200, &json!({"contact": null})));
    assert_eq!(local, up);

    // Bad input: HighLevel's 422 without a locationId, 403 for a location not the token's.
    let (status, local, up) = both(format!("email={}", enc(email))).await;
    assert_eq!(status, 422);
    assert_eq!(local, up);
    assert_eq!(
        local,
        json!({"statusCode": 422, "message": ["locationId should not be empty"], "error": "Unprocessable Entity"})
    );
    let (status, _, _) = both(format!("locationId={LOC2}&email={}", enc(email))).await;
    assert_eq!(status, 403);
}
