//! Businesses: the per-location business records (`BusinessDto`) generated
//! for `LocInfo.businesses`, query validation for GET /businesses/ and
//! GET /contacts/business/:businessId, and the contacts-by-business page
//! (over the latest contacts, like the legacy list; no search lag).

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::data::{Contact, Gen, LocInfo, mix_seed};
use super::store::Store;
use super::time_fmt::{DAY_MS, iso_ms, range_end_ms, range_start_ms};
use super::vocab::{BUSINESS_DESCRIPTIONS, BUSINESS_NAMES, CITIES, STREETS};

/// GET /businesses/ `limit` default.
const LIST_DEFAULT_LIMIT: usize = 100;
/// GET /contacts/business/:id `limit` default and maximum.
const CONTACTS_DEFAULT_LIMIT: usize = 25;
const CONTACTS_MAX_LIMIT: usize = 100;

/// One business, serialized as `BusinessDto` (absent optionals omitted).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Business {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<Actor>,
    pub location_id: String,
    pub created_by: Actor,
    pub created_at: String,
    pub updated_at: String,
}

/// `createdBy` / `updatedBy`. The spec's `BusinessCreatedByOrUpdatedBy` has
/// no properties; this follows the audit objects other HighLevel records
/// carry (an assumption, not a documented shape).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Actor {
    source: &'static str,
    channel: &'static str,
    source_id: String,
    timestamp: String,
}

/// The location's businesses, one per `loc.businesses` id, in that order.
pub(super) fn generate(seed: u64, loc: &LocInfo) -> Vec<Business> {
    let mut rng = SmallRng::seed_from_u64(mix_seed(seed ^ 0xB05_1E55, &loc.id));
    let mut taken = Vec::new();
    loc.businesses
        .iter()
        .enumerate()
        .map(|(i, id)| one(&mut rng, loc, i, id, &mut taken))
        .collect()
}

