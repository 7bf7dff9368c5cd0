//! The read commands: `contacts get|list|search`, `tasks list`, `notes list`,
//! `appointments list` and `export`. They only read the mirror (no token, no request to
//! HighLevel): contacts through the query layer (`ContactQuery`, full-text search), tasks, notes
//! and appointments through `store`'s listings, printed or exported through `output`.
//!
//! Contacts come out as HighLevel's JSON in JSON and NDJSON (without the `searchAfter` that the
//! search endpoint adds) and as flat columns in the table and CSV; tasks, notes and appointments
//! as flat columns with their contact's id and name in every format. An export streams every
//! matching row to standard output (`--out -` or no `--out`), or into a temporary file beside
//! the target and renames it over the target only when complete, so a failure never leaves half
//! a file or destroys the previous one. Only a regular file (or nothing) is ever renamed over:
//! a symlink's target is replaced and the link kept; a FIFO or character device (`/dev/stdout`)
//! is written directly.

use super::open_read_only;
use crate::config::Config;
use crate::model::query::{
    ContactQuery, Field, Filter, Op, Operand, Range, Sort, SortField, SortValue,
};
use crate::model::{ms_from_iso, now_ms};
use crate::output::{Format, RecordWriter, write_pairs};
use crate::store::{
    AppointmentFilter, AppointmentRow, Hit, NoteFilter, NoteOrder, NoteRow, Store, StoreError,
    TaskFilter, TaskRow, TextQueryError,
};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use indexmap::IndexMap;
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;
use std::io::{BufWriter, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ContactsCommand {
    /// One contact by id: its fields top to bottom, or its HighLevel JSON.
    Get(ContactGetArgs),
    /// Contacts matching every filter given, most recently updated first.
    List(ContactListArgs),
    /// Ranked full-text search over names, emails, phones, companies, tags and note bodies.
    Search(ContactSearchArgs),
}

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// Tasks of live contacts, soonest due first (tasks without a due date last).
    List(TaskListArgs),
}

#[derive(Subcommand, Debug)]
pub enum NotesCommand {
    /// Notes of live contacts, newest first.
    List(NoteListArgs),
}

#[derive(Subcommand, Debug)]
pub enum AppointmentsCommand {
    /// Appointments of live contacts, by start time.
    List(AppointmentListArgs),
}

#[derive(Args, Debug)]
pub struct ContactGetArgs {
    /// The contact's HighLevel id.
    pub id: String,
    /// Look only in this location (default: any mirrored location).
    #[arg(long, value_name = "ID")]
    pub location: Option<String>,
    /// Output: field/value lines, the JSON object (pretty or on one line), or a one-row CSV.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// The filters `contacts list` and `export contacts` share; all given must hold.
#[derive(Args, Debug, Clone, Default)]
pub struct ContactFilters {
    /// Only this location (default: every mirrored location).
    #[arg(long, value_name = "ID")]
    pub location: Option<String>,
    /// Only contacts with this tag, ignoring case (repeat it: every tag given is required).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only contacts of this business id.
    #[arg(long, value_name = "ID")]
    pub business: Option<String>,
    /// Only contacts assigned to this user id.
    #[arg(long, value_name = "USER")]
    pub assigned_to: Option<String>,
    /// Only contacts updated at or after WHEN: an RFC 3339 time (2025-01-31T09:00:00Z), a date
    /// (2025-01-31, midnight UTC) or a duration ago (7d, 36h).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub updated_since: Option<When>,
    /// Only contacts whose name, email, phone or company name contains this text (ignoring case).
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,
}

/// How many rows a list prints, and how.
#[derive(Args, Debug)]
pub struct ListOutput {
    /// At most this many rows (a note on stderr says when more matched; `export` writes all).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Output: an aligned table, a JSON array, one JSON object per line, or CSV.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct ContactListArgs {
    #[command(flatten)]
    pub filters: ContactFilters,
    #[command(flatten)]
    pub output: ListOutput,
}

#[derive(Args, Debug)]
pub struct ContactSearchArgs {
    /// Words to look for (each a prefix; all required), or a phone number in any format.
    pub text: String,
    /// Only this location (default: every mirrored location).
    #[arg(long, value_name = "ID")]
    pub location: Option<String>,
    /// At most this many results, best first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Output: an aligned table, a JSON array, one JSON object per line, or CSV.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Args, Debug, Clone, Default)]
pub struct TaskFilters {
    /// Only this location (default: every mirrored location).
    #[arg(long, value_name = "ID")]
    pub location: Option<String>,
    /// Only this contact's tasks.
    #[arg(long, value_name = "ID")]
    pub contact: Option<String>,
    /// Only tasks not completed.
    #[arg(long)]
    pub open: bool,
    /// Only tasks due before WHEN: an RFC 3339 time, a date (midnight UTC), a duration ago
    /// (7d) or ahead (+3d), or `now`.
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub due_before: Option<When>,
}

#[derive(Args, Debug)]
pub struct TaskListArgs {
    #[command(flatten)]
    pub filters: TaskFilters,
    #[command(flatten)]
    pub output: ListOutput,
}

#[derive(Args, Debug, Clone, Default)]
pub struct NoteFilters {
    /// Only this location (default: every mirrored location).
    #[arg(long, value_name = "ID")]
    pub location: Option<String>,
    /// Only this contact's notes.
    #[arg(long, value_name = "ID")]
    pub contact: Option<String>,
}

#[derive(Args, Debug)]
pub struct NoteListArgs {
    #[command(flatten)]
    pub filters: NoteFilters,
    #[command(flatten)]
    pub output: ListOutput,
}

#[derive(Args, Debug, Clone, Default)]
pub struct AppointmentFilters {
    /// Only this location (default: every mirrored location).
    #[arg(long, value_name = "ID")]
    pub location: Option<String>,
    /// Only this contact's appointments.
    #[arg(long, value_name = "ID")]
    pub contact: Option<String>,
    /// Only appointments starting from now on.
    #[arg(long)]
    pub upcoming: bool,
}

#[derive(Args, Debug)]
pub struct AppointmentListArgs {
    #[command(flatten)]
    pub filters: AppointmentFilters,
    #[command(flatten)]
    pub output: ListOutput,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub what: ExportWhat,
}

/// What `export` writes; each takes the filters of its `list` command.
#[derive(Subcommand, Debug)]
pub enum ExportWhat {
    /// Every matching contact, oldest first (by dateAdded).
    Contacts {
        #[command(flatten)]
        filters: ContactFilters,
        #[command(flatten)]
        to: ExportTo,
    },
    /// Every matching task, per location soonest due first.
    Tasks {
        #[command(flatten)]
        filters: TaskFilters,
        #[command(flatten)]
        to: ExportTo,
    },
    /// Every matching note, per location grouped by contact, each contact's newest first.
    Notes {
        #[command(flatten)]
        filters: NoteFilters,
        #[command(flatten)]
        to: ExportTo,
    },
    /// Every matching appointment, per location by start time.
    Appointments {
        #[command(flatten)]
        filters: AppointmentFilters,
        #[command(flatten)]
        to: ExportTo,
    },
}

/// Where an export goes.
#[derive(Args, Debug)]
pub struct ExportTo {
    /// The file to write, or `-` for standard output (the default). An existing file is
    /// replaced only once the export is complete (through a symlink, the file it points to);
    /// a FIFO or device such as /dev/stdout is written directly.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Format (default: from the --out extension: .csv, .json, .ndjson or .jsonl; else, and on
    /// standard output, csv).
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
}

/// The formats a file can take (a table is for terminals).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Json,
    Ndjson,
}

impl ExportFormat {
    /// The format a file's extension names; CSV when it names none.
    fn for_path(path: &Path) -> ExportFormat {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("json") => ExportFormat::Json,
            Some("ndjson" | "jsonl") => ExportFormat::Ndjson,
            _ => ExportFormat::Csv,
        }
    }
}

