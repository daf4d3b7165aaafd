-- Believed status changes (after hysteresis), per check and per target (check_name NULL).
-- The alert engine consumes these; they are also the target's status history.
CREATE TABLE health_transitions (
    ts          INTEGER NOT NULL,
    target      TEXT NOT NULL,
    check_name  TEXT,
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX health_transitions_target_ts ON health_transitions (target, ts);
