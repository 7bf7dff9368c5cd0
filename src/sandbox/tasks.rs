//! POST /locations/:locationId/tasks/search: body validation
//! (`TaskQuery::parse`, class-validator-style 422 messages) and execution.
//! Results are in task-id order over the latest data (no search lag); the
//! matches of a filter are computed once per data version and cached, so
//! paging with `skip` costs a slice until something changes.

use serde_json::{Map, Value};

use super::data::Id;
use super::store::Store;
use super::subs::Task;

/// `limit` when the body has none.
const DEFAULT_LIMIT: usize = 25;
/// Largest accepted `limit`.
pub(super) const MAX_LIMIT: usize = 100;

/// The filtering part of a task search (the cache key).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct TaskFilter {
    /// Any of these contacts (a non-empty `contactId` array).
    pub contacts: Option<Vec<String>>,
    pub completed: Option<bool>,
    /// Assigned to any of these users (a non-empty `assignedTo` array).
    pub assigned: Option<Vec<String>>,
    /// Lowercased text that title or body must contain.
    pub query: Option<String>,
    /// Tasks of contacts in this business.
    pub business: Option<String>,
}

/// A validated task search body.
#[derive(Debug)]
pub(super) struct TaskQuery {
    pub filter: TaskFilter,
    pub limit: usize,
    pub skip: usize,
}

/// (task id, contact id) pairs matching a filter, in task-id order, as of
/// a data version.
pub(super) struct Cached {
    version: u64,
    filter: TaskFilter,
    hits: Vec<(Id, Id)>,
}

impl TaskQuery {
    /// Validates a `TaskSearchParamsDto` body; `Err` holds 422 messages.
    pub fn parse(body: &Value) -> Result<TaskQuery, Vec<String>> {
        let Value::Object(obj) = body else {
            return Err(vec!["body must be an object".into()]);
        };
        let mut errors = Vec::new();
        let contacts = string_list(obj, "contactId", &mut errors);
        let assigned = string_list(obj, "assignedTo", &mut errors);
        let completed = match obj.get("completed") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                errors.push("completed must be a boolean value".into());
                None
            }
        };
        let query = string_field(obj, "query", &mut errors).map(|s| s.to_lowercase());
        let business = string_field(obj, "businessId", &mut errors);
        let limit = number(obj, "limit", DEFAULT_LIMIT, 1, Some(MAX_LIMIT), &mut errors);
        let skip = number(obj, "skip", 0, 0, None, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(TaskQuery {
            filter: TaskFilter {
                contacts,
                completed,
                assigned,
                query,
                business,
            },
            limit,
            skip,
        })
    }
}

/// A string array; absent, null or empty = no filter.
fn string_list(
    obj: &Map<String, Value>,
    name: &str,
    errors: &mut Vec<String>,
) -> Option<Vec<String>> {
    match obj.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect();
            match strings {
                Some(s) if s.is_empty() => None,
                Some(s) => Some(s),
                None => {
                    errors.push(format!("each value in {name} must be a string"));
                    None
                }
            }
        }
        Some(_) => {
            errors.push(format!("{name} must be an array"));
            None
        }
    }
}

/// A trimmed string; absent, null or blank = no filter.
fn string_field(obj: &Map<String, Value>, name: &str, errors: &mut Vec<String>) -> Option<String> {
    match obj.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(_) => {
            errors.push(format!("{name} must be a string"));
            None
        }
    }
}

/// A JSON integer in `min..=max` (strings are a type error).
fn number(
    obj: &Map<String, Value>,
    name: &str,
    default: usize,
    min: usize,
    max: Option<usize>,
    errors: &mut Vec<String>,
) -> usize {
    let n = match obj.get(name) {
        None | Some(Value::Null) => return default,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(_) => f64::NAN,
    };
    if n.is_nan() {
        errors.push(format!(
            "{name} must be a number conforming to the specified constraints"
        ));
    } else if n < min as f64 {
        errors.push(format!("{name} must not be less than {min}"));
    } else if let Some(max) = max.filter(|m| n > *m as f64) {
        errors.push(format!("{name} must not be greater than {max}"));
    } else if n.fract() != 0.0 || n > usize::MAX as f64 {
        errors.push(format!("{name} must be an integer number"));
    } else {
        return n as usize;
    }
    default
}

/// One page of (task id, contact id), in task-id order.
pub(super) fn run(store: &mut Store, q: &TaskQuery) -> Vec<(Id, Id)> {
    let version = store.subs.version;
    let fresh = store
        .subs
        .cache
        .as_ref()
        .is_some_and(|c| c.version == version && c.filter == q.filter);
    if !fresh {
        let hits = matches(store, &q.filter);
        store.subs.cache = Some(Cached {
            version,
            filter: q.filter.clone(),
            hits,
        });
    }
    let hits = store.subs.cache.as_ref().map_or(&[][..], |c| &c.hits);
    let start = q.skip.min(hits.len());
    let end = start.saturating_add(q.limit).min(hits.len());
    hits[start..end].to_vec()
}

/// Every match of `f`, in task-id order. Contact and business filters
/// narrow the candidates through their indices first; other filters scan
/// contact by contact (cheaper than a lookup per indexed task).
fn matches(store: &Store, f: &TaskFilter) -> Vec<(Id, Id)> {
    let info = &store.info;
    // Some(None): a business filter no contact can match.
    let business: Option<Option<u8>> = f.business.as_ref().map(|b| store.business_index(b));
    let keep = |t: &Task, cid: &Id| {
        let in_business = || {
            business.is_none_or(|b| b.is_some() && store.get(cid).is_some_and(|c| c.business == b))
        };
        f.completed.is_none_or(|c| t.completed == c)
            && f.assigned.as_ref().is_none_or(|a| {
                t.assigned_to(info)
                    .is_some_and(|u| a.iter().any(|x| x == u))
            })
            && f.query.as_deref().is_none_or(|q| t.matches_query(q))
            && in_business()
    };
    let tasks_of = |cids: &mut dyn Iterator<Item = Id>| {
        let mut out = Vec::new();
        for cid in cids {
            let tasks = store.subs.get(&cid).map_or(&[][..], |s| &s.tasks);
            out.extend(tasks.iter().filter(|t| keep(t, &cid)).map(|t| (t.id, cid)));
        }
        out
    };
    let unfiltered = f.completed.is_none() && f.assigned.is_none() && f.query.is_none();
    let mut out: Vec<(Id, Id)> = if let Some(raw) = &f.contacts {
        let mut ids: Vec<Id> = raw.iter().filter_map(|s| Id::parse(s)).collect();
        ids.sort_unstable();
        ids.dedup();
        tasks_of(&mut ids.into_iter().filter(|id| store.get(id).is_some()))
    } else if let Some(b) = business {
        match b {
            Some(b) => tasks_of(&mut store.business_members(b).map(|k| k.1)),
            None => Vec::new(),
        }
    } else if unfiltered {
        return store
            .subs
            .task_index
            .iter()
            .map(|(t, c)| (*t, *c))
            .collect();
    } else {
        let all = store.subs.all();
        let tasks = all.flat_map(|(cid, s)| s.tasks.iter().map(move |t| (t, cid)));
        tasks
            .filter(|(t, cid)| keep(t, cid))
            .map(|(t, cid)| (t.id, *cid))
            .collect()
    };
    out.sort_unstable();
    out
}
