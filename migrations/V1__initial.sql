-- ghl-mirror schema v1: contacts mirror, sync state and run history.
-- Append-only: later changes go in new V{n}__*.sql files.
-- Foreign keys are enforced (PRAGMA foreign_keys = ON) and checked at COMMIT (deferred), which
-- spares SQLite a statement journal per insert during bulk page commits.

CREATE TABLE locations (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- One row per contact ever seen. Typed columns for filtering; `raw` is the exact upstream JSON.
CREATE TABLE contacts (
    pk               INTEGER PRIMARY KEY,
    location_id      TEXT NOT NULL REFERENCES locations(id) DEFERRABLE INITIALLY DEFERRED,
    id               TEXT NOT NULL,
    first_name       TEXT,
    last_name        TEXT,
    name             TEXT,
    email            TEXT,
    phone            TEXT,
    company_name     TEXT,
    business_id      TEXT,
    source           TEXT,
    type             TEXT,
    assigned_to      TEXT,
    dnd              INTEGER,
    country          TEXT,
    city             TEXT,
    state            TEXT,
    postal_code      TEXT,
    timezone         TEXT,
    tags             TEXT NOT NULL DEFAULT '[]',  -- JSON array, same as contact_tags
    date_added       TEXT,                        -- ISO-8601 as sent by HighLevel
    date_updated     TEXT,
    date_updated_ms  INTEGER,                     -- dateUpdated as ms since the epoch
    raw              TEXT NOT NULL,
    first_seen_at    TEXT NOT NULL,               -- when the mirror first stored it
    changed_at       TEXT NOT NULL,               -- when the mirror last stored a different version
    fetched_at       TEXT NOT NULL,               -- when upstream last returned it
    seen_sweep       INTEGER NOT NULL DEFAULT 0,  -- internal: last reconciling sweep that saw it
    deleted_at       TEXT,                        -- tombstone: gone upstream since this time
    UNIQUE (location_id, id)
);
CREATE INDEX contacts_by_updated ON contacts (location_id, date_updated_ms, id);
CREATE INDEX contacts_by_email ON contacts (email) WHERE email IS NOT NULL;
CREATE INDEX contacts_by_phone ON contacts (phone) WHERE phone IS NOT NULL;
CREATE INDEX contacts_by_business ON contacts (business_id) WHERE business_id IS NOT NULL;

-- Tags and custom field values hang off the contact's integer key `pk`, so bulk inserts append
-- instead of scattering across an index keyed by random contact ids. Join with
-- `JOIN contacts c ON c.pk = t.contact_pk`.
CREATE TABLE contact_tags (
    contact_pk   INTEGER NOT NULL REFERENCES contacts(pk)
        ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    tag          TEXT NOT NULL,
    PRIMARY KEY (contact_pk, tag)
) WITHOUT ROWID;
CREATE INDEX contact_tags_by_tag ON contact_tags (tag);

CREATE TABLE contact_custom_fields (
    contact_pk   INTEGER NOT NULL REFERENCES contacts(pk)
        ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    field_id     TEXT NOT NULL,
    value        TEXT,            -- the string, or JSON text for numbers, arrays and objects
    PRIMARY KEY (contact_pk, field_id)
) WITHOUT ROWID;
CREATE INDEX contact_custom_fields_by_field ON contact_custom_fields (field_id);

-- Where each (location, stream) stands: the watermark and, mid-sweep, the cursor.
CREATE TABLE sync_state (
    location_id        TEXT NOT NULL REFERENCES locations(id),
    stream             TEXT NOT NULL,
    watermark_ms       INTEGER,
    sweep_seq          INTEGER NOT NULL DEFAULT 0,
    last_full_sweep_ms INTEGER,
    cursor             TEXT,      -- JSON of the in-progress sweep, NULL between sweeps
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (location_id, stream)
);

-- Every run, its outcome and what it cost. Rows are updated with each committed page.
CREATE TABLE sync_runs (
    id               INTEGER PRIMARY KEY,
    location_id      TEXT NOT NULL REFERENCES locations(id),
    stream           TEXT NOT NULL,
    mode             TEXT NOT NULL,       -- full | incremental | legacy-list
    started_at       TEXT NOT NULL,
    ended_at         TEXT,
    outcome          TEXT NOT NULL,       -- running | success | partial | failed | interrupted
    pages            INTEGER NOT NULL DEFAULT 0,
    received         INTEGER NOT NULL DEFAULT 0,
    inserted         INTEGER NOT NULL DEFAULT 0,
    updated          INTEGER NOT NULL DEFAULT 0,
    unchanged        INTEGER NOT NULL DEFAULT 0,
    tombstoned       INTEGER NOT NULL DEFAULT 0,
    warnings         INTEGER NOT NULL DEFAULT 0,
    requests         INTEGER NOT NULL DEFAULT 0,
    retries          INTEGER NOT NULL DEFAULT 0,
    rate_limited     INTEGER NOT NULL DEFAULT 0,
    daily_remaining  INTEGER,
    error            TEXT
);
CREATE INDEX sync_runs_by_stream ON sync_runs (location_id, stream, id);
