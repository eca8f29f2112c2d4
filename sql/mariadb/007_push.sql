-- Push that loses nothing (PROTOCOL.md section 6); see the SQLite file for
-- what each table holds.
CREATE TABLE push_intent (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    channel_id  BIGINT       NOT NULL DEFAULT 0,
    user_id     BIGINT       NOT NULL DEFAULT 0,
    except_user BIGINT       NOT NULL DEFAULT 0,
    event       MEDIUMTEXT   NOT NULL,
    created_at  BIGINT       NOT NULL,
    KEY push_intent_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE push_outbox (
    id          VARCHAR(64)  NOT NULL PRIMARY KEY,
    user_id     BIGINT       NOT NULL,
    body        MEDIUMTEXT   NOT NULL,
    created_at  BIGINT       NOT NULL,
    attempts    INT          NOT NULL DEFAULT 0,
    next_at     BIGINT       NOT NULL DEFAULT 0,
    dead        TINYINT      NOT NULL DEFAULT 0,
    last_error  VARCHAR(255) NULL,
    owner       VARCHAR(64)  NULL,
    lease_until BIGINT       NOT NULL DEFAULT 0,
    KEY push_outbox_due (dead, next_at),
    KEY push_outbox_created (dead, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE push_device (
    token_hash  CHAR(64)     NOT NULL PRIMARY KEY,
    token       TEXT         NOT NULL,
    platform    VARCHAR(8)   NOT NULL,
    user_id     BIGINT       NOT NULL,
    session_key VARCHAR(64)  NOT NULL,
    created_at  BIGINT       NOT NULL,
    KEY push_device_user (user_id),
    KEY push_device_session (session_key),
    CONSTRAINT push_device_user_fk FOREIGN KEY (user_id)
        REFERENCES message_user (id) ON DELETE CASCADE,
    CONSTRAINT push_device_platform CHECK (platform IN ('fcm', 'apns', 'web'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
