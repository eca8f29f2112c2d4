-- Step 4 of the SQLite schema makes the client-id index partial. MariaDB has
-- no partial indexes, and its unique index already allows any number of NULLs,
-- so this step changes nothing here; it keeps the numbering of both dialects
-- in step.
DO 0;