fn one(rng: &mut SmallRng, loc: &LocInfo, i: usize, id: &str, taken: &mut Vec<usize>) -> Business {
    // Distinct names while the vocabulary lasts.
    let mut n = rng.random_range(0..BUSINESS_NAMES.len());
    while taken.len() < BUSINESS_NAMES.len() && taken.contains(&n) {
        n = (n + 1) % BUSINESS_NAMES.len();
    }
    taken.push(n);
    let name = BUSINESS_NAMES[n];
    let slug: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let domain = if slug.is_empty() {
        format!("business{i}.example.com")
    } else {
        format!("{slug}.example.com")
    };
    let created = rng.random_range(range_start_ms()..range_end_ms() - 400 * DAY_MS);
    let updated = if rng.random_bool(0.3) {
        created
    } else {
        created + rng.random_range(0..400 * DAY_MS)
    };
    let user = |rng: &mut SmallRng| {
        let i = rng.random_range(0..loc.users.len().max(1));
        loc.users.get(i).cloned().unwrap_or_default()
    };
    let actor = |rng: &mut SmallRng, at: i64| Actor {
        source: "WEB_USER",
        channel: "APP",
        source_id: user(rng),
        timestamp: iso_ms(at),
    };
    let place = rng
        .random_bool(0.7)
        .then(|| CITIES[rng.random_range(0..CITIES.len())]);
    let phone = rng.random_bool(0.8).then(|| Gen { rng, info: loc }.phone());
    let street = STREETS[rng.random_range(0..STREETS.len())];
    let number = rng.random_range(1..999);
    let created_by = actor(rng, created);
    let updated_by = (updated != created).then(|| actor(rng, updated));
    Business {
        id: id.to_string(),
        name: name.to_string(),
        phone,
        email: rng.random_bool(0.8).then(|| format!("info@{domain}")),
        website: rng
            .random_bool(0.6)
            .then(|| format!("https://www.{domain}")),
        address: rng.random_bool(0.6).then(|| format!("{number} {street}")),
        city: place.map(|p| p.0),
        description: rng
            .random_bool(0.5)
            .then(|| BUSINESS_DESCRIPTIONS[rng.random_range(0..BUSINESS_DESCRIPTIONS.len())]),
        state: place.map(|p| p.1),
        postal_code: place.map(|p| format!("{}{:03}", p.3, number)),
        country: place.map(|p| p.2),
        updated_by,
        location_id: loc.id.clone(),
        created_by,
        created_at: iso_ms(created),
        updated_at: iso_ms(updated),
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A required, non-empty `locationId`.
fn require_location(params: &[(String, String)], errors: &mut Vec<String>) {
    if param(params, "locationId").is_none_or(|s| s.is_empty()) {
        errors.push("locationId should not be empty".into());
    }
}

/// An integer query parameter in `min..=max`.
fn int_param(
    params: &[(String, String)],
    name: &str,
    default: usize,
    min: usize,
    max: Option<usize>,
    errors: &mut Vec<String>,
) -> usize {
    let Some(raw) = param(params, name) else {
        return default;
    };
    match raw.trim().parse::<f64>() {
        Ok(n) if n < min as f64 => errors.push(format!("{name} must not be less than {min}")),
        Ok(n) if max.is_some_and(|m| n > m as f64) => {
            let m = max.unwrap_or_default();
            errors.push(format!("{name} must not be greater than {m}"));
        }
        Ok(n) if n.fract() == 0.0 && n <= usize::MAX as f64 => return n as usize,
        _ => errors.push(format!(
            "{name} must be a number conforming to the specified constraints"
        )),
    }
    default
}

/// Validated GET /businesses/ parameters.
#[derive(Debug)]
pub(super) struct BusinessListQuery {
    pub limit: usize,
    pub skip: usize,
}

impl BusinessListQuery {
    /// `Err` holds 422 messages.
    pub fn parse(params: &[(String, String)]) -> Result<BusinessListQuery, Vec<String>> {
        let mut errors = Vec::new();
        require_location(params, &mut errors);
        let limit = int_param(params, "limit", LIST_DEFAULT_LIMIT, 1, None, &mut errors);
        let skip = int_param(params, "skip", 0, 0, None, &mut errors);
        if errors.is_empty() {
            Ok(BusinessListQuery { limit, skip })
        } else {
            Err(errors)
        }
    }
}

/// Validated GET /contacts/business/:businessId parameters.
#[derive(Debug)]
pub(super) struct BusinessContactsQuery {
    pub limit: usize,
    pub skip: usize,
    /// Lowercased, trimmed; matched like the legacy list's `query`.
    pub query: Option<String>,
}

impl BusinessContactsQuery {
    /// `Err` holds 422 messages.
    pub fn parse(params: &[(String, String)]) -> Result<BusinessContactsQuery, Vec<String>> {
        let mut errors = Vec::new();
        require_location(params, &mut errors);
        let max = Some(CONTACTS_MAX_LIMIT);
        let limit = int_param(params, "limit", CONTACTS_DEFAULT_LIMIT, 1, max, &mut errors);
        let skip = int_param(params, "skip", 0, 0, None, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        let query = param(params, "query")
            .map(|q| q.trim().to_lowercase())
            .filter(|q| !q.is_empty());
        Ok(BusinessContactsQuery { limit, skip, query })
    }
}

/// One page of a business's live contacts in (dateAdded, id) order, and
/// how many match in all. An unknown business has none.
pub(super) fn contacts_page(
    store: &Store,
    business: &str,
    q: &BusinessContactsQuery,
) -> (Vec<Arc<Contact>>, usize) {
    let Some(b) = store.business_index(business) else {
        return (Vec::new(), 0);
    };
    let matching = store
        .business_members(b)
        .filter_map(|k| store.get(&k.1))
        .filter(|c| q.query.as_deref().is_none_or(|n| c.matches_query(n)));
    let mut count = 0;
    let mut page = Vec::new();
    for c in matching {
        if count >= q.skip && page.len() < q.limit {
            page.push(c);
        }
        count += 1;
    }
    (page, count)
}
