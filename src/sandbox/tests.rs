//! In-module tests of the sandbox: seeded data properties, and the HTTP
//! surface (paging, errors, limits, faults, churn, search lag) over real
//! loopback connections.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::data::Id;
use super::render::ContactJson;
use super::store::Store;
use super::*;

pub(super) const LOC: &str = "sandboxLocation00001";
pub(super) const TOKEN: &str = "pit-sandbox-token-1";
pub(super) const LOC2: &str = "otherLocation0000002";
pub(super) const TOKEN2: &str = "pit-sandbox-token-2";

pub(super) fn two_locations(contacts: usize) -> SandboxConfig {
    let seed = |id: &str, token: &str, contacts| LocationSeed {
        id: id.into(),
        token: token.into(),
        contacts,
    };
    SandboxConfig::new(7, vec![seed(LOC, TOKEN, contacts), seed(LOC2, TOKEN2, 50)])
}

pub(super) async fn start(config: SandboxConfig) -> Sandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Sandbox::start(config, listener).await.unwrap()
}

fn rendered(store: &Store, id: &Id) -> Value {
    let c = store.get(id).unwrap();
    serde_json::to_value(ContactJson {
        c: &c,
        loc: &store.info,
        search_after: None,
    })
    .unwrap()
}

#[test]
fn seeded_data_is_deterministic_with_ties_unicode_and_nulls() {
    let a = Store::generate(9, LOC, 2600, Duration::ZERO, SubresourceMix::default());
    let b = Store::generate(9, LOC, 2600, Duration::ZERO, SubresourceMix::default());
    let ids = a.live_ids();
    assert_eq!(ids.len(), 2600);
    assert_eq!(ids, b.live_ids());
    let all: Vec<Value> = ids
        .iter()
        .map(|s| rendered(&a, &Id::parse(s).unwrap()))
        .collect();
    for (s, v) in ids.iter().zip(&all).take(50) {
        assert_eq!(v, &rendered(&b, &Id::parse(s).unwrap()));
    }
    let mut per_updated: HashMap<&str, usize> = HashMap::new();
    for v in &all {
        *per_updated
            .entry(v["dateUpdated"].as_str().unwrap())
            .or_default() += 1;
    }
    assert!(
        per_updated.values().any(|n| *n >= 1200),
        "an import batch ties 1200 dateUpdated"
    );
    let has = |f: &dyn Fn(&Value) -> bool| all.iter().any(f);
    assert!(has(&|v| v["name"].as_str().is_some_and(|n| !n.is_ascii())));
    assert!(has(&|v| v["companyName"]
        .as_str()
        .is_some_and(|n| n.contains('🚀'))));
    assert!(has(&|v| v.get("email") == Some(&Value::Null)));
    assert!(has(&|v| v.get("email").is_none()));
    assert!(has(&|v| v.get("companyName") == Some(&Value::Null)));
    assert!(has(&|v| v.get("dndSettings").is_some()));
    assert!(has(
        &|v| v.get("additionalEmails").is_some() && v.get("validEmail").is_some()
    ));
    assert!(has(&|v| v["customFields"]
        .as_array()
        .is_some_and(|c| !c.is_empty())));
    assert!(all.iter().all(|v| v["id"].as_str().unwrap().len() == 20));
    assert!(
        all.iter()
            .all(|v| v["dateUpdated"].as_str() >= v["dateAdded"].as_str())
    );
    assert_eq!(all[0]["dateAdded"].as_str().unwrap().len(), 24);
}

pub(super) struct Client {
    pub http: reqwest::Client,
    pub base: String,
    token: String,
}

impl Client {
    pub fn new(sb: &Sandbox, token: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: sb.base_url(),
            token: token.into(),
        }
    }

    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let resp = req
            .bearer_auth(&self.token)
            .header("Version", VERSION_HEADER_VALUE)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, resp.json().await.unwrap(), headers)
    }

    pub async fn search(&self, body: Value) -> (u16, Value) {
        let req = self
            .http
            .post(format!("{}/contacts/search", self.base))
            .json(&body);
        let (s, v, _) = self.send(req).await;
        (s, v)
    }

    pub async fn get_url(&self, url: &str) -> (u16, Value) {
        let (s, v, _) = self.send(self.http.get(url)).await;
        (s, v)
    }
}

