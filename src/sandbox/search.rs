//! POST /contacts/search: body validation (`SearchQuery::parse`), sort keys
//! and `searchAfter` cursors with Elasticsearch-like "strictly after"
//! semantics, and execution against a location's lagged search view
//! (ordered-index range scan for date sorts, full scan otherwise).

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::data::{Contact, Id, LocInfo};
use super::filter::{Field, Filter, Op, Range, parse_filters};
use super::store::{Key, Store};
use super::time_fmt::ms_from_json;

/// `pageLimit` upper bound.
pub(super) const MAX_PAGE_LIMIT: u64 = 500;
/// Deepest record reachable with `page` + `pageLimit`.
pub(super) const MAX_WINDOW: u64 = 10_000;
/// `query` length limit.
const MAX_QUERY_CHARS: usize = 75;

/// One sort value in a `searchAfter` array.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub(super) enum SortVal {
    Num(i64),
    Str(String),
    Null,
}

/// A sortable field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SortField {
    DateAdded,
    DateUpdated,
    FirstName,
    LastName,
    Email,
    CompanyName,
}

/// One `sort` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SortKey {
    pub field: SortField,
    pub desc: bool,
}

/// Why a search body was rejected.
#[derive(Debug, PartialEq)]
pub(super) enum Invalid {
    /// 422 with class-validator-style messages.
    Unprocessable(Vec<String>),
    /// 400 with one message.
    BadRequest(String),
}

/// A validated search request.
#[derive(Debug)]
pub(super) struct SearchQuery {
    pub page_limit: usize,
    pub offset: usize,
    pub cursor: Option<(Vec<SortVal>, Id)>,
    pub filters: Vec<Filter>,
    pub sort: Vec<SortKey>,
    pub query: Option<String>,
}

/// The `locationId` of a body, if it is a string.
pub(super) fn body_location(body: &Value) -> Option<&str> {
    body.get("locationId").and_then(Value::as_str)
}

impl SearchQuery {
    /// Validates a search body.
    pub fn parse(body: &Value) -> Result<SearchQuery, Invalid> {
        let empty = Map::new();
        let obj = body.as_object().unwrap_or(&empty);
        let mut errors = Vec::new();
        check_location_field(obj, &mut errors);
        let page_limit = int_field(obj, "pageLimit", true, MAX_PAGE_LIMIT, &mut errors);
        let page = int_field(obj, "page", false, u64::MAX, &mut errors);
        let query = query_field(obj, &mut errors);
        let sort = obj.get("sort").map(parse_sort).unwrap_or(Ok(Vec::new()));
        let sort = sort.unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        });
        let filters = match obj.get("filters") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => parse_filters(v, "filters").unwrap_or_else(|e| {
                errors.push(e);
                Vec::new()
            }),
        };
        if !errors.is_empty() {
            return Err(Invalid::Unprocessable(errors));
        }
        let sort = if sort.is_empty() {
            default_sort()
        } else {
            sort
        };
        let cursor = match obj.get("searchAfter") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_cursor(v, &sort).map_err(|e| Invalid::Unprocessable(vec![e]))?),
        };
        let page_limit = page_limit.unwrap_or(1);
        let offset = if cursor.is_some() {
            0
        } else {
            page_offset(page, page_limit)?
        };
        Ok(SearchQuery {
            page_limit: usize::try_from(page_limit).unwrap_or(1),
            offset,
            cursor,
            filters,
            sort,
            query,
        })
    }
}

fn default_sort() -> Vec<SortKey> {
    vec![SortKey {
        field: SortField::DateAdded,
        desc: true,
    }]
}

fn check_location_field(obj: &Map<String, Value>, errors: &mut Vec<String>) {
    match obj.get("locationId") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::String(_)) => errors.push("locationId should not be empty".into()),
        None | Some(Value::Null) => {
            errors.push("locationId should not be empty".into());
            errors.push("locationId must be a string".into());
        }
        Some(_) => errors.push("locationId must be a string".into()),
    }
}

/// An integer field in 1..=max (messages as class-validator words them).
fn int_field(
    obj: &Map<String, Value>,
    name: &str,
    required: bool,
    max: u64,
    errors: &mut Vec<String>,
) -> Option<u64> {
    let v = match obj.get(name) {
        None | Some(Value::Null) if !required => return None,
        None | Some(Value::Null) => {
            errors.push(format!(
                "{name} must be a number conforming to the specified constraints"
            ));
            errors.push(format!("{name} must not be less than 1"));
            return None;
        }
        Some(v) => v,
    };
    let Some(n) = v.as_f64() else {
        errors.push(format!(
            "{name} must be a number conforming to the specified constraints"
        ));
        return None;
    };
    if n < 1.0 {
        errors.push(format!("{name} must not be less than 1"));
    } else if n > max as f64 {
        errors.push(format!("{name} must not be greater than {max}"));
    } else if n.fract() != 0.0 {
        errors.push(format!("{name} must be an integer number"));
    } else {
        return Some(n as u64);
    }
    None
}

