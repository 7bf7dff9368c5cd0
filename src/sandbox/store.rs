//! Per-location contact storage: the latest state (GET by id, legacy list,
//! contacts by business), the lagged search view (POST /contacts/search)
//! with its pending-change queue, the ordered indices, the location's
//! businesses and contacts' sub-resources (`SubStore`), and churn
//! (create/update/delete, business moves, sub-resource changes).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;

use super::business::{self, Business};
use super::data::{Contact, DatePlan, Gen, Id, LocInfo, mix_seed};
use super::search::TotalKey;
use super::subs::SubStore;
use super::time_fmt::now_ms;
use super::{SubChurnReport, SubresourceMix};

/// An index key: (ms timestamp, id).
pub(super) type Key = (i64, Id);

/// The latest and the search-visible version of one contact.
#[derive(Default)]
struct Slot {
    latest: Option<Arc<Contact>>,
    searchable: Option<Arc<Contact>>,
}

/// A change not yet visible to search.
struct Pending {
    visible_at: Instant,
    id: Id,
    version: Option<Arc<Contact>>,
}

/// Ordered indices over the search-visible versions.
#[derive(Default)]
pub(super) struct SearchIndex {
    pub by_updated: BTreeSet<Key>,
    pub by_added: BTreeSet<Key>,
    /// Bumped on every change to the search view.
    pub version: u64,
    /// The last pure-range total, valid for `version`.
    pub total_cache: Option<(TotalKey, usize)>,
}

/// All contacts of one location.
pub(super) struct Store {
    pub info: Arc<LocInfo>,
    slots: HashMap<Id, Slot>,
    /// Latest versions ordered by (dateAdded, id): the legacy list.
    by_added: BTreeSet<Key>,
    /// Latest versions per `LocInfo.businesses` index, by (dateAdded, id).
    by_business: Vec<BTreeSet<Key>>,
    pub businesses: Vec<Business>,
    pub subs: SubStore,
    pub search: SearchIndex,
    pending: VecDeque<Pending>,
    lag: Duration,
    rng: SmallRng,
    last_ms: i64,
    /// Added to the wall clock for churn stamps (`SandboxConfig::clock_offset_ms`).
    pub clock_offset_ms: i64,
}

impl Store {
    /// Seeds `n` contacts, their sub-resources per `mix`, and the
    /// businesses, deterministically from `seed` and the location id.
    pub fn generate(
        seed: u64,
        location: &str,
        n: usize,
        lag: Duration,
        mix: SubresourceMix,
    ) -> Store {
        let mut rng = SmallRng::seed_from_u64(mix_seed(seed, location));
        let info = Arc::new(LocInfo::generate(location, &mut rng));
        let churn_rng = SmallRng::seed_from_u64(mix_seed(seed ^ 0xC4_0A11, location));
        let mut store = Store {
            info: info.clone(),
            slots: HashMap::with_capacity(n),
            by_added: BTreeSet::new(),
            by_business: vec![BTreeSet::new(); info.businesses.len()],
            businesses: business::generate(seed, &info),
            subs: SubStore::new(seed, location, mix, n),
            search: SearchIndex::default(),
            pending: VecDeque::new(),
            lag,
            rng: churn_rng,
            last_ms: 0,
            clock_offset_ms: 0,
        };
        let mut plan = DatePlan::new(n, &mut rng);
        for i in 0..n {
            let (added, updated) = plan.dates(i, &mut rng);
            let id = store.fresh_id(&mut rng);
            let c = Gen {
                rng: &mut rng,
                info: &info,
            }
            .contact(id, added, updated);
            store.last_ms = store.last_ms.max(updated);
            store.subs.add_contact(&info, &c, added, updated.max(added));
            store.insert_now(Arc::new(c));
        }
        store
    }

    fn fresh_id(&self, rng: &mut SmallRng) -> Id {
        loop {
            let id = Id::random(rng);
            if !self.slots.contains_key(&id) {
                return id;
            }
        }
    }

