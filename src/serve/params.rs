//! HighLevel's request inputs, validated as HighLevel validates them: the `POST /contacts/search`
//! body into a [`ContactQuery`], and the query strings of the legacy list and of contacts by
//! business. Messages follow HighLevel's (class-validator) wording, so a client that shows
//! HighLevel's errors shows ours the same way.

use crate::model::ms_from_iso;
use crate::model::query::{
    ContactQuery, Field, FieldKind, Filter, Op, Operand, Range, Sort, SortField, SortValue,
};
use serde_json::{Map, Value};

/// `pageLimit` upper bound.
pub const MAX_PAGE_LIMIT: u64 = 500;
/// Deepest record `page` + `pageLimit` reach.
pub const MAX_WINDOW: u64 = 10_000;
const MAX_QUERY_CHARS: usize = 75;
const MAX_SORT_KEYS: usize = 3;
/// Conditions in one body, counted through every group (a query, not a program).
pub const MAX_CONDITIONS: usize = 100;
/// Groups inside groups.
pub const MAX_DEPTH: usize = 5;
/// Values in one `eq` / `not_eq` list.
pub const MAX_VALUES: usize = 500;

/// Why an input was refused: 422 with a list of messages, or 400 with one.
#[derive(Debug, PartialEq)]
pub enum Invalid {
    Unprocessable(Vec<String>),
    BadRequest(String),
}

/// Query-string pairs, first occurrence wins.
pub struct QueryString(Vec<(String, String)>);

impl QueryString {
    pub fn parse(raw: Option<&str>) -> QueryString {
        let pairs = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes());
        QueryString(pairs.into_owned().collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty, trimmed value.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|s| !s.is_empty())
    }

    /// Trimmed and lowercased free text, if any.
    pub fn query(&self) -> Option<String> {
        self.text("query").map(str::to_lowercase)
    }

    /// `locationId`, required.
    pub fn location(&self, errors: &mut Vec<String>) -> String {
        let loc = self.text("locationId").unwrap_or_default().to_string();
        if loc.is_empty() {
            errors.push("locationId should not be empty".into());
        }
        loc
    }

    /// An integer parameter in `min..=max`, `default` when absent.
    pub fn int(
        &self,
        name: &str,
        default: u64,
        (min, max): (u64, u64),
        errors: &mut Vec<String>,
    ) -> u64 {
        let Some(raw) = self.get(name) else {
            return default;
        };
        match raw.trim().parse::<f64>() {
            Ok(n) if n < min as f64 => errors.push(format!("{name} must not be less than {min}")),
            Ok(n) if n > max as f64 => {
                errors.push(format!("{name} must not be greater than {max}"))
            }
            Ok(n) if n.fract() == 0.0 => return n as u64,
            _ => errors.push(format!(
                "{name} must be a number conforming to the specified constraints"
            )),
        }
        default
    }
}

/// The legacy list's `GET /contacts/` parameters.
#[derive(Debug)]
pub struct ListParams {
    pub location: String,
    pub limit: usize,
    pub start_after: Option<i64>,
    pub start_after_id: Option<String>,
    pub query: Option<String>,
}

pub const LIST_DEFAULT_LIMIT: u64 = 20;

impl ListParams {
    pub fn parse(q: &QueryString) -> Result<ListParams, Invalid> {
        let mut errors = Vec::new();
        let location = q.location(&mut errors);
        let limit = q.int("limit", LIST_DEFAULT_LIMIT, (1, 100), &mut errors) as usize;
        let start_after = q.text("startAfter").and_then(|s| match s.parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errors.push(
                    "startAfter must be a number conforming to the specified constraints".into(),
                );
                None
            }
        });
        if !errors.is_empty() {
            return Err(Invalid::Unprocessable(errors));
        }
        Ok(ListParams {
            location,
            limit,
            start_after,
            start_after_id: q.text("startAfterId").map(str::to_string),
            query: q.query(),
        })
    }
}