fn query_field(obj: &Map<String, Value>, errors: &mut Vec<String>) -> Option<String> {
    match obj.get("query") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() > MAX_QUERY_CHARS => {
            errors.push(format!(
                "query must be shorter than or equal to {MAX_QUERY_CHARS} characters"
            ));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().to_lowercase()),
        Some(_) => {
            errors.push("query must be a string".into());
            None
        }
    }
}

fn page_offset(page: Option<u64>, limit: u64) -> Result<usize, Invalid> {
    let page = page.unwrap_or(1);
    if page.saturating_mul(limit) > MAX_WINDOW {
        return Err(Invalid::BadRequest(format!(
            "page * pageLimit must not exceed {MAX_WINDOW}; use searchAfter to paginate deeper"
        )));
    }
    Ok(usize::try_from((page - 1) * limit).unwrap_or(0))
}

fn parse_sort(v: &Value) -> Result<Vec<SortKey>, String> {
    let Value::Array(items) = v else {
        return Err("sort must be an array".into());
    };
    if items.len() > 3 {
        return Err("sort must contain no more than 3 elements".into());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, s)| parse_sort_key(s, i))
        .collect()
}

fn parse_sort_key(v: &Value, i: usize) -> Result<SortKey, String> {
    let name = v.get("field").and_then(Value::as_str).unwrap_or("");
    let field = match name {
        "dateAdded" => SortField::DateAdded,
        "dateUpdated" => SortField::DateUpdated,
        "firstName" | "firstNameLowerCase" => SortField::FirstName,
        "lastName" | "lastNameLowerCase" => SortField::LastName,
        "email" => SortField::Email,
        "companyName" => SortField::CompanyName,
        _ => {
            return Err(format!(
                "sort.{i}.field '{name}' is not a supported sort field"
            ));
        }
    };
    let dir = v.get("direction").and_then(Value::as_str).unwrap_or("asc");
    let desc = match dir.to_ascii_lowercase().as_str() {
        "asc" => false,
        "desc" => true,
        _ => {
            return Err(format!(
                "sort.{i}.direction must be one of the following values: asc, desc"
            ));
        }
    };
    Ok(SortKey { field, desc })
}

fn parse_cursor(v: &Value, sort: &[SortKey]) -> Result<(Vec<SortVal>, Id), String> {
    let n = sort.len() + 1;
    let err = || {
        format!(
            "searchAfter must be an array of {n} values: one per sort field, then the contact id"
        )
    };
    let Value::Array(items) = v else {
        return Err(err());
    };
    if items.len() != n {
        return Err(err());
    }
    let mut vals = Vec::with_capacity(sort.len());
    for (key, item) in sort.iter().zip(items) {
        vals.push(cursor_value(key.field, item).ok_or_else(err)?);
    }
    let id = items
        .last()
        .and_then(Value::as_str)
        .and_then(Id::padded)
        .ok_or_else(err)?;
    Ok((vals, id))
}

fn cursor_value(field: SortField, v: &Value) -> Option<SortVal> {
    if is_date(field) {
        return ms_from_json(v).map(SortVal::Num);
    }
    match v {
        Value::Null => Some(SortVal::Null),
        Value::String(s) => Some(SortVal::Str(s.to_lowercase())),
        _ => None,
    }
}

fn is_date(field: SortField) -> bool {
    matches!(field, SortField::DateAdded | SortField::DateUpdated)
}

/// The sort value of `c` for a field.
fn sort_value(field: SortField, c: &Contact) -> SortVal {
    let text = |s: Option<&str>| s.map_or(SortVal::Null, |s| SortVal::Str(s.to_lowercase()));
    match field {
        SortField::DateAdded => SortVal::Num(c.date_added),
        SortField::DateUpdated => SortVal::Num(c.date_updated),
        SortField::FirstName => text(c.first_name()),
        SortField::LastName => text(c.last_name()),
        SortField::Email => text(c.email.as_deref()),
        SortField::CompanyName => text(c.company_name()),
    }
}

