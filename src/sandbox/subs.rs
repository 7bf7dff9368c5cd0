//! Contact sub-resources (tasks, notes, appointments): the compact models,
//! the per-location reference data they point at (calendars, groups,
//! resources), the seeded generator with configurable average counts, the
//! edits sub-resource churn applies, and `SubStore`, which owns every live
//! contact's items plus the task-id index that task search pages over.
//!
//! Items hold small indices into `vocab` tables and `LocInfo.users`, like
//! contacts do, so 600k items per 100k contacts stay compact.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::SubresourceMix;
use super::data::{Contact, Id, LocInfo, mix_seed};
use super::tasks::Cached;
use super::time_fmt::{DAY_MS, range_end_ms};
use super::vocab::{
    APPOINTMENT_ADDRESSES, APPOINTMENT_NOTES, APPOINTMENT_STATUSES, APPOINTMENT_TITLES,
    NOTE_BODIES, NOTE_COLORS, NOTE_TITLES, TASK_BODIES, TASK_TITLES,
};

const QUARTER_HOUR_MS: i64 = 15 * 60_000;
/// Largest average count honoured (keeps a typo from exhausting memory).
const MAX_MEAN: f64 = 1000.0;
/// Appointment lengths in minutes.
const DURATIONS: [u16; 5] = [15, 30, 45, 60, 90];

/// Bits of `Task::nulls`: which absent fields render as explicit `null`.
pub(super) mod null {
    pub const BODY: u8 = 1;
    pub const ASSIGNED: u8 = 1 << 1;
}

/// One task (`TaskSchema`). Tasks carry no dates besides `dueDate`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Task {
    pub id: Id,
    pub due: i64,
    pub title: u8,
    pub body: Option<u8>,
    pub assigned: Option<u8>,
    pub completed: bool,
    pub nulls: u8,
}

impl Task {
    pub fn title_str(&self) -> &'static str {
        text(TASK_TITLES, Some(self.title)).unwrap_or("")
    }

    pub fn body_str(&self) -> Option<&'static str> {
        text(TASK_BODIES, self.body)
    }

    pub fn assigned_to<'a>(&self, loc: &'a LocInfo) -> Option<&'a str> {
        user(loc, self.assigned)
    }

    /// Whether title or body contains `needle_lower` (case-insensitive).
    pub fn matches_query(&self, needle_lower: &str) -> bool {
        static TITLES: OnceLock<Vec<String>> = OnceLock::new();
        static BODIES: OnceLock<Vec<String>> = OnceLock::new();
        let lower = |t: &[&str]| t.iter().map(|s| s.to_lowercase()).collect();
        let titles = TITLES.get_or_init(|| lower(TASK_TITLES));
        let bodies = BODIES.get_or_init(|| lower(TASK_BODIES));
        let hit = |table: &[String], i: Option<u8>| {
            i.and_then(|i| table.get(usize::from(i)))
                .is_some_and(|s| s.contains(needle_lower))
        };
        hit(titles, Some(self.title)) || hit(bodies, self.body)
    }
}

/// One note (`GetNoteSchema`). `pinned: None` = field absent.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Note {
    pub id: Id,
    pub added: i64,
    pub body: u8,
    pub title: Option<u8>,
    pub color: Option<u8>,
    pub user: Option<u8>,
    pub pinned: Option<bool>,
}

impl Note {
    pub fn body_str(&self) -> &'static str {
        text(NOTE_BODIES, Some(self.body)).unwrap_or("")
    }

    pub fn title_str(&self) -> Option<&'static str> {
        text(NOTE_TITLES, self.title)
    }

    pub fn color_str(&self) -> Option<&'static str> {
        text(NOTE_COLORS, self.color)
    }

    pub fn user_id<'a>(&self, loc: &'a LocInfo) -> Option<&'a str> {
        user(loc, self.user)
    }
}

