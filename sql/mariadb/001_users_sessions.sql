-- Users (auth plugin) and login sessions (core).
CREATE TABLE message_user (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username         VARCHAR(32)  NOT NULL COLLATE utf8mb4_general_ci,
    password_hash    VARCHAR(255) NOT NULL,
    invite_code      VARCHAR(16)  NOT NULL COLLATE utf8mb4_bin,
    connection_count INT          NOT NULL DEFAULT 0,
    created_at       BIGINT       NOT NULL,
    UNIQUE KEY message_user_username (username),
    UNIQUE KEY message_user_invite (invite_code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A session is stored as the SHA-256 of its token (hex), never the token.
CREATE TABLE user_session (
    token_hash CHAR(64)    NOT NULL COLLATE ascii_bin PRIMARY KEY,
    user_id    BIGINT      NOT NULL,
    username   VARCHAR(32) NOT NULL,
    created_at BIGINT      NOT NULL,
    expires_at BIGINT      NOT NULL,
    KEY user_session_user (user_id),
    KEY user_session_expiry (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
