//! Search filters: parsing `{field, operator, value}` / `{group, filters}`
//! JSON into a typed tree (with class-validator-style error messages) and
//! evaluating it against a contact.

use serde_json::Value;

use super::data::{Contact, LocInfo};
use super::time_fmt::ms_from_json;

/// A filterable contact field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Id,
    FirstName,
    LastName,
    Name,
    Email,
    Phone,
    CompanyName,
    Tags,
    Type,
    Source,
    AssignedTo,
    BusinessId,
    Country,
    City,
    State,
    PostalCode,
    Address1,
    Timezone,
    Website,
    Dnd,
    DateAdded,
    DateUpdated,
    LastActivity,
}

/// What kind of value a field holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Tags,
    Bool,
    Date,
}

impl Field {
    /// Parses a field name (spec names plus `*LowerCase` aliases).
    pub fn parse(name: &str) -> Option<Field> {
        use Field::*;
        Some(match name {
            "id" => Id,
            "firstName" | "firstNameLowerCase" => FirstName,
            "lastName" | "lastNameLowerCase" => LastName,
            "name" | "fullNameLowerCase" => Name,
            "email" | "emailLowerCase" => Email,
            "phone" => Phone,
            "companyName" => CompanyName,
            "tags" => Tags,
            "type" => Type,
            "source" => Source,
            "assignedTo" => AssignedTo,
            "businessId" => BusinessId,
            "country" => Country,
            "city" => City,
            "state" => State,
            "postalCode" => PostalCode,
            "address1" => Address1,
            "timezone" => Timezone,
            "website" => Website,
            "dnd" => Dnd,
            "dateAdded" => DateAdded,
            "dateUpdated" => DateUpdated,
            "lastActivity" => LastActivity,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        match self {
            Field::Tags => Kind::Tags,
            Field::Dnd => Kind::Bool,
            Field::DateAdded | Field::DateUpdated | Field::LastActivity => Kind::Date,
            _ => Kind::Text,
        }
    }

    /// The field's text value, lowercased (text fields only).
    fn text(self, c: &Contact, loc: &LocInfo) -> Option<String> {
        let s: Option<String> = match self {
            Field::Id => Some(c.id.as_str().to_string()),
            Field::FirstName => c.first_name().map(str::to_string),
            Field::LastName => c.last_name().map(str::to_string),
            Field::Name => c.full_name(),
            Field::Email => c.email.as_deref().map(str::to_string),
            Field::Phone => c.phone.as_deref().map(str::to_string),
            Field::CompanyName => c.company_name().map(str::to_string),
            Field::Type => Some(c.type_str().to_string()),
            Field::Source => c.source_str().map(str::to_string),
            Field::AssignedTo => c.assigned_to(loc).map(str::to_string),
            Field::BusinessId => c.business_id(loc).map(str::to_string),
            Field::Country => c.place().map(|p| p.2.to_string()),
            Field::City => c.place().map(|p| p.0.to_string()),
            Field::State => c.place().map(|p| p.1.to_string()),
            Field::PostalCode => c.postal_code(),
            Field::Address1 => c.address1(),
            Field::Timezone => c.timezone_str().map(str::to_string),
            Field::Website => c.website_str().map(str::to_string),
            _ => None,
        };
        if self == Field::Id {
            s
        } else {
            s.map(|s| s.to_lowercase())
        }
    }

    /// The field's timestamp (date fields only).
    pub fn date(self, c: &Contact) -> Option<i64> {
        match self {
            Field::DateAdded => Some(c.date_added),
            Field::DateUpdated => Some(c.date_updated),
            Field::LastActivity => c.last_activity,
            _ => None,
        }
    }
}

/// Inclusive/exclusive bounds of a `range` filter, in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Range {
    pub gte: Option<i64>,
    pub gt: Option<i64>,
    pub lte: Option<i64>,
    pub lt: Option<i64>,
}

impl Range {
    fn contains(&self, v: i64) -> bool {
        self.gte.is_none_or(|b| v >= b)
            && self.gt.is_none_or(|b| v > b)
            && self.lte.is_none_or(|b| v <= b)
            && self.lt.is_none_or(|b| v < b)
    }
}

/// A comparison value, normalised for the field's kind.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Operand {
    /// Lowercased strings (any-of).
    Text(Vec<String>),
    Bool(bool),
    Date(i64),
}

/// An operator with its operand.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Op {
    Eq(Operand),
    NotEq(Operand),
    Contains(String),
    NotContains(String),
    Exists,
    NotExists,
    Range(Range),
}

/// A filter tree node.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Filter {
    Cond { field: Field, op: Op },
    Group { any: bool, filters: Vec<Filter> },
}

