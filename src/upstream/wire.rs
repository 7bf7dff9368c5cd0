//! HighLevel's JSON: page envelopes and the contact object, parsed leniently field by field.
//!
//! A page whose envelope is broken, or a contact without a string `id`, is an error (the page is
//! rejected whole). A field of an unexpected type is counted as a warning, its typed column is
//! left empty, and the raw JSON keeps it.

use crate::model::{Contact, CustomFieldValue, PagedContact, Record, SortKey, ms_from_iso};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::fmt;

/// A field as it arrived: missing, null, the expected type, or something else.
#[derive(Debug, Default)]
pub(crate) enum Field<T> {
    #[default]
    Absent,
    Null,
    Ok(T),
    Mismatch,
}

impl<T> Field<T> {
    fn take(self, warnings: &mut u32) -> Option<T> {
        match self {
            Field::Ok(v) => Some(v),
            Field::Mismatch => {
                *warnings += 1;
                None
            }
            Field::Absent | Field::Null => None,
        }
    }
}

/// Any JSON value, reduced to what the typed columns can use.
enum Scalar {
    Null,
    Bool(bool),
    Str(String),
    Other,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, _v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }
    fn visit_u64<E: de::Error>(self, _v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }
    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

impl<'de> Deserialize<'de> for Field<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match d.deserialize_any(ScalarVisitor)? {
            Scalar::Null => Field::Null,
            Scalar::Str(s) => Field::Ok(s),
            Scalar::Bool(_) | Scalar::Other => Field::Mismatch,
        })
    }
}

impl<'de> Deserialize<'de> for Field<bool> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match d.deserialize_any(ScalarVisitor)? {
            Scalar::Null => Field::Null,
            Scalar::Bool(b) => Field::Ok(b),
            Scalar::Str(_) | Scalar::Other => Field::Mismatch,
        })
    }
}

/// A list field (tags, customFields, searchAfter): `Ok` when it is an array.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<Vec<T>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: Option<&'de RawValue> = Option::deserialize(d)?;
        Ok(match raw {
            None => Field::Null,
            Some(r) if r.get().starts_with('[') => match serde_json::from_str(r.get()) {
                Ok(v) => Field::Ok(v),
                Err(_) => Field::Mismatch,
            },
            Some(_) => Field::Mismatch,
        })
    }
}

/// The contact fields we model; everything else stays in the raw JSON only.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireContact {
    id: Field<String>,
    location_id: Field<String>,
    first_name: Field<String>,
    last_name: Field<String>,
    name: Field<String>,
    email: Field<String>,
    phone: Field<String>,
    company_name: Field<String>,
    business_id: Field<String>,
    source: Field<String>,
    #[serde(rename = "type")]
    contact_type: Field<String>,
    assigned_to: Field<String>,
    dnd: Field<bool>,
    country: Field<String>,
    city: Field<String>,
    state: Field<String>,
    postal_code: Field<String>,
    timezone: Field<String>,
    tags: Field<Vec<Field<String>>>,
    custom_fields: Field<Vec<WireCustomField>>,
    date_added: Field<String>,
    date_updated: Field<String>,
    search_after: Field<Vec<Box<RawValue>>>,
}

#[derive(Deserialize)]
struct WireCustomField {
    #[serde(default)]
    id: Field<String>,
    #[serde(default)]
    value: Option<Box<RawValue>>,
}

/// Why a page or record was rejected.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the body is not the expected JSON object: {0}")]
    Envelope(String),
    #[error("contact #{index} of the page is not a JSON object")]
    NotAnObject { index: usize },
    #[error("contact #{index} of the page has no string `id`")]
    NoId { index: usize },
    #[error(
        "contact {id} has neither a `searchAfter` nor a parseable `{field}`, so the page cannot be positioned"
    )]
    NoPosition { id: String, field: &'static str },
    #[error("`{key}` item #{index} is not a JSON object with a non-empty string `id`")]
    BadRecord { key: &'static str, index: usize },
}

/// A list of records (`{tasks:[…]}`, `{notes:[…]}`, `{events:[…]}`, `{businesses:[…]}`,
/// `{contacts:[…], count}`) and the total when the envelope carries one.
#[derive(Debug, Default)]
pub struct RecordPage {
    pub records: Vec<Record>,
    pub count: Option<u64>,
}

/// The fields of a record we read; the rest stays in its raw JSON.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireRecord {
    id: Field<String>,
    contact_id: Field<String>,
}