/// Compares two sort values in a direction; missing values sort last.
fn cmp_val(a: &SortVal, b: &SortVal, desc: bool) -> Ordering {
    let ord = match (a, b) {
        (SortVal::Null, SortVal::Null) => return Ordering::Equal,
        (SortVal::Null, _) => return Ordering::Greater,
        (_, SortVal::Null) => return Ordering::Less,
        (SortVal::Num(x), SortVal::Num(y)) => x.cmp(y),
        (SortVal::Str(x), SortVal::Str(y)) => x.cmp(y),
        (SortVal::Num(_), SortVal::Str(_)) => Ordering::Less,
        (SortVal::Str(_), SortVal::Num(_)) => Ordering::Greater,
    };
    if desc { ord.reverse() } else { ord }
}

/// Full ordering of (values, id) tuples under `sort`; id follows the last key's direction.
fn cmp_tuple(a: (&[SortVal], &Id), b: (&[SortVal], &Id), sort: &[SortKey]) -> Ordering {
    for (i, key) in sort.iter().enumerate() {
        let ord = cmp_val(&a.0[i], &b.0[i], key.desc);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    let ord = a.1.cmp(b.1);
    if sort.last().is_some_and(|k| k.desc) {
        ord.reverse()
    } else {
        ord
    }
}

/// One search hit: the contact and its `searchAfter` values (without id).
pub(super) struct Hit {
    pub contact: Arc<Contact>,
    pub sort_values: Vec<SortVal>,
}

impl Hit {
    /// The full `searchAfter` array: sort values then id.
    pub fn search_after(&self) -> Vec<SortVal> {
        let mut v = self.sort_values.clone();
        v.push(SortVal::Str(self.contact.id.as_str().to_string()));
        v
    }
}

/// A page of results and the total number of matches.
pub(super) struct SearchPage {
    pub hits: Vec<Hit>,
    pub total: usize,
}

/// Identifies a memoised range count: (index, bounds, view version).
pub(super) type TotalKey = (SortField, Bound<Key>, Bound<Key>, u64);

/// Runs a query against the search-visible view of `store`.
pub(super) fn run(store: &mut Store, q: &SearchQuery) -> SearchPage {
    match fast_plan(q) {
        Some(plan) => run_indexed(store, q, &plan),
        None => run_scan(store, q),
    }
}

/// An index range scan: which index, bounds, and residual filters.
struct Plan<'a> {
    field: SortField,
    desc: bool,
    lo: Bound<Key>,
    hi: Bound<Key>,
    rest: Vec<&'a Filter>,
}

/// A plan when the only sort key is a date and no free-text query is set.
fn fast_plan(q: &SearchQuery) -> Option<Plan<'_>> {
    let [key] = q.sort.as_slice() else {
        return None;
    };
    if !is_date(key.field) || q.query.is_some() {
        return None;
    }
    let index_field = match key.field {
        SortField::DateAdded => Field::DateAdded,
        _ => Field::DateUpdated,
    };
    let (mut lo, mut hi) = (Bound::Unbounded, Bound::Unbounded);
    let mut rest = Vec::new();
    for f in &q.filters {
        match f {
            Filter::Cond {
                field,
                op: Op::Range(r),
            } if *field == index_field => {
                let (l, h) = range_bounds(r);
                lo = tighter(lo, l, true);
                hi = tighter(hi, h, false);
            }
            other => rest.push(other),
        }
    }
    Some(Plan {
        field: key.field,
        desc: key.desc,
        lo,
        hi,
        rest,
    })
}

/// Index bounds of a range filter; sentinel ids make every bound inclusive-safe.
fn range_bounds(r: &Range) -> (Bound<Key>, Bound<Key>) {
    let mut lo = Bound::Unbounded;
    let mut hi = Bound::Unbounded;
    if let Some(v) = r.gte {
        lo = tighter(lo, Bound::Included((v, Id::MIN)), true);
    }
    if let Some(v) = r.gt {
        lo = tighter(lo, Bound::Excluded((v, Id::MAX)), true);
    }
    if let Some(v) = r.lte {
        hi = tighter(hi, Bound::Included((v, Id::MAX)), false);
    }
    if let Some(v) = r.lt {
        hi = tighter(hi, Bound::Excluded((v, Id::MIN)), false);
    }
    (lo, hi)
}

/// The stricter of two lower (`lower`) or upper bounds.
fn tighter(a: Bound<Key>, b: Bound<Key>, lower: bool) -> Bound<Key> {
    let key = |x: &Bound<Key>| match x {
        Bound::Included(k) | Bound::Excluded(k) => Some(*k),
        Bound::Unbounded => None,
    };
    match (key(&a), key(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(ka), Some(kb)) if ka == kb => {
            if matches!(a, Bound::Excluded(_)) {
                a
            } else {
                b
            }
        }
        (Some(ka), Some(kb)) => {
            if (ka > kb) == lower {
                a
            } else {
                b
            }
        }
    }
}

