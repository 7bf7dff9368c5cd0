-- ghl-mirror schema v10: what an idle incremental run needs to cost one request, and the order
-- HighLevel lists a contact's tasks in.
--
-- sync_state.last_sweep_started_ms: when the last completed sweep started (ms since the epoch).
-- That sweep read every contact search had indexed by then, so the next incremental sweep
-- reaches back `sync.lookback` from here instead of from the watermark (after a bulk edit, the
-- watermark stays put and every run re-read the whole edit). NULL until a sweep completes; the
-- watermark stands in meanwhile.
ALTER TABLE sync_state ADD COLUMN last_sweep_started_ms INTEGER;
