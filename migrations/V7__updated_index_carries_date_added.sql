-- ghl-mirror schema v7: the live dateUpdated index also carries dateAdded.
--
-- HighLevel's default order is dateAdded (newest first), and a common query is "contacts
-- updated in this range" in that order. The range is read from `contacts_live_by_updated`;
-- with dateAdded in the index, choosing the page (the contacts' pks in dateAdded order) reads
-- no row, and only the page's rows are read whole. Its keys still arrive in sync order, so
-- keeping it costs the sync nothing measurable.
DROP INDEX contacts_live_by_updated;
CREATE INDEX contacts_live_by_updated ON contacts (location_id, date_updated_ms, id, date_added_ms, deleted_at)
    WHERE deleted_at IS NULL;
