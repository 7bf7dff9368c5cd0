//! The compact in-memory contact model (`Contact`, `Id`, `LocInfo`), its
//! string accessors, and the deterministic seeded generator that fills a
//! location with realistic contacts (unicode, nulls, ties, import batches).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::time_fmt::{DAY_MS, range_end_ms, range_start_ms};
use super::vocab::{
    ATTRIBUTIONS, CITIES, COMPANIES, CUSTOM_VALUES, DND_CHANNELS, DOMAINS, FIRST_NAMES, LAST_NAMES,
    SOURCES, STREETS, TAGS, TIMEZONES, WEBSITES,
};

/// Contacts sharing one dateUpdated in an import batch.
pub(super) const BATCH_SIZE: usize = 1200;

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A 20-byte ASCII contact id. Byte order equals string order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(super) struct Id(pub [u8; 20]);

impl Id {
    /// Sorts before every real id.
    pub const MIN: Id = Id([0; 20]);
    /// Sorts after every real id.
    pub const MAX: Id = Id([0xFF; 20]);

    /// A random alphanumeric id.
    pub fn random(rng: &mut SmallRng) -> Id {
        let mut b = [0u8; 20];
        for x in &mut b {
            *x = ALNUM[rng.random_range(0..ALNUM.len())];
        }
        Id(b)
    }

    /// A random alphanumeric id from two draws (digits taken from u64s, so
    /// very slightly biased): cheap enough for 600k sub-resources.
    pub fn quick(rng: &mut SmallRng) -> Id {
        let mut b = [0u8; 20];
        for half in b.chunks_mut(10) {
            let mut x: u64 = rng.random();
            for byte in half {
                *byte = ALNUM[(x % 62) as usize];
                x /= 62;
            }
        }
        Id(b)
    }

    /// The exact id for a 20-byte string.
    pub fn parse(s: &str) -> Option<Id> {
        let b: [u8; 20] = s.as_bytes().try_into().ok()?;
        Some(Id(b))
    }

    /// A bound for cursors: strings up to 20 bytes, zero-padded (no real id
    /// contains NUL, so ordering against real ids is preserved).
    pub fn padded(s: &str) -> Option<Id> {
        let src = s.as_bytes();
        if src.len() > 20 {
            return None;
        }
        let mut b = [0u8; 20];
        b[..src.len()].copy_from_slice(src);
        Some(Id(b))
    }

    /// The id as text (ids are always ASCII alphanumerics).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// Bits of `Contact::nulls`: which absent fields render as explicit `null`.
pub(super) mod null {
    pub const FIRST: u16 = 1;
    pub const LAST: u16 = 1 << 1;
    pub const EMAIL: u16 = 1 << 2;
    pub const PHONE: u16 = 1 << 3;
    pub const COMPANY: u16 = 1 << 4;
    pub const ADDRESS: u16 = 1 << 5;
    pub const CITY: u16 = 1 << 6;
    pub const SOURCE: u16 = 1 << 7;
    pub const TIMEZONE: u16 = 1 << 8;
    pub const WEBSITE: u16 = 1 << 9;
    pub const DOB: u16 = 1 << 10;
    pub const ASSIGNED: u16 = 1 << 11;
}

/// Bits of `Contact::flags`.
pub(super) mod flag {
    pub const DND: u16 = 1;
    pub const CUSTOMER: u16 = 1 << 1;
    pub const VISITOR: u16 = 1 << 2;
    pub const ADDL_EMAILS: u16 = 1 << 3;
    pub const FOLLOWERS: u16 = 1 << 4;
    pub const VALID_EMAIL_SET: u16 = 1 << 5;
    pub const VALID_EMAIL: u16 = 1 << 6;
}

/// One contact, stored compactly; JSON is rendered on demand.
#[derive(Clone, Debug)]
pub(super) struct Contact {
    pub id: Id,
    pub salt: u32,
    pub date_added: i64,
    pub date_updated: i64,
    pub last_activity: Option<i64>,
    pub email: Option<Box<str>>,
    pub phone: Option<Box<str>>,
    pub dob_days: Option<i32>,
    pub first: Option<u16>,
    pub last: Option<u16>,
    pub company: Option<u16>,
    pub street: Option<u16>,
    pub tags: u16,
    pub dnd_settings: Option<u16>,
    pub flags: u16,
    pub nulls: u16,
    pub city: Option<u8>,
    pub timezone: Option<u8>,
    pub source: Option<u8>,
    pub assigned: Option<u8>,
    pub business: Option<u8>,
    pub attribution: Option<u8>,
    pub website: Option<u8>,
    /// Up to three (field index, value index) pairs.
    pub custom: [Option<(u8, u8)>; 3],
}

/// Per-location reference data: ids of users, businesses and custom fields.
#[derive(Debug)]
pub(super) struct LocInfo {
    pub id: String,
    pub users: Vec<String>,
    pub businesses: Vec<String>,
    pub field_ids: Vec<String>,
}

impl LocInfo {
    /// Deterministic reference data for a location.
    pub fn generate(id: &str, rng: &mut SmallRng) -> LocInfo {
        let ids = |rng: &mut SmallRng, n| (0..n).map(|_| id_string(rng)).collect();
        let users = ids(rng, 5);
        let field_ids = ids(rng, CUSTOM_VALUES.len());
        let businesses = (0..10).map(|_| object_id(rng)).collect();
        LocInfo {
            id: id.to_string(),
            users,
            businesses,
            field_ids,
        }
    }
}

fn id_string(rng: &mut SmallRng) -> String {
    Id::random(rng).as_str().to_string()
}

/// A 24-hex-digit Mongo-style ObjectId.
fn object_id(rng: &mut SmallRng) -> String {
    let a: u64 = rng.random();
    let b: u32 = rng.random();
    format!("{a:016x}{b:08x}")
}

impl Contact {
    pub fn is_dnd(&self) -> bool {
        self.flags & flag::DND != 0
    }

