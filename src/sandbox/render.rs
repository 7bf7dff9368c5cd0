//! JSON rendering of contacts (GET-by-id shape per `GetContectByIdSchema`,
//! plus HighLevel's extra fields) and of whole response bodies, written
//! straight into a `Vec<u8>` with serde.

use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};

use super::data::{Contact, LocInfo, flag, null};
use super::search::SortVal;
use super::time_fmt::{iso_ms, ymd};
use super::vocab::{ATTRIBUTIONS, DND_CHANNELS, DND_STATUSES, USER_AGENTS};

/// A contact as JSON. `search_after` set = search-result shape (no
/// `dndSettings`, plus a `searchAfter` array).
pub(super) struct ContactJson<'a> {
    pub c: &'a Contact,
    pub loc: &'a LocInfo,
    pub search_after: Option<&'a [SortVal]>,
}

/// Writes `key: value`, `key: null` or nothing.
pub(super) fn opt<M: SerializeMap, T: Serialize>(
    m: &mut M,
    key: &str,
    v: Option<T>,
    as_null: bool,
) -> Result<(), M::Error> {
    match v {
        Some(v) => m.serialize_entry(key, &v),
        None if as_null => m.serialize_entry(key, &()),
        None => Ok(()),
    }
}

impl Serialize for ContactJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.identity(&mut m)?;
        self.contactability(&mut m)?;
        self.place(&mut m)?;
        self.dates_and_names(&mut m)?;
        self.extras(&mut m)?;
        if let Some(sa) = self.search_after {
            m.serialize_entry("searchAfter", sa)?;
        }
        m.end()
    }
}

impl ContactJson<'_> {
    fn identity<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        let c = self.c;
        let names_null = c.is_null(null::FIRST) && c.is_null(null::LAST);
        m.serialize_entry("id", c.id.as_str())?;
        opt(m, "name", c.full_name(), names_null)?;
        m.serialize_entry("locationId", &self.loc.id)?;
        opt(m, "firstName", c.first_name(), c.is_null(null::FIRST))?;
        opt(m, "lastName", c.last_name(), c.is_null(null::LAST))?;
        let email = c.email.as_deref();
        opt(m, "email", email, c.is_null(null::EMAIL))?;
        let lower = email.map(str::to_lowercase);
        opt(m, "emailLowerCase", lower, c.is_null(null::EMAIL))?;
        opt(m, "timezone", c.timezone_str(), c.is_null(null::TIMEZONE))?;
        opt(m, "companyName", c.company_name(), c.is_null(null::COMPANY))
    }

    fn contactability<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        let c = self.c;
        opt(m, "phone", c.phone.as_deref(), c.is_null(null::PHONE))?;
        m.serialize_entry("dnd", &c.is_dnd())?;
        if let (None, Some(p)) = (self.search_after, c.dnd_settings) {
            m.serialize_entry("dndSettings", &DndJson(p))?;
        }
        m.serialize_entry("type", c.type_str())?;
        opt(m, "source", c.source_str(), c.is_null(null::SOURCE))?;
        opt(
            m,
            "assignedTo",
            c.assigned_to(self.loc),
            c.is_null(null::ASSIGNED),
        )
    }

    fn place<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        let c = self.c;
        let p = c.place();
        let city_null = c.is_null(null::CITY);
        opt(m, "address1", c.address1(), c.is_null(null::ADDRESS))?;
        opt(m, "city", p.map(|p| p.0), city_null)?;
        opt(m, "state", p.map(|p| p.1), city_null)?;
        opt(m, "country", p.map(|p| p.2), city_null)?;
        opt(m, "postalCode", c.postal_code(), city_null)?;
        opt(m, "website", c.website_str(), c.is_null(null::WEBSITE))?;
        let tags: Vec<&str> = c.tag_list().collect();
        m.serialize_entry("tags", &tags)
    }

    fn dates_and_names<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        let c = self.c;
        opt(m, "dateOfBirth", c.dob_days.map(ymd), c.is_null(null::DOB))?;
        m.serialize_entry("dateAdded", &iso_ms(c.date_added))?;
        m.serialize_entry("dateUpdated", &iso_ms(c.date_updated))?;
        let lower = |s: Option<&str>| s.map(str::to_lowercase);
        opt(
            m,
            "firstNameLowerCase",
            lower(c.first_name()),
            c.is_null(null::FIRST),
        )?;
        let full = c.full_name().map(|n| n.to_lowercase());
        opt(m, "fullNameLowerCase", full, false)?;
        opt(
            m,
            "lastNameLowerCase",
            lower(c.last_name()),
            c.is_null(null::LAST),
        )?;
        opt(m, "lastActivity", c.last_activity.map(iso_ms), false)
    }

    fn extras<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        let c = self.c;
        let custom: Vec<CustomJson> = c
            .custom_list(self.loc)
            .map(|(id, value)| CustomJson { id, value })
            .collect();
        m.serialize_entry("customFields", &custom)?;
        opt(m, "businessId", c.business_id(self.loc), false)?;
        if let Some(a) = c.attribution {
            m.serialize_entry("attributionSource", &AttributionJson { c, pattern: a })?;
        }
        opt(m, "visitorId", c.visitor_id(), false)?;
        self.undocumented(m)
    }

    /// Fields real payloads carry that the spec lacks.
    fn undocumented<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        let c = self.c;
        if c.flags & flag::ADDL_EMAILS != 0 {
            let alt = format!("alt{}@example.org", c.salt % 10_000);
            m.serialize_entry("additionalEmails", &[alt])?;
        }
        let users = &self.loc.users;
        let follower = users.get(c.salt as usize % users.len().max(1));
        if let Some(f) = follower.filter(|_| c.flags & flag::FOLLOWERS != 0) {
            m.serialize_entry("followers", &[f])?;
        }
        if c.flags & flag::VALID_EMAIL_SET != 0 {
            m.serialize_entry("validEmail", &(c.flags & flag::VALID_EMAIL != 0))?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct CustomJson<'a> {
    id: &'a str,
    value: &'a str,
}