impl From<ExportFormat> for Format {
    fn from(f: ExportFormat) -> Format {
        match f {
            ExportFormat::Csv => Format::Csv,
            ExportFormat::Json => Format::Json,
            ExportFormat::Ndjson => Format::Ndjson,
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Csv => "CSV",
            ExportFormat::Json => "JSON",
            ExportFormat::Ndjson => "NDJSON",
        })
    }
}

/// A moment given on the command line, as ms since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct When(pub i64);

/// Parses WHEN (see [`parse_when_at`]) relative to the current time.
fn parse_when(s: &str) -> Result<When, String> {
    parse_when_at(s, now_ms())
}

/// An RFC 3339 time; a date (midnight UTC); `now`; a duration (humantime: `7d`, `36h`,
/// `2weeks`) meaning that long before `now_ms`, or after it with a leading `+`.
fn parse_when_at(s: &str, now_ms: i64) -> Result<When, String> {
    let s = s.trim();
    if let Some(ms) = ms_from_iso(s) {
        return Ok(When(ms));
    }
    let date = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &date) {
        return Ok(When(d.midnight().assume_utc().unix_timestamp() * 1000));
    }
    if s == "now" {
        return Ok(When(now_ms));
    }
    let (ahead, duration) = match s.strip_prefix('+') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, s),
    };
    match humantime::parse_duration(duration) {
        Ok(d) => {
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            Ok(When(if ahead {
                now_ms.saturating_add(ms)
            } else {
                now_ms.saturating_sub(ms)
            }))
        }
        Err(_) => Err(format!(
            "cannot read {s:?} as a time; write an RFC 3339 time (2025-01-31T09:00:00Z), a date \
             (2025-01-31, midnight UTC), a duration ago (7d, 36h) or ahead (+3d), or now"
        )),
    }
}

pub fn run_contacts(config: &Config, cmd: &ContactsCommand) -> Result<ExitCode> {
    let store = open_mirror(config)?;
    match cmd {
        ContactsCommand::Get(a) => contact_get(&store, a),
        ContactsCommand::List(a) => contact_list(&store, a),
        ContactsCommand::Search(a) => contact_search(&store, a),
    }
}

pub fn run_tasks(config: &Config, cmd: &TasksCommand) -> Result<ExitCode> {
    let store = open_mirror(config)?;
    let TasksCommand::List(a) = cmd;
    let mut f = task_filter(
        &a.filters,
        locations(&store, a.filters.location.as_deref())?,
    );
    print_rows(
        &a.output,
        &TASK_COLUMNS,
        task_cells,
        "tasks",
        |limit, visit| {
            f.limit = limit;
            store.each_task(&f, visit)
        },
    )
}

