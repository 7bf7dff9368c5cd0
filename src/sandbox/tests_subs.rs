//! Tests of the sub-resource and business routes over loopback: spec
//! shapes, determinism, deleted/created contacts, sub-resource churn, task
//! search paging, filters and errors, businesses and contacts by business,
//! and request accounting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::tests::{Client, Fields, LOC, LOC2, TOKEN, check_shape, start, two_locations};
use super::time_fmt::parse_iso;
use super::*;

const TASK_FIELDS: Fields = &[
    ("id", "string"),
    ("title", "string"),
    ("body", "string"),
    ("assignedTo", "string"),
    ("dueDate", "string"),
    ("completed", "boolean"),
    ("contactId", "string"),
];
const NOTE_FIELDS: Fields = &[
    ("id", "string"),
    ("body", "string"),
    ("userId", "string"),
    ("dateAdded", "string"),
    ("contactId", "string"),
    ("title", "string"),
    ("color", "string"),
    ("pinned", "boolean"),
];
const EVENT_FIELDS: Fields = &[
    ("id", "string"),
    ("calendarId", "string"),
    ("status", "string"),
    ("title", "string"),
    ("assignedUserId", "string"),
    ("notes", "string"),
    ("startTime", "string"),
    ("endTime", "string"),
    ("address", "string"),
    ("locationId", "string"),
    ("contactId", "string"),
    ("groupId", "string"),
    ("appointmentStatus", "string"),
    ("users", "string[]"),
    ("dateAdded", "string"),
    ("dateUpdated", "string"),
    ("assignedResources", "string[]"),
];
const BUSINESS_FIELDS: Fields = &[
    ("id", "string"),
    ("name", "string"),
    ("phone", "string"),
    ("email", "string"),
    ("website", "string"),
    ("address", "string"),
    ("city", "string"),
    ("description", "string"),
    ("state", "string"),
    ("postalCode", "string"),
    ("country", "string"),
    ("updatedBy", "object"),
    ("locationId", "string"),
    ("createdBy", "object"),
    ("createdAt", "string"),
    ("updatedAt", "string"),
];

const TASK_REQUIRED: &[&str] = &["id", "title", "dueDate", "completed", "contactId"];
const NOTE_REQUIRED: &[&str] = &["id", "body", "dateAdded", "contactId"];
const EVENT_REQUIRED: &[&str] = &[
    "id",
    "calendarId",
    "status",
    "title",
    "startTime",
    "endTime",
    "locationId",
    "contactId",
    "appointmentStatus",
    "users",
    "dateAdded",
    "dateUpdated",
    "assignedResources",
];

/// "2021-07-08T02:30:00.000Z".
fn is_iso_ms(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && parse_iso(s).is_some())
}

/// "2021-07-16 11:00:00".
fn is_ymd_hms(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 19
            && s.as_bytes()[10] == b' '
            && parse_iso(&format!("{}Z", s.replacen(' ', "T", 1))).is_some()
    })
}

fn ids_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn task_search(c: &Client, location: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/locations/{location}/tasks/search", c.base);
    let (s, v, _) = c.send(c.http.post(url).json(&body)).await;
    (s, v)
}

/// Pages a task search with limit 100 until a short page.
async fn search_all(c: &Client, body: Value) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let mut b = body.clone();
        b["limit"] = json!(100);
        b["skip"] = json!(out.len());
        let (s, v) = task_search(c, LOC, b).await;
        assert_eq!(s, 200, "{v}");
        let page = v["tasks"].as_array().unwrap().clone();
        let short = page.len() < 100;
        out.extend(page);
        if short {
            return out;
        }
    }
}

/// A live contact with at least one task, note and appointment.
fn rich_contact(sb: &Sandbox, location: &str) -> String {
    let full = |id: &String| {
        !sb.tasks_json(location, id).unwrap().is_empty()
            && !sb.notes_json(location, id).unwrap().is_empty()
            && !sb.appointments_json(location, id).unwrap().is_empty()
    };
    sb.live_contact_ids(location)
        .into_iter()
        .find(full)
        .unwrap()
}

