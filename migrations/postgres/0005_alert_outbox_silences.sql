-- Alerts. The outbox: one row per (notification, channel), written when the status change
-- is believed and kept until delivered, so a notification survives a restart or kill -9.
-- id_key is the notification's idempotency key. Agents sharing a store claim rows
-- (claimed_by, claim_until: a lease renewed while they retry) so no two send the same row.
CREATE TABLE alert_outbox (
    id_key       TEXT NOT NULL,
    channel      TEXT NOT NULL,
    agent        TEXT NOT NULL,
    target       TEXT NOT NULL,
    event        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    due_at       BIGINT NOT NULL,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,
    last_error   TEXT,
    claimed_by   TEXT,
    claim_until  BIGINT,
    delivered_at BIGINT,
    PRIMARY KEY (id_key, channel)
);
CREATE INDEX alert_outbox_pending ON alert_outbox (state, next_at);

-- Silences: a target's notifications are muted until `ends_at`; they always expire.
-- Shared by every agent of the store. removed_at: ended early by `dbwarden silence remove`.
CREATE TABLE alert_silences (
    id         BIGSERIAL PRIMARY KEY,
    target     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    ends_at    BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    removed_at BIGINT
);
CREATE INDEX alert_silences_ends_at ON alert_silences (ends_at);
