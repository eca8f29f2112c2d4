-- Messages written without a clientMessageId need no entry in the index that
-- keeps retries unique: a partial index leaves them out, so such a write
-- updates two indexes instead of three. A lookup by client id (which is never
-- NULL there) still uses it.
DROP INDEX message_client_id;
CREATE UNIQUE INDEX message_client_id ON message (channel_id, user_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
