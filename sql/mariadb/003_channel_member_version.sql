-- member_version takes a new random value with every change of a channel's
-- members (join, quit, a member unregistered), in the same transaction. A
-- writer that reads the version of a member list it holds knows the list is
-- still right.
ALTER TABLE channel ADD COLUMN member_version BIGINT NOT NULL DEFAULT 0;
