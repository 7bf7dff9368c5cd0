-- ghl-mirror schema v4: what the query layer reads by.
--
-- * `contacts.date_added_ms`: dateAdded as ms since the epoch (the writer sets it; existing rows
--   are filled here).
-- * `contacts_live_by_added` / `_by_updated`: live contacts per location in (date, id) order, for
--   HighLevel's default order (newest first), the legacy list's (dateAdded, id) cursor, the
--   sub-resource queue, and counting a date range without touching the rows. The second
--   replaces v1's `contacts_by_updated` (every query on it also asks for live contacts).
-- * `contacts_fts`: full-text search over each live contact's name, email, phone, company, tags
--   and note bodies. It is contentless (it stores only the index; results join back to
--   `contacts` by `rowid = contacts.pk`). Triggers on `contacts` and `notes` mark every changed
--   contact in `contacts_fts_dirty` in the same transaction as the change (so no writer can
--   forget, and a crash loses nothing), new contacts are found by their `pk`; the sync then
--   indexes them in batches
--   when a run ends. Indexing each row from a trigger measured 4x the cost of indexing in bulk,
--   and put it on the page commit's path. The phone column also holds the number's digits and
--   its last 10 and 7 digits, so "555-123-4567" finds "+1 (555) 123-4567". The location column
--   (weight 0 in ranking) lets a search filter by location inside the index.

ALTER TABLE contacts ADD COLUMN date_added_ms INTEGER;
UPDATE contacts SET date_added_ms = CAST(ROUND(unixepoch(date_added, 'subsec') * 1000) AS INTEGER)
 WHERE date_added IS NOT NULL;
-- `deleted_at` (always NULL in these partial indexes) is their last column only so that SQLite
-- sees them as covering for queries that say `deleted_at IS NULL`: counts read no rows.
CREATE INDEX contacts_live_by_added ON contacts (location_id, date_added_ms, id, deleted_at)
    WHERE deleted_at IS NULL;
CREATE INDEX contacts_live_by_updated ON contacts (location_id, date_updated_ms, id, deleted_at)
    WHERE deleted_at IS NULL;
DROP INDEX contacts_by_updated;
-- Live tasks, notes and appointments per location, covering for counts (`/metrics`); v2's
-- partial indexes gain the `deleted_at` column for the same reason.
CREATE INDEX notes_live ON notes (location_id, contact_id, deleted_at) WHERE deleted_at IS NULL;
DROP INDEX tasks_by_due;
CREATE INDEX tasks_by_due ON tasks (location_id, due_date_ms, deleted_at) WHERE deleted_at IS NULL;
DROP INDEX appointments_by_start;
CREATE INDEX appointments_by_start ON appointments (location_id, start_ms, deleted_at)
    WHERE deleted_at IS NULL;

CREATE VIRTUAL TABLE contacts_fts USING fts5(
    name, email, phone, company, tags, notes, location,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

-- The FTS row of every live contact matching the WHERE clause that follows it.
CREATE VIEW contacts_fts_source AS
SELECT rowid, location_id, id, location_id AS location, name, email,
       CASE WHEN phone IS NULL THEN NULL
            ELSE phone || ' ' || digits || ' ' || substr(digits, -10) || ' ' || substr(digits, -7)
       END AS phone,
       company, tags, notes
FROM (
    SELECT c.pk AS rowid, c.location_id, c.id,
           COALESCE(c.name, TRIM(COALESCE(c.first_name, '') || ' ' || COALESCE(c.last_name, '')))
             AS name,
           c.email, c.phone,
           replace(replace(replace(replace(replace(replace(COALESCE(c.phone, ''),
             '+', ''), '-', ''), ' ', ''), '(', ''), ')', ''), '.', '') AS digits,
           c.company_name AS company,
           (SELECT group_concat(value, ' ') FROM json_each(c.tags)) AS tags,
           (SELECT group_concat(n.body, ' ') FROM notes n
             WHERE n.location_id = c.location_id AND n.contact_id = c.id
               AND n.deleted_at IS NULL) AS notes
    FROM contacts c
    WHERE c.deleted_at IS NULL
);

-- Contacts whose index entry is out of date (by `contacts.pk`).
CREATE TABLE contacts_fts_dirty (pk INTEGER PRIMARY KEY);

-- New contacts need no mark: they are those above the last `pk` indexed (rowids only grow, and
-- contacts are tombstoned, never deleted). A trigger on INSERT measured half the page commit's
-- speed (it makes every insert a nested statement). 0: everything stored before this version is
-- indexed by the first run.
CREATE TABLE contacts_fts_state (last_pk INTEGER NOT NULL);
INSERT INTO contacts_fts_state (last_pk) VALUES (0);

-- The upsert's "unchanged" path sets only fetch stamps, which fire nothing here.
CREATE TRIGGER contacts_fts_after_update AFTER UPDATE OF raw, deleted_at ON contacts
BEGIN
    INSERT OR IGNORE INTO contacts_fts_dirty (pk) VALUES (new.pk);
END;

CREATE TRIGGER contacts_fts_after_delete AFTER DELETE ON contacts
BEGIN
    INSERT OR IGNORE INTO contacts_fts_dirty (pk) VALUES (old.pk);
END;

CREATE TRIGGER notes_fts_after_insert AFTER INSERT ON notes
BEGIN
    INSERT OR IGNORE INTO contacts_fts_dirty (pk)
    SELECT pk FROM contacts WHERE location_id = new.location_id AND id = new.contact_id;
END;

-- A note moved to another contact changes both.
CREATE TRIGGER notes_fts_after_update AFTER UPDATE OF raw, deleted_at, contact_id ON notes
BEGIN
    INSERT OR IGNORE INTO contacts_fts_dirty (pk)
    SELECT pk FROM contacts WHERE location_id = new.location_id
       AND id IN (new.contact_id, old.contact_id);
END;

CREATE TRIGGER notes_fts_after_delete AFTER DELETE ON notes
BEGIN
    INSERT OR IGNORE INTO contacts_fts_dirty (pk)
    SELECT pk FROM contacts WHERE location_id = old.location_id AND id = old.contact_id;
END;
