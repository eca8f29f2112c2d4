-- Conversations (PROTOCOL.md section 5): versions for catch-up, edits,
-- deletions, replies, reactions, and when users were last seen.
--
-- channel.version grows by one with every change in the channel (a message,
-- an edit, a deletion, a reaction); message.version is the channel's version
-- at the message's last change. Until now every change was a new message, so
-- the versions start as the sequences.
ALTER TABLE channel ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE message ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE message ADD COLUMN edited_at INTEGER;            -- ms since the epoch, NULL: never
ALTER TABLE message ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE message ADD COLUMN reply_to INTEGER;             -- a seq of the same channel
UPDATE channel SET version = last_msg_seq;
UPDATE message SET version = seq;
CREATE INDEX message_version ON message (channel_id, version);

-- One row per user, emoji and message; a deleted message has none.
CREATE TABLE message_reaction (
    channel_id INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES message_user (id) ON DELETE CASCADE,
    emoji      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, seq, emoji, user_id),
    FOREIGN KEY (channel_id, seq) REFERENCES message (channel_id, seq) ON DELETE CASCADE
);
CREATE INDEX message_reaction_user ON message_reaction (user_id);

-- When the user last went offline (ms); NULL: not since this step.
ALTER TABLE message_user ADD COLUMN last_seen INTEGER;
