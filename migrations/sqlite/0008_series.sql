-- History as series (issue 13): a series dictionary and narrow samples written on change,
-- check status periods and latest snapshots instead of one row per check and round, the
-- latest table statistics (their history is in series 'table.*'), and the rollup tables.
-- Every new row carries its agent. The old per-round tables are migrated and dropped:
--   metric_samples -> series (metric = check name) + samples
--   table_stats    -> series ('table.<field>', label = table) + samples, table_stats_latest
--   check_results  -> check_periods (consecutive rounds of one status) + check_latest
-- Old rows had no agent: they get the agent of the target's most recent job run, else ''.
-- Samples are migrated store-on-change: a row repeating its series' previous value is
-- dropped (the value holds until the next sample, or until series.last_ts).
-- Timestamps are Unix milliseconds (UTC). The store-helper and history-helper code rely on
-- these names (notes/schema.md); add, never rename.

CREATE TABLE series (
    id      INTEGER PRIMARY KEY,
    agent   TEXT NOT NULL,
    target  TEXT NOT NULL,
    metric  TEXT NOT NULL,
    label   TEXT NOT NULL DEFAULT '',
    unit    TEXT NOT NULL DEFAULT '',
    last_ts INTEGER,
    UNIQUE (agent, target, metric, label)
);
CREATE INDEX series_target ON series (target, metric);

CREATE TABLE samples (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

CREATE TABLE rollups (
    series_id  INTEGER NOT NULL,
    resolution INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    min        REAL NOT NULL,
    max        REAL NOT NULL,
    avg        REAL NOT NULL,
    last       REAL NOT NULL,
    covered_ms INTEGER NOT NULL,
    PRIMARY KEY (series_id, resolution, ts)
) WITHOUT ROWID;

CREATE TABLE rollup_progress (
    agent      TEXT NOT NULL,
    step       TEXT NOT NULL,
    done_until INTEGER NOT NULL,
    PRIMARY KEY (agent, step)
);

CREATE TABLE check_periods (
    id         INTEGER PRIMARY KEY,
    agent      TEXT NOT NULL,
    target     TEXT NOT NULL,
    check_name TEXT NOT NULL,
    status     TEXT NOT NULL,
    from_ts    INTEGER NOT NULL,
    to_ts      INTEGER NOT NULL,
    value_min  REAL,
    value_max  REAL,
    unit       TEXT NOT NULL,
    message    TEXT NOT NULL,
    rounds     INTEGER NOT NULL
);
CREATE INDEX check_periods_target_to ON check_periods (target, to_ts);
-- The writer finds a check's open (newest) period after a restart.
CREATE INDEX check_periods_key ON check_periods (agent, target, check_name, to_ts);

CREATE TABLE check_latest (
    agent      TEXT NOT NULL,
    target     TEXT NOT NULL,
    check_name TEXT NOT NULL,
    ts         INTEGER NOT NULL,
    status     TEXT NOT NULL,
    value      REAL,
    unit       TEXT NOT NULL,
    warning    REAL,
    critical   REAL,
    message    TEXT NOT NULL,
    subject    TEXT,
    run_id     TEXT,
    since      INTEGER NOT NULL,
    PRIMARY KEY (agent, target, check_name)
);

CREATE TABLE table_stats_latest (
    agent         TEXT NOT NULL,
    target        TEXT NOT NULL,
    table_name    TEXT NOT NULL,
    ts            INTEGER NOT NULL,
    n_rows        REAL,
    dead_rows     REAL,
    size_bytes    REAL,
    inserts_delta REAL,
    updates_delta REAL,
    deletes_delta REAL,
    seq_scans     REAL,
    idx_scans     REAL,
    last_vacuum   INTEGER,
    last_analyze  INTEGER,
    free_bytes    REAL,
    last_modified INTEGER,
    PRIMARY KEY (agent, target, table_name)
);

-- Migration of the existing history.
CREATE TABLE _migrate_agent (target TEXT PRIMARY KEY, agent TEXT NOT NULL);
INSERT INTO _migrate_agent (target, agent)
SELECT t.target, COALESCE((SELECT j.agent FROM job_runs j WHERE j.target = t.target
                           ORDER BY j.started_at DESC LIMIT 1), '')
FROM (SELECT target FROM check_results UNION SELECT target FROM metric_samples
      UNION SELECT target FROM table_stats) t;

-- One long list of (target, metric, label, ts, value) from both old tables.
CREATE TABLE _migrate_values (
    target TEXT NOT NULL, metric TEXT NOT NULL, label TEXT NOT NULL,
    ts INTEGER NOT NULL, value REAL NOT NULL
);
INSERT INTO _migrate_values SELECT target, metric, '', ts, value FROM metric_samples;
INSERT INTO _migrate_values
SELECT target, 'table.rows', table_name, ts, n_rows FROM table_stats WHERE n_rows IS NOT NULL
UNION ALL SELECT target, 'table.dead_rows', table_name, ts, dead_rows FROM table_stats WHERE dead_rows IS NOT NULL
UNION ALL SELECT target, 'table.size_bytes', table_name, ts, size_bytes FROM table_stats WHERE size_bytes IS NOT NULL
UNION ALL SELECT target, 'table.inserts', table_name, ts, inserts_delta FROM table_stats WHERE inserts_delta IS NOT NULL
UNION ALL SELECT target, 'table.updates', table_name, ts, updates_delta FROM table_stats WHERE updates_delta IS NOT NULL
UNION ALL SELECT target, 'table.deletes', table_name, ts, deletes_delta FROM table_stats WHERE deletes_delta IS NOT NULL
UNION ALL SELECT target, 'table.seq_scans', table_name, ts, seq_scans FROM table_stats WHERE seq_scans IS NOT NULL
UNION ALL SELECT target, 'table.idx_scans', table_name, ts, idx_scans FROM table_stats WHERE idx_scans IS NOT NULL
UNION ALL SELECT target, 'table.last_vacuum', table_name, ts, last_vacuum FROM table_stats WHERE last_vacuum IS NOT NULL
UNION ALL SELECT target, 'table.last_analyze', table_name, ts, last_analyze FROM table_stats WHERE last_analyze IS NOT NULL
UNION ALL SELECT target, 'table.free_bytes', table_name, ts, free_bytes FROM table_stats WHERE free_bytes IS NOT NULL
UNION ALL SELECT target, 'table.last_modified', table_name, ts, last_modified FROM table_stats WHERE last_modified IS NOT NULL;

-- A check's series takes the unit of the check's newest result (looked up only for
-- check series: a table series would scan all of its target's results in vain).
INSERT INTO series (agent, target, metric, label, unit, last_ts)
SELECT a.agent, v.target, v.metric, v.label,
       CASE
           WHEN v.metric IN ('table.size_bytes', 'table.free_bytes') THEN 'bytes'
           WHEN v.metric IN ('table.last_vacuum', 'table.last_analyze', 'table.last_modified')
               THEN 'unix_seconds'
           WHEN v.metric LIKE 'table.%' THEN 'count'
           ELSE COALESCE((SELECT c.unit FROM check_results c WHERE c.target = v.target
                          AND c.check_name = v.metric ORDER BY c.ts DESC LIMIT 1), '')
       END,
       max(v.ts)
FROM _migrate_values v JOIN _migrate_agent a ON a.target = v.target
GROUP BY a.agent, v.target, v.metric, v.label;

INSERT OR IGNORE INTO samples (series_id, ts, value)
SELECT series_id, ts, value FROM (
    SELECT s.id AS series_id, v.ts, v.value,
           LAG(v.value) OVER (PARTITION BY s.id ORDER BY v.ts) AS prev
    FROM _migrate_values v JOIN series s
      ON s.target = v.target AND s.metric = v.metric AND s.label = v.label
) x WHERE prev IS NULL OR prev <> value;

INSERT INTO table_stats_latest (agent, target, table_name, ts, n_rows, dead_rows, size_bytes,
    inserts_delta, updates_delta, deletes_delta, seq_scans, idx_scans, last_vacuum,
    last_analyze, free_bytes, last_modified)
SELECT a.agent, t.target, t.table_name, t.ts, t.n_rows, t.dead_rows, t.size_bytes,
       t.inserts_delta, t.updates_delta, t.deletes_delta, t.seq_scans, t.idx_scans,
       t.last_vacuum, t.last_analyze, t.free_bytes, t.last_modified
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY target, table_name ORDER BY ts DESC) AS newest
      FROM table_stats) t
