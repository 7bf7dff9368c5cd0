//! HighLevel's contact read paths, answered from the mirror with HighLevel's JSON shapes
//! (`../shared/ghl-api/apps/contacts.json`): a contact, its tasks, notes and appointments, the
//! legacy list, contacts by business, search and the duplicate lookup. Tombstoned contacts are never served; an
//! unknown id gets HighLevel's `400 Contact not found`.

use super::params::{self, BusinessParams, ListParams, QueryString};
use super::{Api, ApiError, ListFetched, PathOf, Scope, json_response};
use crate::model::SubKind;
use crate::model::query::{ContactQuery, Sort, SortField, SortValue};
use crate::store::{Hit, Store};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use indexmap::IndexMap;
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::Arc;

/// Keys the search result shape lacks (HighLevel omits `dndSettings` from search results).
const NOT_IN_SEARCH: [&str; 2] = ["searchAfter", "dndSettings"];
/// Keys only search results carry.
pub(super) const SEARCH_ONLY: [&str; 1] = ["searchAfter"];

/// A contact's stored JSON without `drop`, with `extra` appended. Key order is kept.
pub(super) fn reshape(raw: &str, drop: &[&str], extra: Option<(&str, Value)>) -> String {
    let present = drop.iter().any(|k| raw.contains(&format!("\"{k}\"")));
    if !present && extra.is_none() {
        return raw.to_string();
    }
    let Ok(mut map) = serde_json::from_str::<IndexMap<String, Box<RawValue>>>(raw) else {
        // Stored JSON always parses (it was parsed before it was stored); serve it as is.
        return raw.to_string();
    };
    for k in drop {
        map.shift_remove(*k);
    }
    if let Some((k, v)) = extra
        && let Ok(v) = serde_json::value::to_raw_value(&v)
    {
        map.insert(k.to_string(), v);
    }
    serde_json::to_string(&map).unwrap_or_else(|_| raw.to_string())
}

/// `{"<key>":[items...]}` (+ more fields) from already-rendered JSON items.
fn wrap_list<'a>(key: &str, items: impl Iterator<Item = &'a str>, tail: &str) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str("{\"");
    out.push_str(key);
    out.push_str("\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
    out.push_str(tail);
    out.push('}');
    out
}

fn ok(body: String, location: &str) -> Response {
    let mut resp = json_response(StatusCode::OK, body);
    resp.extensions_mut().insert(Scope(location.to_string()));
    resp
}

fn trace_id() -> String {
    let v: u128 = rand::random();
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn contact_missing() -> ApiError {
    ApiError::bad_request("Contact not found")
}

/// The location a request names must be one the mirror holds.
fn check_location(api: &Arc<Api>, location: &str) -> Result<(), ApiError> {
    if api.mirrored_locations().iter().any(|l| l == location) {
        return Ok(());
    }
    // The cached list may predate a sync that just added the location.
    let mirrored = api.store.location_ids()?;
    if mirrored.iter().any(|l| l == location) {
        return Ok(());
    }
    Err(ApiError::unknown_location(location, &mirrored))
}

/// The live contact's location, or HighLevel's 400.
fn live_location(api: &Api, q: &QueryString, contact_id: &str) -> Result<String, ApiError> {
    match api.store.contact(q.text("locationId"), contact_id)? {
        Some(c) => Ok(c.location_id),
        None => Err(contact_missing()),
    }
}

/// GET /contacts/:contactId → `{"contact":{...}}`.
pub(super) async fn contact(
    State(api): State<Arc<Api>>,
    PathOf(id): PathOf<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryString::parse(raw.as_deref());
    let c = api
        .store
        .contact(q.text("locationId"), &id)?
        .ok_or_else(contact_missing)?;
    let body = format!("{{\"contact\":{}}}", reshape(&c.raw, &SEARCH_ONLY, None));
    Ok(ok(body, &c.location_id))
}

async fn list_of(
    api: Arc<Api>,
    kind: SubKind,
    contact_id: String,
    raw: Option<String>,
) -> Result<Response, ApiError> {
    let q = QueryString::parse(raw.as_deref());
    let location = live_location(&api, &q, &contact_id)?;
    let list = api.store.list_of(kind, &location, &contact_id)?;
    let key = match kind {
        SubKind::Tasks => "tasks",
        SubKind::Notes => "notes",
        SubKind::Appointments => "events",
    };
    let body = wrap_list(key, list.items.iter().map(String::as_str), "");
    let mut resp = ok(body, &location);
    resp.extensions_mut().insert(ListFetched(list.fetched_at));
    Ok(resp)
}

async fn one_of(
    api: Arc<Api>,
    kind: SubKind,
    contact_id: String,
    id: String,
    raw: Option<String>,
) -> Result<Response, ApiError> {
    let q = QueryString::parse(raw.as_deref());
    let location = live_location(&api, &q, &contact_id)?;
    let (key, missing) = match kind {
        SubKind::Tasks => ("task", "Task not found"),
        SubKind::Notes => ("note", "Note not found"),
        SubKind::Appointments => ("event", "Event not found"),
    };
    let item = api
        .store
        .one_of(kind, &location, &contact_id, &id)?
        .ok_or_else(|| ApiError::bad_request(missing))?;
    Ok(ok(format!("{{\"{key}\":{item}}}"), &location))
}

/// GET /contacts/search/duplicate?locationId=&email=&number= → `{"contact":{...}}`, or
/// `{"contact":null}` when no live contact has the email (case-insensitive) or, failing that, the
/// phone number (in any format). Email wins when both are given, as HighLevel's spec says.
pub(super) async fn duplicate(
    State(api): State<Arc<Api>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryString::parse(raw.as_deref());
    let mut errors = Vec::new();
    let location = q.location(&mut errors);
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors));
    }
    check_location(&api, &location)?;
    let (email, number) = (
        q.text("email").map(str::to_string),
        q.text("number").map(str::to_string),
    );
    let loc = location.clone();
    let found = api
        .heavy(move |store| {
            Ok(store.duplicate_contact(&loc, email.as_deref(), number.as_deref())?)
        })
        .await?;
    let body = match found {
        Some(raw) => format!("{{\"contact\":{}}}", reshape(&raw, &SEARCH_ONLY, None)),
        None => "{\"contact\":null}".to_string(),
    };
    Ok(ok(body, &location))
}

