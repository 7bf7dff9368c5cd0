//! JSON rendering of sub-resources (`TaskSchema`, `GetNoteSchema`,
//! `GetEventSchema`) and of the bodies that carry them: `{"tasks":[...]}`,
//! `{"task":{...}}` and the like.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::data::{Id, LocInfo};
use super::render::{opt, write_json};
use super::subs::{Appointment, Note, SubInfo, Task, masked, null};
use super::time_fmt::{iso_ms, ymd_hms};

/// A task as `TaskSchema`.
pub(super) struct TaskJson<'a> {
    pub t: &'a Task,
    pub contact: &'a Id,
    pub loc: &'a LocInfo,
}

impl Serialize for TaskJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.t;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", t.id.as_str())?;
        m.serialize_entry("title", t.title_str())?;
        opt(&mut m, "body", t.body_str(), t.nulls & null::BODY != 0)?;
        let assigned = t.assigned_to(self.loc);
        opt(
            &mut m,
            "assignedTo",
            assigned,
            t.nulls & null::ASSIGNED != 0,
        )?;
        m.serialize_entry("dueDate", &iso_ms(t.due))?;
        m.serialize_entry("completed", &t.completed)?;
        m.serialize_entry("contactId", self.contact.as_str())?;
        m.end()
    }
}

/// A note as `GetNoteSchema`.
pub(super) struct NoteJson<'a> {
    pub n: &'a Note,
    pub contact: &'a Id,
    pub loc: &'a LocInfo,
}

impl Serialize for NoteJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.n;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", n.id.as_str())?;
        m.serialize_entry("body", n.body_str())?;
        opt(&mut m, "userId", n.user_id(self.loc), false)?;
        m.serialize_entry("dateAdded", &iso_ms(n.added))?;
        m.serialize_entry("contactId", self.contact.as_str())?;
        opt(&mut m, "title", n.title_str(), false)?;
        opt(&mut m, "color", n.color_str(), false)?;
        opt(&mut m, "pinned", n.pinned, false)?;
        m.end()
    }
}

/// An appointment as `GetEventSchema` (dates as "YYYY-MM-DD HH:MM:SS").
pub(super) struct AppointmentJson<'a> {
    pub a: &'a Appointment,
    pub contact: &'a Id,
    pub loc: &'a LocInfo,
    pub info: &'a SubInfo,
}

impl Serialize for AppointmentJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.a;
        let (status, appointment_status) = a.statuses();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", a.id.as_str())?;
        opt(
            &mut m,
            "calendarId",
            pick(&self.info.calendars, Some(a.calendar)),
            false,
        )?;
        m.serialize_entry("status", status)?;
        m.serialize_entry("title", a.title_str())?;
        opt(&mut m, "assignedUserId", a.assigned_user(self.loc), false)?;
        opt(&mut m, "notes", a.notes_str(), false)?;
        m.serialize_entry("startTime", &ymd_hms(a.start))?;
        m.serialize_entry("endTime", &ymd_hms(a.end()))?;
        opt(&mut m, "address", a.address_str(), false)?;
        m.serialize_entry("locationId", &self.loc.id)?;
        m.serialize_entry("contactId", self.contact.as_str())?;
        opt(&mut m, "groupId", pick(&self.info.groups, a.group), false)?;
        m.serialize_entry("appointmentStatus", appointment_status)?;
        m.serialize_entry("users", &a.user_ids(self.loc))?;
        m.serialize_entry("dateAdded", &ymd_hms(a.added))?;
        m.serialize_entry("dateUpdated", &ymd_hms(a.updated))?;
        let resources = masked(&self.info.resources, a.resources);
        m.serialize_entry("assignedResources", &resources)?;
        m.end()
    }
}

fn pick(ids: &[String], i: Option<u8>) -> Option<&str> {
    i.and_then(|i| ids.get(usize::from(i)).map(String::as_str))
}

/// `{"<key>":[items...]}`.
pub(super) fn list_body<I>(key: &str, items: I) -> Vec<u8>
where
    I: IntoIterator,
    I::Item: Serialize,
{
    let mut out = Vec::with_capacity(1024);
    out.push(b'{');
    write_json(&mut out, &key);
    out.extend_from_slice(b":[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(&mut out, &item);
    }
    out.extend_from_slice(b"]}");
    out
}

/// `{"<key>":item}`.
pub(super) fn one_body<T: Serialize>(key: &str, item: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    write_json(&mut out, &key);
    out.push(b':');
    write_json(&mut out, item);
    out.push(b'}');
    out
}
