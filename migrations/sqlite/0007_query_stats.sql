-- Slow-query sampling (issue 12): the per-statement deltas each sample kept, statement
-- texts once per (target, queryid), live long runners (literals already replaced by ?),
-- and each target's previous counter snapshot, so the baseline survives a restart and
-- works across separate `dbwarden run-job` invocations. Times are Unix milliseconds.
CREATE TABLE query_stats (
    ts           INTEGER NOT NULL,
    target       TEXT NOT NULL,
    queryid      TEXT NOT NULL,
    scope        TEXT NOT NULL,
    calls        INTEGER NOT NULL,
    total_ms     REAL NOT NULL,
    mean_ms      REAL NOT NULL,
    max_ms       REAL,
    n_rows       INTEGER NOT NULL,
    shared_hit   INTEGER,
    shared_read  INTEGER,
    temp_read    INTEGER,
    temp_written INTEGER,
    plan_ms      REAL,
    rows_examined INTEGER,
    no_index_used INTEGER
);
CREATE INDEX query_stats_target_ts ON query_stats (target, ts);

CREATE TABLE query_texts (
    target     TEXT NOT NULL,
    queryid    TEXT NOT NULL,
    query      TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (target, queryid)
);

CREATE TABLE long_queries (
    ts          INTEGER NOT NULL,
    target      TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    user_name   TEXT,
    application TEXT,
    state       TEXT,
    wait_event  TEXT,
    seconds     REAL NOT NULL,
    query       TEXT NOT NULL
);
CREATE INDEX long_queries_target_ts ON long_queries (target, ts);

CREATE TABLE query_snapshots (
    target   TEXT PRIMARY KEY,
    taken_at INTEGER NOT NULL,
    snapshot TEXT NOT NULL
);
