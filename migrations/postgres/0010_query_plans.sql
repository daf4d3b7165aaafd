-- Query plans (issue 12): the generic plan (PostgreSQL 16+: EXPLAIN (GENERIC_PLAN, FORMAT
-- JSON) of the normalised text) of a sample's top statements, with the summary the
-- dashboard and `dbwarden slow-queries` show: top node, estimated cost and rows, and the
-- sequential scans of large tables. Times are Unix milliseconds.
CREATE TABLE query_plans (
    agent      TEXT NOT NULL,
    target     TEXT NOT NULL,
    queryid    TEXT NOT NULL,
    ts         BIGINT NOT NULL,
    plan_json  TEXT NOT NULL,
    summary    TEXT NOT NULL,
    top_node   TEXT NOT NULL,
    total_cost DOUBLE PRECISION,
    plan_rows  DOUBLE PRECISION,
    large_seq_scans TEXT
);
CREATE INDEX query_plans_target_queryid_ts ON query_plans (target, queryid, ts);