    pub fn type_str(&self) -> &'static str {
        if self.flags & flag::CUSTOMER != 0 {
            "customer"
        } else {
            "lead"
        }
    }

    pub fn first_name(&self) -> Option<&'static str> {
        self.first
            .and_then(|i| FIRST_NAMES.get(usize::from(i)).map(|n| n.0))
    }

    pub fn last_name(&self) -> Option<&'static str> {
        self.last
            .and_then(|i| LAST_NAMES.get(usize::from(i)).map(|n| n.0))
    }

    /// "first last", or whichever part exists.
    pub fn full_name(&self) -> Option<String> {
        match (self.first_name(), self.last_name()) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(f), None) => Some(f.to_string()),
            (None, Some(l)) => Some(l.to_string()),
            (None, None) => None,
        }
    }

    pub fn company_name(&self) -> Option<&'static str> {
        self.company
            .and_then(|i| COMPANIES.get(usize::from(i)).copied())
    }

    pub fn place(&self) -> Option<(&'static str, &'static str, &'static str, &'static str)> {
        self.city.and_then(|i| CITIES.get(usize::from(i)).copied())
    }

    pub fn postal_code(&self) -> Option<String> {
        self.place()
            .map(|p| format!("{}{:03}", p.3, self.salt % 1000))
    }

    pub fn address1(&self) -> Option<String> {
        let street = STREETS.get(usize::from(self.street?) % STREETS.len())?;
        Some(format!("{} {street}", 1 + self.salt % 9000))
    }

    pub fn timezone_str(&self) -> Option<&'static str> {
        self.timezone
            .and_then(|i| TIMEZONES.get(usize::from(i)).copied())
    }

    pub fn source_str(&self) -> Option<&'static str> {
        self.source
            .and_then(|i| SOURCES.get(usize::from(i)).copied())
    }

    pub fn website_str(&self) -> Option<&'static str> {
        self.website
            .and_then(|i| WEBSITES.get(usize::from(i)).copied())
    }

    pub fn assigned_to<'a>(&self, loc: &'a LocInfo) -> Option<&'a str> {
        self.assigned
            .and_then(|i| loc.users.get(usize::from(i)).map(String::as_str))
    }

    pub fn business_id<'a>(&self, loc: &'a LocInfo) -> Option<&'a str> {
        self.business
            .and_then(|i| loc.businesses.get(usize::from(i)).map(String::as_str))
    }

    /// Tags in vocabulary order.
    pub fn tag_list(&self) -> impl Iterator<Item = &'static str> + '_ {
        TAGS.iter()
            .enumerate()
            .filter(|(i, _)| self.tags & (1 << i) != 0)
            .map(|(_, t)| *t)
    }

    /// Custom fields as (field id, value).
    pub fn custom_list<'a>(
        &self,
        loc: &'a LocInfo,
    ) -> impl Iterator<Item = (&'a str, &'static str)> {
        self.custom.into_iter().flatten().filter_map(|(f, v)| {
            let fid = loc.field_ids.get(usize::from(f))?;
            let val = CUSTOM_VALUES.get(usize::from(f))?.get(usize::from(v))?;
            Some((fid.as_str(), *val))
        })
    }

    /// A 20-char visitor id derived from the contact.
    pub fn visitor_id(&self) -> Option<String> {
        if self.flags & flag::VISITOR == 0 {
            return None;
        }
        let mut rng = SmallRng::seed_from_u64(u64::from(self.salt) ^ 0x5EED_0F15_1700_0000);
        Some(id_string(&mut rng))
    }

    pub fn is_null(&self, bit: u16) -> bool {
        self.nulls & bit != 0
    }

    /// Whether the update-search "query" text matches (case-insensitive).
    pub fn matches_query(&self, needle_lower: &str) -> bool {
        let hit = |s: &str| s.to_lowercase().contains(needle_lower);
        self.full_name().is_some_and(|n| hit(&n))
            || self.email.as_deref().is_some_and(hit)
            || self.phone.as_deref().is_some_and(hit)
            || self.company_name().is_some_and(hit)
    }
}

