//! Handlers of the sub-resource and business routes: a contact's tasks,
//! notes and appointments, task search, the business list and record, and
//! contacts by business. They run after `routes`' check pipeline and build
//! `Reply`s the same way the contact handlers do.

use axum::http::StatusCode;
use serde_json::Value;

use super::business::{self, BusinessContactsQuery, BusinessListQuery};
use super::data::Id;
use super::render::{ContactJson, write_contacts, write_json};
use super::routes::{Reply, contact_missing};
use super::state::{App, lock};
use super::store::Store;
use super::subrender::{AppointmentJson, NoteJson, TaskJson, list_body, one_body};
use super::tasks::{self, TaskQuery};

/// Renders with the live contact `raw` of location `loc`, or answers
/// exactly like GET /contacts/:id does for a contact it cannot find.
fn with_contact(
    app: &App,
    loc: usize,
    raw: &str,
    render: impl FnOnce(&Store, &Id) -> Result<Vec<u8>, Reply>,
) -> Reply {
    let id = Id::parse(raw);
    if let Some(id) = id {
        let store = lock(&app.locations[loc].store);
        if store.get(&id).is_some() {
            return match render(&store, &id) {
                Ok(body) => Reply::new(Some(loc), StatusCode::OK, body),
                Err(reply) => reply,
            };
        }
    }
    contact_missing(app, loc, id)
}

fn not_found(loc: usize, what: &str) -> Reply {
    let msg = format!("{what} not found");
    Reply::error(Some(loc), StatusCode::BAD_REQUEST, &msg, None)
}

/// GET /contacts/:contactId/tasks → `{"tasks":[...]}`.
pub(super) fn tasks(app: &App, loc: usize, contact: &str) -> Reply {
    with_contact(app, loc, contact, |store, id| Ok(tasks_body(store, id)))
}

pub(super) fn tasks_body(store: &Store, id: &Id) -> Vec<u8> {
    let tasks = store.subs.get(id).map_or(&[][..], |s| &s.tasks);
    let items = tasks.iter().map(|t| TaskJson {
        t,
        contact: id,
        loc: &store.info,
    });
    list_body("tasks", items)
}

/// GET /contacts/:contactId/tasks/:taskId → `{"task":{...}}`.
pub(super) fn task(app: &App, loc: usize, contact: &str, task: &str) -> Reply {
    with_contact(app, loc, contact, |store, id| {
        let t = Id::parse(task).and_then(|t| store.subs.task(id, &t));
        let t = t.ok_or_else(|| not_found(loc, "Task"))?;
        let json = TaskJson {
            t,
            contact: id,
            loc: &store.info,
        };
        Ok(one_body("task", &json))
    })
}

/// GET /contacts/:contactId/notes → `{"notes":[...]}`.
pub(super) fn notes(app: &App, loc: usize, contact: &str) -> Reply {
    with_contact(app, loc, contact, |store, id| Ok(notes_body(store, id)))
}

pub(super) fn notes_body(store: &Store, id: &Id) -> Vec<u8> {
    let notes = store.subs.get(id).map_or(&[][..], |s| &s.notes);
    let items = notes.iter().map(|n| NoteJson {
        n,
        contact: id,
        loc: &store.info,
    });
    list_body("notes", items)
}

/// GET /contacts/:contactId/notes/:id → `{"note":{...}}`.
pub(super) fn note(app: &App, loc: usize, contact: &str, note: &str) -> Reply {
    with_contact(app, loc, contact, |store, id| {
        let wanted = Id::parse(note);
        let notes = store.subs.get(id).map_or(&[][..], |s| &s.notes);
        let n = notes.iter().find(|n| Some(n.id) == wanted);
        let n = n.ok_or_else(|| not_found(loc, "Note"))?;
        let json = NoteJson {
            n,
            contact: id,
            loc: &store.info,
        };
        Ok(one_body("note", &json))
    })
}

/// GET /contacts/:contactId/appointments → `{"events":[...]}`.
pub(super) fn appointments(app: &App, loc: usize, contact: &str) -> Reply {
    with_contact(app, loc, contact, |store, id| {
        Ok(appointments_body(store, id))
    })
}