/// `GET /contacts/business/:businessId` parameters.
#[derive(Debug)]
pub struct BusinessParams {
    pub location: String,
    pub limit: usize,
    pub skip: usize,
    pub query: Option<String>,
}

impl BusinessParams {
    pub fn parse(q: &QueryString) -> Result<BusinessParams, Invalid> {
        let mut errors = Vec::new();
        let location = q.location(&mut errors);
        let limit = q.int("limit", 25, (1, 100), &mut errors) as usize;
        let skip = q.int("skip", 0, (0, u64::from(u32::MAX)), &mut errors) as usize;
        if !errors.is_empty() {
            return Err(Invalid::Unprocessable(errors));
        }
        Ok(BusinessParams {
            location,
            limit,
            skip,
            query: q.query(),
        })
    }
}

/// Validates a `POST /contacts/search` body.
pub fn search_body(body: &Value) -> Result<ContactQuery, Invalid> {
    let empty = Map::new();
    let obj = match body {
        Value::Object(o) => o,
        _ => &empty,
    };
    let mut errors = Vec::new();
    let location = match obj.get("locationId") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) => {
            errors.push("locationId should not be empty".into());
            String::new()
        }
        None | Some(Value::Null) => {
            errors.push("locationId should not be empty".into());
            errors.push("locationId must be a string".into());
            String::new()
        }
        Some(_) => {
            errors.push("locationId must be a string".into());
            String::new()
        }
    };
    let page_limit = body_int(obj, "pageLimit", true, MAX_PAGE_LIMIT, &mut errors);
    let page = body_int(obj, "page", false, u64::MAX, &mut errors);
    let text = match obj.get("query") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() > MAX_QUERY_CHARS => {
            errors.push(format!(
                "query must be shorter than or equal to {MAX_QUERY_CHARS} characters"
            ));
            None
        }
        Some(Value::String(s)) => Some(s.trim().to_lowercase()).filter(|s| !s.is_empty()),
        Some(_) => {
            errors.push("query must be a string".into());
            None
        }
    };
    let sort = match obj.get("sort") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => sort_keys(v).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        }),
    };
    let filters = match obj.get("filters") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => filter_list(v, "filters", &mut Budget::default()).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        }),
    };
    if !errors.is_empty() {
        return Err(Invalid::Unprocessable(errors));
    }
    let sort = if sort.is_empty() {
        ContactQuery::default_sort()
    } else {
        sort
    };
    let after = match obj.get("searchAfter") {
        None | Some(Value::Null) => None,
        Some(v) => Some(cursor(v, &sort).map_err(|e| Invalid::Unprocessable(vec![e]))?),
    };
    let limit = page_limit.unwrap_or(1);
    let offset = match (&after, page) {
        (Some(_), _) | (None, None) => 0,
        (None, Some(page)) => {
            if page.saturating_mul(limit) > MAX_WINDOW {
                return Err(Invalid::BadRequest(format!(
                    "page * pageLimit must not exceed {MAX_WINDOW}; use searchAfter to paginate deeper"
                )));
            }
            (page - 1) * limit
        }
    };
    Ok(ContactQuery {
        location,
        business: None,
        filters,
        text,
        sort,
        after,
        offset: offset as usize,
        limit: limit as usize,
    })
}

