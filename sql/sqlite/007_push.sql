-- Push that loses nothing (PROTOCOL.md section 6).
--
-- push_intent: an event that is to be offered to push, written in the same
-- transaction as the change that caused it (a message), so it is stored
-- before anyone is told of the change. Once the nodes have decided who was
-- absent, the push plugin turns it into push_outbox rows and deletes it, in
-- one transaction; intents left behind by a node that died are turned into
-- rows for every member by whichever node finds them.
CREATE TABLE push_intent (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id  INTEGER NOT NULL DEFAULT 0,  -- for the channel's members...
    user_id     INTEGER NOT NULL DEFAULT 0,  -- ...or for this user
    except_user INTEGER NOT NULL DEFAULT 0,  -- the author: never pushed
    event       TEXT    NOT NULL,            -- the notification's JSON, "type" included
    created_at  INTEGER NOT NULL
);
CREATE INDEX push_intent_created ON push_intent (created_at);

-- One notification for one user, until it is delivered (deleted) or dead
-- (kept, with why). id is stable across retries and recoveries: the
-- receiver deduplicates by it.
CREATE TABLE push_outbox (
    id          TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    body        TEXT    NOT NULL,            -- what is POSTed, devices included
    created_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL DEFAULT 0,  -- ms: not tried again before
    dead        INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    owner       TEXT,                        -- the node delivering it
    lease_until INTEGER NOT NULL DEFAULT 0   -- ms: another node may take it after
);
CREATE INDEX push_outbox_due ON push_outbox (dead, next_at);
CREATE INDEX push_outbox_created ON push_outbox (dead, created_at);

-- A device token belongs to one user at a time; the session that
-- registered it removes it at logout.
CREATE TABLE push_device (
    token_hash  TEXT    PRIMARY KEY,         -- SHA-256 of the token, hex
    token       TEXT    NOT NULL,
    platform    TEXT    NOT NULL CHECK (platform IN ('fcm', 'apns', 'web')),
    user_id     INTEGER NOT NULL REFERENCES message_user (id) ON DELETE CASCADE,
    session_key TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX push_device_user ON push_device (user_id);
CREATE INDEX push_device_session ON push_device (session_key);
