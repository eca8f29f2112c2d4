-- channel.direct_key ("lowId:highId" of a direct channel's two users) took
-- the table's default collation, utf8mb4_general_ci, where SQLite compares it
-- byte for byte. Its values are digits and a colon, so no lookup found
-- anything else; from here on both dialects compare it the same way (tests/
-- cluster/test_migrations.py checks the collation of every key's text).
ALTER TABLE channel MODIFY direct_key VARCHAR(48) NULL COLLATE utf8mb4_bin;
