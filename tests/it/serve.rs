//! The local HTTP API: every HighLevel route and filter answered from the mirror agrees with
//! what the sandbox itself answers for the same request, field by field; bad input gets the same
//! 4xx; the mirror's own routes, freshness headers and bearer token.

use crate::kit::*;
use ghl_mirror::sync::{
    BusinessOptions, SubOptions, index_text, sync_businesses, sync_subresources,
};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

fn stop() -> ghl_mirror::sync::StopSignal {
    tokio::sync::watch::channel(false).1
}

/// A synced mirror (contacts, sub-resources, businesses) served on port 0 next to its sandbox.
struct Served {
    kit: Kit,
    base: String,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Answer {
    status: StatusCode,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

async fn served(contacts: usize) -> Served {
    served_with_token(contacts, None).await
}

async fn served_with_token(contacts: usize, token: Option<&str>) -> Served {
    let kit = kit(contacts).await;
    let client = kit.client();
    assert_success(&kit.sync(&client, &opts()).await);
    let subs = SubOptions {
        run_requests: 1_000_000,
        daily_share: 1.0,
        ..SubOptions::default()
    };
    assert_success(&sync_subresources(&kit.store, &client, &subs, stop(), None).await);
    let businesses = BusinessOptions {
        run_requests: 1_000_000,
        daily_share: 1.0,
        ..BusinessOptions::default()
    };
    assert_success(&sync_businesses(&kit.store, &client, &businesses, stop()).await);
    index_text(&kit.store, &stop()).await.unwrap();
    serve_kit(kit, token).await
}

async fn serve_kit(kit: Kit, token: Option<&str>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let token = token.map(|t| SecretString::from(t.to_string()));
    tokio::spawn(ghl_mirror::serve::serve(
        kit.store.clone(),
        token,
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    Served {
        kit,
        base,
        http: reqwest::Client::new(),
        _stop: tx,
    }
}

impl Served {
    async fn call(&self, base: &str, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .header("Version", "2021-07-28");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            headers,
        }
    }

    async fn local(&self, path: &str) -> Answer {
        self.call(&self.base, Method::GET, path, None).await
    }

    async fn upstream(&self, path: &str) -> Answer {
        let base = self.kit.sandbox.base_url();
        self.call(&base, Method::GET, path, None).await
    }

    /// Both answers to the same GET: statuses equal, bodies returned for comparison.
    async fn both(&self, path: &str) -> (Value, Value) {
        let (l, u) = (self.local(path).await, self.upstream(path).await);
        assert_eq!(l.status, u.status, "{path}: {} vs {}", l.body, u.body);
        (l.body, u.body)
    }

    async fn search_both(&self, body: &Value) -> (StatusCode, Value, Value) {
        let base = self.kit.sandbox.base_url();
        let l = self
            .call(&self.base, Method::POST, "/contacts/search", Some(body))
            .await;
        let u = self
            .call(&base, Method::POST, "/contacts/search", Some(body))
            .await;
        assert_eq!(l.status, u.status, "{body}: {} vs {}", l.body, u.body);
        (l.status, l.body, u.body)
    }

    async fn metrics_text(&self) -> String {
        let a = self.local("/metrics").await;
        assert_eq!(a.status, StatusCode::OK);
        a.body.as_str().unwrap().to_string()
    }

    fn ids(&self) -> Vec<String> {
        self.kit.sandbox.live_contact_ids(LOC)
    }
}

/// HighLevel's search results omit `dndSettings` (issue #43), so the mirror, which syncs from
/// search, never has it; everything else must be identical.
fn without_dnd(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("dndSettings");
    }
    v
}

fn contacts_of(body: &Value) -> Vec<Value> {
    body["contacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no contacts in {body}"))
        .iter()
        .cloned()
        .map(without_dnd)
        .collect()
}

fn sorted_by_id(v: &Value, key: &str) -> Vec<Value> {
    let mut items = v[key].as_array().cloned().unwrap_or_default();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    items
}

#[tokio::test]
async fn every_contact_reads_the_same_locally_as_upstream() {
    let s = served(150).await;
    let ids = s.ids();
    assert_eq!(ids.len(), 150);
    for id in &ids {
        let (local, up) = s.both(&format!("/contacts/{id}")).await;
        assert_eq!(local["contact"], without_dnd(up["contact"].clone()), "{id}");
    }
}

#[tokio::test]
async fn tasks_notes_and_appointments_match_upstream_field_by_field() {
    let s = served(120).await;
    let (mut tasks, mut notes) = (0, 0);
    for id in s.ids() {
        for (path, key) in [
            ("tasks", "tasks"),
            ("notes", "notes"),
            ("appointments", "events"),
        ] {
            let (local, up) = s.both(&format!("/contacts/{id}/{path}")).await;
            assert_eq!(
                sorted_by_id(&local, key),
                sorted_by_id(&up, key),
                "{id} {path}"
            );
        }
        let (local, _) = s.both(&format!("/contacts/{id}/tasks")).await;
        for t in local["tasks"].as_array().unwrap() {
            let path = format!("/contacts/{id}/tasks/{}", t["id"].as_str().unwrap());
            let (l, u) = s.both(&path).await;
            assert_eq!(l, u, "{path}");
            tasks += 1;
        }
        let (local, _) = s.both(&format!("/contacts/{id}/notes")).await;
        for n in local["notes"].as_array().unwrap() {
            let path = format!("/contacts/{id}/notes/{}", n["id"].as_str().unwrap());
            let (l, u) = s.both(&path).await;
            assert_eq!(l, u, "{path}");
            notes += 1;
        }
        for path in [
            format!("/contacts/{id}/tasks/noSuchTask0000000000"),
            format!("/contacts/{id}/notes/noSuchNote0000000000"),
        ] {
            let (l, u) = s.both(&path).await;
            assert_eq!(l, u, "{path}");
        }
    }
    assert!(tasks > 50 && notes > 50, "{tasks} tasks, {notes} notes");
}

/// Every contact's task list reads locally exactly as upstream lists it, in its order.
async fn assert_task_lists_in_upstream_order(s: &Served) -> usize {
    let mut lists_with_several = 0;
    for id in s.ids() {
        let (local, up) = s.both(&format!("/contacts/{id}/tasks")).await;
        assert_eq!(local["tasks"], up["tasks"], "tasks of {id}, in order");
        lists_with_several += usize::from(up["tasks"].as_array().unwrap().len() > 1);
    }
    lists_with_several
}

#[tokio::test]
async fn task_lists_from_the_bulk_search_are_served_in_highlevels_order() {
    let k = kit(150).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let subs = SubOptions {
        run_requests: 1_000_000,
        daily_share: 1.0,
        bulk_tasks: true,
        ..SubOptions::default()
    };
    let before = k.sandbox.stats(LOC);
    assert_success(&sync_subresources(&k.store, &client, &subs, stop(), None).await);
    let after = k.sandbox.stats(LOC);
    let s = serve_kit(k, None).await;
    let several = assert_task_lists_in_upstream_order(&s).await;
    assert!(several > 40, "{several} contacts with two tasks or more");
    // The search lists tasks in its own order: only contacts with two tasks or more, whose
    // order it cannot tell, had their own list read.
    assert!(after.task_search_requests - before.task_search_requests >= 5);
    assert_eq!(after.tasks_requests - before.tasks_requests, several as u64);

    // Tasks added, edited and deleted later keep HighLevel's order, still from the search.
    let churn = s.kit.sandbox.churn_subresources(LOC, 0.3, true);
    assert!(churn.tasks_added > 5, "{churn:?}");
    assert_success(&s.kit.sync(&client, &opts()).await);
    let before = s.kit.sandbox.stats(LOC);
    assert_success(&sync_subresources(&s.kit.store, &client, &subs, stop(), None).await);
    let after = s.kit.sandbox.stats(LOC);
    assert_eq!(after.tasks_requests, before.tasks_requests, "no list read");
    assert_task_lists_in_upstream_order(&s).await;
}

#[tokio::test]
async fn unknown_and_deleted_contacts_get_highlevels_400_on_every_contact_route() {
    let s = served(60).await;
    let gone = s.ids()[7].clone();
    assert!(s.kit.sandbox.delete_contact(LOC, &gone));
    let mut full = opts();
    full.force_full = true;
    assert_success(&s.kit.sync(&s.kit.client(), &full).await);
    for id in ["noSuchContact0000000", gone.as_str()] {
        for suffix in [
            "",
            "/tasks",
            "/notes",
            "/appointments",
            "/tasks/x",
            "/notes/x",
        ] {
            let path = format!("/contacts/{id}{suffix}");
            let (l, u) = s.both(&path).await;
            assert_eq!(
                l,
                json!({"statusCode": 400, "message": "Contact not found"})
            );
            assert_eq!(l, u, "{path}");
        }
    }
}

/// Walks the legacy list on both sides with the cursor each side returns.
async fn walk_legacy(s: &Served, query: &str) -> usize {
    let mut cursor = String::new();
    let mut seen = 0;
    loop {
        let path = format!("/contacts/?locationId={LOC}{query}{cursor}");
        let (local, up) = s.both(&path).await;
        assert_eq!(contacts_of(&local), contacts_of(&up), "{path}");
        assert_eq!(local["count"], up["count"], "{path}");
        let (mut lm, mut um) = (local["meta"].clone(), up["meta"].clone());
        for m in [&mut lm, &mut um] {
            if let Some(url) = m["nextPageUrl"].as_str() {
                let tail = url.split_once("/contacts/").unwrap().1.to_string();
                m["nextPageUrl"] = Value::from(tail);
            }
        }
        assert_eq!(lm, um, "{path}");
        seen += contacts_of(&local).len();
        if lm["startAfterId"].is_null() {
            return seen;
        }
        cursor = format!(
            "&startAfter={}&startAfterId={}",
            lm["startAfter"],
            lm["startAfterId"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn the_legacy_list_pages_like_upstream_with_and_without_a_query() {
    let s = served(130).await;
    assert_eq!(walk_legacy(&s, "&limit=37").await, 130);
    assert_eq!(walk_legacy(&s, "").await, 130);
    let needle = s.kit.sandbox.contact_json(LOC, &s.ids()[3]).unwrap()["lastName"]
        .as_str()
        .unwrap()
        .to_uppercase();
    let matched = walk_legacy(&s, &format!("&limit=5&query={}", urlencode(&needle))).await;
    assert!(matched >= 1);
    // A cursor naming only an id, or only a time.
    let id = &s.ids()[10];
    for cursor in [
        format!("&startAfterId={id}"),
        "&startAfter=1700000000000".to_string(),
    ] {
        let path = format!("/contacts/?locationId={LOC}&limit=10{cursor}");
        let (local, up) = s.both(&path).await;
        assert_eq!(contacts_of(&local), contacts_of(&up), "{path}");
        assert_eq!(local["meta"]["currentPage"], up["meta"]["currentPage"]);
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn contacts_by_business_match_upstream() {
    let s = served(200).await;
    let businesses = s.kit.sandbox.businesses_json(LOC);
    assert!(!businesses.is_empty());
    let mut linked = 0;
    for b in &businesses {
        let id = b["id"].as_str().unwrap();
        for params in ["", "&limit=3", "&limit=2&skip=1", "&query=a", "&skip=1000"] {
            let path = format!("/contacts/business/{id}?locationId={LOC}{params}");
            let (local, up) = s.both(&path).await;
            assert_eq!(contacts_of(&local), contacts_of(&up), "{path}");
            assert_eq!(local["count"], up["count"], "{path}");
            if params.is_empty() {
                linked += local["count"].as_u64().unwrap();
            }
        }
    }
    assert!(linked > 0);
    // Business ids are matched exactly, as upstream does.
    let id = businesses[0]["id"].as_str().unwrap();
    let mut shouted = id.to_uppercase();
    if shouted == id {
        shouted = id.to_lowercase();
    }
    for path in [
        "/contacts/business/noSuchBusiness".to_string(),
        format!("/contacts/business/{shouted}"),
    ] {
        let path = format!("{path}?locationId={LOC}");
        let (local, up) = s.both(&path).await;
        assert_eq!(local, up, "{path}");
        assert_eq!(local["count"], 0, "{path}");
    }
}

/// Search bodies covering every operator, field kind, group, sort and paging option.
fn search_bodies(sample: &Value) -> Vec<Value> {
    let text = |k: &str| sample[k].as_str().unwrap_or("x").to_string();
    let tag = sample["tags"][0].as_str().unwrap_or("vip").to_string();
    let updated = sample["dateUpdated"].as_str().unwrap().to_string();
    let page = |extra: Value| {
        let mut b = json!({"locationId": LOC, "pageLimit": 25});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let f = |field: &str, op: &str, value: Value| {
        page(json!({"filters": [{"field": field, "operator": op, "value": value}]}))
    };
    let email = text("email");
    vec![
        page(json!({})),
        page(json!({"page": 3})),
        page(json!({"pageLimit": 500})),
        f("email", "eq", json!(email.to_uppercase())),
        f("firstName", "eq", json!([text("firstName"), "nobody"])),
        f("lastName", "not_eq", json!(text("lastName"))),
        f("name", "contains", json!("an")),
        f("email", "not_contains", json!("example")),
        f("phone", "exists", Value::Null),
        f("companyName", "not_exists", Value::Null),
        f("tags", "eq", json!(tag.to_uppercase())),
        f("tags", "contains", json!(&tag[..2.min(tag.len())])),
        f("tags", "not_exists", Value::Null),
        f("dnd", "eq", json!(true)),
        f("dnd", "eq", json!("false")),
        f("source", "eq", json!(text("source"))),
        f("type", "eq", json!("lead")),
        f("assignedTo", "exists", Value::Null),
        f("businessId", "exists", Value::Null),
        f("city", "contains", json!("o")),
        f("country", "not_eq", json!("US")),
        f("postalCode", "exists", Value::Null),
        f("address1", "contains", json!("st")),
        f("website", "exists", Value::Null),
        f("timezone", "not_exists", Value::Null),
        f("id", "eq", json!(sample["id"])),
        f("dateUpdated", "range", json!({"gte": updated})),
        f(
            "dateAdded",
            "range",
            json!({"gt": "2024-01-01", "lt": "2025-06-01"}),
        ),
        f("dateUpdated", "eq", json!(updated)),
        f("lastActivity", "exists", Value::Null),
        f(
            "lastActivity",
            "range",
            json!({"lte": "2025-01-01T00:00:00Z"}),
        ),
        page(json!({"filters": [{"group": "OR", "filters": [
            {"field": "dnd", "operator": "eq", "value": true},
            {"group": "AND", "filters": [
                {"field": "tags", "operator": "exists"},
                {"field": "email", "operator": "contains", "value": "a"}
            ]}
        ]}]})),
        page(json!({"filters": [{"group": "or", "filters": []}]})),
        page(json!({"query": text("firstName")})),
        page(
            json!({"query": email[..4.min(email.len())].to_uppercase(), "sort": [{"field": "email"}]}),
        ),
        page(json!({"sort": [{"field": "dateUpdated", "direction": "asc"}]})),
        page(
            json!({"sort": [{"field": "firstName", "direction": "desc"}, {"field": "dateAdded"}]}),
        ),
        page(json!({"sort": [{"field": "lastName"}], "page": 2})),
        page(json!({"sort": [{"field": "companyName", "direction": "desc"}]})),
        page(
            json!({"sort": [{"field": "email", "direction": "asc"}, {"field": "lastName", "direction": "desc"}, {"field": "firstName"}]}),
        ),
    ]
}

#[tokio::test]
async fn search_agrees_with_upstream_for_every_operator_field_and_sort() {
    let s = served(300).await;
    let sample = s.kit.sandbox.contact_json(LOC, &s.ids()[5]).unwrap();
    let mut nonempty = 0;
    for body in search_bodies(&sample) {
        let (status, local, up) = s.search_both(&body).await;
        assert_eq!(status, StatusCode::OK, "{body}: {local}");
        assert_eq!(contacts_of(&local), contacts_of(&up), "{body}");
        assert_eq!(local["total"], up["total"], "{body}");
        if local["total"].as_u64().unwrap() > 0 {
            nonempty += 1;
        }
    }
    assert!(nonempty >= 30, "only {nonempty} bodies matched anything");
}

#[tokio::test]
async fn search_after_pages_through_every_sort_exactly_like_upstream() {
    let s = served(180).await;
    let sorts = [
        json!([{"field": "dateUpdated", "direction": "asc"}]),
        json!([{"field": "dateAdded", "direction": "desc"}]),
        json!([{"field": "firstName", "direction": "asc"}]),
        json!([{"field": "companyName", "direction": "desc"}, {"field": "email"}]),
    ];
    for sort in sorts {
        let mut after: Option<Value> = None;
        let mut seen = 0;
        loop {
            let mut body = json!({"locationId": LOC, "pageLimit": 40, "sort": sort});
            if let Some(a) = &after {
                body["searchAfter"] = a.clone();
            }
            let (_, local, up) = s.search_both(&body).await;
            let (l, u) = (contacts_of(&local), contacts_of(&up));
            assert_eq!(l, u, "{body}");
            seen += l.len();
            match l.last() {
                Some(last) => after = Some(last["searchAfter"].clone()),
                None => break,
            }
        }
        assert_eq!(seen, 180, "{sort}");
    }
}

#[tokio::test]
async fn bad_input_gets_the_same_4xx_as_upstream_on_every_route() {
    let s = served(20).await;
    let bodies = [
        json!({}),
        json!([]),
        json!({"locationId": LOC}),
        json!({"locationId": LOC, "pageLimit": 0}),
        json!({"locationId": LOC, "pageLimit": 501}),
        json!({"locationId": LOC, "pageLimit": 2.5}),
        json!({"locationId": LOC, "pageLimit": 10, "page": 1001}),
        json!({"locationId": LOC, "pageLimit": 10, "query": "x".repeat(76)}),
        json!({"locationId": LOC, "pageLimit": 10, "sort": "dateAdded"}),
        json!({"locationId": LOC, "pageLimit": 10, "sort": [{"field": "phone"}]}),
        json!({"locationId": LOC, "pageLimit": 10, "sort": [{"field": "email", "direction": "up"}]}),
        json!({"locationId": LOC, "pageLimit": 10, "filters": {}}),
        json!({"locationId": LOC, "pageLimit": 10, "filters": [7]}),
        json!({"locationId": LOC, "pageLimit": 10, "filters": [{"field": "height", "operator": "eq", "value": 1}]}),
        json!({"locationId": LOC, "pageLimit": 10, "filters": [{"field": "email", "operator": "like", "value": "a"}]}),
        json!({"locationId": LOC, "pageLimit": 10, "filters": [{"field": "dnd", "operator": "contains", "value": "a"}]}),
        json!({"locationId": LOC, "pageLimit": 10, "filters": [{"field": "dateAdded", "operator": "range", "value": {}}]}),
        json!({"locationId": LOC, "pageLimit": 10, "filters": [{"field": "dateAdded", "operator": "eq", "value": "soon"}]}),
        json!({"locationId": LOC, "pageLimit": 10, "filters": [{"group": "XOR", "filters": []}]}),
        json!({"locationId": LOC, "pageLimit": 10, "searchAfter": "abc"}),
        json!({"locationId": LOC, "pageLimit": 10, "searchAfter": [1, 2]}),
    ];
    for body in &bodies {
        let (status, local, up) = s.search_both(body).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert_eq!(local, up, "{body}");
    }
    for path in [
        "/contacts/?limit=5".to_string(),
        format!("/contacts/?locationId={LOC}&limit=0"),
        format!("/contacts/?locationId={LOC}&limit=abc&startAfter=x"),
        format!("/contacts/business/b1?locationId={LOC}&limit=101&skip=-2"),
        "/contacts/business/b1".to_string(),
    ] {
        let (local, up) = s.both(&path).await;
        assert_eq!(local["message"], up["message"], "{path}");
        assert_eq!(local["statusCode"], 422, "{path}");
    }
    // What only the mirror can get wrong: JSON that does not parse, a location it does not hold,
    // a path it does not serve.
    let resp = s
        .http
        .post(format!("{}/contacts/search", s.base))
        .body("{\"locationId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
    let other = json!({"locationId": "someoneElse", "pageLimit": 10});
    let l = s
        .call(&s.base, Method::POST, "/contacts/search", Some(&other))
        .await;
    assert_eq!(l.status, StatusCode::FORBIDDEN);
    assert!(
        l.body["message"].as_str().unwrap().contains(LOC),
        "{}",
        l.body
    );
    let l = s.local("/contacts/?locationId=someoneElse").await;
    assert_eq!(l.status, StatusCode::FORBIDDEN);
    let l = s.local("/no/such/route").await;
    assert_eq!(
        (l.status, l.body),
        (
            StatusCode::NOT_FOUND,
            json!({"statusCode": 404, "message": "Cannot GET /no/such/route", "error": "Not Found"})
        )
    );
    let l = s.call(&s.base, Method::DELETE, "/contacts/abc", None).await;
    assert_eq!(l.status, StatusCode::NOT_FOUND);
    let l = s.local("/contacts/%FF%FE/notes").await;
    assert_eq!(l.status, StatusCode::BAD_REQUEST);
    assert_eq!(l.body["statusCode"], 400, "{}", l.body);
    let l = s.local("/mirror/search?q=%20%20&limit=0").await;
    assert_eq!(l.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(l.body["message"].as_array().unwrap().len(), 2, "{}", l.body);
    let l = s.local("/mirror/search?q=--").await;
    assert_eq!(l.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", l.body);
}

#[tokio::test]
async fn full_text_search_ranks_names_emails_phones_tags_and_note_bodies() {
    let s = served(200).await;
    let row = |sql: &str| -> Vec<String> {
        let r = s.kit.store.query(sql, 1).unwrap();
        r.rows[0]
            .iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect()
    };
    let c = row(
        "SELECT id, first_name, last_name, email, phone FROM contacts
         WHERE deleted_at IS NULL AND email IS NOT NULL AND phone IS NOT NULL
           AND first_name IS NOT NULL AND last_name IS NOT NULL LIMIT 1",
    );
    let (id, first, last, email, phone) = (&c[0], &c[1], &c[2], &c[3], &c[4]);
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let search = |q: String| {
        let s = &s;
        async move {
            let a = s
                .local(&format!(
                    "/mirror/search?q={}&locationId={LOC}",
                    urlencode(&q)
                ))
                .await;
            assert_eq!(a.status, StatusCode::OK, "{q}: {}", a.body);
            a.body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["contact"]["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(search(format!("{first} {last}")).await.contains(id));
    assert_eq!(search(email.clone()).await.first(), Some(id));
    assert!(
        search(digits[digits.len() - 7..].to_string())
            .await
            .contains(id)
    );
    // Location ids are indexed for filtering, never matched as words.
    let a = s
        .local(&format!(
            "/mirror/search?q=sandboxLocation&locationId={LOC}"
        ))
        .await;
    assert_eq!(a.body["count"], 0, "{}", a.body);
    let a = s
        .local(&format!(
            "/mirror/search?q={}&locationId={LOC2}",
            urlencode(email)
        ))
        .await;
    assert_eq!(a.body["count"], 0, "{}", a.body);
    let spaced = format!("{} {}", &digits[..3], &digits[3..]);
    assert!(
        search(spaced).await.contains(id),
        "phone typed with a space"
    );
    let shouted = s
        .local(&format!(
            "/mirror/search?q={}",
            urlencode(&first.to_uppercase())
        ))
        .await;
    assert!(shouted.body["count"].as_u64().unwrap() >= 1);
    // The body says how many matches were ranked, and that these were all of them.
    let ranked = shouted.body["ranked"].as_u64().unwrap();
    assert!(ranked >= shouted.body["count"].as_u64().unwrap());
    assert_eq!(shouted.body["complete"], true, "{}", shouted.body);
    // A word that appears only in one contact's note body.
    let note = row("SELECT n.contact_id, n.body FROM notes n JOIN contacts c
           ON c.location_id = n.location_id AND c.id = n.contact_id AND c.deleted_at IS NULL
         WHERE n.deleted_at IS NULL AND length(n.body) > 20 LIMIT 1");
    let words: Vec<&str> = note[1].split_whitespace().filter(|w| w.len() > 4).collect();
    let q = urlencode(&words.iter().take(3).copied().collect::<Vec<_>>().join(" "));
    let a = s.local(&format!("/mirror/search?q={q}&limit=100")).await;
    let hits: Vec<&str> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["contact"]["id"].as_str().unwrap())
        .collect();
    assert!(
        hits.contains(&note[0].as_str()),
        "note words {words:?} → {hits:?}"
    );
    // A tag.
    let tagged = row(
        "SELECT c.id, t.tag FROM contact_tags t JOIN contacts c ON c.pk = t.contact_pk
         WHERE c.deleted_at IS NULL LIMIT 1",
    );
    let a = s
        .local(&format!(
            "/mirror/search?q={}&limit=100",
            urlencode(&tagged[1])
        ))
        .await;
    let ids: Vec<&str> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["contact"]["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&tagged[0].as_str()));
    // Deleted contacts drop out of the index itself, once it catches up.
    let pk = |id: &str| {
        s.kit
            .count(&format!("SELECT pk FROM contacts WHERE id = '{id}'"))
    };
    let indexed = |term: &str, pk: i64| {
        // As the index has it: letter and digit runs apart ("smith42" is "smith 42").
        let mut phrase = String::new();
        let mut prev: Option<bool> = None;
        for ch in term.replace('"', "").chars() {
            let digit = ch.is_ascii_digit();
            if ch.is_alphanumeric() && prev.is_some_and(|p| p != digit) {
                phrase.push(' ');
            }
            prev = ch.is_alphanumeric().then_some(digit);
            phrase.push(ch);
        }
        s.kit.count(&format!(
            "SELECT COUNT(*) FROM contacts_fts WHERE contacts_fts MATCH '\"{phrase}\"' AND rowid = {pk}"
        )) == 1
    };
    let gone = pk(id);
    assert!(indexed(email, gone));
    assert!(s.kit.sandbox.delete_contact(LOC, id));
    let mut full = opts();
    full.force_full = true;
    assert_success(&s.kit.sync(&s.kit.client(), &full).await);
    assert!(!search(email.clone()).await.contains(id), "hidden at once");
    // Still in the index until it catches up, but no live contact is missed meanwhile.
    assert!(indexed(email, gone));
    assert_eq!(s.kit.store.text_pending().unwrap(), 0);
    index_text(&s.kit.store, &stop()).await.unwrap();
    assert_eq!(s.kit.store.text_pending().unwrap(), 0);
    assert!(!indexed(email, gone), "removed from the index");
    // Edited contacts are found by their new words only.
    let edited = s.ids()[0].clone();
    let words = |c: &Value| -> std::collections::BTreeSet<String> {
        let mut text = String::new();
        for k in ["name", "email", "phone", "companyName"] {
            text.push_str(c[k].as_str().unwrap_or(""));
            text.push(' ');
        }
        for t in c["tags"].as_array().into_iter().flatten() {
            text.push_str(t.as_str().unwrap_or(""));
            text.push(' ');
        }
        text.split(|ch: char| !ch.is_alphanumeric())
            .filter(|w| w.len() > 2)
            .map(str::to_lowercase)
            .collect()
    };
    let before = words(&s.kit.sandbox.contact_json(LOC, &edited).unwrap());
    let (mut old_only, mut new_only) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        assert!(s.kit.sandbox.update_contact(LOC, &edited));
        let after = words(&s.kit.sandbox.contact_json(LOC, &edited).unwrap());
        old_only = before.difference(&after).cloned().collect();
        new_only = after.difference(&before).cloned().collect();
        if !old_only.is_empty() && !new_only.is_empty() {
            break;
        }
    }
    assert!(!old_only.is_empty() && !new_only.is_empty());
    assert_success(&s.kit.sync(&s.kit.client(), &opts()).await);
    index_text(&s.kit.store, &stop()).await.unwrap();
    let edited_pk = pk(&edited);
    for w in &new_only {
        assert!(indexed(w, edited_pk), "new word {w}");
    }
    for w in &old_only {
        assert!(!indexed(w, edited_pk), "old word {w} still indexed");
    }
}

#[tokio::test]
async fn mirror_status_metrics_health_and_freshness_headers_report_the_mirror() {
    let s = served(40).await;
    let h = s.local("/health").await;
    assert_eq!(
        (h.status, h.body["status"].clone()),
        (StatusCode::OK, json!("ok"))
    );
    let st = s.local("/mirror/status").await;
    let streams = st.body["streams"].as_array().unwrap();
    let contacts = streams.iter().find(|x| x["stream"] == "contacts").unwrap();
    assert_eq!(contacts["live"], 40);
    assert_eq!(contacts["lastRun"]["outcome"], "success");
    assert!(streams.iter().any(|x| x["stream"] == "subresources"));
    // Freshness: every response, with the list's own fetch time on sub-resource lists.
    let id = s.ids()[0].clone();
    for path in [
        format!("/contacts/{id}"),
        "/health".to_string(),
        format!("/contacts/?locationId={LOC}"),
        "/nope".to_string(),
    ] {
        let a = s.local(&path).await;
        let synced = a.headers["x-mirror-synced-at"].to_str().unwrap();
        assert!(
            ghl_mirror::model::ms_from_iso(synced).is_some(),
            "{path}: {synced}"
        );
        let age: i64 = a.headers["x-mirror-age-seconds"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0..60).contains(&age), "{path}: {age}");
    }
    let a = s.local(&format!("/contacts/{id}/notes")).await;
    let fetched = a.headers["x-mirror-list-fetched-at"].to_str().unwrap();
    assert!(
        ghl_mirror::model::ms_from_iso(fetched).is_some(),
        "{fetched}"
    );
    // Metrics: rows agree with the database; requests are counted by route and status.
    let m = s.metrics_text().await;
    let live = s
        .kit
        .count("SELECT COUNT(*) FROM notes WHERE deleted_at IS NULL");
    let line =
        format!("ghl_mirror_rows{{location=\"{LOC}\",table=\"notes\",state=\"live\"}} {live}");
    assert!(m.contains(&line), "{line} not in\n{m}");
    assert!(
        m.contains("ghl_mirror_http_requests_total{method=\"GET\",route=\"/contacts/{contact_id}\",status=\"200\"}"),
        "{m}"
    );
    assert!(
        m.contains("ghl_mirror_sync_last_success_timestamp_seconds{location="),
        "{m}"
    );
    assert!(
        m.contains("ghl_mirror_upstream_daily_quota_remaining{location="),
        "{m}"
    );
    assert!(m.trim_end().ends_with("# EOF"), "{m}");
    // A made-up method is counted, under "other": clients cannot add series at will.
    let odd = reqwest::Method::from_bytes(b"FROBNICATE").unwrap();
    s.call(&s.base, odd, "/health", None).await;
    let m = s.metrics_text().await;
    assert!(m.contains("method=\"other\""), "{m}");
    assert!(!m.contains("FROBNICATE"), "{m}");
}

#[tokio::test]
async fn freshness_is_per_location_and_never_before_a_first_sync() {
    let k = kit(10).await;
    assert_success(&k.sync(&k.client(), &opts()).await);
    k.store.ensure_location(LOC2, None).unwrap();
    let s = serve_kit(k, None).await;
    let id = s.ids()[0].clone();
    let synced = |a: &Answer| {
        a.headers["x-mirror-synced-at"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let a = s.local(&format!("/contacts/{id}")).await;
    assert!(ghl_mirror::model::ms_from_iso(&synced(&a)).is_some());
    let a = s.local(&format!("/contacts/?locationId={LOC2}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["count"], 0);
    assert_eq!(synced(&a), "never");
    assert!(a.headers.get("x-mirror-age-seconds").is_none());
    // A response about no single location reports the least fresh: one was never synced.
    assert_eq!(synced(&s.local("/health").await), "never");
}

#[tokio::test]
async fn a_token_guards_every_route_but_health() {
    let s = served_with_token(10, Some("local-secret-123")).await;
    let id = s.ids()[0].clone();
    let get = |path: String, token: Option<&'static str>| {
        let mut req = s.http.get(format!("{}{path}", s.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap() }
    };
    for path in [
        format!("/contacts/{id}"),
        "/mirror/status".into(),
        "/metrics".into(),
    ] {
        let r = get(path.clone(), None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "Unauthorized");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer")
        );
        let r = get(path.clone(), Some("wrong")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let r = get(path.clone(), Some("local-secret-123")).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(get("/health".into(), None).await.status(), StatusCode::OK);
}

#[test]
fn serving_beyond_loopback_needs_a_token() {
    use ghl_mirror::serve::check_exposure;
    let any: std::net::SocketAddr = "0.0.0.0:8484".parse().unwrap();
    let local: std::net::SocketAddr = "127.0.0.1:8484".parse().unwrap();
    let e = check_exposure(any, None, "GHL_MIRROR_API_TOKEN").unwrap_err();
    assert!(
        e.to_string().contains("export GHL_MIRROR_API_TOKEN="),
        "{e}"
    );
    let token = SecretString::from("t".to_string());
    assert!(check_exposure(any, Some(&token), "X").is_ok());
    assert!(check_exposure(local, None, "X").is_ok());
}

/// `ghl-mirror serve` as a user starts it, on a free port; killed on drop.
struct ServeProcess {
    child: std::process::Child,
    base: String,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve_cli(db: &std::path::Path, token: Option<&str>) -> ServeProcess {
    use std::io::BufRead;
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ghl-mirror"));
    c.arg("--db")
        .arg(db)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("GHL_MIRROR_CONFIG")
        .env_remove("GHL_MIRROR_API_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(t) = token {
        c.env("GHL_MIRROR_API_TOKEN", t);
    }
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stderr)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string();
    ServeProcess { child, base }
}

#[tokio::test]
async fn the_serve_command_is_open_on_loopback_without_a_token_and_closed_with_one() {
    let k = kit(15).await;
    assert_success(&k.sync(&k.client(), &opts()).await);
    let db = k.dir.path().join("mirror.db");
    let id = k.sandbox.live_contact_ids(LOC)[0].clone();
    let http = reqwest::Client::new();
    let open = serve_cli(&db, None).await;
    let r = http
        .get(format!("{}/contacts/{id}", open.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(open);
    let closed = serve_cli(&db, Some("s3cret-token")).await;
    let url = format!("{}/contacts/{id}", closed.base);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(&url)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Beyond loopback without a token: refused before listening.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ghl-mirror"))
        .arg("--db")
        .arg(&db)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("GHL_MIRROR_CONFIG")
        .env_remove("GHL_MIRROR_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("export GHL_MIRROR_API_TOKEN="), "{err}");
}
