-- ghl-mirror schema v8: the full-text index is rebuilt, because its text is now indexed with
-- the letter and digit runs of each mixed word apart ("smith42" as "smith" and "42"; see
-- `store::read::split_runs`). Emptying it and resetting the mark makes the next sync run's
-- catch-up index every live contact again (about 18 s per million contacts); until then
-- `/mirror/search` reports them as pending.
INSERT INTO contacts_fts (contacts_fts) VALUES ('delete-all');
DELETE FROM contacts_fts_dirty;
UPDATE contacts_fts_state SET last_pk = 0;
