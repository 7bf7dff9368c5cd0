-- ghl-mirror schema v2: each contact's tasks, notes and appointments, businesses and their
-- contacts, and when each contact's sub-resources were last fetched.
--
-- Sub-resource rows keep HighLevel's exact JSON in `raw`; the typed columns are generated from it
-- by SQLite (VIRTUAL: computed on read, indexable), so a field of an unexpected type never loses
-- data and the writer has one code path for every kind. Timestamps the mirror sets are ISO-8601
-- UTC text like the contacts table's; `*_ms` columns are ms since the epoch (NULL unless the
-- value starts with a digit: SQLite refuses `unixepoch('now')` in a generated column).

CREATE TABLE tasks (
    pk             INTEGER PRIMARY KEY,
    location_id    TEXT NOT NULL REFERENCES locations(id) DEFERRABLE INITIALLY DEFERRED,
    id             TEXT NOT NULL,
    contact_id     TEXT NOT NULL,
    raw            TEXT NOT NULL,
    first_seen_at  TEXT NOT NULL,
    changed_at     TEXT NOT NULL,
    fetched_at     TEXT NOT NULL,
    deleted_at     TEXT,            -- tombstone: gone from its contact's list upstream
    title          TEXT GENERATED ALWAYS AS (json_extract(raw, '$.title')) VIRTUAL,
    body           TEXT GENERATED ALWAYS AS (json_extract(raw, '$.body')) VIRTUAL,
    assigned_to    TEXT GENERATED ALWAYS AS (json_extract(raw, '$.assignedTo')) VIRTUAL,
    due_date       TEXT GENERATED ALWAYS AS (json_extract(raw, '$.dueDate')) VIRTUAL,
    due_date_ms    INTEGER GENERATED ALWAYS AS
        (CASE WHEN json_extract(raw, '$.dueDate') GLOB '[0-9]*'
              THEN CAST(unixepoch(json_extract(raw, '$.dueDate'), 'subsec') * 1000 AS INTEGER) END) VIRTUAL,
    completed      INTEGER GENERATED ALWAYS AS (json_extract(raw, '$.completed')) VIRTUAL,
    UNIQUE (location_id, id)
);
CREATE INDEX tasks_by_contact ON tasks (location_id, contact_id);
CREATE INDEX tasks_by_due ON tasks (location_id, due_date_ms) WHERE deleted_at IS NULL;

CREATE TABLE notes (
    pk             INTEGER PRIMARY KEY,
    location_id    TEXT NOT NULL REFERENCES locations(id) DEFERRABLE INITIALLY DEFERRED,
    id             TEXT NOT NULL,
    contact_id     TEXT NOT NULL,
    raw            TEXT NOT NULL,
    first_seen_at  TEXT NOT NULL,
    changed_at     TEXT NOT NULL,
    fetched_at     TEXT NOT NULL,
    deleted_at     TEXT,
    body           TEXT GENERATED ALWAYS AS (json_extract(raw, '$.body')) VIRTUAL,
    title          TEXT GENERATED ALWAYS AS (json_extract(raw, '$.title')) VIRTUAL,
    user_id        TEXT GENERATED ALWAYS AS (json_extract(raw, '$.userId')) VIRTUAL,
    color          TEXT GENERATED ALWAYS AS (json_extract(raw, '$.color')) VIRTUAL,
    pinned         INTEGER GENERATED ALWAYS AS (json_extract(raw, '$.pinned')) VIRTUAL,
    date_added     TEXT GENERATED ALWAYS AS (json_extract(raw, '$.dateAdded')) VIRTUAL,
    UNIQUE (location_id, id)
);
CREATE INDEX notes_by_contact ON notes (location_id, contact_id);

CREATE TABLE appointments (
    pk                  INTEGER PRIMARY KEY,
    location_id         TEXT NOT NULL REFERENCES locations(id) DEFERRABLE INITIALLY DEFERRED,
    id                  TEXT NOT NULL,
    contact_id          TEXT NOT NULL,
    raw                 TEXT NOT NULL,
    first_seen_at       TEXT NOT NULL,
    changed_at          TEXT NOT NULL,
    fetched_at          TEXT NOT NULL,
    deleted_at          TEXT,
    calendar_id         TEXT GENERATED ALWAYS AS (json_extract(raw, '$.calendarId')) VIRTUAL,
    title               TEXT GENERATED ALWAYS AS (json_extract(raw, '$.title')) VIRTUAL,
    status              TEXT GENERATED ALWAYS AS (json_extract(raw, '$.status')) VIRTUAL,
    appointment_status  TEXT GENERATED ALWAYS AS (json_extract(raw, '$.appointmentStatus')) VIRTUAL,
    assigned_user_id    TEXT GENERATED ALWAYS AS (json_extract(raw, '$.assignedUserId')) VIRTUAL,
    address             TEXT GENERATED ALWAYS AS (json_extract(raw, '$.address')) VIRTUAL,
    start_time          TEXT GENERATED ALWAYS AS (json_extract(raw, '$.startTime')) VIRTUAL,
    end_time            TEXT GENERATED ALWAYS AS (json_extract(raw, '$.endTime')) VIRTUAL,
    start_ms            INTEGER GENERATED ALWAYS AS
        (CASE WHEN json_extract(raw, '$.startTime') GLOB '[0-9]*'
              THEN CAST(unixepoch(json_extract(raw, '$.startTime'), 'subsec') * 1000 AS INTEGER) END) VIRTUAL,
    end_ms              INTEGER GENERATED ALWAYS AS
        (CASE WHEN json_extract(raw, '$.endTime') GLOB '[0-9]*'
              THEN CAST(unixepoch(json_extract(raw, '$.endTime'), 'subsec') * 1000 AS INTEGER) END) VIRTUAL,
    date_updated        TEXT GENERATED ALWAYS AS (json_extract(raw, '$.dateUpdated')) VIRTUAL,
    UNIQUE (location_id, id)
);
CREATE INDEX appointments_by_contact ON appointments (location_id, contact_id);
CREATE INDEX appointments_by_start ON appointments (location_id, start_ms) WHERE deleted_at IS NULL;

