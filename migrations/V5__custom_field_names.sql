-- ghl-mirror schema v5: the location's custom field definitions (GET
-- /locations/:locationId/customFields?model=contact), so reports show custom fields by name.
-- Read by the businesses stream (one request a run); kept like businesses: exact JSON in `raw`,
-- typed columns generated from it, tombstoned when a complete list no longer has them.

CREATE TABLE custom_fields (
    pk             INTEGER PRIMARY KEY,
    location_id    TEXT NOT NULL REFERENCES locations(id) DEFERRABLE INITIALLY DEFERRED,
    id             TEXT NOT NULL,
    raw            TEXT NOT NULL,
    first_seen_at  TEXT NOT NULL,
    changed_at     TEXT NOT NULL,
    fetched_at     TEXT NOT NULL,
    deleted_at     TEXT,
    name           TEXT GENERATED ALWAYS AS (json_extract(raw, '$.name')) VIRTUAL,
    field_key      TEXT GENERATED ALWAYS AS (json_extract(raw, '$.fieldKey')) VIRTUAL,
    data_type      TEXT GENERATED ALWAYS AS (json_extract(raw, '$.dataType')) VIRTUAL,
    model          TEXT GENERATED ALWAYS AS (json_extract(raw, '$.model')) VIRTUAL,
    position       INTEGER GENERATED ALWAYS AS (json_extract(raw, '$.position')) VIRTUAL,
    UNIQUE (location_id, id)
);

-- Custom field values of live contacts, one row each, with the field's name when known.
DROP VIEW live_custom_values;
CREATE VIEW live_custom_values AS
SELECT c.location_id, c.id AS contact_id, c.name AS contact_name, f.field_id,
       d.name AS field_name, d.field_key, d.data_type, f.value
FROM contact_custom_fields f
JOIN contacts c ON c.pk = f.contact_pk
LEFT JOIN custom_fields d
  ON d.location_id = c.location_id AND d.id = f.field_id AND d.deleted_at IS NULL
WHERE c.deleted_at IS NULL;

-- v3's live_contacts plus `custom_fields`: a JSON object of the contact's custom field values
-- keyed by field name (by id while the names are not mirrored).
DROP VIEW live_contacts;
CREATE VIEW live_contacts AS
SELECT c.location_id, c.id, c.name, c.first_name, c.last_name, c.email, c.phone,
       c.company_name, c.business_id, b.name AS business_name, c.assigned_to, c.source, c.type,
       c.dnd, c.city, c.state, c.country, c.postal_code, c.timezone,
       (SELECT group_concat(tag, ', ') FROM (SELECT tag FROM contact_tags t
          WHERE t.contact_pk = c.pk ORDER BY tag)) AS tags,
       c.date_added, c.date_updated,
       (SELECT COUNT(*) FROM tasks k WHERE k.location_id = c.location_id AND k.contact_id = c.id
          AND k.deleted_at IS NULL AND k.completed = 0) AS open_tasks,
       (SELECT COUNT(*) FROM notes n WHERE n.location_id = c.location_id AND n.contact_id = c.id
          AND n.deleted_at IS NULL) AS notes,
       (SELECT MIN(a.start_time) FROM appointments a WHERE a.location_id = c.location_id
          AND a.contact_id = c.id AND a.deleted_at IS NULL
          AND a.start_ms >= unixepoch('now') * 1000) AS next_appointment,
       (SELECT json_group_object(COALESCE(d.name, f.field_id), f.value)
          FROM contact_custom_fields f
          LEFT JOIN custom_fields d
            ON d.location_id = c.location_id AND d.id = f.field_id AND d.deleted_at IS NULL
          WHERE f.contact_pk = c.pk) AS custom_fields
FROM contacts c
LEFT JOIN businesses b
  ON b.location_id = c.location_id AND b.id = c.business_id AND b.deleted_at IS NULL
WHERE c.deleted_at IS NULL;