    /// Inserts a contact into both views immediately (seeding).
    fn insert_now(&mut self, c: Arc<Contact>) {
        self.by_added.insert((c.date_added, c.id));
        self.index_business(&c, true);
        self.search_put(c.id, Some(c.clone()));
        let id = c.id;
        self.slots.entry(id).or_default().latest = Some(c);
    }

    /// The latest version of a contact.
    pub fn get(&self, id: &Id) -> Option<Arc<Contact>> {
        self.slots.get(id).and_then(|s| s.latest.clone())
    }

    /// The search-visible version of a contact.
    pub fn searchable(&self, id: &Id) -> Option<&Arc<Contact>> {
        self.slots.get(id).and_then(|s| s.searchable.as_ref())
    }

    /// All search-visible contacts, in no particular order.
    pub fn searchable_all(&self) -> impl Iterator<Item = &Arc<Contact>> {
        self.slots.values().filter_map(|s| s.searchable.as_ref())
    }

    /// Latest ids, sorted.
    pub fn live_ids(&self) -> Vec<String> {
        let mut ids: Vec<Id> = self.by_added.iter().map(|k| k.1).collect();
        ids.sort_unstable();
        ids.into_iter().map(|id| id.as_str().to_string()).collect()
    }

    /// The legacy list index (latest versions by dateAdded).
    pub fn legacy_index(&self) -> &BTreeSet<Key> {
        &self.by_added
    }

    /// The `LocInfo.businesses` index of a business id of this location.
    pub fn business_index(&self, business: &str) -> Option<u8> {
        let i = self.info.businesses.iter().position(|b| b == business)?;
        u8::try_from(i).ok()
    }

    /// Keys of the live contacts in business `b`, by (dateAdded, id).
    pub fn business_members(&self, b: u8) -> impl Iterator<Item = &Key> {
        self.by_business.get(usize::from(b)).into_iter().flatten()
    }

    fn index_business(&mut self, c: &Contact, insert: bool) {
        let Some(set) = c
            .business
            .and_then(|b| self.by_business.get_mut(usize::from(b)))
        else {
            return;
        };
        if insert {
            set.insert((c.date_added, c.id));
        } else {
            set.remove(&(c.date_added, c.id));
        }
    }

    /// Replaces the search-visible version of `id`.
    fn search_put(&mut self, id: Id, version: Option<Arc<Contact>>) {
        let slot = self.slots.entry(id).or_default();
        if let Some(old) = slot.searchable.take() {
            self.search.by_updated.remove(&(old.date_updated, id));
            self.search.by_added.remove(&(old.date_added, id));
        }
        if let Some(new) = &version {
            self.search.by_updated.insert((new.date_updated, id));
            self.search.by_added.insert((new.date_added, id));
        }
        slot.searchable = version;
        self.search.version += 1;
        if slot.latest.is_none() && slot.searchable.is_none() {
            self.slots.remove(&id);
        }
    }

    /// Applies pending search changes whose visibility time has come.
    pub fn catch_up(&mut self, now: Instant) {
        while self.pending.front().is_some_and(|p| p.visible_at <= now) {
            if let Some(p) = self.pending.pop_front() {
                self.search_put(p.id, p.version);
            }
        }
    }

    /// Sets the latest version (None = deleted) and schedules search.
    fn commit(&mut self, id: Id, version: Option<Arc<Contact>>) {
        let slot = self.slots.entry(id).or_default();
        let old = slot.latest.take();
        slot.latest = version.clone();
        if let Some(old) = old {
            self.by_added.remove(&(old.date_added, id));
            self.index_business(&old, false);
        }
        if let Some(new) = &version {
            self.by_added.insert((new.date_added, id));
            self.index_business(new, true);
        } else {
            self.subs.remove_contact(&id);
        }
        // Task search filters by the contact's business.
        self.subs.bump();
        if self.lag.is_zero() {
            self.search_put(id, version);
        } else {
            let visible_at = Instant::now() + self.lag;
            self.pending.push_back(Pending {
                visible_at,
                id,
                version,
            });
        }
    }