JOIN _migrate_agent a ON a.target = t.target
WHERE t.newest = 1;

-- Gaps and islands: consecutive results of one check with the same status are one period.
CREATE TABLE _migrate_checks AS
SELECT ts, target, check_name, status, value, unit, message,
       ROW_NUMBER() OVER (PARTITION BY target, check_name ORDER BY ts, id) AS seq,
       ROW_NUMBER() OVER (PARTITION BY target, check_name ORDER BY ts, id)
     - ROW_NUMBER() OVER (PARTITION BY target, check_name, status ORDER BY ts, id) AS island
FROM check_results;
CREATE INDEX _migrate_checks_seq ON _migrate_checks (target, check_name, seq);

INSERT INTO check_periods (agent, target, check_name, status, from_ts, to_ts, value_min,
    value_max, unit, message, rounds)
SELECT a.agent, p.target, p.check_name, p.status, p.from_ts, p.to_ts, p.value_min,
       p.value_max, l.unit, l.message, p.rounds
FROM (SELECT target, check_name, status, island, min(ts) AS from_ts, max(ts) AS to_ts,
             min(value) AS value_min, max(value) AS value_max, COUNT(*) AS rounds,
             max(seq) AS last_seq
      FROM _migrate_checks GROUP BY target, check_name, status, island) p
JOIN _migrate_checks l
  ON l.target = p.target AND l.check_name = p.check_name AND l.seq = p.last_seq
JOIN _migrate_agent a ON a.target = p.target
ORDER BY p.from_ts;

INSERT INTO check_latest (agent, target, check_name, ts, status, value, unit, warning,
    critical, message, subject, run_id, since)
SELECT a.agent, c.target, c.check_name, c.ts, c.status, c.value, c.unit, c.warning,
       c.critical, c.message, c.subject, c.run_id,
       (SELECT max(p.from_ts) FROM check_periods p WHERE p.agent = a.agent
        AND p.target = c.target AND p.check_name = c.check_name)
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY target, check_name ORDER BY ts DESC, id DESC)
                AS newest
      FROM check_results) c
JOIN _migrate_agent a ON a.target = c.target
WHERE c.newest = 1;

DROP TABLE _migrate_checks;
DROP TABLE _migrate_values;
DROP TABLE _migrate_agent;
DROP TABLE check_results;
DROP TABLE metric_samples;
DROP TABLE table_stats;