/// Whether `range(lo, hi)` is non-empty and valid (BTreeSet panics otherwise).
fn valid_range(lo: &Bound<Key>, hi: &Bound<Key>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a < b,
        _ => true,
    }
}

fn index_for(store: &Store, field: SortField) -> &BTreeSet<Key> {
    match field {
        SortField::DateAdded => &store.search.by_added,
        _ => &store.search.by_updated,
    }
}

/// The size of a pure index range, memoised per search-view version (a
/// sync pages the same range many times).
fn range_total(store: &mut Store, plan: &Plan<'_>) -> usize {
    let key = (plan.field, plan.lo, plan.hi, store.search.version);
    if let Some((_, n)) = store.search.total_cache.as_ref().filter(|(k, _)| *k == key) {
        return *n;
    }
    let n = index_for(store, plan.field)
        .range((plan.lo, plan.hi))
        .count();
    store.search.total_cache = Some((key, n));
    n
}

fn run_indexed(store: &mut Store, q: &SearchQuery, plan: &Plan<'_>) -> SearchPage {
    if !valid_range(&plan.lo, &plan.hi) {
        return SearchPage {
            hits: Vec::new(),
            total: 0,
        };
    }
    let cached = plan.rest.is_empty().then(|| range_total(store, plan));
    let store: &Store = store;
    let index = index_for(store, plan.field);
    let keep = |k: &Key| -> Option<Arc<Contact>> {
        let c = store.searchable(&k.1)?;
        let loc: &LocInfo = &store.info;
        plan.rest
            .iter()
            .all(|f| f.matches(c, loc))
            .then(|| c.clone())
    };
    let total = cached.unwrap_or_else(|| {
        let range = index.range((plan.lo, plan.hi));
        range.filter(|k| keep(k).is_some()).count()
    });
    let (lo, hi) = cursor_bounds(plan, q);
    if !valid_range(&lo, &hi) {
        return SearchPage {
            hits: Vec::new(),
            total,
        };
    }
    let range = index.range((lo, hi));
    let keys: Box<dyn Iterator<Item = &Key>> = if plan.desc {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    let hits = keys
        .filter_map(|k| keep(k).map(|c| (k.0, c)))
        .skip(q.offset)
        .take(q.page_limit)
        .map(|(ms, contact)| Hit {
            contact,
            sort_values: vec![SortVal::Num(ms)],
        })
        .collect();
    SearchPage { hits, total }
}

/// The plan's bounds narrowed to "strictly after" the searchAfter cursor.
fn cursor_bounds(plan: &Plan<'_>, q: &SearchQuery) -> (Bound<Key>, Bound<Key>) {
    let (lo, hi) = (plan.lo, plan.hi);
    let Some((vals, id)) = &q.cursor else {
        return (lo, hi);
    };
    let ms = match vals.first() {
        Some(SortVal::Num(ms)) => *ms,
        _ => 0,
    };
    let after = Bound::Excluded((ms, *id));
    if plan.desc {
        (lo, tighter(hi, after, false))
    } else {
        (tighter(lo, after, true), hi)
    }
}

fn run_scan(store: &Store, q: &SearchQuery) -> SearchPage {
    let loc: &LocInfo = &store.info;
    let mut matched: Vec<Hit> = store
        .searchable_all()
        .filter(|c| q.filters.iter().all(|f| f.matches(c, loc)))
        .filter(|c| q.query.as_deref().is_none_or(|n| c.matches_query(n)))
        .map(|c| Hit {
            contact: c.clone(),
            sort_values: q.sort.iter().map(|k| sort_value(k.field, c)).collect(),
        })
        .collect();
    let total = matched.len();
    let order = |a: &Hit, b: &Hit| {
        cmp_tuple(
            (&a.sort_values, &a.contact.id),
            (&b.sort_values, &b.contact.id),
            &q.sort,
        )
    };
    matched.sort_unstable_by(order);
    let start = match &q.cursor {
        Some((vals, id)) => matched.partition_point(|h| {
            cmp_tuple((&h.sort_values, &h.contact.id), (vals, id), &q.sort) != Ordering::Greater
        }),
        None => 0,
    };
    let hits = matched
        .into_iter()
        .skip(start + q.offset)
        .take(q.page_limit)
        .collect();
    SearchPage { hits, total }
}