-- When each contact's list of each kind was last fetched, and the contact's dateUpdated that
-- fetch covers: a contact whose dateUpdated has moved past `seen_updated_ms` is due first.
CREATE TABLE contact_fetches (
    location_id      TEXT NOT NULL,
    contact_id       TEXT NOT NULL,
    kind             TEXT NOT NULL,   -- tasks | notes | appointments
    fetched_at       TEXT NOT NULL,
    seen_updated_ms  INTEGER,
    PRIMARY KEY (location_id, contact_id, kind)
) WITHOUT ROWID;
CREATE INDEX contact_fetches_by_age ON contact_fetches (location_id, kind, fetched_at);

CREATE TABLE businesses (
    pk                 INTEGER PRIMARY KEY,
    location_id        TEXT NOT NULL REFERENCES locations(id) DEFERRABLE INITIALLY DEFERRED,
    id                 TEXT NOT NULL,
    raw                TEXT NOT NULL,
    first_seen_at      TEXT NOT NULL,
    changed_at         TEXT NOT NULL,
    fetched_at         TEXT NOT NULL,
    deleted_at         TEXT,
    links_fetched_at   TEXT,          -- when its contact list was last read completely
    name               TEXT GENERATED ALWAYS AS (json_extract(raw, '$.name')) VIRTUAL,
    email              TEXT GENERATED ALWAYS AS (json_extract(raw, '$.email')) VIRTUAL,
    phone              TEXT GENERATED ALWAYS AS (json_extract(raw, '$.phone')) VIRTUAL,
    website            TEXT GENERATED ALWAYS AS (json_extract(raw, '$.website')) VIRTUAL,
    city               TEXT GENERATED ALWAYS AS (json_extract(raw, '$.city')) VIRTUAL,
    state              TEXT GENERATED ALWAYS AS (json_extract(raw, '$.state')) VIRTUAL,
    country            TEXT GENERATED ALWAYS AS (json_extract(raw, '$.country')) VIRTUAL,
    created_at         TEXT GENERATED ALWAYS AS (json_extract(raw, '$.createdAt')) VIRTUAL,
    updated_at         TEXT GENERATED ALWAYS AS (json_extract(raw, '$.updatedAt')) VIRTUAL,
    UNIQUE (location_id, id)
);

-- Business <-> contact links as `GET /contacts/business/:businessId` lists them.
CREATE TABLE business_contacts (
    location_id   TEXT NOT NULL,
    business_id   TEXT NOT NULL,
    contact_id    TEXT NOT NULL,
    fetched_at    TEXT NOT NULL,
    PRIMARY KEY (location_id, business_id, contact_id)
) WITHOUT ROWID;
CREATE INDEX business_contacts_by_contact ON business_contacts (location_id, contact_id);

-- How fresh each live contact's sub-resources are (NULL = never fetched); `*_due` is exactly
-- what the sub-resource stream fetches first.
CREATE VIEW contact_freshness AS
SELECT c.location_id, c.id AS contact_id, c.date_updated,
       t.fetched_at AS tasks_fetched_at,
       n.fetched_at AS notes_fetched_at,
       a.fetched_at AS appointments_fetched_at,
       (t.contact_id IS NULL
        OR COALESCE(t.seen_updated_ms, -1) < COALESCE(c.date_updated_ms, -1)) AS tasks_due,
       (n.contact_id IS NULL
        OR COALESCE(n.seen_updated_ms, -1) < COALESCE(c.date_updated_ms, -1)) AS notes_due,
       (a.contact_id IS NULL
        OR COALESCE(a.seen_updated_ms, -1) < COALESCE(c.date_updated_ms, -1)) AS appointments_due
FROM contacts c
LEFT JOIN contact_fetches t
  ON t.location_id = c.location_id AND t.contact_id = c.id AND t.kind = 'tasks'
LEFT JOIN contact_fetches n
  ON n.location_id = c.location_id AND n.contact_id = c.id AND n.kind = 'notes'
LEFT JOIN contact_fetches a
  ON a.location_id = c.location_id AND a.contact_id = c.id AND a.kind = 'appointments'
WHERE c.deleted_at IS NULL;
