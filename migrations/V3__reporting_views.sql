-- ghl-mirror schema v3: views that flatten the mirror for people and reporting tools (sqlite3,
-- Datasette, DuckDB, BI). Only what exists upstream now: tombstoned rows are left out.

-- One row per live contact, with its tags, business and the size of its lists.
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
          AND a.start_ms >= unixepoch('now') * 1000) AS next_appointment
FROM contacts c
LEFT JOIN businesses b
  ON b.location_id = c.location_id AND b.id = c.business_id AND b.deleted_at IS NULL
WHERE c.deleted_at IS NULL;

-- Custom field values of live contacts, one row each (field names are not mirrored yet).
CREATE VIEW live_custom_values AS
SELECT c.location_id, c.id AS contact_id, c.name AS contact_name, f.field_id, f.value
FROM contact_custom_fields f
JOIN contacts c ON c.pk = f.contact_pk
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
WHERE a.deleted_at IS NULL AND c.deleted_at IS NULL AND a.start_ms >= unixepoch('now') * 1000
ORDER BY a.start_ms;
