-- One row per image: the latest DIUN event for it.
-- Timestamps are UTC RFC 3339 text with microseconds ('2024-05-01T10:00:00.000000Z'), fixed
-- width so that text order is time order. `created` is DIUN's own text, kept verbatim.
-- `metadata` is the event's metadata object as JSON (NULL when DIUN sent null); `extra` holds
-- top-level fields this release does not know, as a JSON object (NULL when none).
CREATE TABLE updates (
    image           TEXT PRIMARY KEY NOT NULL,
    diun_version    TEXT NOT NULL DEFAULT '',
    hostname        TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT '',
    provider        TEXT NOT NULL DEFAULT '',
    hub_link        TEXT NOT NULL DEFAULT '',
    mime_type       TEXT NOT NULL DEFAULT '',
    digest          TEXT NOT NULL DEFAULT '',
    created         TEXT,
    platform        TEXT NOT NULL DEFAULT '',
    metadata        TEXT,
    extra           TEXT,
    received_at     TEXT NOT NULL,
    acknowledged_at TEXT
) STRICT;

-- AUTOINCREMENT: a deleted tag's id is never handed out again, as with a PostgreSQL identity.
CREATE TABLE tags (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE
) STRICT;

CREATE TABLE tag_assignments (
    image  TEXT PRIMARY KEY NOT NULL REFERENCES updates (image) ON DELETE CASCADE,
    tag_id INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE
) STRICT;

CREATE INDEX tag_assignments_by_tag ON tag_assignments (tag_id);
