-- Every accepted webhook, kept for HISTORY_DAYS: when each digest appeared, on which hosts,
-- and when it was acknowledged. `acknowledged_at` is set on the events an acknowledgement
-- covered, so the events still NULL are those since the image last became pending.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    image           TEXT NOT NULL,
    hostname        TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT '',
    digest          TEXT NOT NULL DEFAULT '',
    created         TEXT,
    metadata        TEXT,
    received_at     TEXT NOT NULL,
    acknowledged_at TEXT
) STRICT;

CREATE INDEX events_by_image ON events (image, id);
CREATE INDEX events_by_time ON events (received_at);
CREATE INDEX events_pending ON events (image, hostname) WHERE acknowledged_at IS NULL;

-- What a 0001 database knows becomes the first entry of each image's history.
INSERT INTO events (image, hostname, status, digest, created, metadata, received_at, acknowledged_at)
SELECT image, hostname, status, digest, created, metadata, received_at, acknowledged_at
FROM updates
ORDER BY received_at, image;