/// Pages through a search with searchAfter; returns (ids, sort values, totals).
async fn page_all(c: &Client, base: Value, limit: usize) -> (Vec<String>, Vec<i64>, Vec<u64>) {
    let (mut ids, mut keys, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    let mut after: Option<Value> = None;
    loop {
        let mut body = base.clone();
        body["pageLimit"] = json!(limit);
        if let Some(a) = &after {
            body["searchAfter"] = a.clone();
        }
        let (status, v) = c.search(body).await;
        assert_eq!(status, 200, "{v}");
        totals.push(v["total"].as_u64().unwrap());
        let page = v["contacts"].as_array().unwrap();
        for item in page {
            assert!(item.get("dndSettings").is_none());
            ids.push(item["id"].as_str().unwrap().to_string());
            keys.push(item["searchAfter"][0].as_i64().unwrap());
        }
        if page.len() < limit {
            return (ids, keys, totals);
        }
        after = Some(page[page.len() - 1]["searchAfter"].clone());
    }
}

fn assert_once(ids: &[String], expected: &[String]) {
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "no duplicates");
    let mut sorted = ids.to_vec();
    sorted.sort();
    assert_eq!(sorted, expected);
}

#[tokio::test]
async fn search_after_pages_every_contact_once_both_directions() {
    let sb = start(two_locations(2600)).await;
    let c = Client::new(&sb, TOKEN);
    let live = sb.live_contact_ids(LOC);
    for dir in ["asc", "desc"] {
        let base = json!({
            "locationId": LOC,
            "filters": [{"field": "dateUpdated", "operator": "range", "value": {"gte": "2020-01-01T00:00:00.000Z"}}],
            "sort": [{"field": "dateUpdated", "direction": dir}],
        });
        let (ids, keys, totals) = page_all(&c, base, 100).await;
        assert_once(&ids, &live);
        assert!(totals.iter().all(|t| *t == 2600));
        let ordered = keys.windows(2).all(|w| {
            if dir == "asc" {
                w[0] <= w[1]
            } else {
                w[0] >= w[1]
            }
        });
        assert!(ordered, "{dir} order");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn search_range_scan_and_full_scan_agree() {
    let sb = start(two_locations(1500)).await;
    let c = Client::new(&sb, TOKEN);
    let cut = 1_704_067_200_000_i64; // 2024-01-01
    let range = json!([{"field": "dateUpdated", "operator": "range", "value": {"gt": cut}}]);
    let base = json!({"locationId": LOC, "filters": range, "sort": [{"field": "dateUpdated", "direction": "asc"}]});
    let (fast, keys, _) = page_all(&c, base, 500).await;
    assert!(keys.iter().all(|k| *k > cut));
    let mut filters = range.as_array().unwrap().clone();
    filters.push(json!({"group": "OR", "filters": [
        {"field": "dnd", "operator": "eq", "value": true},
        {"field": "dnd", "operator": "eq", "value": false}]}));
    let base = json!({"locationId": LOC, "filters": filters, "sort": [{"field": "dateUpdated", "direction": "asc"}]});
    let (slow, _, _) = page_all(&c, base, 77).await;
    assert_eq!(fast, slow);
    let (s, v) = c.search(json!({"locationId": LOC, "pageLimit": 10, "page": 2,
        "sort": [{"field": "firstName", "direction": "desc"}, {"field": "dateAdded", "direction": "asc"}]})).await;
    assert_eq!((s, v["contacts"].as_array().unwrap().len()), (200, 10));
    assert_eq!(v["contacts"][0]["searchAfter"].as_array().unwrap().len(), 3);
    assert_eq!(v["total"], 1500);
    assert!(v["traceId"].as_str().unwrap().len() == 36);
    sb.shutdown().await;
}

#[tokio::test]
async fn filters_and_query() {
    let sb = start(two_locations(800)).await;
    let c = Client::new(&sb, TOKEN);
    let (_, v) = c
        .search(json!({"locationId": LOC, "pageLimit": 500,
        "filters": [{"field": "tags", "operator": "eq", "value": "vip"}]}))
        .await;
    let hits = v["contacts"].as_array().unwrap();
    assert!(!hits.is_empty());
    assert!(
        hits.iter()
            .all(|h| h["tags"].as_array().unwrap().contains(&json!("vip")))
    );
    let (_, v) = c
        .search(json!({"locationId": LOC, "pageLimit": 500, "query": "ROCKET"}))
        .await;
    let hits = v["contacts"].as_array().unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| {
        h["companyName"].as_str().unwrap_or("").contains("Rocket")
            || h["name"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()
                .contains("rocket")
    }));
    let (s, v) = c
        .search(json!({"locationId": LOC, "pageLimit": 5,
        "filters": [{"field": "shoeSize", "operator": "eq", "value": 3}]}))
        .await;
    assert_eq!(s, 422);
    assert!(v["message"][0].as_str().unwrap().contains("shoeSize"));
    let (s, v) = c
        .search(json!({"locationId": LOC, "pageLimit": 5,
        "filters": [{"field": "email", "operator": "like", "value": "x"}]}))
        .await;
    assert_eq!(s, 422);
    assert!(v["message"][0].as_str().unwrap().contains("like"));
    sb.shutdown().await;
}

#[tokio::test]
async fn legacy_list_pages_every_contact_once() {
    let sb = start(two_locations(1400)).await;
    let c = Client::new(&sb, TOKEN);
    let mut url = format!("{}/contacts/?locationId={LOC}&limit=100", sb.base_url());
    let (mut ids, mut keys) = (Vec::new(), Vec::new());
    let mut pages = 0;
    loop {
        let (s, v) = c.get_url(&url).await;
        assert_eq!(s, 200, "{v}");
        pages += 1;
        assert_eq!(v["count"], 1400);
        assert_eq!(v["meta"]["currentPage"], pages);
        for item in v["contacts"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_string());
            keys.push((
                item["dateAdded"].as_str().unwrap().to_string(),
                ids[ids.len() - 1].clone(),
            ));
            assert!(item.get("locationId").is_some());
        }
        let meta = &v["meta"];
        if meta["nextPageUrl"].is_null() {
            assert!(
                meta["startAfterId"].is_null()
                    && meta["startAfter"].is_null()
                    && meta["nextPage"].is_null()
            );
            break;
        }
        url = format!(
            "{}/contacts/?locationId={LOC}&limit=100&startAfter={}&startAfterId={}",
            sb.base_url(),
            meta["startAfter"],
            meta["startAfterId"].as_str().unwrap()
        );
    }
    assert_once(&ids, &sb.live_contact_ids(LOC));
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(pages, 14);
    let (s, v) = c
        .get_url(&format!(
            "{}/contacts/?locationId={LOC}&limit=101",
            sb.base_url()
        ))
        .await;
    assert_eq!(
        (s, v),
        (
            422,
            json!({"statusCode":422,"message":["limit must not be greater than 100"],"error":"Unprocessable Entity"})
        )
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn auth_version_location_and_not_found_errors() {
    let sb = start(two_locations(20)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/contacts/?locationId={LOC}", sb.base_url());
    let r = http
        .get(&url)
        .header("Version", VERSION_HEADER_VALUE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-ratelimit-remaining"));
    let unauthorized = json!({"statusCode":401,"message":"Invalid token: access token is invalid","error":"Unauthorized"});
    assert_eq!(r.json::<Value>().await.unwrap(), unauthorized);
    let r = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"statusCode":400,"message":"Version header was not found"})
    );
    let r = http
        .get(&url)
        .bearer_auth(TOKEN)
        .header("Version", "2020-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let c2 = Client::new(&sb, TOKEN2);
    let forbidden =
        json!({"statusCode":403,"message":"The token does not have access to this location."});
    assert_eq!(c2.get_url(&url).await, (403, forbidden.clone()));
    assert_eq!(
        c2.search(json!({"locationId": LOC, "pageLimit": 1})).await,
        (403, forbidden.clone())
    );
    let id = &sb.live_contact_ids(LOC)[0];
    assert_eq!(
        c2.get_url(&format!("{}/contacts/{id}", sb.base_url()))
            .await,
        (403, forbidden)
    );
    let c = Client::new(&sb, TOKEN);
    let (s, v) = c.get_url(&format!("{}/contacts/{id}", sb.base_url())).await;
    assert_eq!(s, 200);
    assert_eq!(Some(v["contact"].clone()), sb.contact_json(LOC, id));
    let missing = json!({"statusCode":400,"message":"Contact not found"});
    assert_eq!(
        c.get_url(&format!("{}/contacts/nope", sb.base_url())).await,
        (400, missing)
    );
    let (s, v) = c.get_url(&format!("{}/nowhere", sb.base_url())).await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"statusCode":404,"message":"Cannot GET /nowhere","error":"Not Found"})
        )
    );
    sb.revoke_token(LOC);
    assert_eq!(c.get_url(&url).await, (401, unauthorized));
    sb.shutdown().await;
}