/// An integer body field in 1..=max.
fn body_int(
    obj: &Map<String, Value>,
    name: &str,
    required: bool,
    max: u64,
    errors: &mut Vec<String>,
) -> Option<u64> {
    let not_number = format!("{name} must be a number conforming to the specified constraints");
    let v = match obj.get(name) {
        None | Some(Value::Null) if !required => return None,
        None | Some(Value::Null) => {
            errors.push(not_number);
            errors.push(format!("{name} must not be less than 1"));
            return None;
        }
        Some(v) => v,
    };
    let Some(n) = v.as_f64() else {
        errors.push(not_number);
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

fn sort_keys(v: &Value) -> Result<Vec<Sort>, String> {
    let Value::Array(items) = v else {
        return Err("sort must be an array".into());
    };
    if items.len() > MAX_SORT_KEYS {
        return Err(format!(
            "sort must contain no more than {MAX_SORT_KEYS} elements"
        ));
    }
    let mut keys = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = item.get("field").and_then(Value::as_str).unwrap_or("");
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
        let dir = item
            .get("direction")
            .and_then(Value::as_str)
            .unwrap_or("asc");
        let desc = match dir.to_ascii_lowercase().as_str() {
            "asc" => false,
            "desc" => true,
            _ => {
                return Err(format!(
                    "sort.{i}.direction must be one of the following values: asc, desc"
                ));
            }
        };
        keys.push(Sort { field, desc });
    }
    Ok(keys)
}

/// How much of the size limits a body has used so far.
#[derive(Default)]
struct Budget {
    conditions: usize,
    depth: usize,
}

fn filter_list(v: &Value, path: &str, budget: &mut Budget) -> Result<Vec<Filter>, String> {
    let Value::Array(items) = v else {
        return Err(format!("{path} must be an array"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, f)| one_filter(f, &format!("{path}.{i}"), budget))
        .collect()
}

fn one_filter(v: &Value, path: &str, budget: &mut Budget) -> Result<Filter, String> {
    budget.conditions += 1;
    if budget.conditions > MAX_CONDITIONS {
        return Err(format!(
            "filters must not hold more than {MAX_CONDITIONS} conditions and groups in all; split the search"
        ));
    }
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
        if budget.depth >= MAX_DEPTH {
            return Err(format!(
                "{path}: groups must not be nested more than {MAX_DEPTH} deep"
            ));
        }
        let inner = obj.get("filters").unwrap_or(&Value::Null);
        budget.depth += 1;
        let filters = filter_list(inner, &format!("{path}.filters"), budget);
        budget.depth -= 1;
        return Ok(Filter::Group {
            any,
            filters: filters?,
        });
    }
    let name = obj.get("field").and_then(Value::as_str).unwrap_or("");
    let field = Field::parse(name)
        .ok_or_else(|| format!("{path}.field '{name}' is not a supported filter field"))?;
    let op = obj.get("operator").and_then(Value::as_str).unwrap_or("");
    let value = obj.get("value").unwrap_or(&Value::Null);
    Ok(Filter::Cond {
        field,
        op: operator(field, op, value, path)?,
    })
}

fn operator(field: Field, op: &str, value: &Value, path: &str) -> Result<Op, String> {
    let name = field.json_name();
    let bad_value = || format!("{path}.value is invalid for operator '{op}' on field '{name}'");
    let unsupported = || format!("{path}.operator '{op}' is not supported for field '{name}'");
    Ok(match op {
        "eq" => Op::Eq(operand(field, value).ok_or_else(bad_value)?),
        "not_eq" => Op::NotEq(operand(field, value).ok_or_else(bad_value)?),
        "contains" | "not_contains" => {
            if !matches!(field.kind(), FieldKind::Text | FieldKind::Tags) {
                return Err(unsupported());
            }
            let needle = text_value(field, value).ok_or_else(bad_value)?;
            if op == "contains" {
                Op::Contains(needle)
            } else {
                Op::NotContains(needle)
            }
        }
        "exists" => Op::Exists,
        "not_exists" => Op::NotExists,
        "range" => {
            if field.kind() != FieldKind::Date {
                return Err(unsupported());
            }
            Op::Range(range(value).ok_or_else(bad_value)?)
        }
        _ => return Err(format!("{path}.operator '{op}' is not supported")),
    })
}

/// A text operand: lowercased, except for the case-sensitive `id`.
fn text_value(field: Field, v: &Value) -> Option<String> {
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
        FieldKind::Text | FieldKind::Tags => match v {
            Value::Array(items) if items.len() > MAX_VALUES => None,
            Value::Array(items) => items
                .iter()
                .map(|i| text_value(field, i))
                .collect::<Option<_>>()
                .map(Operand::Text),
            _ => text_value(field, v).map(|s| Operand::Text(vec![s])),
        },
        FieldKind::Bool => match v {
            Value::Bool(b) => Some(Operand::Bool(*b)),
            Value::String(s) => s.parse().ok().map(Operand::Bool),
            _ => None,
        },
        FieldKind::Date => timestamp(v).map(Operand::Date),
    }
}