/// One appointment (`GetEventSchema`).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Appointment {
    pub id: Id,
    pub start: i64,
    pub added: i64,
    pub updated: i64,
    pub minutes: u16,
    pub calendar: u8,
    pub group: Option<u8>,
    /// Index into `APPOINTMENT_STATUSES`.
    pub status: u8,
    pub title: u8,
    pub assigned: Option<u8>,
    /// Bit mask over `LocInfo.users`.
    pub users: u8,
    /// Bit mask over `SubInfo.resources`.
    pub resources: u8,
    pub notes: Option<u8>,
    pub address: Option<u8>,
}

impl Appointment {
    pub fn end(&self) -> i64 {
        self.start + i64::from(self.minutes) * 60_000
    }

    /// (`status`, `appointmentStatus`).
    pub fn statuses(&self) -> (&'static str, &'static str) {
        APPOINTMENT_STATUSES
            .get(usize::from(self.status))
            .copied()
            .unwrap_or(("booked", "new"))
    }

    pub fn title_str(&self) -> &'static str {
        text(APPOINTMENT_TITLES, Some(self.title)).unwrap_or("")
    }

    pub fn notes_str(&self) -> Option<&'static str> {
        text(APPOINTMENT_NOTES, self.notes)
    }

    pub fn address_str(&self) -> Option<&'static str> {
        text(APPOINTMENT_ADDRESSES, self.address)
    }

    pub fn assigned_user<'a>(&self, loc: &'a LocInfo) -> Option<&'a str> {
        user(loc, self.assigned)
    }

    /// User ids in `users`, in `LocInfo.users` order.
    pub fn user_ids<'a>(&self, loc: &'a LocInfo) -> Vec<&'a str> {
        masked(&loc.users, self.users)
    }
}

fn text(table: &[&'static str], i: Option<u8>) -> Option<&'static str> {
    i.and_then(|i| table.get(usize::from(i)).copied())
}

fn user(loc: &LocInfo, i: Option<u8>) -> Option<&str> {
    i.and_then(|i| loc.users.get(usize::from(i)).map(String::as_str))
}

/// The ids whose bit is set in `mask`.
pub(super) fn masked<S: AsRef<str>>(ids: &[S], mask: u8) -> Vec<&str> {
    ids.iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, id)| id.as_ref())
        .collect()
}

/// Per-location ids appointments refer to.
#[derive(Debug)]
pub(super) struct SubInfo {
    pub calendars: Vec<String>,
    pub groups: Vec<String>,
    pub resources: Vec<String>,
}

impl SubInfo {
    fn generate(rng: &mut SmallRng) -> SubInfo {
        let ids = |rng: &mut SmallRng, n| {
            (0..n)
                .map(|_| Id::random(rng).as_str().to_string())
                .collect()
        };
        SubInfo {
            calendars: ids(rng, 4),
            groups: ids(rng, 2),
            resources: ids(rng, 3),
        }
    }
}

/// All sub-resources of one contact, each list in creation order.
#[derive(Clone, Debug, Default)]
pub(super) struct Subs {
    pub tasks: Vec<Task>,
    pub notes: Vec<Note>,
    pub appointments: Vec<Appointment>,
}

/// Which list a churn change touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Task,
    Note,
    Appointment,
}

/// What a churn change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Added,
    Edited,
    Deleted,
}

/// A Poisson draw with mean `mean` (0 for non-positive or NaN means).
fn poisson(rng: &mut SmallRng, mean: f64) -> usize {
    if mean.is_nan() || mean <= 0.0 {
        return 0;
    }
    let mut left = mean.min(MAX_MEAN);
    let mut n = 0;
    // Knuth's method in chunks of at most 20, so exp(-chunk) stays representable.
    while left > 0.0 {
        let chunk = left.min(20.0);
        left -= chunk;
        let limit = (-chunk).exp();
        let mut p: f64 = rng.random();
        while p > limit {
            n += 1;
            p *= rng.random::<f64>();
        }
    }
    n
}

/// A random index in `0..n`, different from `current` when possible.
fn other(rng: &mut SmallRng, current: Option<u8>, n: usize) -> u8 {
    let n = n.clamp(1, 256);
    let pick = |rng: &mut SmallRng, k: usize| u8::try_from(rng.random_range(0..k)).unwrap_or(0);
    match current {
        Some(c) if n > 1 => {
            let r = pick(rng, n - 1);
            if r >= c { r + 1 } else { r }
        }
        _ => pick(rng, n),
    }
}