/// Parses `{<key>: [objects…], count?}`. A missing or non-list `key`, or an item without a string
/// `id`, rejects the whole body: a partial list must never replace a complete one.
pub fn parse_records(body: &[u8], key: &'static str) -> Result<RecordPage, WireError> {
    let env: HashMap<&str, &RawValue> =
        serde_json::from_slice(body).map_err(|e| WireError::Envelope(e.to_string()))?;
    let list = env
        .get(key)
        .ok_or_else(|| WireError::Envelope(format!("no `{key}` list")))?;
    let items: Vec<&RawValue> = serde_json::from_str(list.get())
        .map_err(|_| WireError::Envelope(format!("`{key}` is not a list")))?;
    let mut records = Vec::with_capacity(items.len());
    for (index, raw) in items.into_iter().enumerate() {
        let bad = || WireError::BadRecord { key, index };
        if !raw.get().starts_with('{') {
            return Err(bad());
        }
        let w: WireRecord = serde_json::from_str(raw.get()).map_err(|_| bad())?;
        let mut ignored = 0;
        let id =
            w.id.take(&mut ignored)
                .filter(|id| !id.is_empty())
                .ok_or_else(bad)?;
        records.push(Record {
            id,
            contact_id: w.contact_id.take(&mut ignored).filter(|c| !c.is_empty()),
            raw: raw.get().to_string(),
        });
    }
    let count = env
        .get("count")
        .and_then(|c| serde_json::from_str::<f64>(c.get()).ok())
        .filter(|c| *c >= 0.0)
        .map(|c| c as u64);
    Ok(RecordPage { records, count })
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    contacts: Vec<&'a RawValue>,
    #[serde(default)]
    total: Option<f64>,
    #[serde(default)]
    count: Option<f64>,
    #[serde(default, borrow)]
    meta: Option<&'a RawValue>,
}

/// The legacy list's `meta` (ContactsMetaSchema); all fields nullable in practice.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ListMeta {
    pub total: Option<f64>,
    pub next_page_url: Option<String>,
    pub start_after_id: Option<String>,
    pub start_after: Option<f64>,
}

/// A parsed page of contacts.
#[derive(Debug, Default)]
pub struct ContactsPage {
    pub contacts: Vec<PagedContact>,
    pub total: Option<u64>,
    pub meta: Option<ListMeta>,
    /// HighLevel's clock when it answered, from the `Date` header (whole seconds, rounded down);
    /// set by the client for search pages.
    pub server_date_ms: Option<i64>,
}

/// Which timestamp positions contacts in a page's order.
#[derive(Clone, Copy, Debug)]
pub enum Position {
    /// Search sorted by dateUpdated: the contact's `searchAfter`, else its `dateUpdated`.
    DateUpdated,
    /// The legacy list, ordered by dateAdded.
    DateAdded,
}

/// Parses a page body (search or legacy list).
pub fn parse_page(body: &[u8], position: Position) -> Result<ContactsPage, WireError> {
    let env: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| WireError::Envelope(e.to_string()))?;
    let meta = match env.meta {
        Some(m) if m.get() != "null" => Some(
            serde_json::from_str::<ListMeta>(m.get())
                .map_err(|e| WireError::Envelope(format!("`meta`: {e}")))?,
        ),
        _ => None,
    };
    let mut contacts = Vec::with_capacity(env.contacts.len());
    for (index, raw) in env.contacts.iter().enumerate() {
        contacts.push(parse_contact(raw, index, position)?);
    }
    let total = env
        .total
        .or(env.count)
        .filter(|t| *t >= 0.0)
        .map(|t| t as u64);
    Ok(ContactsPage {
        contacts,
        total,
        meta,
        server_date_ms: None,
    })
}

/// Parses one contact object (from a page or from `GET /contacts/:id`).
pub fn parse_contact(
    raw: &RawValue,
    index: usize,
    position: Position,
) -> Result<PagedContact, WireError> {
    if !raw.get().starts_with('{') {
        return Err(WireError::NotAnObject { index });
    }
    let w: WireContact =
        serde_json::from_str(raw.get()).map_err(|_| WireError::NotAnObject { index })?;
    let mut warn = 0u32;
    let id = match w.id {
        Field::Ok(id) if !id.is_empty() => id,
        _ => return Err(WireError::NoId { index }),
    };
    let date_updated = w.date_updated.take(&mut warn);
    let date_added = w.date_added.take(&mut warn);
    let date_updated_ms = date_updated.as_deref().and_then(ms_from_iso);
    let key = match position {
        Position::DateUpdated => search_after_ms(w.search_after).or(date_updated_ms),
        Position::DateAdded => date_added.as_deref().and_then(ms_from_iso),
    };
    let Some(ms) = key else {
        let field = match position {
            Position::DateUpdated => "dateUpdated",
            Position::DateAdded => "dateAdded",
        };
        return Err(WireError::NoPosition { id, field });
    };
    let tags = w
        .tags
        .take(&mut warn)
        .map(|t| t.into_iter().filter_map(|f| f.take(&mut warn)).collect())
        .unwrap_or_default();
    let custom_fields = w
        .custom_fields
        .take(&mut warn)
        .map(|cf| custom_values(cf, &mut warn))
        .unwrap_or_default();
    let contact = Contact {
        id: id.clone(),
        location_id: w.location_id.take(&mut warn),
        first_name: w.first_name.take(&mut warn),
        last_name: w.last_name.take(&mut warn),
        name: w.name.take(&mut warn),
        email: w.email.take(&mut warn),
        phone: w.phone.take(&mut warn),
        company_name: w.company_name.take(&mut warn),
        business_id: w.business_id.take(&mut warn),
        source: w.source.take(&mut warn),
        contact_type: w.contact_type.take(&mut warn),
        assigned_to: w.assigned_to.take(&mut warn),
        dnd: w.dnd.take(&mut warn),
        country: w.country.take(&mut warn),
        city: w.city.take(&mut warn),
        state: w.state.take(&mut warn),
        postal_code: w.postal_code.take(&mut warn),
        timezone: w.timezone.take(&mut warn),
        tags,
        custom_fields,
        date_added,
        date_updated,
        date_updated_ms,
        raw: raw.get().to_string(),
        field_warnings: warn,
    };
    Ok(PagedContact {
        contact,
        key: SortKey { ms, id },
    })
}