/// `dndSettings`: 2 bits per channel (0 = absent, 1..=3 = status).
struct DndJson(u16);

#[derive(Serialize)]
struct DndChannel {
    status: &'static str,
    message: &'static str,
    code: &'static str,
}

impl Serialize for DndJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (i, name) in DND_CHANNELS.iter().enumerate() {
            let code = usize::from((self.0 >> (2 * i)) & 3);
            if let Some(status) = code.checked_sub(1).and_then(|k| DND_STATUSES.get(k)) {
                let msg = if code == 3 { "Opted out" } else { "" };
                let ch = DndChannel {
                    status,
                    message: msg,
                    code: "",
                };
                m.serialize_entry(name, &ch)?;
            }
        }
        m.end()
    }
}

struct AttributionJson<'a> {
    c: &'a Contact,
    pattern: u8,
}

impl Serialize for AttributionJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(a) = ATTRIBUTIONS.get(usize::from(self.pattern)) else {
            return Err(S::Error::custom("unknown attribution pattern"));
        };
        let salt = self.c.salt;
        let ip = format!(
            "{}.{}.{}.{}",
            11 + salt % 200,
            salt >> 8 & 255,
            salt >> 16 & 255,
            1 + (salt >> 24) % 254
        );
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("url", a.0)?;
        m.serialize_entry("campaign", &a.3)?;
        m.serialize_entry("utmSource", &a.1)?;
        m.serialize_entry("utmMedium", &a.2)?;
        m.serialize_entry("utmContent", &())?;
        m.serialize_entry("referrer", &a.4)?;
        m.serialize_entry("fbclid", &())?;
        m.serialize_entry("gclid", &())?;
        m.serialize_entry("userAgent", USER_AGENTS[salt as usize % USER_AGENTS.len()])?;
        m.serialize_entry("ip", &ip)?;
        m.serialize_entry("medium", &a.5)?;
        m.end()
    }
}

/// `{"contact":{...}}`.
pub(super) fn get_body(c: &Contact, loc: &LocInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    out.extend_from_slice(b"{\"contact\":");
    write_json(
        &mut out,
        &ContactJson {
            c,
            loc,
            search_after: None,
        },
    );
    out.push(b'}');
    out
}

/// Appends `v` as JSON (rendering our own types cannot fail; on the
/// impossible error, `null` keeps the document valid).
pub(super) fn write_json<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Writes `"contacts":[...]` from pre-rendered items; `broken` injects a
/// non-object element in the middle (a malformed page).
pub(super) fn write_contacts<I>(out: &mut Vec<u8>, items: I, broken: bool)
where
    I: ExactSizeIterator,
    I::Item: Serialize,
{
    let len = items.len();
    let mid = len / 2;
    out.extend_from_slice(b"\"contacts\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if broken && i == mid {
            out.extend_from_slice(b"42,");
        }
        write_json(out, &item);
    }
    if broken && len == 0 {
        out.extend_from_slice(b"42");
    }
    out.push(b']');
}

/// Standard error bodies.
pub(super) fn error_body(status: u16, message: &str, error: Option<&str>) -> Vec<u8> {
    let v = match error {
        Some(e) => serde_json::json!({"statusCode": status, "message": message, "error": e}),
        None => serde_json::json!({"statusCode": status, "message": message}),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A 422 body with a list of validation messages.
pub(super) fn unprocessable_body(messages: &[String]) -> Vec<u8> {
    let v = serde_json::json!({
        "statusCode": 422,
        "message": messages,
        "error": "Unprocessable Entity",
    });
    serde_json::to_vec(&v).unwrap_or_default()
}
