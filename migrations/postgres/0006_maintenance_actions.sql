-- One row per maintenance step (issue 11): what was done to which table, why, how it
-- ended, and the numbers before and after. Timestamps are Unix milliseconds (UTC).
CREATE TABLE maintenance_actions (
    id                BIGSERIAL PRIMARY KEY,
    run_id            TEXT,
    target            TEXT NOT NULL,
    table_name        TEXT NOT NULL,
    action            TEXT NOT NULL,
    reason            TEXT NOT NULL,
    started_at        BIGINT NOT NULL,
    finished_at       BIGINT NOT NULL,
    outcome           TEXT NOT NULL,
    detail            TEXT,
    dead_rows_before  DOUBLE PRECISION,
    dead_rows_after   DOUBLE PRECISION,
    freeze_age_before DOUBLE PRECISION,
    freeze_age_after  DOUBLE PRECISION,
    size_before       DOUBLE PRECISION,
    size_after        DOUBLE PRECISION,
    agent             TEXT NOT NULL
);
CREATE INDEX maintenance_actions_target_started ON maintenance_actions (target, started_at);