/// Mixes a seed with a string (FNV-1a), for per-location RNG streams.
pub(super) fn mix_seed(seed: u64, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ seed.rotate_left(17) ^ 0x9E37_79B9_7F4A_7C15
}

/// Draws random contact fields; dates are chosen by the caller.
pub(super) struct Gen<'a> {
    pub rng: &'a mut SmallRng,
    pub info: &'a LocInfo,
}

impl Gen<'_> {
    fn pick(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn idx(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// `Some(index)` with probability `p`, else `None` (null or absent).
    fn maybe<T: TryFrom<usize>>(&mut self, p: f64, n: usize) -> Option<T> {
        if self.pick(p) {
            T::try_from(self.idx(n)).ok()
        } else {
            None
        }
    }

    /// A complete new contact with the given id and dates.
    pub fn contact(&mut self, id: Id, added: i64, updated: i64) -> Contact {
        let salt: u32 = self.rng.random();
        let first = self.maybe(0.95, FIRST_NAMES.len());
        let last = self.maybe(0.85, LAST_NAMES.len());
        let mut c = Contact {
            id,
            salt,
            date_added: added,
            date_updated: updated,
            last_activity: None,
            email: None,
            phone: None,
            dob_days: None,
            first,
            last,
            company: self.maybe(0.5, COMPANIES.len()),
            street: self.maybe(0.5, STREETS.len()),
            tags: 0,
            dnd_settings: None,
            flags: 0,
            nulls: 0,
            city: self.maybe(0.7, CITIES.len()),
            timezone: self.maybe(0.9, TIMEZONES.len()),
            source: self.maybe(0.7, SOURCES.len()),
            assigned: self.maybe(0.6, self.info.users.len()),
            business: self.maybe(0.2, self.info.businesses.len()),
            attribution: self.maybe(0.3, ATTRIBUTIONS.len()),
            website: self.maybe(0.2, WEBSITES.len()),
            custom: [None; 3],
        };
        self.fill_contactability(&mut c);
        self.fill_extras(&mut c);
        c.nulls = self.rng.random::<u16>() & 0x0FFF;
        c
    }

    fn fill_contactability(&mut self, c: &mut Contact) {
        if self.pick(0.85) {
            c.email = Some(self.email(c).into_boxed_str());
        }
        if self.pick(0.8) {
            c.phone = Some(self.phone().into_boxed_str());
        }
        if self.pick(0.1) {
            c.flags |= flag::DND;
        }
        if self.pick(0.25) {
            c.dnd_settings = Some(self.dnd_pattern());
        }
        if self.pick(0.3) {
            c.flags |= flag::CUSTOMER;
        }
    }

    fn fill_extras(&mut self, c: &mut Contact) {
        c.tags = self.tags();
        c.custom = self.custom();
        if self.pick(0.3) {
            c.dob_days = Some(self.rng.random_range(-7305..13148));
        }
        if self.pick(0.4) && c.date_updated >= c.date_added {
            c.last_activity = Some(self.rng.random_range(c.date_added..=c.date_updated));
        }
        for (p, bit) in [
            (0.15, flag::VISITOR),
            (0.1, flag::ADDL_EMAILS),
            (0.15, flag::FOLLOWERS),
            (0.3, flag::VALID_EMAIL_SET),
            (0.5, flag::VALID_EMAIL),
        ] {
            if self.pick(p) {
                c.flags |= bit;
            }
        }
    }

    fn email(&mut self, c: &Contact) -> String {
        let first = c.first.map_or("user", |i| FIRST_NAMES[usize::from(i)].1);
        let last = c.last.map_or("", |i| LAST_NAMES[usize::from(i)].1);
        let domain = DOMAINS[self.idx(DOMAINS.len())];
        let n = self.idx(1000);
        let local = format!("{first}.{last}{n}");
        if self.pick(0.1) {
            format!("{}@{domain}", capitalize(&local))
        } else {
            format!("{local}@{domain}")
        }
    }

    /// An E.164 phone number.
    pub fn phone(&mut self) -> String {
        let cc = match self.idx(10) {
            0 => "44",
            1 => "49",
            _ => "1",
        };
        let n = self.rng.random_range(2_000_000_000u64..9_999_999_999);
        format!("+{cc}{n}")
    }

    fn dnd_pattern(&mut self) -> u16 {
        let mut p = 0u16;
        for ch in 0..DND_CHANNELS.len() {
            let code = self.rng.random_range(0..4u16);
            p |= code << (2 * ch);
        }
        p.max(1)
    }

    fn tags(&mut self) -> u16 {
        let n = self.idx(5);
        let mut mask = 0u16;
        for _ in 0..n {
            mask |= 1 << self.idx(TAGS.len());
        }
        mask
    }

    fn custom(&mut self) -> [Option<(u8, u8)>; 3] {
        let mut out = [None; 3];
        let n = self.idx(4);
        let fields = rand::seq::index::sample(self.rng, CUSTOM_VALUES.len(), n);
        for (slot, f) in out.iter_mut().zip(fields.iter()) {
            let v = self.idx(CUSTOM_VALUES[f].len());
            *slot = Some((f as u8, v as u8));
        }
        out
    }

    /// Applies one random edit (tag, name or phone) to `c`.
    pub fn mutate(&mut self, c: &mut Contact) {
        match self.idx(3) {
            0 => c.tags ^= 1 << self.idx(TAGS.len()),
            1 => c.first = u16::try_from(self.idx(FIRST_NAMES.len())).ok(),
            _ => c.phone = Some(self.phone().into_boxed_str()),
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(f) => f.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Seed dates for contact number `i` of `n` (import batches first).
pub(super) struct DatePlan {
    batches: usize,
    batch_dates: Vec<(i64, i64)>,
    prev: (i64, i64),
}

impl DatePlan {
    /// Plans ~10% of `n` contacts into import batches of `BATCH_SIZE`, at
    /// least one batch once `n >= 1300`.
    pub fn new(n: usize, rng: &mut SmallRng) -> DatePlan {
        let batches = if n >= 1300 {
            n.div_ceil(10 * BATCH_SIZE).max(1)
        } else {
            0
        };
        let batch_dates = (0..batches).map(|_| batch_dates(rng)).collect();
        DatePlan {
            batches,
            batch_dates,
            prev: (range_start_ms(), range_start_ms()),
        }
    }

    /// (dateAdded, dateUpdated) for contact `i`.
    pub fn dates(&mut self, i: usize, rng: &mut SmallRng) -> (i64, i64) {
        let batch = i / BATCH_SIZE;
        if batch < self.batches {
            let (added, updated) = self.batch_dates[batch];
            let offset = if batch % 2 == 1 {
                (i % BATCH_SIZE) as i64 * 7
            } else {
                0
            };
            return (added + offset, updated);
        }
        let d = if rng.random_bool(0.03) {
            self.prev
        } else {
            random_dates(rng)
        };
        self.prev = d;
        d
    }
}

fn batch_dates(rng: &mut SmallRng) -> (i64, i64) {
    let added = rng.random_range(range_start_ms()..range_end_ms() - 31 * DAY_MS);
    let updated = added + BATCH_SIZE as i64 * 7 + rng.random_range(0..30 * DAY_MS);
    (added, updated)
}

fn random_dates(rng: &mut SmallRng) -> (i64, i64) {
    let added = rng.random_range(range_start_ms()..range_end_ms());
    if rng.random_bool(0.35) {
        return (added, added);
    }
    (added, rng.random_range(added..range_end_ms()))
}
