-- 0004's generated column printed `metadata` at every upsert, and twice (for the insert it
-- tries and again for ON CONFLICT's update): about 3 µs of the server's CPU per webhook, 16 ms
-- per 5,000 rows upserted, where a plain text column written from the statement's parameter
-- costs next to nothing. The service now stores the text it sent for `metadata` itself:
-- serde_json's bytes, as SQLite stores them, which the listing copies without rewriting
-- jsonb's. `metadata` stays the one source of truth: the copy counts only beside the report
-- it was written with (`metadata_json_received_at` equal to `received_at`), so a row written
-- without it (before this migration, or by a replica of an earlier release during a rolling
-- upgrade) is listed from `metadata`, and the service fills its copy at its next start.
ALTER TABLE updates DROP COLUMN metadata_text;
ALTER TABLE updates ADD COLUMN metadata_json TEXT, ADD COLUMN metadata_json_received_at TIMESTAMPTZ;

-- A write that changes `metadata` and not the copy's stamp (an earlier release's upsert, which
-- could carry the same `received_at`; a DBA's edit) voids the copy. The service's writes change
-- both, so the condition alone is evaluated for them: no measurable cost per upsert. (Two
-- replicas that stamp reports of one image alike void a good copy: listed from the jsonb,
-- correctly, until the next start fills it again.)
CREATE FUNCTION updates_metadata_json_void() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.metadata_json_received_at := NULL;
    RETURN NEW;
END $$;
CREATE TRIGGER metadata_json_void BEFORE UPDATE OF metadata ON updates FOR EACH ROW
    WHEN (NEW.metadata_json_received_at IS NOT DISTINCT FROM OLD.metadata_json_received_at)
    EXECUTE FUNCTION updates_metadata_json_void();
