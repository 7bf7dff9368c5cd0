-- ghl-mirror schema v11: the indexes of `GET /contacts/search/duplicate` (HighLevel's duplicate
-- lookup by email or phone), over live contacts only.
--
-- Email is compared case-folded with the built-in lower() (ASCII), so any SQLite reads and
-- checks these indexes. A phone is keyed by the last 10 digits of its number with the usual
-- separators (+ - space ( ) .) removed, so `+1 (555) 010-1234`, `5550101234` and `+15550101234`
-- share a key; the exact digit match is made on the few rows a key finds. The expressions must
-- stay identical to `EMAIL_KEY` and `PHONE_KEY` in src/store/read.rs, or SQLite will not use
-- them.
CREATE INDEX contacts_live_by_email ON contacts (location_id, lower(email))
    WHERE deleted_at IS NULL AND email IS NOT NULL;
CREATE INDEX contacts_live_by_phone ON contacts (location_id,
    substr(replace(replace(replace(replace(replace(replace(phone, '+', ''), '-', ''), ' ', ''), '(', ''), ')', ''), '.', ''), -10))
    WHERE deleted_at IS NULL AND phone IS NOT NULL;
