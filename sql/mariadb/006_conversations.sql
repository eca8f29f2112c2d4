-- Conversations (PROTOCOL.md section 5): versions for catch-up, edits,
-- deletions, replies, reactions, and when users were last seen.
--
-- channel.version grows by one with every change in the channel (a message,
-- an edit, a deletion, a reaction); message.version is the channel's version
-- at the message's last change. Until now every change was a new message, so
-- the versions start as the sequences.
ALTER TABLE channel ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE message ADD COLUMN version BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN edited_at BIGINT NULL,
    ADD COLUMN deleted TINYINT NOT NULL DEFAULT 0,
    ADD COLUMN reply_to BIGINT NULL;
UPDATE channel SET version = last_msg_seq;
UPDATE message SET version = seq;
CREATE INDEX message_version ON message (channel_id, version);

-- One row per user, emoji and message; a deleted message has none.
CREATE TABLE message_reaction (
    channel_id BIGINT       NOT NULL,
    seq        BIGINT       NOT NULL,
    user_id    BIGINT       NOT NULL,
    emoji      VARCHAR(64)  NOT NULL,
    created_at BIGINT       NOT NULL,
    PRIMARY KEY (channel_id, seq, emoji, user_id),
    KEY message_reaction_user (user_id),
    CONSTRAINT message_reaction_message_fk FOREIGN KEY (channel_id, seq)
        REFERENCES message (channel_id, seq) ON DELETE CASCADE,
    CONSTRAINT message_reaction_user_fk FOREIGN KEY (user_id)
        REFERENCES message_user (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- When the user last went offline (ms); NULL: not since this step.
ALTER TABLE message_user ADD COLUMN last_seen BIGINT NULL;