pub(super) fn appointments_body(store: &Store, id: &Id) -> Vec<u8> {
    let list = store.subs.get(id).map_or(&[][..], |s| &s.appointments);
    let items = list.iter().map(|a| AppointmentJson {
        a,
        contact: id,
        loc: &store.info,
        info: &store.subs.info,
    });
    list_body("events", items)
}

/// POST /locations/:locationId/tasks/search → `{"tasks":[...]}`.
pub(super) fn task_search(app: &App, loc: usize, body: &Value) -> Reply {
    let q = match TaskQuery::parse(body) {
        Ok(q) => q,
        Err(messages) => return Reply::unprocessable(loc, &messages),
    };
    let mut store = lock(&app.locations[loc].store);
    let page = tasks::run(&mut store, &q);
    Reply::new(Some(loc), StatusCode::OK, task_page_body(&store, &page))
}

/// `{"tasks":[...]}` for (task id, contact id) pairs.
pub(super) fn task_page_body(store: &Store, page: &[(Id, Id)]) -> Vec<u8> {
    let items = page.iter().filter_map(|(tid, cid)| {
        let t = store.subs.task(cid, tid)?;
        Some(TaskJson {
            t,
            contact: cid,
            loc: &store.info,
        })
    });
    list_body("tasks", items)
}

/// GET /businesses/?locationId= → `{"businesses":[...]}`.
pub(super) fn businesses(app: &App, loc: usize, params: &[(String, String)]) -> Reply {
    let q = match BusinessListQuery::parse(params) {
        Ok(q) => q,
        Err(messages) => return Reply::unprocessable(loc, &messages),
    };
    let store = lock(&app.locations[loc].store);
    let items = store.businesses.iter().skip(q.skip).take(q.limit);
    Reply::new(Some(loc), StatusCode::OK, list_body("businesses", items))
}

/// GET /businesses/:businessId → `{"business":{...}}`; 403 when another
/// location owns it, else 400 "Business not found".
pub(super) fn business(app: &App, loc: usize, id: &str) -> Reply {
    let owned = |i: usize| {
        let store = lock(&app.locations[i].store);
        let b = store.businesses.iter().find(|b| b.id == id);
        b.map(|b| one_body("business", b))
    };
    if let Some(body) = owned(loc) {
        return Reply::new(Some(loc), StatusCode::OK, body);
    }
    let elsewhere = (0..app.locations.len())
        .filter(|i| *i != loc)
        .any(|i| owned(i).is_some());
    if elsewhere {
        return Reply::forbidden(loc);
    }
    not_found(loc, "Business")
}

/// GET /locations/:locationId/customFields[?model=] → `{"customFields":[...]}`.
pub(super) fn custom_fields(app: &App, loc: usize, params: &[(String, String)]) -> Reply {
    let models = match super::fields::parse_model(params) {
        Ok(m) => m,
        Err(message) => return Reply::unprocessable(loc, &[message]),
    };
    let body = {
        let store = lock(&app.locations[loc].store);
        super::fields::body(&store.info, models)
    };
    Reply::new(Some(loc), StatusCode::OK, body.to_string().into_bytes())
}

/// GET /contacts/business/:businessId → `{"contacts":[...],"count":N}`.
pub(super) fn business_contacts(
    app: &App,
    loc: usize,
    business: &str,
    params: &[(String, String)],
) -> Reply {
    let q = match BusinessContactsQuery::parse(params) {
        Ok(q) => q,
        Err(messages) => return Reply::unprocessable(loc, &messages),
    };
    let (page, count, info) = {
        let store = lock(&app.locations[loc].store);
        let (page, count) = business::contacts_page(&store, business, &q);
        (page, count, store.info.clone())
    };
    let mut out = Vec::with_capacity(64 + page.len() * 1500);
    out.push(b'{');
    let items = page.iter().map(|c| ContactJson {
        c,
        loc: &info,
        search_after: None,
    });
    write_contacts(&mut out, items, false);
    out.extend_from_slice(b",\"count\":");
    write_json(&mut out, &count);
    out.push(b'}');
    Reply::new(Some(loc), StatusCode::OK, out)
}
