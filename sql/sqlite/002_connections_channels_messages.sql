-- Friends, channels, memberships and messages.

-- One relation per unordered pair, lower user id first, with its inviter.
CREATE TABLE user_connection (
    user_a_id       INTEGER NOT NULL REFERENCES message_user (id) ON DELETE CASCADE,
    user_b_id       INTEGER NOT NULL REFERENCES message_user (id) ON DELETE CASCADE,
    inviter_user_id INTEGER NOT NULL,
    status          TEXT    NOT NULL
                    CHECK (status IN ('PENDING', 'ACCEPTED', 'REJECTED', 'DISCONNECTED')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (user_a_id, user_b_id),
    CHECK (user_a_id < user_b_id)
);
CREATE INDEX user_connection_b ON user_connection (user_b_id);

CREATE TABLE channel (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    title        TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('DIRECT', 'GROUP')),
    invite_code  TEXT    NOT NULL UNIQUE,
    head_count   INTEGER NOT NULL DEFAULT 0,
    last_msg_seq INTEGER NOT NULL DEFAULT 0,
    direct_key   TEXT,   -- "lowId:highId" of a direct channel's two users
    created_by   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX channel_direct ON channel (direct_key);

CREATE TABLE channel_user (
    channel_id        INTEGER NOT NULL REFERENCES channel (id) ON DELETE CASCADE,
    user_id           INTEGER NOT NULL REFERENCES message_user (id) ON DELETE CASCADE,
    last_read_msg_seq INTEGER NOT NULL DEFAULT 0,
    joined_at         INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_user_user ON channel_user (user_id);

-- seq is gapless per channel: it is channel.last_msg_seq + 1, taken in the
-- same transaction as the insert.
CREATE TABLE message (
    channel_id        INTEGER NOT NULL REFERENCES channel (id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL,
    user_id           INTEGER NOT NULL REFERENCES message_user (id) ON DELETE CASCADE,
    content           TEXT    NOT NULL,
    client_message_id TEXT,
    created_at        INTEGER NOT NULL,  -- milliseconds since the epoch
    PRIMARY KEY (channel_id, seq)
);
-- A retried write (same client id, same user, same channel) is stored once.
CREATE UNIQUE INDEX message_client_id ON message (channel_id, user_id, client_message_id);
CREATE INDEX message_by_user ON message (user_id);