#[tokio::test]
async fn seeded_sub_resources_are_deterministic_follow_the_mix_and_leave_contacts_alone() {
    let a = start(two_locations(1500)).await;
    let b = start(two_locations(1500)).await;
    let mut sparse = two_locations(1500);
    sparse.subresources = SubresourceMix {
        tasks: 0.0,
        notes: 0.0,
        appointments: 0.5,
    };
    let c = start(sparse).await;
    let ids = a.live_contact_ids(LOC);
    assert_eq!(ids, c.live_contact_ids(LOC));
    let (mut tasks, mut notes, mut events, mut taskless) = (0, 0, 0, 0);
    let mut all_notes = Vec::new();
    let mut all_events = Vec::new();
    for id in &ids {
        let t = a.tasks_json(LOC, id).unwrap();
        let n = a.notes_json(LOC, id).unwrap();
        let e = a.appointments_json(LOC, id).unwrap();
        assert_eq!(Some(&t), b.tasks_json(LOC, id).as_ref());
        assert_eq!(Some(&n), b.notes_json(LOC, id).as_ref());
        assert_eq!(Some(&e), b.appointments_json(LOC, id).as_ref());
        assert_eq!(a.contact_json(LOC, id), c.contact_json(LOC, id));
        assert_eq!(c.tasks_json(LOC, id).unwrap().len(), 0);
        (tasks, notes, events) = (tasks + t.len(), notes + n.len(), events + e.len());
        taskless += usize::from(t.is_empty());
        all_notes.extend(n);
        all_events.extend(e);
    }
    let per = |k: usize| k as f64 / ids.len() as f64;
    assert!((per(tasks) - 2.0).abs() < 0.15, "{}", per(tasks));
    assert!((per(notes) - 3.0).abs() < 0.2, "{}", per(notes));
    assert!((per(events) - 1.0).abs() < 0.1, "{}", per(events));
    assert!(taskless > 100, "some contacts have no tasks: {taskless}");
    let all = a.all_tasks_json(LOC);
    assert_eq!(all, b.all_tasks_json(LOC));
    assert_eq!(all.len(), tasks);
    assert_eq!(a.businesses_json(LOC), b.businesses_json(LOC));
    let has = |items: &[Value], f: &dyn Fn(&Value) -> bool| items.iter().any(f);
    assert!(has(&all, &|t| t.get("body").is_none()));
    assert!(has(&all, &|t| t.get("body") == Some(&Value::Null)));
    assert!(has(&all, &|t| t.get("assignedTo").is_none()));
    assert!(has(&all, &|t| t["completed"] == true) && has(&all, &|t| t["completed"] == false));
    assert!(has(&all_notes, &|n| n.get("title").is_none()));
    assert!(has(&all_notes, &|n| n.get("pinned").is_none()));
    assert!(has(&all_notes, &|n| n["pinned"] == true));
    assert!(has(&all_events, &|e| e.get("groupId").is_none()));
    assert!(has(&all_events, &|e| e["assignedResources"] == json!([])));
    assert!(has(&all_events, &|e| e["status"] == "cancelled"));
    for s in [&a, &b, &c] {
        s.clone().shutdown().await;
    }
}

