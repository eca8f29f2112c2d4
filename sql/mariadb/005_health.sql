-- One row that /healthz rewrites while the store is failing writes: the store
-- is healthy again when that write commits.
CREATE TABLE chatd_health (
    id         INT    NOT NULL PRIMARY KEY,
    checked_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
INSERT INTO chatd_health (id, checked_at) VALUES (1, 0);
