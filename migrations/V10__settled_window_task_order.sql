-- ghl-mirror schema v10: what an idle incremental run needs to cost one request, and the order
-- HighLevel lists a contact's tasks in.
--
-- sync_state.last_sweep_started_ms: when the last completed sweep started (ms since the epoch).
-- That sweep read every contact search had indexed by then, so the next incremental sweep
-- reaches back `sync.lookback` from here instead of from the watermark (after a bulk edit, the
-- watermark stays put and every run re-read the whole edit). NULL until a sweep completes; the
-- watermark stands in meanwhile.
ALTER TABLE sync_state ADD COLUMN last_sweep_started_ms INTEGER;

-- tasks.position: where the task stands in its contact's list as GET /contacts/:id/tasks gives
-- it (0 first). Set from that list; a task first seen through the bulk task search (which lists
-- in its own order) goes after the contact's known tasks, and a contact whose search answer
-- holds two or more tasks of unknown place has its own list read. NULL for tasks stored before
-- v10 (they keep the order they were first stored in until their list is read again).
ALTER TABLE tasks ADD COLUMN position INTEGER;