#[tokio::test]
async fn sub_resource_routes_return_the_spec_shapes() {
    let sb = start(two_locations(200)).await;
    let c = Client::new(&sb, TOKEN);
    let base = sb.base_url();
    let id = rich_contact(&sb, LOC);
    let (s, v) = c.get_url(&format!("{base}/contacts/{id}/tasks")).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"tasks": sb.tasks_json(LOC, &id).unwrap()}));
    let t = &v["tasks"][0];
    let (s, one) = c
        .get_url(&format!(
            "{base}/contacts/{id}/tasks/{}",
            t["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!((s, one), (200, json!({"task": t})));
    let (s, v) = c.get_url(&format!("{base}/contacts/{id}/notes")).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"notes": sb.notes_json(LOC, &id).unwrap()}));
    let n = &v["notes"][0];
    let (s, one) = c
        .get_url(&format!(
            "{base}/contacts/{id}/notes/{}",
            n["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!((s, one), (200, json!({"note": n})));
    let (s, v) = c
        .get_url(&format!("{base}/contacts/{id}/appointments/"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"events": sb.appointments_json(LOC, &id).unwrap()})
    );
    for id in sb.live_contact_ids(LOC) {
        for t in sb.tasks_json(LOC, &id).unwrap() {
            check_shape(&t, TASK_FIELDS, TASK_REQUIRED, true);
            assert!(
                is_iso_ms(&t["dueDate"]) && t["contactId"] == id.as_str(),
                "{t}"
            );
        }
        for n in sb.notes_json(LOC, &id).unwrap() {
            check_shape(&n, NOTE_FIELDS, NOTE_REQUIRED, true);
            assert!(
                is_iso_ms(&n["dateAdded"]) && n["contactId"] == id.as_str(),
                "{n}"
            );
        }
        for e in sb.appointments_json(LOC, &id).unwrap() {
            check_shape(&e, EVENT_FIELDS, EVENT_REQUIRED, true);
            let dates = ["startTime", "endTime", "dateAdded", "dateUpdated"];
            assert!(dates.iter().all(|d| is_ymd_hms(&e[*d])), "{e}");
            assert!(e["endTime"].as_str() > e["startTime"].as_str());
            assert!(e["dateUpdated"].as_str() >= e["dateAdded"].as_str());
            assert_eq!(
                (&e["locationId"], &e["contactId"]),
                (&json!(LOC), &json!(id))
            );
        }
    }
    let st = sb.stats(LOC);
    assert_eq!(
        (
            st.requests,
            st.tasks_requests,
            st.notes_requests,
            st.appointments_requests,
            st.get_requests
        ),
        (5, 2, 2, 1, 0)
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn deleted_unknown_and_foreign_contacts_answer_like_get_contact() {
    let sb = start(two_locations(100)).await;
    let c = Client::new(&sb, TOKEN);
    let base = sb.base_url();
    let id = rich_contact(&sb, LOC);
    let tid = sb.tasks_json(LOC, &id).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let nid = sb.notes_json(LOC, &id).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sub_paths = |id: &str| {
        [
            format!("{base}/contacts/{id}/tasks"),
            format!("{base}/contacts/{id}/tasks/{tid}"),
            format!("{base}/contacts/{id}/notes"),
            format!("{base}/contacts/{id}/notes/{nid}"),
            format!("{base}/contacts/{id}/appointments"),
        ]
    };
    let unknown_task = json!({"statusCode":400,"message":"Task not found"});
    let unknown_note = json!({"statusCode":400,"message":"Note not found"});
    let live = sb.live_contact_ids(LOC);
    let other = live.iter().find(|o| **o != id).unwrap();
    let [_, task_of_other, _, note_of_other, _] = sub_paths(other);
    assert_eq!(c.get_url(&task_of_other).await, (400, unknown_task.clone()));
    assert_eq!(c.get_url(&note_of_other).await, (400, unknown_note.clone()));
    let bad = format!("{base}/contacts/{id}/tasks/not-a-task-id");
    assert_eq!(c.get_url(&bad).await, (400, unknown_task));

    assert!(sb.delete_contact(LOC, &id));
    assert_eq!(sb.tasks_json(LOC, &id), None);
    assert_eq!(sb.notes_json(LOC, &id), None);
    assert_eq!(sb.appointments_json(LOC, &id), None);
    let missing = json!({"statusCode":400,"message":"Contact not found"});
    assert_eq!(
        c.get_url(&format!("{base}/contacts/{id}")).await,
        (400, missing.clone())
    );
    for url in sub_paths(&id).iter().chain(&sub_paths("nope")) {
        assert_eq!(c.get_url(url).await, (400, missing.clone()), "{url}");
    }
    assert!(
        sb.all_tasks_json(LOC)
            .iter()
            .all(|t| t["contactId"] != id.as_str())
    );
    let (s, v) = task_search(&c, LOC, json!({"contactId": [id]})).await;
    assert_eq!((s, v), (200, json!({"tasks": []})));

    let foreign = rich_contact(&sb, LOC2);
    let forbidden =
        json!({"statusCode":403,"message":"The token does not have access to this location."});
    assert_eq!(
        c.get_url(&format!("{base}/contacts/{foreign}")).await,
        (403, forbidden.clone())
    );
    for url in sub_paths(&foreign) {
        assert_eq!(c.get_url(&url).await, (403, forbidden.clone()), "{url}");
    }
    let (s, v) = c
        .get_url(&format!("{base}/contacts/{other}/tasks/{tid}/x"))
        .await;
    assert_eq!((s, &v["error"]), (404, &json!("Not Found")));

    let created: Vec<String> = (0..10).map(|_| sb.create_contact(LOC)).collect();
    let all: HashSet<String> = ids_of(&sb.all_tasks_json(LOC)).into_iter().collect();
    let mut items = 0;
    for id in &created {
        let tasks = sb.tasks_json(LOC, id).unwrap();
        assert!(ids_of(&tasks).iter().all(|t| all.contains(t)));
        items += tasks.len();
        items += sb.notes_json(LOC, id).unwrap().len();
        items += sb.appointments_json(LOC, id).unwrap().len();
    }
    assert!(items > 20, "new contacts get sub-resources: {items}");
    sb.shutdown().await;
}

/// Every live contact's (tasks, notes, events) keyed by item id.
type Snapshot = HashMap<String, [BTreeMap<String, Value>; 3]>;

fn snapshot(sb: &Sandbox) -> Snapshot {
    let keyed = |items: Vec<Value>| {
        items
            .into_iter()
            .map(|v| (v["id"].as_str().unwrap().to_string(), v))
            .collect()
    };
    sb.live_contact_ids(LOC)
        .into_iter()
        .map(|id| {
            let t = keyed(sb.tasks_json(LOC, &id).unwrap());
            let n = keyed(sb.notes_json(LOC, &id).unwrap());
            let e = keyed(sb.appointments_json(LOC, &id).unwrap());
            (id, [t, n, e])
        })
        .collect()
}

/// Per kind: (added, edited, deleted), and the contacts with any change.
fn diff(before: &Snapshot, after: &Snapshot) -> ([[usize; 3]; 3], HashSet<String>) {
    let mut counts = [[0; 3]; 3];
    let mut touched = HashSet::new();
    for (id, old) in before {
        for (k, (o, n)) in old.iter().zip(&after[id]).enumerate() {
            let added = n.keys().filter(|x| !o.contains_key(*x)).count();
            let deleted = o.keys().filter(|x| !n.contains_key(*x)).count();
            let edited = o
                .iter()
                .filter(|(x, v)| n.get(*x).is_some_and(|w| w != *v))
                .count();
            for (c, d) in counts[k].iter_mut().zip([added, edited, deleted]) {
                *c += d;
            }
            if added + deleted + edited > 0 {
                touched.insert(id.clone());
            }
        }
    }
    (counts, touched)
}

fn report_counts(r: &SubChurnReport) -> [[usize; 3]; 3] {
    [
        [r.tasks_added, r.tasks_edited, r.tasks_deleted],
        [r.notes_added, r.notes_edited, r.notes_deleted],
        [
            r.appointments_added,
            r.appointments_edited,
            r.appointments_deleted,
        ],
    ]
}

#[tokio::test]
async fn sub_resource_churn_report_matches_what_changed() {
    let sb = start(two_locations(400)).await;
    let twin = start(two_locations(400)).await;
    let contacts = |sb: &Sandbox| -> HashMap<String, Value> {
        let ids = sb.live_contact_ids(LOC);
        ids.into_iter()
            .map(|id| (id.clone(), sb.contact_json(LOC, &id).unwrap()))
            .collect()
    };
    let before = snapshot(&sb);
    let contacts_before = contacts(&sb);
    let report = sb.churn_subresources(LOC, 0.1, false);
    assert_eq!(report.contacts.len(), 40);
    let twin_report = twin.churn_subresources(LOC, 0.1, false);
    assert_eq!(report, twin_report, "deterministic from the seed");
    let after = snapshot(&sb);
    let (counts, touched) = diff(&before, &after);
    assert_eq!(counts, report_counts(&report));
    let picked: HashSet<String> = report.contacts.iter().cloned().collect();
    assert_eq!(touched, picked);
    assert!(
        counts.iter().all(|k| k.iter().sum::<usize>() > 0),
        "{counts:?}"
    );
    assert!(
        (0..3).all(|a| counts.iter().map(|k| k[a]).sum::<usize>() > 0),
        "{counts:?}"
    );
    assert_eq!(contacts(&sb), contacts_before, "no contact bump");
    for (id, [_, _, events]) in &before {
        for (eid, old) in events {
            if let Some(new) = after[id][2].get(eid).filter(|n| *n != old) {
                assert!(new["dateUpdated"].as_str() > old["dateUpdated"].as_str());
            }
        }
    }

    let since = time_fmt::now_ms() - 1;
    let report = sb.churn_subresources(LOC, 0.05, true);
    assert_eq!(report.contacts.len(), 20);
    let now = contacts(&sb);
    for (id, old) in &contacts_before {
        let mut new = now[id].clone();
        if report.contacts.contains(id) {
            assert!(new["dateUpdated"].as_str() > old["dateUpdated"].as_str());
            new["dateUpdated"] = old["dateUpdated"].clone();
        }
        assert_eq!(&new, old, "only dateUpdated changes");
    }
    let (_, v) = Client::new(&sb, TOKEN)
        .search(json!({"locationId": LOC, "pageLimit": 100,
            "filters": [{"field": "dateUpdated", "operator": "range", "value": {"gte": since}}]}))
        .await;
    let found: HashSet<String> = ids_of(v["contacts"].as_array().unwrap())
        .into_iter()
        .collect();
    assert_eq!(found, report.contacts.iter().cloned().collect());
    sb.shutdown().await;
    twin.shutdown().await;
}

#[tokio::test]
async fn task_search_pages_every_task_once_in_task_id_order() {
    let sb = start(two_locations(600)).await;
    let c = Client::new(&sb, TOKEN);
    let all = sb.all_tasks_json(LOC);
    assert!(all.len() > 1000);
    let ids = ids_of(&all);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "strictly by task id");
    let got = search_all(&c, json!({})).await;
    assert_eq!(got, all);
    let pages = all.len() / 100 + 1;
    assert_eq!(sb.stats(LOC).task_search_requests, pages as u64);
    let (s, v) = task_search(&c, LOC, json!({})).await;
    assert_eq!(
        (s, v),
        (200, json!({"tasks": all[..25]})),
        "limit defaults to 25"
    );
    let (_, v) = task_search(&c, LOC, json!({"limit": 7, "skip": 30})).await;
    assert_eq!(v, json!({"tasks": all[30..37]}));
    let (_, v) = task_search(&c, LOC, json!({"skip": all.len()})).await;
    assert_eq!(v, json!({"tasks": []}));
    for t in all.iter().step_by(97) {
        check_shape(t, TASK_FIELDS, TASK_REQUIRED, true);
        let contact = t["contactId"].as_str().unwrap();
        assert!(sb.tasks_json(LOC, contact).unwrap().contains(t));
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn task_search_sees_every_change_at_once() {
    let sb = start(two_locations(300)).await;
    let c = Client::new(&sb, TOKEN);
    let done = json!({"completed": true});
    let before = search_all(&c, json!({})).await;
    let done_before = search_all(&c, done.clone()).await;
    let report = sb.churn_subresources(LOC, 0.2, false);
    assert!(report.tasks_added + report.tasks_edited + report.tasks_deleted > 0);
    let after = search_all(&c, json!({})).await;
    assert_ne!(after, before);
    assert_eq!(after, sb.all_tasks_json(LOC));
    let done_after = search_all(&c, done.clone()).await;
    assert_ne!(done_after, done_before);
    assert!(done_after.iter().all(|t| t["completed"] == true));

    let gone = rich_contact(&sb, LOC);
    assert!(sb.delete_contact(LOC, &gone));
    let fresh: Vec<String> = (0..5).map(|_| sb.create_contact(LOC)).collect();
    let all = search_all(&c, json!({})).await;
    assert_eq!(all, sb.all_tasks_json(LOC));
    assert!(all.iter().all(|t| t["contactId"] != gone.as_str()));
    assert!(
        all.iter()
            .any(|t| fresh.iter().any(|f| t["contactId"] == f.as_str()))
    );

    let b = ids_of(&sb.businesses_json(LOC))[0].clone();
    let by_business = json!({"businessId": b});
    let first = search_all(&c, by_business.clone()).await;
    let mover = rich_contact(&sb, LOC);
    let moved_in = sb.business_contact_ids(LOC, &b).contains(&mover);
    assert!(sb.set_contact_business(LOC, &mover, if moved_in { None } else { Some(&b) }));
    let second = search_all(&c, by_business).await;
    let theirs = sb.tasks_json(LOC, &mover).unwrap().len();
    assert_eq!(
        second.len(),
        if moved_in {
            first.len() - theirs
        } else {
            first.len() + theirs
        }
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn task_search_filters_by_contact_completion_assignee_business_and_text() {
    let sb = start(two_locations(500)).await;
    let c = Client::new(&sb, TOKEN);
    let all = sb.all_tasks_json(LOC);
    let only = |f: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        all.iter().filter(|t| f(t)).cloned().collect()
    };

    let with_tasks: Vec<String> = sb
        .live_contact_ids(LOC)
        .into_iter()
        .filter(|id| !sb.tasks_json(LOC, id).unwrap().is_empty())
        .take(2)
        .collect();
    let body =
        json!({"contactId": [with_tasks[0], with_tasks[1], "unknownContact000000", with_tasks[0]]});
    let want = only(&|t| with_tasks.iter().any(|id| t["contactId"] == id.as_str()));
    assert!(want.len() >= 2);
    assert_eq!(search_all(&c, body).await, want);

    let done = search_all(&c, json!({"completed": true})).await;
    let open = search_all(&c, json!({"completed": false})).await;
    assert_eq!(done, only(&|t| t["completed"] == true));
    assert_eq!(open, only(&|t| t["completed"] == false));
    assert!(!done.is_empty() && !open.is_empty());

    let user = all
        .iter()
        .find_map(|t| t["assignedTo"].as_str())
        .unwrap()
        .to_string();
    let mine = search_all(&c, json!({"assignedTo": [user]})).await;
    assert_eq!(mine, only(&|t| t["assignedTo"] == user.as_str()));
    assert!(!mine.is_empty() && mine.len() < all.len());

    let businesses = ids_of(&sb.businesses_json(LOC));
    let biggest = businesses
        .iter()
        .max_by_key(|b| sb.business_contact_ids(LOC, b).len())
        .unwrap()
        .clone();
    let members: HashSet<String> = sb.business_contact_ids(LOC, &biggest).into_iter().collect();
    let in_business = |t: &Value| members.contains(t["contactId"].as_str().unwrap());
    let got = search_all(&c, json!({"businessId": biggest})).await;
    assert_eq!(got, only(&in_business));
    assert!(!got.is_empty());
    let got = search_all(&c, json!({"businessId": "000000000000000000000000"})).await;
    assert!(got.is_empty());

    let text = |t: &Value| {
        let has = |k: &str| {
            t[k].as_str()
                .is_some_and(|s| s.to_lowercase().contains("call"))
        };
        has("title") || has("body")
    };
    let got = search_all(&c, json!({"query": "  CALL "})).await;
    assert_eq!(got, only(&text));
    assert!(!got.is_empty());

    let combined =
        json!({"completed": false, "assignedTo": [user], "businessId": biggest, "query": "call"});
    let want = only(&|t| {
        t["completed"] == false && t["assignedTo"] == user.as_str() && in_business(t) && text(t)
    });
    assert_eq!(search_all(&c, combined).await, want);

    let outsider = sb
        .live_contact_ids(LOC)
        .into_iter()
        .find(|id| !members.contains(id) && !sb.tasks_json(LOC, id).unwrap().is_empty())
        .unwrap();
    assert!(sb.set_contact_business(LOC, &outsider, Some(&biggest)));
    let got = search_all(&c, json!({"businessId": biggest})).await;
    let moved = sb.tasks_json(LOC, &outsider).unwrap();
    assert!(moved.iter().all(|t| got.contains(t)));
    assert_eq!(got.len(), only(&in_business).len() + moved.len());
    sb.shutdown().await;
}

#[tokio::test]
async fn task_search_rejects_bad_bodies_foreign_locations_and_missing_scope() {
    let sb = start(two_locations(50)).await;
    let c = Client::new(&sb, TOKEN);
    let unprocessable =
        |m: &[&str]| json!({"statusCode": 422, "message": m, "error": "Unprocessable Entity"});
    let cases = [
        (json!({"limit": 0}), vec!["limit must not be less than 1"]),
        (
            json!({"limit": 101}),
            vec!["limit must not be greater than 100"],
        ),
        (
            json!({"limit": "10"}),
            vec!["limit must be a number conforming to the specified constraints"],
        ),
        (
            json!({"limit": 2.5}),
            vec!["limit must be an integer number"],
        ),
        (json!({"skip": -1}), vec!["skip must not be less than 0"]),
        (
            json!({"contactId": "abc", "completed": "yes", "assignedTo": [3]}),
            vec![
                "contactId must be an array",
                "each value in assignedTo must be a string",
                "completed must be a boolean value",
            ],
        ),
        (
            json!({"query": 5, "businessId": false}),
            vec!["query must be a string", "businessId must be a string"],
        ),
        (json!([1]), vec!["body must be an object"]),
    ];
    for (body, messages) in cases {
        assert_eq!(
            task_search(&c, LOC, body.clone()).await,
            (422, unprocessable(&messages)),
            "{body}"
        );
    }
    let forbidden =
        json!({"statusCode":403,"message":"The token does not have access to this location."});
    assert_eq!(task_search(&c, LOC2, json!({})).await, (403, forbidden));

    sb.set_task_search_scope(LOC, false);
    let before = sb.stats(LOC);
    let scope = json!({"statusCode":401,"message":"The token is not authorized for this scope."});
    assert_eq!(
        task_search(&c, LOC, json!({"limit": 1})).await,
        (401, scope.clone())
    );
    assert_eq!(
        task_search(&c, LOC, json!({"limit": 0})).await,
        (401, scope)
    );
    let after = sb.stats(LOC);
    assert_eq!(after.requests, before.requests + 2);
    assert_eq!(after.task_search_requests, before.task_search_requests + 2);
    let id = &sb.live_contact_ids(LOC)[0];
    let (s, _) = c
        .get_url(&format!("{}/contacts/{id}/tasks", sb.base_url()))
        .await;
    assert_eq!(s, 200, "only task search needs the scope");
    sb.set_task_search_scope(LOC, true);
    assert_eq!(task_search(&c, LOC, json!({"limit": 1})).await.0, 200);
    sb.shutdown().await;
}

#[tokio::test]
async fn businesses_list_and_get_by_id() {
    let sb = start(two_locations(300)).await;
    let c = Client::new(&sb, TOKEN);
    let base = sb.base_url();
    let list = sb.businesses_json(LOC);
    assert_eq!(list.len(), 10);
    let (s, v) = c
        .get_url(&format!("{base}/businesses/?locationId={LOC}"))
        .await;
    assert_eq!((s, v), (200, json!({"businesses": list})));
    let ids: HashSet<String> = ids_of(&list).into_iter().collect();
    assert_eq!(ids.len(), 10);
    for b in &list {
        check_shape(
            b,
            BUSINESS_FIELDS,
            &["id", "name", "locationId", "createdAt", "updatedAt"],
            true,
        );
        assert!(is_iso_ms(&b["createdAt"]) && is_iso_ms(&b["updatedAt"]));
        assert!(b["updatedAt"].as_str() >= b["createdAt"].as_str());
        assert_eq!(b["locationId"], LOC);
    }
    assert!(
        list.iter().any(|b| b.get("phone").is_none())
            || list.iter().any(|b| b.get("website").is_none())
    );
    for id in sb.live_contact_ids(LOC) {
        let contact = sb.contact_json(LOC, &id).unwrap();
        if let Some(b) = contact["businessId"].as_str() {
            assert!(ids.contains(b), "contacts point at listed businesses");
        }
    }
    let (_, v) = c
        .get_url(&format!(
            "{base}/businesses?locationId={LOC}&limit=3&skip=2"
        ))
        .await;
    assert_eq!(v, json!({"businesses": list[2..5]}));
    let (s, v) = c.get_url(&format!("{base}/businesses/")).await;
    let missing = json!({"statusCode":422,"message":["locationId should not be empty"],"error":"Unprocessable Entity"});
    assert_eq!((s, v), (422, missing));
    let (s, _) = c
        .get_url(&format!("{base}/businesses/?locationId={LOC}&limit=abc"))
        .await;
    assert_eq!(s, 422);
    let forbidden =
        json!({"statusCode":403,"message":"The token does not have access to this location."});
    let (s, v) = c
        .get_url(&format!("{base}/businesses/?locationId={LOC2}"))
        .await;
    assert_eq!((s, v), (403, forbidden.clone()));

    let first = list[0]["id"].as_str().unwrap();
    let (s, v) = c.get_url(&format!("{base}/businesses/{first}")).await;
    assert_eq!((s, v), (200, json!({"business": list[0]})));
    let theirs = sb.businesses_json(LOC2)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.get_url(&format!("{base}/businesses/{theirs}")).await,
        (403, forbidden)
    );
    let (s, v) = c.get_url(&format!("{base}/businesses/nope")).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"statusCode":400,"message":"Business not found"})
        )
    );
    assert_eq!(sb.stats(LOC).business_requests, 8);
    sb.shutdown().await;
}

