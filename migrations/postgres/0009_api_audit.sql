-- The HTTP API's audit trail: every mutating call (optimize, query-plan, silences), with
-- its client address and outcome, whether it was allowed or refused. Never the token,
-- never a query's text (the EXPLAINed SQL may carry literals).
CREATE TABLE api_audit (
    id        BIGSERIAL PRIMARY KEY,
    ts        BIGINT NOT NULL,
    agent     TEXT NOT NULL,
    client    TEXT NOT NULL,
    method    TEXT NOT NULL,
    path      TEXT NOT NULL,
    target    TEXT,
    status    INTEGER NOT NULL,
    outcome   TEXT NOT NULL,
    run_id    TEXT
);
CREATE INDEX api_audit_ts ON api_audit (ts);
