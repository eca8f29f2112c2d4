-- Each node's heartbeat, written on the primary every few hundred ms while
-- read replicas are configured (mariadb.replicas): how far behind a replica's
-- copy of its own row is tells the node the replica's lag, in its own clock.
-- Node names compare byte for byte, as in SQLite.
CREATE TABLE chatd_heartbeat (
    node VARCHAR(32) NOT NULL COLLATE utf8mb4_bin PRIMARY KEY,
    ms   BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