#[tokio::test]
async fn search_validation_422_and_bad_json() {
    let sb = start(two_locations(20)).await;
    let c = Client::new(&sb, TOKEN);
    let (s, v) = c.search(json!({})).await;
    assert_eq!(s, 422);
    let msgs = v["message"].as_array().unwrap();
    assert!(
        msgs.iter()
            .any(|m| m.as_str().unwrap().starts_with("locationId"))
    );
    assert!(
        msgs.iter()
            .any(|m| m.as_str().unwrap().starts_with("pageLimit"))
    );
    let (s, v) = c.search(json!({"locationId": LOC, "pageLimit": 501})).await;
    assert_eq!(
        (s, &v["message"]),
        (422, &json!(["pageLimit must not be greater than 500"]))
    );
    let (s, _) = c.search(json!({"locationId": LOC, "pageLimit": 0})).await;
    assert_eq!(s, 422);
    let (s, v) = c
        .search(json!({"locationId": LOC, "pageLimit": 500, "page": 21}))
        .await;
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("searchAfter"));
    let req = c
        .http
        .post(format!("{}/contacts/search", sb.base_url()))
        .body("{nope");
    let (s, v, _) = c.send(req.header("Content-Type", "application/json")).await;
    assert_eq!((s, &v["error"]), (400, &json!("Bad Request")));
    sb.shutdown().await;
}

