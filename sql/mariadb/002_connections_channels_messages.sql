-- Friends, channels, memberships and messages.

-- One relation per unordered pair, lower user id first, with its inviter.
CREATE TABLE user_connection (
    user_a_id       BIGINT      NOT NULL,
    user_b_id       BIGINT      NOT NULL,
    inviter_user_id BIGINT      NOT NULL,
    status          VARCHAR(16) NOT NULL,
    created_at      BIGINT      NOT NULL,
    updated_at      BIGINT      NOT NULL,
    PRIMARY KEY (user_a_id, user_b_id),
    KEY user_connection_b (user_b_id),
    CONSTRAINT user_connection_a_fk FOREIGN KEY (user_a_id) REFERENCES message_user (id) ON DELETE CASCADE,
    CONSTRAINT user_connection_b_fk FOREIGN KEY (user_b_id) REFERENCES message_user (id) ON DELETE CASCADE,
    CONSTRAINT user_connection_status CHECK (status IN ('PENDING', 'ACCEPTED', 'REJECTED', 'DISCONNECTED')),
    CONSTRAINT user_connection_order CHECK (user_a_id < user_b_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE channel (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    title        VARCHAR(400) NOT NULL,
    kind         VARCHAR(8)   NOT NULL,
    invite_code  VARCHAR(16)  NOT NULL COLLATE utf8mb4_bin,
    head_count   INT          NOT NULL DEFAULT 0,
    last_msg_seq BIGINT       NOT NULL DEFAULT 0,
    direct_key   VARCHAR(48)  NULL,
    created_by   BIGINT       NOT NULL,
    created_at   BIGINT       NOT NULL,
    UNIQUE KEY channel_invite (invite_code),
    KEY channel_direct (direct_key),
    CONSTRAINT channel_kind CHECK (kind IN ('DIRECT', 'GROUP'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE channel_user (
    channel_id        BIGINT NOT NULL,
    user_id           BIGINT NOT NULL,
    last_read_msg_seq BIGINT NOT NULL DEFAULT 0,
    joined_at         BIGINT NOT NULL,
    PRIMARY KEY (channel_id, user_id),
    KEY channel_user_user (user_id),
    CONSTRAINT channel_user_channel_fk FOREIGN KEY (channel_id) REFERENCES channel (id) ON DELETE CASCADE,
    CONSTRAINT channel_user_user_fk FOREIGN KEY (user_id) REFERENCES message_user (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- seq is gapless per channel: channel.last_msg_seq + 1, taken under the
-- channel row's lock in the same transaction as the insert.
CREATE TABLE message (
    channel_id        BIGINT      NOT NULL,
    seq               BIGINT      NOT NULL,
    user_id           BIGINT      NOT NULL,
    content           TEXT        NOT NULL,
    client_message_id VARCHAR(64) NULL COLLATE utf8mb4_bin,
    created_at        BIGINT      NOT NULL,
    PRIMARY KEY (channel_id, seq),
    UNIQUE KEY message_client_id (channel_id, user_id, client_message_id),
    KEY message_by_user (user_id),
    CONSTRAINT message_channel_fk FOREIGN KEY (channel_id) REFERENCES channel (id) ON DELETE CASCADE,
    CONSTRAINT message_user_fk FOREIGN KEY (user_id) REFERENCES message_user (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