    /// The next churn timestamp: wall clock (plus the configured offset), strictly increasing.
    fn next_ms(&mut self) -> i64 {
        self.last_ms = (now_ms() + self.clock_offset_ms).max(self.last_ms + 1);
        self.last_ms
    }

    /// Creates one contact stamped now; returns its id.
    pub fn create(&mut self) -> Id {
        let mut rng = self.rng.clone();
        let id = self.fresh_id(&mut rng);
        let ms = self.next_ms();
        let info = self.info.clone();
        let c = Gen {
            rng: &mut rng,
            info: &info,
        }
        .contact(id, ms, ms);
        self.rng = rng;
        self.subs.add_contact(&info, &c, ms, ms);
        self.commit(id, Some(Arc::new(c)));
        id
    }

    /// Edits one field of a live contact and bumps dateUpdated.
    pub fn update(&mut self, id: &Id) -> bool {
        let Some(old) = self.get(id) else {
            return false;
        };
        let mut c = Contact::clone(&old);
        let info = self.info.clone();
        Gen {
            rng: &mut self.rng,
            info: &info,
        }
        .mutate(&mut c);
        c.date_updated = self.next_ms();
        self.commit(*id, Some(Arc::new(c)));
        true
    }

    /// Bumps dateUpdated only (a change elsewhere, e.g. to a note).
    pub fn touch(&mut self, id: &Id) -> bool {
        self.replace(id, |_| {})
    }

    /// Moves a live contact to business `b` (None = no business).
    pub fn set_business(&mut self, id: &Id, b: Option<u8>) -> bool {
        self.replace(id, |c| c.business = b)
    }

    /// Commits an edited copy of a live contact with dateUpdated bumped.
    fn replace(&mut self, id: &Id, edit: impl FnOnce(&mut Contact)) -> bool {
        let Some(old) = self.get(id) else {
            return false;
        };
        let mut c = Contact::clone(&old);
        edit(&mut c);
        c.date_updated = self.next_ms();
        self.commit(*id, Some(Arc::new(c)));
        true
    }

    /// Changes the sub-resources of `fraction` of the live contacts (seeded
    /// picks), optionally bumping each contact's dateUpdated.
    pub fn churn_subs(&mut self, fraction: f64, bump_contact: bool) -> SubChurnReport {
        let live = self.by_added.len();
        let n = (fraction.clamp(0.0, 1.0) * live as f64).round() as usize;
        let picks = self.subs.pick(self.by_added.iter().map(|k| &k.1), n);
        let mut report = SubChurnReport::default();
        for id in picks {
            let Some(c) = self.get(&id) else {
                continue;
            };
            let now = self.next_ms();
            let info = self.info.clone();
            for (kind, action) in self.subs.churn_contact(&info, &c, now) {
                report.tally(kind, action);
            }
            if bump_contact {
                self.touch(&id);
            }
            report.contacts.push(id.as_str().to_string());
        }
        report
    }

    /// Removes a live contact entirely (no tombstone).
    pub fn delete(&mut self, id: &Id) -> bool {
        if self.get(id).is_none() {
            return false;
        }
        self.commit(*id, None);
        true
    }

    /// Picks `n` distinct live ids deterministically.
    pub fn pick_live(&mut self, n: usize) -> Vec<Id> {
        let len = self.by_added.len();
        let mut picks = rand::seq::index::sample(&mut self.rng, len, n.min(len)).into_vec();
        picks.sort_unstable();
        let mut out = Vec::with_capacity(picks.len());
        let mut next = picks.into_iter().peekable();
        for (i, key) in self.by_added.iter().enumerate() {
            if next.peek() == Some(&i) {
                out.push(key.1);
                next.next();
            }
        }
        out.shuffle(&mut self.rng);
        out
    }
}
