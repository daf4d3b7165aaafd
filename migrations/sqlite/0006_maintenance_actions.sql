-- One row per maintenance step (issue 11): what was done to which table, why, how it
-- ended, and the numbers before and after. Timestamps are Unix milliseconds (UTC).
CREATE TABLE maintenance_actions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id            TEXT,
    target            TEXT NOT NULL,
    table_name        TEXT NOT NULL,
    action            TEXT NOT NULL,
    reason            TEXT NOT NULL,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER NOT NULL,
    outcome           TEXT NOT NULL,
    detail            TEXT,
    dead_rows_before  REAL,
    dead_rows_after   REAL,
    freeze_age_before REAL,
    freeze_age_after  REAL,
    size_before       REAL,
    size_after        REAL,
    agent             TEXT NOT NULL
);
CREATE INDEX maintenance_actions_target_started ON maintenance_actions (target, started_at);
