-- ghl-mirror schema v9: the file reads correctly in SQLite 3.37 and later (the distributions'
-- `sqlite3`, Python's `sqlite3` module, Datasette), and in DuckDB's SQLite reader.
--
-- * `tasks.due_date_ms`, `appointments.start_ms` and `end_ms` were generated columns computed
--   with `unixepoch(..., 'subsec')` (SQLite 3.42): older SQLite read them as NULL and
--   `PRAGMA integrity_check` reported rows missing from `tasks_by_due` and
--   `appointments_by_start`. They are plain columns now, set by the writer (in Rust, see
--   `model::ms_from_time_text`, which reads a date-time as `unixepoch` does). SQLite cannot
--   change a generated column, so both tables are rebuilt here; existing rows are filled by
--   this migration, which runs in ghl-mirror's own SQLite. The views that read these tables
--   are dropped first (a rename re-checks every view) and created again below.
-- * The views ask for the current time with `julianday('now')` instead of `unixepoch('now')`
--   (SQLite 3.38), and count with `COUNT(x.pk)` instead of `COUNT(*)`: DuckDB rewrites a
--   view's SQL before handing it to SQLite and turns `COUNT(*)` into `count_star()`, which
--   SQLite does not have.
-- * `contacts_fts` was contentless with `contentless_delete = 1` (SQLite 3.43), an option older
--   SQLite refuses while reading the schema: Datasette would not open the file. It is now an
--   FTS5 table that keeps its own copy of the indexed text (deleting an entry needs it), with
--   the same columns, tokenizer and prefixes. It starts empty: the next sync run's catch-up
--   indexes every live contact again, as after v8.
-- * The triggers that mark changed contacts for the index mark only contacts already indexed
--   (`pk <= last_pk`); the others are indexed as new anyway. A contact with a note used to be
--   counted twice as pending ("1459 contacts not searchable" of 1,000).
--
-- Migrations run with foreign keys off, and nothing refers to these two tables by key.

DROP VIEW live_contacts;
DROP VIEW open_tasks;
DROP VIEW upcoming_appointments;

CREATE TABLE tasks_v9 (
    pk             INTEGER PRIMARY KEY,
    location_id    TEXT NOT NULL REFERENCES locations(id) DEFERRABLE INITIALLY DEFERRED,
    id             TEXT NOT NULL,
    contact_id     TEXT NOT NULL,
    raw            TEXT NOT NULL,
    first_seen_at  TEXT NOT NULL,
    changed_at     TEXT NOT NULL,
    fetched_at     TEXT NOT NULL,
    deleted_at     TEXT,            -- tombstone: gone from its contact's list upstream
    due_date_ms    INTEGER,         -- dueDate as ms since the epoch (set by the writer)
    title          TEXT GENERATED ALWAYS AS (json_extract(raw, '$.title')) VIRTUAL,
    body           TEXT GENERATED ALWAYS AS (json_extract(raw, '$.body')) VIRTUAL,
    assigned_to    TEXT GENERATED ALWAYS AS (json_extract(raw, '$.assignedTo')) VIRTUAL,
    due_date       TEXT GENERATED ALWAYS AS (json_extract(raw, '$.dueDate')) VIRTUAL,
    completed      INTEGER GENERATED ALWAYS AS (json_extract(raw, '$.completed')) VIRTUAL,
    UNIQUE (location_id, id)
);
INSERT INTO tasks_v9 (pk, location_id, id, contact_id, raw, first_seen_at, changed_at,
                      fetched_at, deleted_at, due_date_ms)
SELECT pk, location_id, id, contact_id, raw, first_seen_at, changed_at, fetched_at, deleted_at,
       CASE WHEN json_type(raw, '$.dueDate') = 'text'
            THEN CAST(ROUND(unixepoch(json_extract(raw, '$.dueDate'), 'subsec') * 1000) AS INTEGER)
       END
FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_v9 RENAME TO tasks;
CREATE INDEX tasks_by_contact ON tasks (location_id, contact_id);
CREATE INDEX tasks_by_due ON tasks (location_id, due_date_ms, deleted_at) WHERE deleted_at IS NULL;

CREATE TABLE appointments_v9 (
    pk                  INTEGER PRIMARY KEY,
    location_id         TEXT NOT NULL REFERENCES locations(id) DEFERRABLE INITIALLY DEFERRED,
    id                  TEXT NOT NULL,
    contact_id          TEXT NOT NULL,
    raw                 TEXT NOT NULL,
    first_seen_at       TEXT NOT NULL,
    changed_at          TEXT NOT NULL,
    fetched_at          TEXT NOT NULL,
    deleted_at          TEXT,
    start_ms            INTEGER,    -- startTime as ms since the epoch (set by the writer)
    end_ms              INTEGER,    -- endTime as ms since the epoch (set by the writer)
    calendar_id         TEXT GENERATED ALWAYS AS (json_extract(raw, '$.calendarId')) VIRTUAL,
    title               TEXT GENERATED ALWAYS AS (json_extract(raw, '$.title')) VIRTUAL,
    status              TEXT GENERATED ALWAYS AS (json_extract(raw, '$.status')) VIRTUAL,
    appointment_status  TEXT GENERATED ALWAYS AS (json_extract(raw, '$.appointmentStatus')) VIRTUAL,
    assigned_user_id    TEXT GENERATED ALWAYS AS (json_extract(raw, '$.assignedUserId')) VIRTUAL,
    address             TEXT GENERATED ALWAYS AS (json_extract(raw, '$.address')) VIRTUAL,
    start_time          TEXT GENERATED ALWAYS AS (json_extract(raw, '$.startTime')) VIRTUAL,
    end_time            TEXT GENERATED ALWAYS AS (json_extract(raw, '$.endTime')) VIRTUAL,
    date_updated        TEXT GENERATED ALWAYS AS (json_extract(raw, '$.dateUpdated')) VIRTUAL,
    UNIQUE (location_id, id)
);
INSERT INTO appointments_v9 (pk, location_id, id, contact_id, raw, first_seen_at, changed_at,
                             fetched_at, deleted_at, start_ms, end_ms)
SELECT pk, location_id, id, contact_id, raw, first_seen_at, changed_at, fetched_at, deleted_at,
       CASE WHEN json_type(raw, '$.startTime') = 'text'
            THEN CAST(ROUND(unixepoch(json_extract(raw, '$.startTime'), 'subsec') * 1000) AS INTEGER)
       END,
       CASE WHEN json_type(raw, '$.endTime') = 'text'
            THEN CAST(ROUND(unixepoch(json_extract(raw, '$.endTime'), 'subsec') * 1000) AS INTEGER)
       END
FROM appointments;
DROP TABLE appointments;
ALTER TABLE appointments_v9 RENAME TO appointments;
CREATE INDEX appointments_by_contact ON appointments (location_id, contact_id);
CREATE INDEX appointments_by_start ON appointments (location_id, start_ms, deleted_at)
    WHERE deleted_at IS NULL;

-- v5's live_contacts, readable by SQLite 3.37 and DuckDB.
CREATE VIEW live_contacts AS
SELECT c.location_id, c.id, c.name, c.first_name, c.last_name, c.email, c.phone,
       c.company_name, c.business_id, b.name AS business_name, c.assigned_to, c.source, c.type,
       c.dnd, c.city, c.state, c.country, c.postal_code, c.timezone,
       (SELECT group_concat(tag, ', ') FROM (SELECT tag FROM contact_tags t
          WHERE t.contact_pk = c.pk ORDER BY tag)) AS tags,
       c.date_added, c.date_updated,
       (SELECT COUNT(k.pk) FROM tasks k WHERE k.location_id = c.location_id
          AND k.contact_id = c.id AND k.deleted_at IS NULL AND k.completed = 0) AS open_tasks,
       (SELECT COUNT(n.pk) FROM notes n WHERE n.location_id = c.location_id
          AND n.contact_id = c.id AND n.deleted_at IS NULL) AS notes,
       (SELECT MIN(a.start_time) FROM appointments a WHERE a.location_id = c.location_id
          AND a.contact_id = c.id AND a.deleted_at IS NULL
          AND a.start_ms >= CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
         AS next_appointment,
       (SELECT json_group_object(COALESCE(d.name, f.field_id), f.value)
          FROM contact_custom_fields f
          LEFT JOIN custom_fields d
            ON d.location_id = c.location_id AND d.id = f.field_id AND d.deleted_at IS NULL
          WHERE f.contact_pk = c.pk) AS custom_fields
FROM contacts c
LEFT JOIN businesses b
  ON b.location_id = c.location_id AND b.id = c.business_id AND b.deleted_at IS NULL
WHERE c.deleted_at IS NULL;

-- Tasks not completed, of live contacts, soonest due first.
CREATE VIEW open_tasks AS
SELECT t.location_id, t.id, t.title, t.body, t.due_date, t.due_date_ms, t.assigned_to,
       t.contact_id, c.name AS contact_name, c.email AS contact_email, c.phone AS contact_phone
FROM tasks t
JOIN contacts c ON c.location_id = t.location_id AND c.id = t.contact_id
WHERE t.deleted_at IS NULL AND t.completed = 0 AND c.deleted_at IS NULL
ORDER BY t.due_date_ms;

-- Appointments from now on, of live contacts, soonest first.
CREATE VIEW upcoming_appointments AS
SELECT a.location_id, a.id, a.title, a.start_time, a.end_time, a.start_ms, a.status,
       a.appointment_status, a.calendar_id, a.assigned_user_id, a.address,
       a.contact_id, c.name AS contact_name, c.email AS contact_email, c.phone AS contact_phone
FROM appointments a
JOIN contacts c ON c.location_id = a.location_id AND c.id = a.contact_id
WHERE a.deleted_at IS NULL AND c.deleted_at IS NULL
  AND a.start_ms >= CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
ORDER BY a.start_ms;

DROP TABLE contacts_fts;
CREATE VIRTUAL TABLE contacts_fts USING fts5(
    name, email, phone, company, tags, notes, location,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
DELETE FROM contacts_fts_dirty;
UPDATE contacts_fts_state SET last_pk = 0;

DROP TRIGGER contacts_fts_after_update;
CREATE TRIGGER contacts_fts_after_update AFTER UPDATE OF raw, deleted_at ON contacts
WHEN new.pk <= (SELECT last_pk FROM contacts_fts_state)
BEGIN
    INSERT OR IGNORE INTO contacts_fts_dirty (pk) VALUES (new.pk);
END;

DROP TRIGGER contacts_fts_after_delete;
CREATE TRIGGER contacts_fts_after_delete AFTER DELETE ON contacts
WHEN old.pk <= (SELECT last_pk FROM contacts_fts_state)
BEGIN
    INSERT OR IGNORE INTO contacts_fts_dirty (pk) VALUES (old.pk);
END;

DROP TRIGGER notes_fts_after_insert;
CREATE TRIGGER notes_fts_after_insert AFTER INSERT ON notes
BEGIN
    INSERT OR IGNORE INTO contacts_fts_dirty (pk)
    SELECT pk FROM contacts WHERE location_id = new.location_id AND id = new.contact_id
       AND pk <= (SELECT last_pk FROM contacts_fts_state);
END;

DROP TRIGGER notes_fts_after_update;
CREATE TRIGGER notes_fts_after_update AFTER UPDATE OF raw, deleted_at, contact_id ON notes
BEGIN
    INSERT OR IGNORE INTO contacts_fts_dirty (pk)
    SELECT pk FROM contacts WHERE location_id = new.location_id
       AND id IN (new.contact_id, old.contact_id)
       AND pk <= (SELECT last_pk FROM contacts_fts_state);
END;

DROP TRIGGER notes_fts_after_delete;
CREATE TRIGGER notes_fts_after_delete AFTER DELETE ON notes
BEGIN
    INSERT OR IGNORE INTO contacts_fts_dirty (pk)
    SELECT pk FROM contacts WHERE location_id = old.location_id AND id = old.contact_id
       AND pk <= (SELECT last_pk FROM contacts_fts_state);
END;