/// Parses the top-level `filters` array (at `path`, e.g. "filters").
pub(super) fn parse_filters(v: &Value, path: &str) -> Result<Vec<Filter>, String> {
    let Value::Array(items) = v else {
        return Err(format!("{path} must be an array"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, f)| parse_filter(f, &format!("{path}.{i}")))
        .collect()
}

fn parse_filter(v: &Value, path: &str) -> Result<Filter, String> {
    let Value::Object(obj) = v else {
        return Err(format!("{path} must be an object"));
    };
    if let Some(group) = obj.get("group") {
        let any = match group.as_str().map(str::to_ascii_uppercase).as_deref() {
            Some("AND") => false,
            Some("OR") => true,
            _ => {
                return Err(format!(
                    "{path}.group must be one of the following values: AND, OR"
                ));
            }
        };
        let inner = obj.get("filters").unwrap_or(&Value::Null);
        let filters = parse_filters(inner, &format!("{path}.filters"))?;
        return Ok(Filter::Group { any, filters });
    }
    let name = obj.get("field").and_then(Value::as_str).unwrap_or("");
    let field = Field::parse(name)
        .ok_or_else(|| format!("{path}.field '{name}' is not a supported filter field"))?;
    let op_name = obj.get("operator").and_then(Value::as_str).unwrap_or("");
    let value = obj.get("value").unwrap_or(&Value::Null);
    let op = parse_op(field, op_name, value, path)?;
    Ok(Filter::Cond { field, op })
}

fn parse_op(field: Field, op: &str, value: &Value, path: &str) -> Result<Op, String> {
    let bad_value = || {
        format!(
            "{path}.value is invalid for operator '{op}' on field '{}'",
            field_name(field)
        )
    };
    Ok(match op {
        "eq" => Op::Eq(operand(field, value).ok_or_else(bad_value)?),
        "not_eq" => Op::NotEq(operand(field, value).ok_or_else(bad_value)?),
        "contains" | "not_contains" => {
            if !matches!(field.kind(), Kind::Text | Kind::Tags) {
                return Err(unsupported(path, op, field));
            }
            let s = scalar_text(field, value).ok_or_else(bad_value)?;
            if op == "contains" {
                Op::Contains(s)
            } else {
                Op::NotContains(s)
            }
        }
        "exists" => Op::Exists,
        "not_exists" => Op::NotExists,
        "range" => {
            if field.kind() != Kind::Date {
                return Err(unsupported(path, op, field));
            }
            Op::Range(parse_range(value).ok_or_else(bad_value)?)
        }
        _ => return Err(format!("{path}.operator '{op}' is not supported")),
    })
}

fn unsupported(path: &str, op: &str, field: Field) -> String {
    format!(
        "{path}.operator '{op}' is not supported for field '{}'",
        field_name(field)
    )
}

fn field_name(f: Field) -> String {
    let s = format!("{f:?}");
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => s,
    }
}

/// Text operand; case-folded except for the case-sensitive `id`.
fn scalar_text(field: Field, v: &Value) -> Option<String> {
    match v {
        Value::String(s) if field == Field::Id => Some(s.clone()),
        Value::String(s) => Some(s.to_lowercase()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn operand(field: Field, v: &Value) -> Option<Operand> {
    match field.kind() {
        Kind::Text | Kind::Tags => match v {
            Value::Array(items) => items
                .iter()
                .map(|i| scalar_text(field, i))
                .collect::<Option<_>>()
                .map(Operand::Text),
            _ => scalar_text(field, v).map(|s| Operand::Text(vec![s])),
        },
        Kind::Bool => match v {
            Value::Bool(b) => Some(Operand::Bool(*b)),
            Value::String(s) => s.parse().ok().map(Operand::Bool),
            _ => None,
        },
        Kind::Date => ms_from_json(v).map(Operand::Date),
    }
}

fn parse_range(v: &Value) -> Option<Range> {
    let Value::Object(obj) = v else {
        return None;
    };
    let mut r = Range::default();
    for (k, val) in obj {
        let ms = Some(ms_from_json(val)?);
        match k.as_str() {
            "gte" => r.gte = ms,
            "gt" => r.gt = ms,
            "lte" => r.lte = ms,
            "lt" => r.lt = ms,
            _ => return None,
        }
    }
    (r != Range::default()).then_some(r)
}

impl Filter {
    /// Whether `c` satisfies this filter.
    pub fn matches(&self, c: &Contact, loc: &LocInfo) -> bool {
        match self {
            Filter::Group { any: true, filters } => filters.iter().any(|f| f.matches(c, loc)),
            Filter::Group {
                any: false,
                filters,
            } => filters.iter().all(|f| f.matches(c, loc)),
            Filter::Cond { field, op } => cond_matches(*field, op, c, loc),
        }
    }
}

fn cond_matches(field: Field, op: &Op, c: &Contact, loc: &LocInfo) -> bool {
    match op {
        Op::Eq(v) => equals(field, v, c, loc),
        Op::NotEq(v) => !equals(field, v, c, loc),
        Op::Contains(s) => texts(field, c, loc).iter().any(|t| t.contains(s.as_str())),
        Op::NotContains(s) => !texts(field, c, loc).iter().any(|t| t.contains(s.as_str())),
        Op::Exists => exists(field, c, loc),
        Op::NotExists => !exists(field, c, loc),
        Op::Range(r) => field.date(c).is_some_and(|v| r.contains(v)),
    }
}

/// Lowercased text values of a text or tags field.
fn texts(field: Field, c: &Contact, loc: &LocInfo) -> Vec<String> {
    if field == Field::Tags {
        return c.tag_list().map(str::to_lowercase).collect();
    }
    field.text(c, loc).into_iter().collect()
}

fn equals(field: Field, v: &Operand, c: &Contact, loc: &LocInfo) -> bool {
    match v {
        Operand::Text(wanted) => texts(field, c, loc).iter().any(|t| wanted.contains(t)),
        Operand::Bool(b) => field == Field::Dnd && c.is_dnd() == *b,
        Operand::Date(ms) => field.date(c) == Some(*ms),
    }
}

fn exists(field: Field, c: &Contact, loc: &LocInfo) -> bool {
    match field.kind() {
        Kind::Bool => true,
        Kind::Date => field.date(c).is_some(),
        Kind::Tags => c.tags != 0,
        Kind::Text => field.text(c, loc).is_some_and(|s| !s.is_empty()),
    }
}