fn range(v: &Value) -> Option<Range> {
    let Value::Object(obj) = v else {
        return None;
    };
    let mut r = Range::default();
    for (k, val) in obj {
        let ms = Some(timestamp(val)?);
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

/// A time as ms since the epoch: a number, a numeric string, an ISO-8601 timestamp or a date
/// (`2025-01-31`, midnight UTC).
pub fn timestamp(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| ms_from_iso(s))
                .or_else(|| ms_from_iso(&format!("{s}T00:00:00Z")))
        }
        _ => None,
    }
}

/// The `searchAfter` array: one value per sort key, then the contact id.
fn cursor(v: &Value, sort: &[Sort]) -> Result<(Vec<SortValue>, String), String> {
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
    let mut values = Vec::with_capacity(sort.len());
    for (key, item) in sort.iter().zip(items) {
        let value = if key.field.is_date() {
            match item {
                Value::Null => Some(SortValue::Null),
                v => timestamp(v).map(SortValue::Ms),
            }
        } else {
            match item {
                Value::Null => Some(SortValue::Null),
                Value::String(s) => Some(SortValue::Text(s.to_lowercase())),
                _ => None,
            }
        };
        values.push(value.ok_or_else(err)?);
    }
    let id = items
        .last()
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(err)?;
    Ok((values, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: Value) -> Result<ContactQuery, Invalid> {
        search_body(&body)
    }

    #[test]
    fn an_empty_body_gets_highlevels_422_messages() {
        assert_eq!(
            check(json!({})),
            Err(Invalid::Unprocessable(vec![
                "locationId should not be empty".into(),
                "locationId must be a string".into(),
                "pageLimit must be a number conforming to the specified constraints".into(),
                "pageLimit must not be less than 1".into(),
            ]))
        );
    }

    #[test]
    fn a_full_body_parses_into_a_query() {
        let q = check(json!({
            "locationId": "L1", "pageLimit": 50, "page": 3, "query": "  Zoë ",
            "sort": [{"field": "dateUpdated", "direction": "desc"}],
            "filters": [
                {"field": "tags", "operator": "eq", "value": ["VIP", "lead"]},
                {"group": "or", "filters": [
                    {"field": "dnd", "operator": "eq", "value": "true"},
                    {"field": "dateAdded", "operator": "range", "value": {"gte": "2025-01-01", "lt": 1_750_000_000_000_i64}}
                ]}
            ]
        }))
        .unwrap();
        assert_eq!(q.location, "L1");
        assert_eq!((q.limit, q.offset), (50, 100));
        assert_eq!(q.text.as_deref(), Some("zoë"));
        assert_eq!(
            q.sort,
            vec![Sort {
                field: SortField::DateUpdated,
                desc: true
            }]
        );
        assert_eq!(
            q.filters[0],
            Filter::Cond {
                field: Field::Tags,
                op: Op::Eq(Operand::Text(vec!["vip".into(), "lead".into()]))
            }
        );
        let Filter::Group { any: true, filters } = &q.filters[1] else {
            panic!("{:?}", q.filters[1]);
        };
        assert_eq!(
            filters[1],
            Filter::Cond {
                field: Field::DateAdded,
                op: Op::Range(Range {
                    gte: Some(1_735_689_600_000),
                    lt: Some(1_750_000_000_000),
                    ..Range::default()
                })
            }
        );
    }

    #[test]
    fn bad_bodies_name_what_is_wrong() {
        let cases = [
            (
                json!({"locationId": "L", "pageLimit": 501}),
                "pageLimit must not be greater than 500",
            ),
            (
                json!({"locationId": "L", "pageLimit": 10, "filters": [{"field": "shoeSize", "operator": "eq", "value": 1}]}),
                "filters.0.field 'shoeSize' is not a supported filter field",
            ),
            (
                json!({"locationId": "L", "pageLimit": 10, "filters": [{"field": "email", "operator": "range", "value": {"gt": 1}}]}),
                "filters.0.operator 'range' is not supported for field 'email'",
            ),
            (
                json!({"locationId": "L", "pageLimit": 10, "filters": [{"field": "dateAdded", "operator": "range", "value": {"after": 1}}]}),
                "filters.0.value is invalid for operator 'range' on field 'dateAdded'",
            ),
            (
                json!({"locationId": "L", "pageLimit": 10, "sort": [{"field": "phone"}]}),
                "sort.0.field 'phone' is not a supported sort field",
            ),
            (
                json!({"locationId": "L", "pageLimit": 10, "searchAfter": [1]}),
                "searchAfter must be an array of 2 values: one per sort field, then the contact id",
            ),
            (
                json!({"locationId": "L", "pageLimit": 10, "query": 7}),
                "query must be a string",
            ),
        ];
        for (body, message) in cases {
            match check(body.clone()) {
                Err(Invalid::Unprocessable(m)) => assert!(
                    m.iter().any(|x| x == message),
                    "{body}: {m:?} lacks {message:?}"
                ),
                other => panic!("{body}: {other:?}"),
            }
        }
        let wide: Vec<Value> = (0..101)
            .map(|_| json!({"field": "email", "operator": "eq", "value": "a"}))
            .collect();
        let mut deep = json!({"field": "dnd", "operator": "exists"});
        for _ in 0..6 {
            deep = json!({"group": "OR", "filters": [deep]});
        }
        let many: Vec<String> = (0..501).map(|i| i.to_string()).collect();
        for (body, message) in [
            (
                json!({"locationId": "L", "pageLimit": 1, "filters": [{"group": "OR", "filters": wide}]}),
                "filters must not hold more than 100 conditions",
            ),
            (
                json!({"locationId": "L", "pageLimit": 1, "filters": [deep]}),
                "groups must not be nested more than 5 deep",
            ),
            (
                json!({"locationId": "L", "pageLimit": 1, "filters": [{"field": "email", "operator": "eq", "value": many}]}),
                "filters.0.value is invalid for operator 'eq' on field 'email'",
            ),
        ] {
            match check(body) {
                Err(Invalid::Unprocessable(m)) => {
                    assert!(m[0].contains(message), "{m:?} lacks {message:?}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            check(json!({"locationId": "L", "pageLimit": 500, "page": 21})),
            Err(Invalid::BadRequest(m)) if m.contains("searchAfter")
        ));
    }

    #[test]
    fn list_parameters_are_checked() {
        let q = QueryString::parse(Some("locationId=L&limit=101&startAfter=soon"));
        assert_eq!(
            ListParams::parse(&q).unwrap_err(),
            Invalid::Unprocessable(vec![
                "limit must not be greater than 100".into(),
                "startAfter must be a number conforming to the specified constraints".into()
            ])
        );
        let q = QueryString::parse(Some("locationId=L&startAfterId=abc&query=%20Ann%20"));
        let p = ListParams::parse(&q).unwrap();
        assert_eq!((p.limit, p.query.as_deref()), (20, Some("ann")));
        let q = QueryString::parse(Some("skip=-1"));
        assert_eq!(
            BusinessParams::parse(&q).unwrap_err(),
            Invalid::Unprocessable(vec![
                "locationId should not be empty".into(),
                "skip must not be less than 0".into()
            ])
        );
    }
}
