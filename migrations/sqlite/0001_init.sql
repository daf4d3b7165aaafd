-- dbwarden history store, SQLite dialect. Timestamps are Unix milliseconds (UTC).
-- Never edit an applied migration: add a new numbered file (see migrations/README.md).

CREATE TABLE job_runs (
    id           TEXT PRIMARY KEY,
    job          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    target       TEXT,
    agent        TEXT NOT NULL,
    scheduled_at INTEGER,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    outcome      TEXT NOT NULL,
    status       TEXT,
    error        TEXT,
    coalesced    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX job_runs_job_started ON job_runs (job, started_at);
CREATE INDEX job_runs_target_started ON job_runs (target, started_at);
CREATE INDEX job_runs_outcome ON job_runs (outcome) WHERE outcome = 'running';

CREATE TABLE check_results (
    id         INTEGER PRIMARY KEY,
    ts         INTEGER NOT NULL,
    target     TEXT NOT NULL,
    check_name TEXT NOT NULL,
    status     TEXT NOT NULL,
    value      REAL,
    unit       TEXT NOT NULL,
    warning    REAL,
    critical   REAL,
    message    TEXT NOT NULL,
    subject    TEXT,
    run_id     TEXT
);
CREATE INDEX check_results_target_ts ON check_results (target, ts);

CREATE TABLE metric_samples (
    ts     INTEGER NOT NULL,
    target TEXT NOT NULL,
    metric TEXT NOT NULL,
    value  REAL NOT NULL
);
CREATE INDEX metric_samples_target_metric_ts ON metric_samples (target, metric, ts);

CREATE TABLE table_stats (
    ts            INTEGER NOT NULL,
    target        TEXT NOT NULL,
    table_name    TEXT NOT NULL,
    n_rows        REAL,
    dead_rows     REAL,
    size_bytes    REAL,
    inserts_delta REAL,
    updates_delta REAL,
    deletes_delta REAL,
    seq_scans     REAL,
    idx_scans     REAL,
    last_vacuum   INTEGER,
    last_analyze  INTEGER
);
CREATE INDEX table_stats_target_ts ON table_stats (target, ts);
