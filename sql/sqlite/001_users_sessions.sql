-- Users (auth plugin) and login sessions (core).
CREATE TABLE message_user (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    username         TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    password_hash    TEXT    NOT NULL,
    invite_code      TEXT    NOT NULL UNIQUE,
    connection_count INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);

-- A session is stored as the SHA-256 of its token (hex), never the token.
CREATE TABLE user_session (
    token_hash TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    username   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX user_session_user ON user_session (user_id);
CREATE INDEX user_session_expiry ON user_session (expires_at);
