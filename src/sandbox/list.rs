//! The deprecated legacy list, GET /contacts/: query validation, cursor
//! paging over (dateAdded, id) via `startAfter`/`startAfterId`, and the
//! `{contacts, count, meta, traceId}` body.

use std::ops::Bound;
use std::sync::Arc;

use serde_json::json;

use super::data::{Contact, Id, LocInfo};
use super::render::{ContactJson, write_contacts, write_json};
use super::store::{Key, Store};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// Validated legacy-list query parameters.
#[derive(Debug, Default)]
pub(super) struct ListQuery {
    pub location_id: String,
    pub limit: usize,
    pub start_after: Option<i64>,
    pub start_after_id: Option<String>,
    pub query: Option<String>,
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl ListQuery {
    /// Parses query parameters; `Err` holds 422 messages.
    pub fn parse(params: &[(String, String)]) -> Result<ListQuery, Vec<String>> {
        let mut errors = Vec::new();
        let location_id = param(params, "locationId").unwrap_or("").to_string();
        if location_id.is_empty() {
            errors.push("locationId should not be empty".to_string());
        }
        let limit = parse_limit(param(params, "limit"), &mut errors);
        let start_after = param(params, "startAfter").filter(|s| !s.is_empty());
        let start_after = start_after.and_then(|s| match s.parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errors.push(
                    "startAfter must be a number conforming to the specified constraints".into(),
                );
                None
            }
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.to_string());
        Ok(ListQuery {
            location_id,
            limit,
            start_after,
            start_after_id: param(params, "startAfterId").and_then(nonempty),
            query: param(params, "query")
                .and_then(nonempty)
                .map(|q| q.trim().to_lowercase()),
        })
    }
}

fn parse_limit(raw: Option<&str>, errors: &mut Vec<String>) -> usize {
    let Some(raw) = raw else {
        return DEFAULT_LIMIT;
    };
    match raw.trim().parse::<f64>() {
        Ok(n) if n > MAX_LIMIT as f64 => {
            errors.push(format!("limit must not be greater than {MAX_LIMIT}"))
        }
        Ok(n) if n < 1.0 => errors.push("limit must not be less than 1".into()),
        Ok(n) if n.fract() == 0.0 => return n as usize,
        _ => errors.push("limit must be a number conforming to the specified constraints".into()),
    }
    DEFAULT_LIMIT
}

/// One legacy page.
pub(super) struct ListPage {
    pub contacts: Vec<Arc<Contact>>,
    pub total: usize,
    /// Matching contacts at or before the cursor (for `currentPage`).
    pub before: usize,
    pub more: bool,
}

/// The exclusive start key for the cursor, if any.
fn cursor(store: &Store, q: &ListQuery) -> Option<Key> {
    let id = q.start_after_id.as_deref();
    match (q.start_after, id) {
        (Some(ms), Some(id)) => Some((ms, Id::padded(id).unwrap_or(Id::MAX))),
        (Some(ms), None) => Some((ms, Id::MAX)),
        (None, Some(id)) => {
            let c = store.get(&Id::parse(id)?)?;
            Some((c.date_added, c.id))
        }
        (None, None) => None,
    }
}

/// Runs a legacy list query against the latest contacts.
pub(super) fn run(store: &Store, q: &ListQuery) -> ListPage {
    let index = store.legacy_index();
    let keep = |k: &Key| -> Option<Arc<Contact>> {
        let c = store.get(&k.1)?;
        q.query
            .as_deref()
            .is_none_or(|n| c.matches_query(n))
            .then_some(c)
    };
    let total = match q.query {
        None => index.len(),
        Some(_) => index.iter().filter(|k| keep(k).is_some()).count(),
    };
    let start = cursor(store, q);
    let (lo, before) = match start {
        Some(key) => {
            let upto = index.range((Bound::Unbounded, Bound::Included(key)));
            (
                Bound::Excluded(key),
                upto.filter(|k| keep(k).is_some()).count(),
            )
        }
        None => (Bound::Unbounded, 0),
    };
    let mut contacts: Vec<Arc<Contact>> = index
        .range((lo, Bound::Unbounded))
        .filter_map(keep)
        .take(q.limit + 1)
        .collect();
    let more = contacts.len() > q.limit;
    contacts.truncate(q.limit);
    ListPage {
        contacts,
        total,
        before,
        more,
    }
}

/// Renders `{contacts, count, meta, traceId}`.
pub(super) fn body(
    page: &ListPage,
    q: &ListQuery,
    loc: &LocInfo,
    base_url: &str,
    trace_id: &str,
    broken: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + page.contacts.len() * 1500);
    out.push(b'{');
    let items = page.contacts.iter().map(|c| ContactJson {
        c,
        loc,
        search_after: None,
    });
    write_contacts(&mut out, items, broken);
    out.extend_from_slice(b",\"count\":");
    write_json(&mut out, &page.total);
    out.extend_from_slice(b",\"meta\":");
    write_json(&mut out, &meta(page, q, base_url));
    out.extend_from_slice(b",\"traceId\":");
    write_json(&mut out, &trace_id);
    out.push(b'}');
    out
}

fn meta(page: &ListPage, q: &ListQuery, base_url: &str) -> serde_json::Value {
    let current = page.before / q.limit.max(1) + 1;
    let last = page.contacts.last().filter(|_| page.more);
    let next_url = last.map(|c| next_page_url(base_url, q, c));
    json!({
        "total": page.total,
        "nextPageUrl": next_url,
        "startAfterId": last.map(|c| c.id.as_str().to_string()),
        "startAfter": last.map(|c| c.date_added),
        "currentPage": current,
        "nextPage": last.map(|_| current + 1),
        "prevPage": (current > 1).then(|| current - 1),
    })
}

fn next_page_url(base_url: &str, q: &ListQuery, last: &Contact) -> String {
    let mut qs = url::form_urlencoded::Serializer::new(String::new());
    qs.append_pair("locationId", &q.location_id);
    qs.append_pair("startAfter", &last.date_added.to_string());
    qs.append_pair("startAfterId", last.id.as_str());
    if q.limit != DEFAULT_LIMIT {
        qs.append_pair("limit", &q.limit.to_string());
    }
    if let Some(query) = &q.query {
        qs.append_pair("query", query);
    }
    format!("{base_url}/contacts/?{}", qs.finish())
}