#[tokio::test]
async fn contacts_by_business_page_with_a_total_count() {
    let sb = start(two_locations(800)).await;
    let c = Client::new(&sb, TOKEN);
    let base = sb.base_url();
    let businesses = ids_of(&sb.businesses_json(LOC));
    let b = businesses
        .iter()
        .max_by_key(|b| sb.business_contact_ids(LOC, b).len())
        .unwrap()
        .clone();
    let want = sb.business_contact_ids(LOC, &b);
    assert!(want.len() > 15, "{}", want.len());
    let url = |q: &str| format!("{base}/contacts/business/{b}?locationId={LOC}{q}");
    let mut got = Vec::new();
    let mut keys = Vec::new();
    loop {
        let (s, v) = c
            .get_url(&url(&format!("&limit=7&skip={}", got.len())))
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v.as_object().unwrap().len(), 2);
        assert_eq!(v["count"], want.len());
        let page = v["contacts"].as_array().unwrap();
        for item in page {
            let id = item["id"].as_str().unwrap();
            assert_eq!(Some(item), sb.contact_json(LOC, id).as_ref());
            assert_eq!(item["businessId"], b.as_str());
            keys.push((
                item["dateAdded"].as_str().unwrap().to_string(),
                id.to_string(),
            ));
        }
        got.extend(ids_of(page));
        if page.len() < 7 {
            break;
        }
    }
    assert_eq!(got, want);
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "by dateAdded, then id"
    );
    let (_, v) = c.get_url(&url("")).await;
    assert_eq!(v["contacts"].as_array().unwrap().len(), want.len().min(25));

    let name = want.iter().find_map(|id| {
        let v = sb.contact_json(LOC, id).unwrap();
        v["name"].as_str().map(str::to_lowercase)
    });
    let needle: String = name.unwrap().chars().take(4).collect();
    let matching: Vec<&String> = want
        .iter()
        .filter(|id| {
            let v = sb.contact_json(LOC, id).unwrap();
            ["name", "email", "phone", "companyName"].iter().any(|k| {
                v[*k]
                    .as_str()
                    .is_some_and(|s| s.to_lowercase().contains(&needle))
            })
        })
        .collect();
    let q: String = url::form_urlencoded::byte_serialize(needle.as_bytes()).collect();
    let (s, v) = c.get_url(&url(&format!("&limit=100&query={q}"))).await;
    assert_eq!((s, &v["count"]), (200, &json!(matching.len())));
    assert_eq!(
        ids_of(v["contacts"].as_array().unwrap())
            .iter()
            .collect::<Vec<_>>(),
        matching
    );

    let unprocessable =
        |m: &str| json!({"statusCode":422,"message":[m],"error":"Unprocessable Entity"});
    let cases = [
        ("&limit=101", "limit must not be greater than 100"),
        ("&limit=0", "limit must not be less than 1"),
        ("&skip=-3", "skip must not be less than 0"),
    ];
    for (q, m) in cases {
        assert_eq!(c.get_url(&url(q)).await, (422, unprocessable(m)), "{q}");
    }
    let no_location = format!("{base}/contacts/business/{b}");
    assert_eq!(
        c.get_url(&no_location).await,
        (422, unprocessable("locationId should not be empty"))
    );
    let foreign = format!("{base}/contacts/business/{b}?locationId={LOC2}");
    assert_eq!(c.get_url(&foreign).await.0, 403);
    let unknown = format!("{base}/contacts/business/nope?locationId={LOC}");
    assert_eq!(
        c.get_url(&unknown).await,
        (200, json!({"contacts": [], "count": 0}))
    );
    assert_eq!(
        sb.stats(LOC).business_contacts_requests,
        got.len() as u64 / 7 + 1 + 8
    );

    let outsider = sb
        .live_contact_ids(LOC)
        .into_iter()
        .find(|id| !want.contains(id))
        .unwrap();
    let old = sb.contact_json(LOC, &outsider).unwrap();
    assert!(sb.set_contact_business(LOC, &outsider, Some(&b)));
    let moved = sb.contact_json(LOC, &outsider).unwrap();
    assert_eq!(moved["businessId"], b.as_str());
    assert!(moved["dateUpdated"].as_str() > old["dateUpdated"].as_str());
    assert!(sb.business_contact_ids(LOC, &b).contains(&outsider));
    let (_, v) = c.get_url(&url("&limit=1")).await;
    assert_eq!(v["count"], want.len() + 1);
    assert!(sb.set_contact_business(LOC, &outsider, None));
    assert!(
        sb.contact_json(LOC, &outsider)
            .unwrap()
            .get("businessId")
            .is_none()
    );
    assert!(!sb.business_contact_ids(LOC, &b).contains(&outsider));
    assert!(!sb.set_contact_business(LOC, &outsider, Some("nope")));
    assert!(!sb.set_contact_business(LOC, "missingContact000000", Some(&b)));
    sb.shutdown().await;
}

