-- The listing prints every image's metadata as text on every request: jsonb's output function
-- was a third of the server's work for a listing of 5,000 images (about 1.4 µs a row, more than
-- reading the row). A stored generated column prints it once per write instead. PostgreSQL
-- keeps it equal to `metadata::text` itself, so `metadata` stays the one source of truth.
ALTER TABLE updates ADD COLUMN metadata_text TEXT GENERATED ALWAYS AS (metadata::text) STORED;
