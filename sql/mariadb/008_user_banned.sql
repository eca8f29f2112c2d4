-- A banned user (admin API, PROTOCOL.md section 7.1) cannot log in; their
-- sessions were ended when the ban was set. 0 or 1.
ALTER TABLE message_user ADD COLUMN banned TINYINT NOT NULL DEFAULT 0,
    ADD CONSTRAINT message_user_banned CHECK (banned IN (0, 1));