/// The first `searchAfter` value when it is a number (ms of the sort field).
fn search_after_ms(f: Field<Vec<Box<RawValue>>>) -> Option<i64> {
    let Field::Ok(values) = f else { return None };
    let first = values.first()?;
    let n: f64 = serde_json::from_str(first.get()).ok()?;
    Some(n as i64)
}

fn custom_values(fields: Vec<WireCustomField>, warn: &mut u32) -> Vec<CustomFieldValue> {
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let Some(field_id) = f.id.take(warn) else {
            *warn += 1;
            continue;
        };
        let value = match f.value {
            None => continue,
            Some(v) => match serde_json::from_str::<String>(v.get()) {
                Ok(s) => s,
                Err(_) if v.get() == "null" => continue,
                Err(_) => v.get().to_string(),
            },
        };
        out.push(CustomFieldValue { field_id, value });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_raw_json_and_reject_items_without_an_id() {
        let body =
            br#"{"events":[{"id":"e1","contactId":"c1","x":[1]},{"id":"e2"}],"traceId":"t"}"#;
        let page = parse_records(body, "events").unwrap();
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.records[0].contact_id.as_deref(), Some("c1"));
        assert_eq!(
            page.records[0].raw,
            r#"{"id":"e1","contactId":"c1","x":[1]}"#
        );
        assert_eq!(page.records[1].contact_id, None);
        assert_eq!(page.count, None);
        let page = parse_records(br#"{"contacts":[],"count":7}"#, "contacts").unwrap();
        assert_eq!(page.count, Some(7));
        for bad in [
            &br#"{"notes":[{"id":""}]}"#[..],
            br#"{"notes":[{"body":"x"}]}"#,
            br#"{"notes":[5]}"#,
        ] {
            assert!(matches!(
                parse_records(bad, "notes"),
                Err(WireError::BadRecord {
                    key: "notes",
                    index: 0
                })
            ));
        }
        assert!(matches!(
            parse_records(br#"{"tasks":[]}"#, "notes"),
            Err(WireError::Envelope(_))
        ));
        assert!(matches!(
            parse_records(br#"{"notes":{}}"#, "notes"),
            Err(WireError::Envelope(_))
        ));
        assert!(matches!(
            parse_records(b"<html>", "notes"),
            Err(WireError::Envelope(_))
        ));
    }

    #[test]
    fn a_page_keeps_unknown_fields_in_raw_and_tolerates_odd_types() {
        let body = br#"{"contacts":[{"id":"c1","firstName":"Jos\u00e9","email":null,"dnd":"yes",
            "tags":["a",5],"customFields":[{"id":"f1","value":"x"},{"id":"f2","value":3}],
            "dateUpdated":"2024-01-02T03:04:05.678Z","validEmail":true}],"total":1,"traceId":"t"}"#;
        let page = parse_page(body, Position::DateUpdated).unwrap();
        let c = &page.contacts[0].contact;
        assert_eq!(c.first_name.as_deref(), Some("José"));
        assert_eq!(c.email, None);
        assert_eq!(c.dnd, None);
        assert_eq!(c.tags, vec!["a".to_string()]);
        assert_eq!(c.custom_fields[1].value, "3");
        assert_eq!(c.field_warnings, 2);
        assert!(c.raw.contains("validEmail"));
        assert_eq!(page.total, Some(1));
    }

    #[test]
    fn a_contact_without_id_rejects_the_page() {
        let body = br#"{"contacts":[{"firstName":"x","dateUpdated":"2024-01-02T03:04:05.678Z"}]}"#;
        assert!(matches!(
            parse_page(body, Position::DateUpdated),
            Err(WireError::NoId { index: 0 })
        ));
        assert!(matches!(
            parse_page(br#"{"contacts":[5]}"#, Position::DateUpdated),
            Err(WireError::NotAnObject { index: 0 })
        ));
        assert!(parse_page(br#"{"contacts":{}}"#, Position::DateUpdated).is_err());
    }
}