/// GET /contacts/:contactId/tasks → `{"tasks":[...]}`.
pub(super) async fn tasks(
    State(api): State<Arc<Api>>,
    PathOf(contact): PathOf<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    list_of(api, SubKind::Tasks, contact, raw).await
}

/// GET /contacts/:contactId/tasks/:taskId → `{"task":{...}}`.
pub(super) async fn task(
    State(api): State<Arc<Api>>,
    PathOf((contact, id)): PathOf<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    one_of(api, SubKind::Tasks, contact, id, raw).await
}

/// GET /contacts/:contactId/notes → `{"notes":[...]}`.
pub(super) async fn notes(
    State(api): State<Arc<Api>>,
    PathOf(contact): PathOf<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    list_of(api, SubKind::Notes, contact, raw).await
}

/// GET /contacts/:contactId/notes/:id → `{"note":{...}}`.
pub(super) async fn note(
    State(api): State<Arc<Api>>,
    PathOf((contact, id)): PathOf<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    one_of(api, SubKind::Notes, contact, id, raw).await
}

/// GET /contacts/:contactId/appointments → `{"events":[...]}`.
pub(super) async fn appointments(
    State(api): State<Arc<Api>>,
    PathOf(contact): PathOf<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    list_of(api, SubKind::Appointments, contact, raw).await
}

/// The sort values of a hit and its id, as the `searchAfter` array.
fn search_after(hit: &Hit) -> Value {
    let mut v: Vec<Value> = hit
        .sort_values
        .iter()
        .map(|s| match s {
            SortValue::Ms(ms) => Value::from(*ms),
            SortValue::Text(t) => Value::from(t.as_str()),
            SortValue::Null => Value::Null,
        })
        .collect();
    v.push(Value::from(hit.id.as_str()));
    Value::Array(v)
}

/// POST /contacts/search → `{"contacts":[...],"total":N,"traceId":"..."}`.
pub(super) async fn search(
    State(api): State<Arc<Api>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(ApiError::from)?;
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid JSON ({e}); send a JSON object such as {{\"locationId\":\"...\",\"pageLimit\":100}}"
        ))
    })?;
    let q = params::search_body(&body)?;
    check_location(&api, &q.location)?;
    let location = q.location.clone();
    let page = api.heavy(move |s| Ok(s.search_contacts(&q)?)).await?;
    let items: Vec<String> = page
        .hits
        .iter()
        .map(|h| {
            reshape(
                &h.raw,
                &NOT_IN_SEARCH,
                Some(("searchAfter", search_after(h))),
            )
        })
        .collect();
    let tail = format!(",\"total\":{},\"traceId\":\"{}\"", page.total, trace_id());
    let body = wrap_list("contacts", items.iter().map(String::as_str), &tail);
    Ok(ok(body, &location))
}