/// A time in `[lo, hi]` rounded down to a quarter hour.
fn quarter(rng: &mut SmallRng, lo: i64, hi: i64) -> i64 {
    let t = rng.random_range(lo..=hi.max(lo));
    t - t.rem_euclid(QUARTER_HOUR_MS)
}

/// Draws random items for one contact. Dates fall in or after the
/// contact's `[lo, hi]` activity window.
struct SubGen<'a> {
    rng: &'a mut SmallRng,
    loc: &'a LocInfo,
    info: &'a SubInfo,
}

impl SubGen<'_> {
    fn pick(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn idx(&mut self, n: usize) -> u8 {
        other(self.rng, None, n)
    }

    fn maybe(&mut self, p: f64, n: usize) -> Option<u8> {
        if self.pick(p) {
            Some(self.idx(n))
        } else {
            None
        }
    }

    /// A user: mostly the contact's owner, else anyone.
    fn user_for(&mut self, owner: Option<u8>) -> u8 {
        match owner {
            Some(o) if self.pick(0.7) => o,
            _ => self.idx(self.loc.users.len()),
        }
    }

    fn task(&mut self, id: Id, c: &Contact, lo: i64, hi: i64) -> Task {
        let due = quarter(self.rng, lo + DAY_MS / 2, lo + 60 * DAY_MS);
        let completed = self.pick(if due <= hi { 0.65 } else { 0.15 });
        let assigned = if self.pick(0.85) {
            Some(self.user_for(c.assigned))
        } else {
            None
        };
        Task {
            id,
            due,
            title: self.idx(TASK_TITLES.len()),
            body: self.maybe(0.85, TASK_BODIES.len()),
            assigned,
            completed,
            nulls: self.rng.random::<u8>() & (null::BODY | null::ASSIGNED),
        }
    }

    fn note(&mut self, id: Id, c: &Contact, lo: i64, hi: i64) -> Note {
        let user = if self.pick(0.8) {
            Some(self.user_for(c.assigned))
        } else {
            None
        };
        Note {
            id,
            added: self.rng.random_range(lo..=hi.max(lo)),
            body: self.idx(NOTE_BODIES.len()),
            title: self.maybe(0.5, NOTE_TITLES.len()),
            color: self.maybe(0.3, NOTE_COLORS.len()),
            user,
            pinned: self.pick(0.7).then(|| self.pick(0.15)),
        }
    }

    fn appointment(&mut self, id: Id, c: &Contact, lo: i64, hi: i64) -> Appointment {
        let start = quarter(self.rng, lo + DAY_MS, lo + 90 * DAY_MS);
        let added = self.rng.random_range(lo..=hi.max(lo).min(start));
        let updated = if self.pick(0.5) {
            added
        } else {
            // Edited between booking and the start, but never after today.
            self.rng
                .random_range(added..=start.min(range_end_ms()).max(added))
        };
        let assigned = self.pick(0.85).then(|| self.user_for(c.assigned));
        let mut users = assigned.map_or(0, |a| 1u8 << (a % 8));
        if self.pick(0.2) {
            users |= 1 << (self.idx(self.loc.users.len()) % 8);
        }
        let resources = if self.pick(0.3) {
            1 << (self.idx(self.info.resources.len()) % 8)
        } else {
            0
        };
        Appointment {
            id,
            start,
            added,
            updated,
            minutes: DURATIONS[usize::from(self.idx(DURATIONS.len()))],
            calendar: self.idx(self.info.calendars.len()),
            group: self.maybe(0.4, self.info.groups.len()),
            status: self.idx(APPOINTMENT_STATUSES.len()),
            title: self.idx(APPOINTMENT_TITLES.len()),
            assigned,
            users,
            resources,
            notes: self.maybe(0.4, APPOINTMENT_NOTES.len()),
            address: self.maybe(0.6, APPOINTMENT_ADDRESSES.len()),
        }
    }

    fn edit_task(&mut self, t: &mut Task) {
        match self.idx(4) {
            0 | 1 => t.completed = !t.completed,
            2 => t.body = Some(other(self.rng, t.body, TASK_BODIES.len())),
            _ => t.due += DAY_MS * i64::from(1 + self.idx(14)),
        }
    }

    fn edit_note(&mut self, n: &mut Note) {
        match self.idx(4) {
            0 | 1 => n.body = other(self.rng, Some(n.body), NOTE_BODIES.len()),
            2 => n.pinned = Some(!n.pinned.unwrap_or(false)),
            _ => n.title = Some(other(self.rng, n.title, NOTE_TITLES.len())),
        }
    }

    /// Changes a visible field; the caller bumps `dateUpdated`.
    fn edit_appointment(&mut self, a: &mut Appointment) {
        let n = APPOINTMENT_STATUSES.len();
        match self.idx(3) {
            0 => a.status = other(self.rng, Some(a.status), n),
            1 => a.start += DAY_MS * i64::from(1 + self.idx(14)),
            _ => a.title = other(self.rng, Some(a.title), APPOINTMENT_TITLES.len()),
        }
    }
}