pub fn run_notes(config: &Config, cmd: &NotesCommand) -> Result<ExitCode> {
    let store = open_mirror(config)?;
    let NotesCommand::List(a) = cmd;
    let mut f = note_filter(
        &a.filters,
        locations(&store, a.filters.location.as_deref())?,
    );
    f.order = NoteOrder::Newest;
    print_rows(
        &a.output,
        &NOTE_COLUMNS,
        note_cells,
        "notes",
        |limit, visit| {
            f.limit = limit;
            store.each_note(&f, visit)
        },
    )
}

pub fn run_appointments(config: &Config, cmd: &AppointmentsCommand) -> Result<ExitCode> {
    let store = open_mirror(config)?;
    let AppointmentsCommand::List(a) = cmd;
    let mut f = appointment_filter(
        &a.filters,
        locations(&store, a.filters.location.as_deref())?,
    );
    print_rows(
        &a.output,
        &APPOINTMENT_COLUMNS,
        appointment_cells,
        "appointments",
        |limit, visit| {
            f.limit = limit;
            store.each_appointment(&f, visit)
        },
    )
}

pub fn run_export(config: &Config, a: &ExportArgs) -> Result<ExitCode> {
    let store = open_mirror(config)?;
    let (to, location) = match &a.what {
        ExportWhat::Contacts { to, filters } => (to, &filters.location),
        ExportWhat::Tasks { to, filters } => (to, &filters.location),
        ExportWhat::Notes { to, filters } => (to, &filters.location),
        ExportWhat::Appointments { to, filters } => (to, &filters.location),
    };
    let dest = Destination::of(to.out.as_deref())?;
    let format = to.format.unwrap_or(match &dest {
        Destination::Stdout => ExportFormat::Csv,
        _ => to
            .out
            .as_deref()
            .map_or(ExportFormat::Csv, ExportFormat::for_path),
    });
    // Everything is checked before the file is created.
    let locs = locations(&store, location.as_deref())?;
    let target = ExportSink::open(dest)?;
    let (what, columns): (&str, &[&str]) = match &a.what {
        ExportWhat::Contacts { .. } => ("contacts", &CONTACT_COLUMNS),
        ExportWhat::Tasks { .. } => ("tasks", &TASK_COLUMNS),
        ExportWhat::Notes { .. } => ("notes", &NOTE_COLUMNS),
        ExportWhat::Appointments { .. } => ("appointments", &APPOINTMENT_COLUMNS),
    };
    let mut w = RecordWriter::new(target.writer(), format.into(), names(columns))
        .with_context(|| target.write_failed())?;
    // One location after another: each is read in an index's order, so nothing is sorted.
    for l in locs {
        let one = || vec![l.clone()];
        match &a.what {
            ExportWhat::Contacts { filters, .. } => export_contacts(&store, filters, &l, &mut w),
            ExportWhat::Tasks { filters, .. } => {
                let f = task_filter(filters, one());
                write_rows(&mut w, None, task_cells, |visit| store.each_task(&f, visit)).map(|_| ())
            }
            ExportWhat::Notes { filters, .. } => {
                let mut f = note_filter(filters, one());
                f.order = NoteOrder::ByContact;
                write_rows(&mut w, None, note_cells, |visit| store.each_note(&f, visit)).map(|_| ())
            }
            ExportWhat::Appointments { filters, .. } => {
                let f = appointment_filter(filters, one());
                write_rows(&mut w, None, appointment_cells, |visit| {
                    store.each_appointment(&f, visit)
                })
                .map(|_| ())
            }
        }
        .map_err(|e| e.in_file(&target))?;
    }
    let rows = w.written();
    w.finish()
        .map(drop)
        .with_context(|| target.write_failed())?;
    if let Some(path) = target.commit()? {
        eprintln!("exported {rows} {what} to {} ({format})", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The mirror, which must exist, opened read-only: the read commands never create, migrate or
/// change one.
fn open_mirror(config: &Config) -> Result<Store> {
    open_read_only(&config.database)
}

/// The location asked for, which must be mirrored; `None` for all.
fn known_location(store: &Store, asked: Option<&str>) -> Result<Option<String>> {
    Ok(match asked {
        Some(_) => only(locations(store, asked)?),
        None => None,
    })
}

/// The locations a command covers: the one asked for, which must be mirrored, or every one.
fn locations(store: &Store, asked: Option<&str>) -> Result<Vec<String>> {
    let all = store.location_ids()?;
    match asked {
        None => Ok(all),
        Some(l) if all.iter().any(|a| a == l) => Ok(vec![l.to_string()]),
        Some(l) if all.is_empty() => bail!(
            "unknown --location {l}: the mirror at {} holds no location yet; run `ghl-mirror sync` first",
            store.path().display()
        ),
        Some(l) => bail!(
            "unknown --location {l}: the mirror holds {}; pass one of those, or leave --location out for all",
            all.join(", ")
        ),
    }
}

fn contact_get(store: &Store, a: &ContactGetArgs) -> Result<ExitCode> {
    let location = known_location(store, a.location.as_deref())?;
    let Some(found) = store.contact(location.as_deref(), &a.id)? else {
        let searched = match &location {
            Some(l) => vec![l.clone()],
            None => store.location_ids()?,
        };
        for l in &searched {
            if store.contact_raw(l, &a.id)?.is_some() {
                bail!(
                    "contact {} was deleted upstream: the mirror keeps only a tombstone of it in location {l}",
                    a.id
                );
            }
        }
        bail!(
            "no contact {} in the mirror{}: check the id, or run `ghl-mirror sync` if it was created since the last sync",
            a.id,
            location
                .map(|l| format!(" (location {l})"))
                .unwrap_or_default()
        );
    };
    let doc = ContactDoc::parse(&found.raw)?;
    let mut out = crate::output::stdout();
    let written = match a.format {
        Format::Table => write_pairs(&mut out, &doc.pairs()),
        Format::Json => serde_json::to_writer_pretty(&mut out, &doc.fields)
            .map_err(Into::into)
            .and_then(|()| writeln!(out)),
        Format::Ndjson => serde_json::to_writer(&mut out, &doc.fields)
            .map_err(Into::into)
            .and_then(|()| writeln!(out)),
        Format::Csv => {
            let pairs = doc.pairs();
            let cells: Vec<Value> = pairs.iter().map(|(_, v)| v.clone().into()).collect();
            RecordWriter::new(
                &mut out,
                Format::Csv,
                pairs.into_iter().map(|p| p.0).collect(),
            )
            .and_then(|mut w| w.row(&cells).and_then(|()| w.finish()).map(|_| ()))
        }
    };
    written
        .and_then(|()| out.flush())
        .context("cannot write the contact")?;
    Ok(ExitCode::SUCCESS)
}

fn contact_list(store: &Store, a: &ContactListArgs) -> Result<ExitCode> {
    let limit = usize::try_from(a.output.limit).unwrap_or(usize::MAX);
    let newest_update = Sort {
        field: SortField::DateUpdated,
        desc: true,
    };
    // One query per location, merged: the newest updates of all locations, ties by id.
    let mut hits: Vec<(String, Hit)> = Vec::new();
    let mut total = 0;
    for l in locations(store, a.filters.location.as_deref())? {
        let page = store.search_contacts(&contact_query(&a.filters, &l, limit, newest_update))?;
        total += page.total;
        hits.extend(page.hits.into_iter().map(|h| (l.clone(), h)));
    }
    let updated = |h: &Hit| match h.sort_values.first() {
        Some(SortValue::Ms(ms)) => Some(*ms),
        _ => None,
    };
    hits.sort_by(|(_, x), (_, y)| updated(y).cmp(&updated(x)).then_with(|| y.id.cmp(&x.id)));
    hits.truncate(limit);
    let mut out = RecordWriter::new(
        crate::output::stdout(),
        a.output.format,
        names(&CONTACT_COLUMNS),
    )
    .context(WRITE_FAILED)?;
    for (l, h) in &hits {
        let doc = ContactDoc::parse(&h.raw)?;
        out.row_with_document(&contact_cells(&doc, &h.id, l), &doc.fields)
            .context(WRITE_FAILED)?;
    }
    out.finish().map(drop).context(WRITE_FAILED)?;
    if total > hits.len() as u64 {
        eprintln!(
            "({} of {total} matching contacts; raise --limit, or `ghl-mirror export contacts --out FILE` writes them all)",
            hits.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn contact_search(store: &Store, a: &ContactSearchArgs) -> Result<ExitCode> {
    let location = known_location(store, a.location.as_deref())?;
    let limit = usize::try_from(a.limit).unwrap_or(usize::MAX);
    let found = store
        .search_text(location.as_deref(), &a.text, limit)
        .map_err(|e| match e {
            TextQueryError::Empty => anyhow!(
                "nothing to search for in {:?}: give words from a name, email, company, tag or note, or a phone number",
                a.text
            ),
            TextQueryError::Store(e) => e.into(),
        })?;
    let mut out = RecordWriter::new(crate::output::stdout(), a.format, names(&SEARCH_COLUMNS))
        .context(WRITE_FAILED)?;
    for (rank, h) in found.hits.iter().enumerate() {
        let doc = ContactDoc::parse(&h.raw)?;
        let cells = vec![
            Value::from(rank + 1),
            serde_json::Number::from_f64((h.score * 1000.0).round() / 1000.0)
                .map_or(Value::Null, Value::Number),
            doc.cell("id"),
            doc.name().map_or(Value::Null, Value::String),
            doc.cell("email"),
            doc.cell("phone"),
            doc.cell("companyName"),
            Value::String(h.location_id.clone()),
        ];
        out.row(&cells).context(WRITE_FAILED)?;
    }
    out.finish().map(drop).context(WRITE_FAILED)?;
    let pending = store.text_pending()?;
    if pending > 0 {
        eprintln!(
            "({pending} contacts added or changed since the search index last caught up are not searchable as they are now; the index catches up at the end of every `ghl-mirror sync` run)"
        );
    }
    if !found.complete {
        eprintln!(
            "(the best of the newest {} matching contacts; more match: add words to narrow the search)",
            found.ranked
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes every contact of `location` matching `filters` to `w`, a page at a time, oldest
/// first. dateAdded never changes, so a sync running meanwhile can add contacts at the end but
/// never move one past the cursor (dateUpdated would).
fn export_contacts(
    store: &Store,
    filters: &ContactFilters,
    location: &str,
    w: &mut RecordWriter<impl Write>,
) -> Result<(), RowsError> {
    let oldest_first = Sort {
        field: SortField::DateAdded,
        desc: false,
    };
    let mut q = contact_query(filters, location, EXPORT_PAGE, oldest_first);
    let mut written = 0u64;
    loop {
        let hits = store.contacts_page(&q)?;
        for h in &hits {
            let doc = ContactDoc::parse(&h.raw).map_err(RowsError::Other)?;
            w.row_with_document(&contact_cells(&doc, &h.id, location), &doc.fields)?;
        }
        written += hits.len() as u64;
        match hits.last() {
            Some(last) if hits.len() == EXPORT_PAGE => {
                q.after = Some((last.sort_values.clone(), last.id.clone()));
            }
            _ => {
                // A page walk that lost its way must not pass for a complete export.
                q.after = None;
                let now = store.count_contacts(&q, false)?;
                if now != written {
                    eprintln!(
                        "warning: wrote {written} contacts of location {location}, but {now} match now \
                         (did a sync change them during the export? run it again to be sure)"
                    );
                }
                return Ok(());
            }
        }
    }
}

/// Contacts per page when exporting.
const EXPORT_PAGE: usize = 1000;

/// The query behind `contacts list` and `export contacts` for one location.
fn contact_query(f: &ContactFilters, location: &str, limit: usize, sort: Sort) -> ContactQuery {
    let mut q = ContactQuery::all(location, limit);
    q.sort = vec![sort];
    let equals = |field, value: &str| Filter::Cond {
        field,
        op: Op::Eq(Operand::Text(vec![value.to_lowercase()])),
    };
    q.filters
        .extend(f.tags.iter().map(|t| equals(Field::Tags, t)));
    q.business = f.business.clone();
    q.filters
        .extend(f.assigned_to.iter().map(|u| equals(Field::AssignedTo, u)));
    if let Some(When(ms)) = f.updated_since {
        q.filters.push(Filter::Cond {
            field: Field::DateUpdated,
            op: Op::Range(Range {
                gte: Some(ms),
                ..Range::default()
            }),
        });
    }
    q.text = f.text.as_ref().map(|t| t.to_lowercase());
    q
}

/// Only one location's rows when exactly one is covered (the index then gives the order).
fn only(locations: Vec<String>) -> Option<String> {
    match <[String; 1]>::try_from(locations) {
        Ok([l]) => Some(l),
        Err(_) => None,
    }
}

fn task_filter(f: &TaskFilters, locations: Vec<String>) -> TaskFilter {
    TaskFilter {
        location: only(locations),
        contact: f.contact.clone(),
        open: f.open,
        due_before_ms: f.due_before.map(|w| w.0),
        limit: None,
    }
}

fn note_filter(f: &NoteFilters, locations: Vec<String>) -> NoteFilter {
    NoteFilter {
        location: only(locations),
        contact: f.contact.clone(),
        order: NoteOrder::default(),
        limit: None,
    }
}

fn appointment_filter(f: &AppointmentFilters, locations: Vec<String>) -> AppointmentFilter {
    AppointmentFilter {
        location: only(locations),
        contact: f.contact.clone(),
        starts_from_ms: f.upcoming.then(now_ms),
        limit: None,
    }
}

const WRITE_FAILED: &str = "cannot write the results";

/// Prints the rows `list` visits (asked for one more than the limit, to tell whether more
/// matched), with a note on stderr when some were left out.
fn print_rows<R>(
    output: &ListOutput,
    columns: &[&str],
    cells: fn(&R) -> Vec<Value>,
    what: &str,
    list: impl FnOnce(Option<usize>, &mut dyn FnMut(R) -> ControlFlow<()>) -> Result<(), StoreError>,
) -> Result<ExitCode> {
    let limit = usize::try_from(output.limit).unwrap_or(usize::MAX);
    let mut w = RecordWriter::new(crate::output::stdout(), output.format, names(columns))
        .context(WRITE_FAILED)?;
    let more = write_rows(&mut w, Some(limit), cells, |visit| {
        list(Some(limit.saturating_add(1)), visit)
    })
    .map_err(|e| e.on_stdout())?;
    w.finish().map(drop).context(WRITE_FAILED)?;
    if more {
        eprintln!(
            "(only the first {limit} {what}; raise --limit, or `ghl-mirror export {what} --out FILE` writes them all)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Why writing rows stopped.
#[derive(Debug)]
enum RowsError {
    Store(StoreError),
    Write(std::io::Error),
    Other(anyhow::Error),
}

impl From<StoreError> for RowsError {
    fn from(e: StoreError) -> Self {
        RowsError::Store(e)
    }
}

impl From<std::io::Error> for RowsError {
    fn from(e: std::io::Error) -> Self {
        RowsError::Write(e)
    }
}

impl RowsError {
    fn on_stdout(self) -> anyhow::Error {
        match self {
            RowsError::Store(e) => e.into(),
            RowsError::Write(e) => anyhow::Error::from(e).context(WRITE_FAILED),
            RowsError::Other(e) => e,
        }
    }

    fn in_file(self, target: &ExportSink) -> anyhow::Error {
        match self {
            RowsError::Store(e) => e.into(),
            RowsError::Write(e) => anyhow::Error::from(e).context(target.write_failed()),
            RowsError::Other(e) => e,
        }
    }
}

/// Writes each row `list` visits, at most `limit`; true when a row beyond the limit came.
fn write_rows<R>(
    w: &mut RecordWriter<impl Write>,
    limit: Option<usize>,
    cells: fn(&R) -> Vec<Value>,
    list: impl FnOnce(&mut dyn FnMut(R) -> ControlFlow<()>) -> Result<(), StoreError>,
) -> Result<bool, RowsError> {
    let (mut written, mut more, mut failed) = (0usize, false, None);
    list(&mut |row| {
        if limit.is_some_and(|l| written >= l) {
            more = true;
            return ControlFlow::Break(());
        }
        written += 1;
        match w.row(&cells(&row)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    match failed {
        Some(e) => Err(RowsError::Write(e)),
        None => Ok(more),
    }
}

fn names(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| c.to_string()).collect()
}

const CONTACT_COLUMNS: [&str; 11] = [
    "id",
    "name",
    "email",
    "phone",
    "company_name",
    "tags",
    "business_id",
    "assigned_to",
    "date_added",
    "date_updated",
    "location_id",
];

const SEARCH_COLUMNS: [&str; 8] = [
    "rank", "score", "id", "name", "email", "phone", "company", "location",
];

const TASK_COLUMNS: [&str; 9] = [
    "id",
    "title",
    "due_date",
    "completed",
    "assigned_to",
    "contact_id",
    "contact_name",
    "body",
    "location_id",
];

const NOTE_COLUMNS: [&str; 9] = [
    "id",
    "date_added",
    "title",
    "body",
    "user_id",
    "pinned",
    "contact_id",
    "contact_name",
    "location_id",
];

const APPOINTMENT_COLUMNS: [&str; 12] = [
    "id",
    "start_time",
    "end_time",
    "title",
    "status",
    "appointment_status",
    "calendar_id",
    "assigned_user_id",
    "address",
    "contact_id",
    "contact_name",
    "location_id",
];

fn opt(s: &Option<String>) -> Value {
    s.clone().map_or(Value::Null, Value::String)
}

fn opt_bool(b: Option<bool>) -> Value {
    b.map_or(Value::Null, Value::Bool)
}

fn contact_cells(doc: &ContactDoc<'_>, id: &str, location: &str) -> Vec<Value> {
    vec![
        Value::String(id.to_string()),
        doc.name().map_or(Value::Null, Value::String),
        doc.cell("email"),
        doc.cell("phone"),
        doc.cell("companyName"),
        doc.cell("tags"),
        doc.cell("businessId"),
        doc.cell("assignedTo"),
        doc.cell("dateAdded"),
        doc.cell("dateUpdated"),
        Value::String(location.to_string()),
    ]
}

fn task_cells(t: &TaskRow) -> Vec<Value> {
    vec![
        Value::String(t.id.clone()),
        opt(&t.title),
        opt(&t.due_date),
        opt_bool(t.completed),
        opt(&t.assigned_to),
        Value::String(t.contact_id.clone()),
        opt(&t.contact_name),
        opt(&t.body),
        Value::String(t.location_id.clone()),
    ]
}

fn note_cells(n: &NoteRow) -> Vec<Value> {
    vec![
        Value::String(n.id.clone()),
        opt(&n.date_added),
        opt(&n.title),
        opt(&n.body),
        opt(&n.user_id),
        opt_bool(n.pinned),
        Value::String(n.contact_id.clone()),
        opt(&n.contact_name),
        Value::String(n.location_id.clone()),
    ]
}

fn appointment_cells(a: &AppointmentRow) -> Vec<Value> {
    vec![
        Value::String(a.id.clone()),
        opt(&a.start_time),
        opt(&a.end_time),
        opt(&a.title),
        opt(&a.status),
        opt(&a.appointment_status),
        opt(&a.calendar_id),
        opt(&a.assigned_user_id),
        opt(&a.address),
        Value::String(a.contact_id.clone()),
        opt(&a.contact_name),
        Value::String(a.location_id.clone()),
    ]
}

/// A stored contact's HighLevel JSON, top-level fields in their order and values as sent,
/// without the `searchAfter` the search endpoint adds to each hit.
struct ContactDoc<'a> {
    fields: IndexMap<String, &'a RawValue>,
}

impl<'a> ContactDoc<'a> {
    /// The stored text was a JSON object when it was written; anything else means a damaged file.
    fn parse(raw: &'a str) -> Result<ContactDoc<'a>> {
        let mut fields: IndexMap<String, &RawValue> = serde_json::from_str(raw).context(
            "a contact stored in the mirror is not a JSON object: the file may be damaged",
        )?;
        fields.shift_remove("searchAfter");
        Ok(ContactDoc { fields })
    }

    /// A field as one line of text (see [`flat`]); `None` when absent or null.
    fn text(&self, key: &str) -> Option<String> {
        self.fields.get(key).and_then(|v| flat(v))
    }

    fn cell(&self, key: &str) -> Value {
        self.text(key).map_or(Value::Null, Value::String)
    }

    /// `name`, or the first and last names joined.
    fn name(&self) -> Option<String> {
        self.text("name").or_else(|| {
            let parts: Vec<String> = ["firstName", "lastName"]
                .iter()
                .filter_map(|k| self.text(k))
                .filter(|s| !s.is_empty())
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
    }

    /// Every field as (name, text), null ones as empty text.
    fn pairs(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .map(|(k, v)| (k.clone(), flat(v).unwrap_or_default()))
            .collect()
    }
}

/// A JSON value flattened one level: a string as itself, an array's items joined with ", "
/// (strings as themselves, anything else as JSON), an object, number or boolean as its JSON;
/// null as nothing.
fn flat(v: &RawValue) -> Option<String> {
    let as_text = |v: &RawValue| {
        serde_json::from_str::<String>(v.get()).unwrap_or_else(|_| v.get().trim().to_string())
    };
    let text = v.get().trim();
    match text.as_bytes().first() {
        Some(b'n') if text == "null" => None,
        Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => Some(
                items
                    .into_iter()
                    .map(as_text)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Err(_) => Some(text.to_string()),
        },
        _ => Some(as_text(v)),
    }
}

/// Where `--out` leads.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// Standard output (`-`, or no `--out`).
    Stdout,
    /// A FIFO, character device or `/proc` file descriptor (`/dev/stdout`): written in place.
    Direct(PathBuf),
    /// A regular file, or nothing yet, at the end of any symlinks: replaced when complete.
    Replace(PathBuf),
}

/// Symlinks followed at most (Linux's own limit).
const MAX_LINKS: usize = 40;

impl Destination {
    /// Follows `--out` through its symlinks, one at a time, to what it names. A link through
    /// `/proc` (`/dev/stdout`, `/dev/fd/1`) names an open file of this process, whatever kind:
    /// it is written in place, never replaced. Each hop's directory is resolved first, so a
    /// symlinked directory on the way (`/dev/fd` is `/proc/self/fd`) is seen for what it is.
    fn of(out: Option<&Path>) -> Result<Destination> {
        let Some(out) = out.filter(|p| p.as_os_str() != "-") else {
            return Ok(Destination::Stdout);
        };
        let mut at = out.to_path_buf();
        for _ in 0..=MAX_LINKS {
            at = with_real_dir(&at);
            if at.starts_with("/proc") {
                return Ok(Destination::Direct(out.to_path_buf()));
            }
            let meta = match std::fs::symlink_metadata(&at) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Destination::Replace(at));
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot look at --out {}: check the path", at.display())
                    });
                }
            };
            let kind = meta.file_type();
            if kind.is_symlink() {
                let next = std::fs::read_link(&at)
                    .with_context(|| format!("cannot read the symlink --out {}", at.display()))?;
                at = match at.parent() {
                    Some(dir) => dir.join(next),
                    None => next,
                };
            } else if kind.is_file() {
                return Ok(Destination::Replace(at));
            } else if kind.is_dir() {
                bail!(
                    "--out {} is a directory: cannot replace a directory with the export; name a file in it",
                    at.display()
                );
            } else if writable_in_place(&kind) {
                return Ok(Destination::Direct(out.to_path_buf()));
            } else {
                bail!(
                    "--out {} is neither a file, a FIFO nor a character device: refusing to write an export onto it",
                    at.display()
                );
            }
        }
        bail!(
            "--out {}: more than {MAX_LINKS} symlinks in a row; name the file itself",
            out.display()
        )
    }
}

/// `path` with its directory resolved through any symlinks (the last component is left as it
/// is, to be looked at); as it was when the directory cannot be resolved.
fn with_real_dir(path: &Path) -> PathBuf {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_path_buf();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::canonicalize(dir).map_or_else(|_| path.to_path_buf(), |d| d.join(name))
}

/// A FIFO or a character device (a terminal, /dev/null): written as it is, never replaced.
#[cfg(unix)]
fn writable_in_place(kind: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    kind.is_fifo() || kind.is_char_device()
}

#[cfg(not(unix))]
fn writable_in_place(_: &std::fs::FileType) -> bool {
    false
}

/// What an export writes into.
enum ExportSink {
    Stdout,
    Direct { file: std::fs::File, path: PathBuf },
    Replace(AtomicFile),
}

impl ExportSink {
    fn open(dest: Destination) -> Result<ExportSink> {
        Ok(match dest {
            Destination::Stdout => ExportSink::Stdout,
            // Appending: a shell's `>>` behind /dev/stdout is kept, and `>` has emptied it.
            Destination::Direct(path) => ExportSink::Direct {
                file: std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("cannot open --out {} for writing", path.display()))?,
                path,
            },
            Destination::Replace(path) => ExportSink::Replace(AtomicFile::create(&path)?),
        })
    }

    fn writer(&self) -> Box<dyn Write + '_> {
        match self {
            ExportSink::Stdout => Box::new(crate::output::stdout()),
            ExportSink::Direct { file, .. } => {
                Box::new(BufWriter::new(crate::output::Watched(file)))
            }
            ExportSink::Replace(f) => Box::new(BufWriter::new(f.file())),
        }
    }

    fn write_failed(&self) -> String {
        match self {
            ExportSink::Stdout => "cannot write the export to standard output".into(),
            ExportSink::Direct { path, .. } => format!(
                "cannot write the export to {} (it may hold part of it)",
                path.display()
            ),
            ExportSink::Replace(f) => f.write_failed(),
        }
    }

    /// Ends the export; the file written, if any.
    fn commit(self) -> Result<Option<PathBuf>> {
        Ok(match self {
            ExportSink::Stdout => None,
            ExportSink::Direct { path, .. } => Some(path),
            ExportSink::Replace(f) => Some(f.commit()?),
        })
    }
}

/// A file written under a temporary name beside its target and renamed over it when complete.
/// Dropped before [`AtomicFile::commit`], the temporary file is removed and the target is as it
/// was.
struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    fn create(target: &Path) -> Result<AtomicFile> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("--out {} names no file", target.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| {
                format!(
                    "cannot create a file in {} for --out {}: check that the directory exists and is writable",
                    dir.display(),
                    target.display()
                )
            })?;
        Ok(AtomicFile {
            tmp,
            target: target.to_path_buf(),
        })
    }

    fn file(&self) -> &std::fs::File {
        self.tmp.as_file()
    }

    fn write_failed(&self) -> String {
        format!(
            "cannot write the export to {} (it is left as it was)",
            self.target.display()
        )
    }

    /// Flushes the file to disk and renames it over the target, which it returns. A replaced
    /// file's permissions carry over; a new one is readable by its owner only (it holds contact
    /// data).
    fn commit(self) -> Result<PathBuf> {
        let file = self.tmp.as_file();
        if let Ok(old) = std::fs::metadata(&self.target) {
            file.set_permissions(old.permissions())
                .with_context(|| self.write_failed())?;
        }
        file.sync_all().with_context(|| self.write_failed())?;
        let target = self.target;
        self.tmp.persist(&target).map_err(|e| {
            anyhow!(
                "cannot replace {} with the export: {} (it is left as it was)",
                target.display(),
                e.error
            )
        })?;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_738_000_000_000;

    #[test]
    fn when_takes_timestamps_dates_durations_ago_and_ahead() {
        let at = |s| parse_when_at(s, NOW).map(|w| w.0);
        assert_eq!(at("2025-01-31T09:00:00Z"), Ok(1_738_314_000_000));
        assert_eq!(at("2025-01-31T10:00:00+01:00"), Ok(1_738_314_000_000));
        assert_eq!(at("2025-01-31"), Ok(1_738_281_600_000));
        assert_eq!(at("7d"), Ok(NOW - 7 * 86_400_000));
        assert_eq!(at("36h"), Ok(NOW - 36 * 3_600_000));
        assert_eq!(at("+3d"), Ok(NOW + 3 * 86_400_000));
        assert_eq!(at("now"), Ok(NOW));
        for bad in ["yesterday", "2025-02-30", "7", ""] {
            let e = at(bad).unwrap_err();
            assert!(e.contains("RFC 3339") && e.contains("7d"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_contact_flattens_one_level_in_field_order_without_search_after() {
        let raw = concat!(
            r#"{"id":"c1","firstName":"Zoë","lastName":"O'Brien","tags":["vip","lead"],"#,
            r#""dnd":false,"customFields":[{"id":"f1","value":"x"}],"#,
            r#""attributionSource":{"url":"u","medium":"m"},"companyName":null,"#,
            r#""searchAfter":[1,"c1"]}"#
        );
        let doc = ContactDoc::parse(raw).unwrap();
        assert_eq!(
            doc.pairs(),
            [
                ("id", "c1"),
                ("firstName", "Zoë"),
                ("lastName", "O'Brien"),
                ("tags", "vip, lead"),
                ("dnd", "false"),
                ("customFields", r#"{"id":"f1","value":"x"}"#),
                ("attributionSource", r#"{"url":"u","medium":"m"}"#),
                ("companyName", ""),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(doc.name().as_deref(), Some("Zoë O'Brien"));
        assert_eq!(doc.cell("companyName"), Value::Null);
        assert_eq!(
            serde_json::to_string(&doc.fields).unwrap(),
            raw.replace(r#","searchAfter":[1,"c1"]"#, "")
        );
    }

    #[test]
    fn list_filters_become_one_contact_query_per_location() {
        let f = ContactFilters {
            location: None,
            tags: vec!["VIP".into(), "Lead".into()],
            business: Some("B1".into()),
            assigned_to: Some("U1".into()),
            updated_since: Some(When(5)),
            text: Some("ZOË".into()),
        };
        let newest = Sort {
            field: SortField::DateUpdated,
            desc: true,
        };
        let q = contact_query(&f, "L1", 10, newest);
        let eq = |field, v: &str| Filter::Cond {
            field,
            op: Op::Eq(Operand::Text(vec![v.into()])),
        };
        assert_eq!(
            q.filters,
            [
                eq(Field::Tags, "vip"),
                eq(Field::Tags, "lead"),
                eq(Field::AssignedTo, "u1"),
                Filter::Cond {
                    field: Field::DateUpdated,
                    op: Op::Range(Range {
                        gte: Some(5),
                        ..Range::default()
                    })
                },
            ]
        );
        assert_eq!(q.business.as_deref(), Some("B1"));
        assert_eq!(q.text.as_deref(), Some("zoë"));
        assert_eq!((q.location.as_str(), q.limit), ("L1", 10));
        assert_eq!(q.sort, [newest]);
    }

    #[test]
    fn an_export_format_follows_the_extension_and_defaults_to_csv() {
        for (path, f) in [
            ("a.csv", ExportFormat::Csv),
            ("a.JSON", ExportFormat::Json),
            ("dir/a.ndjson", ExportFormat::Ndjson),
            ("a.jsonl", ExportFormat::Ndjson),
            ("a.txt", ExportFormat::Csv),
            ("a", ExportFormat::Csv),
        ] {
            assert_eq!(ExportFormat::for_path(Path::new(path)), f, "{path}");
        }
    }
}
