-- The replicas' heartbeat of the MariaDB schema (mariadb.replicas); unused by
-- one node on SQLite, kept so that both schemas have the same steps.
CREATE TABLE chatd_heartbeat (
    node TEXT    NOT NULL PRIMARY KEY,
    ms   INTEGER NOT NULL
);