/// GET /contacts/ (deprecated legacy list) → `{"contacts":[...],"count":N,"meta":{...},"traceId"}`,
/// oldest first by (dateAdded, id), paged by `startAfter` + `startAfterId`.
pub(super) async fn list(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = ListParams::parse(&QueryString::parse(raw.as_deref()))?;
    check_location(&api, &p.location)?;
    let base = base_url(&headers);
    api.heavy(move |s| legacy_page(s, &p, &base)).await
}

/// The base URL clients reached us by, for `meta.nextPageUrl`.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// The largest string id: `startAfter` alone means "after every contact added at that ms".
const AFTER_EVERY_ID: &str = "\u{10FFFF}";

fn legacy_page(store: &Store, p: &ListParams, base: &str) -> Result<Response, ApiError> {
    let after = match (p.start_after, &p.start_after_id) {
        (Some(ms), Some(id)) => Some((ms, id.clone())),
        (Some(ms), None) => Some((ms, AFTER_EVERY_ID.to_string())),
        (None, Some(id)) => store
            .contact_added_ms(&p.location, id)?
            .map(|ms| (ms, id.clone())),
        (None, None) => None,
    }
    .map(|(ms, id)| (vec![SortValue::Ms(ms)], id));
    let mut q = ContactQuery::all(&p.location, p.limit + 1);
    q.sort = vec![Sort {
        field: SortField::DateAdded,
        desc: false,
    }];
    q.text = p.query.clone();
    q.after = after;
    let (mut hits, total, remaining) = store.page_with_counts(&q)?;
    let more = hits.len() > p.limit;
    hits.truncate(p.limit);
    let before = total - remaining.min(total);
    let current = before / p.limit.max(1) as u64 + 1;
    let last = hits.last().filter(|_| more);
    let last_ms = last.and_then(|h| match h.sort_values.first() {
        Some(SortValue::Ms(ms)) => Some(*ms),
        _ => None,
    });
    let next_url = last.map(|h| {
        let mut qs = url::form_urlencoded::Serializer::new(String::new());
        qs.append_pair("locationId", &p.location);
        qs.append_pair("startAfter", &last_ms.unwrap_or_default().to_string());
        qs.append_pair("startAfterId", &h.id);
        if p.limit as u64 != params::LIST_DEFAULT_LIMIT {
            qs.append_pair("limit", &p.limit.to_string());
        }
        if let Some(query) = &p.query {
            qs.append_pair("query", query);
        }
        format!("{base}/contacts/?{}", qs.finish())
    });
    let meta = serde_json::json!({
        "total": total,
        "nextPageUrl": next_url,
        "startAfterId": last.map(|h| h.id.as_str()),
        "startAfter": last_ms,
        "currentPage": current,
        "nextPage": last.map(|_| current + 1),
        "prevPage": (current > 1).then(|| current - 1),
    });
    let items: Vec<String> = hits
        .iter()
        .map(|h| reshape(&h.raw, &SEARCH_ONLY, None))
        .collect();
    let tail = format!(
        ",\"count\":{total},\"meta\":{meta},\"traceId\":\"{}\"",
        trace_id()
    );
    let body = wrap_list("contacts", items.iter().map(String::as_str), &tail);
    Ok(ok(body, &p.location))
}

/// GET /contacts/business/:businessId → `{"contacts":[...],"count":N}`, oldest first.
pub(super) async fn by_business(
    State(api): State<Arc<Api>>,
    PathOf(business): PathOf<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = BusinessParams::parse(&QueryString::parse(raw.as_deref()))?;
    check_location(&api, &p.location)?;
    let location = p.location.clone();
    let (raws, count) = api
        .heavy(move |s| {
            Ok(s.business_contacts(&p.location, &business, p.query.as_deref(), p.skip, p.limit)?)
        })
        .await?;
    let items: Vec<String> = raws
        .iter()
        .map(|r| reshape(r, &SEARCH_ONLY, None))
        .collect();
    let tail = format!(",\"count\":{count}");
    let body = wrap_list("contacts", items.iter().map(String::as_str), &tail);
    Ok(ok(body, &location))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshaping_drops_keys_keeps_order_and_appends() {
        let raw = r#"{"id":"a","searchAfter":[1,"a"],"dndSettings":{},"name":"Ann"}"#;
        assert_eq!(
            reshape(
                raw,
                &NOT_IN_SEARCH,
                Some(("searchAfter", serde_json::json!([2, "a"])))
            ),
            r#"{"id":"a","name":"Ann","searchAfter":[2,"a"]}"#
        );
        assert_eq!(
            reshape(raw, &SEARCH_ONLY, None),
            r#"{"id":"a","dndSettings":{},"name":"Ann"}"#
        );
        let plain = r#"{"id":"b"}"#;
        assert_eq!(reshape(plain, &SEARCH_ONLY, None), plain);
    }
}