#[tokio::test]
async fn new_routes_cost_one_request_each_against_the_limiter() {
    let mut config = two_locations(20);
    config.limits = Some(RateLimits {
        burst_max: 6,
        interval: Duration::from_secs(10),
        daily_max: 1000,
    });
    let sb = start(config).await;
    let c = Client::new(&sb, TOKEN);
    let base = sb.base_url();
    let id = &sb.live_contact_ids(LOC)[0];
    let b = ids_of(&sb.businesses_json(LOC))[0].clone();
    let urls = [
        format!("{base}/contacts/{id}/tasks"),
        format!("{base}/contacts/{id}/notes"),
        format!("{base}/contacts/{id}/appointments"),
        format!("{base}/businesses/?locationId={LOC}"),
        format!("{base}/contacts/business/{b}?locationId={LOC}"),
    ];
    let mut remaining = Vec::new();
    for u in &urls {
        let (s, _, h) = c.send(c.http.get(u)).await;
        assert_eq!(s, 200, "{u}");
        remaining.push(h["x-ratelimit-remaining"].to_str().unwrap().to_string());
    }
    let req = c
        .http
        .post(format!("{base}/locations/{LOC}/tasks/search"))
        .json(&json!({}));
    let (s, _, h) = c.send(req).await;
    assert_eq!(s, 200);
    remaining.push(h["x-ratelimit-remaining"].to_str().unwrap().to_string());
    assert_eq!(remaining, ["5", "4", "3", "2", "1", "0"]);
    let (s, _, _) = c.send(c.http.get(&urls[0])).await;
    assert_eq!(s, 429);
    let st = sb.stats(LOC);
    let counters = (
        st.requests,
        st.tasks_requests,
        st.notes_requests,
        st.appointments_requests,
        st.business_requests,
        st.business_contacts_requests,
        st.task_search_requests,
        st.rate_limited,
    );
    assert_eq!(counters, (7, 2, 1, 1, 1, 1, 1, 1));
    sb.shutdown().await;
}

