-- dbwarden history store, PostgreSQL dialect. Timestamps are Unix milliseconds (UTC).
-- Never edit an applied migration: add a new numbered file (see migrations/README.md).

CREATE TABLE job_runs (
    id           TEXT PRIMARY KEY,
    job          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    target       TEXT,
    agent        TEXT NOT NULL,
    scheduled_at BIGINT,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    outcome      TEXT NOT NULL,
    status       TEXT,
    error        TEXT,
    coalesced    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX job_runs_job_started ON job_runs (job, started_at);
CREATE INDEX job_runs_target_started ON job_runs (target, started_at);
CREATE INDEX job_runs_outcome ON job_runs (outcome) WHERE outcome = 'running';

CREATE TABLE check_results (
    id         BIGSERIAL PRIMARY KEY,
    ts         BIGINT NOT NULL,
    target     TEXT NOT NULL,
    check_name TEXT NOT NULL,
    status     TEXT NOT NULL,
    value      DOUBLE PRECISION,
    unit       TEXT NOT NULL,
    warning    DOUBLE PRECISION,
    critical   DOUBLE PRECISION,
    message    TEXT NOT NULL,
    subject    TEXT,
    run_id     TEXT
);
CREATE INDEX check_results_target_ts ON check_results (target, ts);

CREATE TABLE metric_samples (
    ts     BIGINT NOT NULL,
    target TEXT NOT NULL,
    metric TEXT NOT NULL,
    value  DOUBLE PRECISION NOT NULL
);
CREATE INDEX metric_samples_target_metric_ts ON metric_samples (target, metric, ts);

CREATE TABLE table_stats (
    ts            BIGINT NOT NULL,
    target        TEXT NOT NULL,
    table_name    TEXT NOT NULL,
    n_rows        DOUBLE PRECISION,
    dead_rows     DOUBLE PRECISION,
    size_bytes    DOUBLE PRECISION,
    inserts_delta DOUBLE PRECISION,
    updates_delta DOUBLE PRECISION,
    deletes_delta DOUBLE PRECISION,
    seq_scans     DOUBLE PRECISION,
    idx_scans     DOUBLE PRECISION,
    last_vacuum   BIGINT,
    last_analyze  BIGINT
);
CREATE INDEX table_stats_target_ts ON table_stats (target, ts);
