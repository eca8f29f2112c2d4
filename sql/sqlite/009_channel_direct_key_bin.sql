-- Step 9 makes MariaDB compare channel.direct_key byte for byte, as SQLite
-- always has (BINARY): nothing changes here; the step keeps the numbering of
-- both dialects in step.
SELECT 1;