#[tokio::test]
async fn seeded_tasks_and_appointments_fall_due_around_today_and_contacts_are_never_in_the_future()
{
    let sb = start(SandboxConfig::new(
        11,
        vec![LocationSeed {
            id: LOC.into(),
            token: TOKEN.into(),
            contacts: 2_000,
        }],
    ))
    .await;
    let now = super::time_fmt::now_ms();
    let (mut due_ahead, mut due_past, mut starts_ahead, mut starts_past) = (0, 0, 0, 0);
    for id in sb.live_contact_ids(LOC) {
        let c = sb.contact_json(LOC, &id).unwrap();
        for key in ["dateAdded", "dateUpdated"] {
            let ms = parse_iso(c[key].as_str().unwrap()).unwrap();
            assert!(ms <= now, "{id} {key} {} is in the future", c[key]);
        }
        for t in sb.tasks_json(LOC, &id).unwrap() {
            let due = parse_iso(t["dueDate"].as_str().unwrap()).unwrap();
            *(if due >= now {
                &mut due_ahead
            } else {
                &mut due_past
            }) += 1;
        }
        for a in sb.appointments_json(LOC, &id).unwrap() {
            // "2025-03-01 10:15:30" (UTC)
            let start = parse_iso(&format!(
                "{}Z",
                a["startTime"].as_str().unwrap().replace(' ', "T")
            ))
            .unwrap();
            *(if start >= now {
                &mut starts_ahead
            } else {
                &mut starts_past
            }) += 1;
        }
    }
    assert!(
        due_ahead > 0 && due_past > 0,
        "{due_ahead} due ahead, {due_past} past"
    );
    assert!(
        starts_ahead > 0 && starts_past > 0,
        "{starts_ahead} appointments ahead, {starts_past} past"
    );
    sb.shutdown().await;
}