/// Every live contact's sub-resources in one location.
pub(super) struct SubStore {
    pub info: SubInfo,
    mix: SubresourceMix,
    rng: SmallRng,
    by_contact: HashMap<Id, Subs>,
    /// Every task id with its contact id, in task-id order.
    pub task_index: BTreeMap<Id, Id>,
    /// Bumped on every change that can alter a task search result.
    pub version: u64,
    /// The last task search's matches (see `tasks`).
    pub cache: Option<Cached>,
}

impl SubStore {
    /// An empty store whose randomness is its own stream (contact data
    /// and contact churn draw the same numbers with or without it).
    pub fn new(seed: u64, location: &str, mix: SubresourceMix, contacts: usize) -> SubStore {
        let mut rng = SmallRng::seed_from_u64(mix_seed(seed ^ 0x5B_5EED, location));
        SubStore {
            info: SubInfo::generate(&mut rng),
            mix,
            rng,
            by_contact: HashMap::with_capacity(contacts),
            task_index: BTreeMap::new(),
            version: 0,
            cache: None,
        }
    }

    /// Marks task search results stale.
    pub fn bump(&mut self) {
        self.version += 1;
        self.cache = None;
    }

    /// Generates a new contact's items per the mix, dated in or after
    /// `[lo, hi]`.
    pub fn add_contact(&mut self, loc: &LocInfo, c: &Contact, lo: i64, hi: i64) {
        let SubStore {
            info,
            mix,
            rng,
            task_index,
            ..
        } = self;
        let (nt, nn, na) = (
            poisson(rng, mix.tasks),
            poisson(rng, mix.notes),
            poisson(rng, mix.appointments),
        );
        let mut g = SubGen { rng, loc, info };
        let mut subs = Subs {
            tasks: Vec::with_capacity(nt),
            notes: Vec::with_capacity(nn),
            appointments: Vec::with_capacity(na),
        };
        for _ in 0..nt {
            let id = fresh_task_id(g.rng, task_index);
            task_index.insert(id, c.id);
            subs.tasks.push(g.task(id, c, lo, hi));
        }
        for _ in 0..nn {
            let id = Id::quick(g.rng);
            subs.notes.push(g.note(id, c, lo, hi));
        }
        for _ in 0..na {
            let id = Id::quick(g.rng);
            subs.appointments.push(g.appointment(id, c, lo, hi));
        }
        self.by_contact.insert(c.id, subs);
        self.bump();
    }

    /// Drops a deleted contact's items.
    pub fn remove_contact(&mut self, id: &Id) {
        if let Some(subs) = self.by_contact.remove(id) {
            for t in &subs.tasks {
                self.task_index.remove(&t.id);
            }
        }
        self.bump();
    }

    pub fn get(&self, contact: &Id) -> Option<&Subs> {
        self.by_contact.get(contact)
    }

