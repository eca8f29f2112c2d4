-- One row that /healthz rewrites while the store is failing writes: the store
-- is healthy again when that write commits.
CREATE TABLE chatd_health (
    id         INTEGER PRIMARY KEY,
    checked_at INTEGER NOT NULL
);
INSERT INTO chatd_health (id, checked_at) VALUES (1, 0);
