-- Slow-query sampling (issue 12): the per-statement deltas each sample kept, statement
-- texts once per (target, queryid), live long runners (literals already replaced by ?),
-- and each target's previous counter snapshot, so the baseline survives a restart and
-- works across separate `dbwarden run-job` invocations. Times are Unix milliseconds.
CREATE TABLE query_stats (
    ts           BIGINT NOT NULL,
    target       TEXT NOT NULL,
    queryid      TEXT NOT NULL,
    scope        TEXT NOT NULL,
    calls        BIGINT NOT NULL,
    total_ms     DOUBLE PRECISION NOT NULL,
    mean_ms      DOUBLE PRECISION NOT NULL,
    max_ms       DOUBLE PRECISION,
    n_rows       BIGINT NOT NULL,
    shared_hit   BIGINT,
    shared_read  BIGINT,
    temp_read    BIGINT,
    temp_written BIGINT,
    plan_ms      DOUBLE PRECISION,
    rows_examined BIGINT,
    no_index_used BIGINT
);
CREATE INDEX query_stats_target_ts ON query_stats (target, ts);

CREATE TABLE query_texts (
    target     TEXT NOT NULL,
    queryid    TEXT NOT NULL,
    query      TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (target, queryid)
);

CREATE TABLE long_queries (
    ts          BIGINT NOT NULL,
    target      TEXT NOT NULL,
    pid         BIGINT NOT NULL,
    user_name   TEXT,
    application TEXT,
    state       TEXT,
    wait_event  TEXT,
    seconds     DOUBLE PRECISION NOT NULL,
    query       TEXT NOT NULL
);
CREATE INDEX long_queries_target_ts ON long_queries (target, ts);

CREATE TABLE query_snapshots (
    target   TEXT PRIMARY KEY,
    taken_at BIGINT NOT NULL,
    snapshot TEXT NOT NULL
);