#[tokio::test]
async fn burst_limit_gives_429_and_headers() {
    let mut config = two_locations(20);
    config.limits = Some(RateLimits {
        burst_max: 5,
        interval: Duration::from_secs(2),
        daily_max: 1000,
    });
    let sb = start(config).await;
    let c = Client::new(&sb, TOKEN);
    let url = format!("{}/contacts/?locationId={LOC}&limit=1", sb.base_url());
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let (s, v, h) = c.send(c.http.get(&url)).await;
        if s == 429 {
            assert_eq!(v, json!({"statusCode":429,"message":"Too Many Requests"}));
        }
        assert_eq!(h["x-ratelimit-max"], "5");
        assert_eq!(h["x-ratelimit-interval-milliseconds"], "2000");
        statuses.push(s);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    let st = sb.stats(LOC);
    assert_eq!(
        (
            st.requests,
            st.list_requests,
            st.rate_limited,
            st.max_in_window
        ),
        (7, 7, 2, 7)
    );
    sb.set_daily_remaining(LOC2, 0);
    let c2 = Client::new(&sb, TOKEN2);
    let url2 = format!("{}/contacts/?locationId={LOC2}", sb.base_url());
    let (s, _, h) = c2.send(c2.http.get(&url2)).await;
    assert_eq!(
        (s, h["x-ratelimit-daily-remaining"].to_str().unwrap()),
        (429, "0")
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn faults_and_malformed_pages() {
    let sb = start(two_locations(30)).await;
    let c = Client::new(&sb, TOKEN);
    let body = json!({"locationId": LOC, "pageLimit": 20});
    sb.break_next_pages(1);
    let (s, v) = c.search(body.clone()).await;
    assert_eq!(s, 200);
    assert!(
        v["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| !x.is_object())
    );
    assert!(
        c.search(body.clone()).await.1["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_object)
    );
    sb.set_faults(Faults {
        server_error: 1.0,
        ..Faults::default()
    });
    let (s, v) = c.search(body.clone()).await;
    assert_eq!((s, &v["statusCode"]), (500, &json!(500)));
    assert_eq!(c.search(body.clone()).await.0, 502);
    sb.set_faults(Faults {
        rate_limit_storm: 1.0,
        storm_len: 2,
        ..Faults::default()
    });
    assert_eq!(c.search(body.clone()).await.0, 429);
    sb.set_faults(Faults::default());
    assert_eq!(c.search(body.clone()).await.0, 429, "storm continues");
    assert_eq!(c.search(body.clone()).await.0, 429);
    assert_eq!(c.search(body.clone()).await.0, 200);
    sb.set_faults(Faults {
        truncated: 1.0,
        ..Faults::default()
    });
    let resp = c
        .http
        .post(format!("{}/contacts/search", sb.base_url()))
        .bearer_auth(TOKEN)
        .header("Version", VERSION_HEADER_VALUE)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "truncated body must fail");
    let st = sb.stats(LOC);
    assert_eq!((st.server_errors, st.rate_limited), (2, 3));
    sb.shutdown().await;
}

#[tokio::test]
async fn churn_is_visible_to_get_list_and_search() {
    let sb = start(two_locations(300)).await;
    let c = Client::new(&sb, TOKEN);
    let since = super::time_fmt::now_ms() - 1;
    let report = sb.churn(LOC, 3, 4, 2);
    assert_eq!(
        (
            report.created.len(),
            report.updated.len(),
            report.deleted.len()
        ),
        (3, 4, 2)
    );
    assert_eq!(sb.live_contact_ids(LOC).len(), 301);
    for id in &report.deleted {
        assert_eq!(
            c.get_url(&format!("{}/contacts/{id}", sb.base_url()))
                .await
                .0,
            400
        );
    }
    let (_, v) = c
        .search(json!({"locationId": LOC, "pageLimit": 100,
        "filters": [{"field": "dateUpdated", "operator": "range", "value": {"gte": since}}],
        "sort": [{"field": "dateUpdated", "direction": "asc"}]}))
        .await;
    let got: HashSet<String> = v["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    let want: HashSet<String> = report
        .created
        .iter()
        .chain(&report.updated)
        .cloned()
        .collect();
    assert_eq!(got, want);
    sb.shutdown().await;
}

#[tokio::test]
async fn search_lag_hides_fresh_updates() {
    let mut config = two_locations(100);
    config.search_lag = Duration::from_millis(300);
    let sb = start(config).await;
    let c = Client::new(&sb, TOKEN);
    let id = sb.live_contact_ids(LOC)[5].clone();
    let before = sb.contact_json(LOC, &id).unwrap();
    assert!(sb.update_contact(LOC, &id));
    let after = sb.contact_json(LOC, &id).unwrap();
    assert_ne!(before["dateUpdated"], after["dateUpdated"]);
    let query = json!({"locationId": LOC, "pageLimit": 5,
        "filters": [{"field": "id", "operator": "eq", "value": id}]});
    let (_, v) = c.search(query.clone()).await;
    assert_eq!(
        v["contacts"][0]["dateUpdated"], before["dateUpdated"],
        "old version still searched"
    );
    let (_, g) = c.get_url(&format!("{}/contacts/{id}", sb.base_url())).await;
    assert_eq!(g["contact"]["dateUpdated"], after["dateUpdated"]);
    let gone = sb.live_contact_ids(LOC)[6].clone();
    assert!(sb.delete_contact(LOC, &gone));
    let fresh = sb.create_contact(LOC);
    let ids_query = json!({"locationId": LOC, "pageLimit": 5,
        "filters": [{"field": "id", "operator": "eq", "value": [gone, fresh]}]});
    let (_, v) = c.search(ids_query.clone()).await;
    assert_eq!(
        v["contacts"][0]["id"],
        json!(gone),
        "deleted still searchable, new not yet"
    );
    assert_eq!(v["total"], 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (_, v) = c.search(query).await;
    assert_eq!(v["contacts"][0]["dateUpdated"], after["dateUpdated"]);
    let (_, v) = c.search(ids_query).await;
    assert_eq!(
        (&v["contacts"][0]["id"], &v["total"]),
        (&json!(fresh), &json!(1))
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn latency_does_not_serialize_concurrent_clients() {
    let mut config = two_locations(50);
    config.latency = Duration::from_millis(100);
    let sb = start(config).await;
    let started = std::time::Instant::now();
    let calls = (0..4).map(|_| {
        let c = Client::new(&sb, TOKEN);
        async move {
            c.search(json!({"locationId": LOC, "pageLimit": 10}))
                .await
                .0
        }
    });
    let statuses = futures::future::join_all(calls).await;
    assert_eq!(statuses, [200; 4]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(300),
        "{took:?}"
    );
    sb.set_latency(Duration::ZERO);
    sb.set_faults(Faults {
        timeout: 1.0,
        timeout_delay: Duration::from_millis(60),
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let (s, _) = Client::new(&sb, TOKEN)
        .search(json!({"locationId": LOC, "pageLimit": 1}))
        .await;
    assert!(s == 200 && started.elapsed() >= Duration::from_millis(60));
    sb.shutdown().await;
}

/// A spec schema's fields: (name, type) with type `string`, `number`, `boolean`, `array`,
/// `string[]` or `object`.
pub(super) type Fields = &'static [(&'static str, &'static str)];

/// Every field of `v` is in the spec with the spec's type (`nullable`: null is allowed for an
/// optional field); `required` fields are present (and non-null when `nullable`).
pub(super) fn check_shape(v: &Value, fields: Fields, required: &[&str], nullable: bool) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    for (k, x) in obj {
        let ty = fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|f| f.1)
            .unwrap_or_else(|| panic!("{k} is not a spec field: {v}"));
        let ok = match ty {
            _ if nullable && x.is_null() => !required.contains(&k.as_str()),
            "string" => x.is_string(),
            "number" => x.is_number(),
            "boolean" => x.is_boolean(),
            "array" => x.is_array(),
            "string[]" => x.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            "object" => x.is_object(),
            _ => false,
        };
        assert!(ok, "{k} should be a {ty}: {v}");
    }
    for r in required {
        assert!(
            obj.get(*r).is_some_and(|x| !nullable || !x.is_null()),
            "{r} missing: {v}"
        );
    }
}