    /// Every contact's items, in no particular order.
    pub fn all(&self) -> impl Iterator<Item = (&Id, &Subs)> {
        self.by_contact.iter()
    }

    pub fn task(&self, contact: &Id, task: &Id) -> Option<&Task> {
        self.get(contact)?.tasks.iter().find(|t| t.id == *task)
    }

    /// Picks `n` distinct contacts among `live` (sorted keys) from this
    /// store's own stream.
    pub fn pick<'a>(&mut self, live: impl ExactSizeIterator<Item = &'a Id>, n: usize) -> Vec<Id> {
        let len = live.len();
        let mut picks = rand::seq::index::sample(&mut self.rng, len, n.min(len)).into_vec();
        picks.sort_unstable();
        let mut next = picks.into_iter().peekable();
        let mut out = Vec::new();
        for (i, id) in live.enumerate() {
            if next.peek() == Some(&i) {
                out.push(*id);
                next.next();
            }
        }
        out
    }

    /// Applies one to three changes to a live contact's items, each to a
    /// different list (task, note, appointment), so one change never undoes
    /// another: an add, an edit of a visible field or a delete, stamped
    /// `now`. Edits and deletes of an empty list become adds.
    pub fn churn_contact(&mut self, loc: &LocInfo, c: &Contact, now: i64) -> Vec<(Kind, Action)> {
        let n = match self.rng.random_range(0..10) {
            0..6 => 1,
            6..9 => 2,
            _ => 3,
        };
        let kinds = rand::seq::index::sample(&mut self.rng, 3, n);
        let SubStore {
            info,
            rng,
            by_contact,
            task_index,
            ..
        } = self;
        let subs = by_contact.entry(c.id).or_default();
        let mut g = SubGen { rng, loc, info };
        let mut done = Vec::with_capacity(n);
        for k in kinds {
            let kind = [Kind::Task, Kind::Note, Kind::Appointment][k];
            let len = match kind {
                Kind::Task => subs.tasks.len(),
                Kind::Note => subs.notes.len(),
                Kind::Appointment => subs.appointments.len(),
            };
            let (action, at) = match g.idx(3) {
                _ if len == 0 => (Action::Added, 0),
                0 => (Action::Added, 0),
                1 => (Action::Edited, g.rng.random_range(0..len)),
                _ => (Action::Deleted, g.rng.random_range(0..len)),
            };
            match (kind, action) {
                (Kind::Task, Action::Added) => {
                    let id = fresh_task_id(g.rng, task_index);
                    task_index.insert(id, c.id);
                    subs.tasks.push(g.task(id, c, now, now));
                }
                (Kind::Task, Action::Edited) => g.edit_task(&mut subs.tasks[at]),
                (Kind::Task, Action::Deleted) => {
                    let t = subs.tasks.remove(at);
                    task_index.remove(&t.id);
                }
                (Kind::Note, Action::Added) => {
                    let id = Id::quick(g.rng);
                    subs.notes.push(g.note(id, c, now, now));
                }
                (Kind::Note, Action::Edited) => g.edit_note(&mut subs.notes[at]),
                (Kind::Note, Action::Deleted) => {
                    subs.notes.remove(at);
                }
                (Kind::Appointment, Action::Added) => {
                    let id = Id::quick(g.rng);
                    let mut a = g.appointment(id, c, now, now);
                    a.updated = a.added;
                    subs.appointments.push(a);
                }
                (Kind::Appointment, Action::Edited) => {
                    let a = &mut subs.appointments[at];
                    g.edit_appointment(a);
                    a.updated = now.max(a.updated + 1);
                }
                (Kind::Appointment, Action::Deleted) => {
                    subs.appointments.remove(at);
                }
            }
            done.push((kind, action));
        }
        self.bump();
        done
    }
}

fn fresh_task_id(rng: &mut SmallRng, index: &BTreeMap<Id, Id>) -> Id {
    loop {
        let id = Id::quick(rng);
        if !index.contains_key(&id) {
            return id;
        }
    }
}
