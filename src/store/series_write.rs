//! The SQL of store on change, inside the batch's transaction: loading a target's series
//! and open periods into the cache, then writing what [`series::plan`] decided. One text
//! for both dialects (QueryBuilder renders `?` or `$n`); the functions are expanded once
//! per connection type.

use std::collections::{BTreeMap, HashMap};

use sqlx::{QueryBuilder, Row};

use super::Record;
use super::series::{self, Checkout, Period, SeriesState, TargetDb};

/// Samples per INSERT: 3 parameters each, within SQLite's 32766.
const SAMPLES_PER_STATEMENT: usize = 5000;
/// Rows per statement for the wider tables and id lists.
const ROWS_PER_STATEMENT: usize = 500;

/// Binds a period's columns (agent .. rounds) to a row of `push_values`.
macro_rules! period_values {
    ($b:expr, $agent:expr, $target:expr, $check:expr, $p:expr) => {
        $b.push_bind($agent)
            .push_bind($target.as_str())
            .push_bind($check.as_str())
            .push_bind($p.status.as_str())
            .push_bind($p.from_ts)
            .push_bind($p.to_ts)
            .push_bind($p.value_min)
            .push_bind($p.value_max)
            .push_bind($p.unit.as_str())
            .push_bind($p.message.as_str())
            .push_bind($p.rounds)
    };
}

macro_rules! series_sql {
    ($load:ident, $write:ident, $db:ty, $conn:ty) => {
        /// A target's series (with their last written value) and each check's newest
        /// period, as this agent stored them.
        pub(super) async fn $load(
            c: &mut $conn,
            agent: &str,
            target: &str,
        ) -> Result<TargetDb, sqlx::Error> {
            let mut db = TargetDb::default();
            let mut q = QueryBuilder::<$db>::new(
                "SELECT s.id, s.metric, s.label, s.last_ts, \
                 (SELECT v.value FROM samples v WHERE v.series_id = s.id ORDER BY v.ts DESC LIMIT 1) \
                 FROM series s WHERE s.agent = ",
            );
            q.push_bind(agent).push(" AND s.target = ").push_bind(target);
            for r in q.build().fetch_all(&mut *c).await? {
                let id: i64 = r.try_get(0)?;
                db.ids.insert((r.try_get(1)?, r.try_get(2)?), id);
                db.series.insert(
                    id,
                    SeriesState {
                        id,
                        last_ts: r.try_get(3)?,
                        last: r.try_get(4)?,
                    },
                );
            }
            let mut q = QueryBuilder::<$db>::new(
                "SELECT id, check_name, status, from_ts, to_ts, value_min, value_max, rounds, unit, message \
                 FROM (SELECT id, check_name, status, from_ts, to_ts, value_min, value_max, rounds, unit, message, \
                 ROW_NUMBER() OVER (PARTITION BY check_name ORDER BY to_ts DESC, id DESC) AS newest \
                 FROM check_periods WHERE agent = ",
            );
            q.push_bind(agent)
                .push(" AND target = ")
                .push_bind(target)
                .push(") p WHERE newest = 1");
            for r in q.build().fetch_all(&mut *c).await? {
                db.periods.insert(
                    r.try_get(1)?,
                    Period {
                        id: r.try_get(0)?,
                        status: r.try_get(2)?,
                        from_ts: r.try_get(3)?,
                        to_ts: r.try_get(4)?,
                        value_min: r.try_get(5)?,
                        value_max: r.try_get(6)?,
                        rounds: r.try_get(7)?,
                        unit: r.try_get(8)?,
                        message: r.try_get(9)?,
                    },
                );
            }
            Ok(db)
        }

        /// Writes the rounds, metrics and table statistics of a batch (in order).
        pub(super) async fn $write(
            c: &mut $conn,
            agent: &str,
            work: &mut Checkout,
            records: &[&Record],
        ) -> Result<(), sqlx::Error> {
            let missing: Vec<String> = work
                .db
                .iter()
                .filter(|(_, d)| d.is_none())
                .map(|(t, _)| t.clone())
                .collect();
            for t in missing {
                let loaded = $load(&mut *c, agent, &t).await?;
                work.db.insert(t, Some(loaded));
            }
            let mut plan = series::plan(work, records);

            let mut ids = HashMap::new();
            for chunk in plan.new_series.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO series (agent, target, metric, label, unit) ",
                );
                q.push_values(chunk, |mut b, n| {
                    b.push_bind(agent)
                        .push_bind(n.target.as_str())
                        .push_bind(n.metric.as_str())
                        .push_bind(n.label.as_str())
                        .push_bind(n.unit.as_str());
                });
                // DO UPDATE, not DO NOTHING, so that RETURNING names the row either way.
                q.push(
                    " ON CONFLICT (agent, target, metric, label) DO UPDATE SET unit = excluded.unit \
                     RETURNING id, target, metric, label",
                );
                let tmp: HashMap<(&str, &str, &str), i64> = chunk
                    .iter()
                    .map(|n| ((n.target.as_str(), n.metric.as_str(), n.label.as_str()), n.tmp))
                    .collect();
                for r in q.build().fetch_all(&mut *c).await? {
                    let (id, t, m, l): (i64, String, String, String) =
                        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
                    if let Some(tmp) = tmp.get(&(t.as_str(), m.as_str(), l.as_str())) {
                        ids.insert(*tmp, id);
                    }
                }
            }
            series::remap(work, &mut plan, &ids);

            for chunk in plan.samples.chunks(SAMPLES_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO samples (series_id, ts, value) ");
                q.push_values(chunk, |mut b, s| {
                    b.push_bind(s.series_id).push_bind(s.ts).push_bind(s.value);
                });
                // A retry after a commit whose answer was lost writes the same rows again.
                q.push(" ON CONFLICT (series_id, ts) DO NOTHING");
                q.build().execute(&mut *c).await?;
            }

            let mut by_ts: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
            for (id, ts) in &plan.confirm {
                by_ts.entry(*ts).or_default().push(*id);
            }
            for (ts, mut ids) in by_ts {
                ids.sort_unstable();
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    let mut q = QueryBuilder::<$db>::new("UPDATE series SET last_ts = ");
                    q.push_bind(ts).push(" WHERE (last_ts IS NULL OR last_ts < ").push_bind(ts).push(") AND id IN (");
                    let mut sep = q.separated(", ");
                    for id in chunk {
                        sep.push_bind(*id);
                    }
                    q.push(")");
                    q.build().execute(&mut *c).await?;
                }
            }

            // Periods: those ended within the batch, then the current ones.
            let mut current: Vec<(String, String, Option<Period>)> = plan
                .ended
                .drain(..)
                .map(|(t, k, p)| (t, k, Some(p)))
                .collect();
            current.extend(plan.periods.iter().map(|(t, k)| (t.clone(), k.clone(), None)));
            let mut extended: Vec<(String, String, Period)> = Vec::new();
            for (target, check, ended) in current {
                let p = match ended {
                    Some(p) => p,
                    None => match work
                        .db
                        .get(&target)
                        .and_then(|d| d.as_ref())
                        .and_then(|d| d.periods.get(&check))
                    {
                        Some(p) => p.clone(),
                        None => continue,
                    },
                };
                if p.id == 0 {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO check_periods (agent, target, check_name, status, from_ts, to_ts, value_min, value_max, unit, message, rounds) ",
                    );
                    q.push_values([&p], |mut b, p| {
                        period_values!(b, agent, target, check, p);
                    });
                    q.push(" RETURNING id");
                    let id: i64 = q.build().fetch_one(&mut *c).await?.try_get(0)?;
                    // Only the current period stays in the cache.
                    if let Some(cur) = work
                        .db
                        .get_mut(&target)
                        .and_then(|d| d.as_mut())
                        .and_then(|d| d.periods.get_mut(&check))
                        && cur.id == 0
                        && cur.from_ts == p.from_ts
                    {
                        cur.id = id;
                    }
                } else {
                    extended.push((target, check, p));
                }
            }
            // Periods going on: one multi-row upsert on the id instead of an UPDATE each.
            for chunk in extended.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO check_periods (id, agent, target, check_name, status, from_ts, to_ts, value_min, value_max, unit, message, rounds) ",
                );
                q.push_values(chunk, |mut b, (target, check, p)| {
                    b.push_bind(p.id);
                    period_values!(b, agent, target, check, p);
                });
                q.push(
                    " ON CONFLICT (id) DO UPDATE SET to_ts = excluded.to_ts, value_min = excluded.value_min, \
                     value_max = excluded.value_max, unit = excluded.unit, message = excluded.message, \
                     rounds = excluded.rounds",
                );
                q.build().execute(&mut *c).await?;
            }

            let latest: Vec<_> = plan.latest_checks.iter().collect();
            for chunk in latest.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO check_latest (agent, target, check_name, ts, status, value, unit, warning, critical, message, subject, run_id, since) ",
                );
                q.push_values(chunk, |mut b, ((target, check), l)| {
                    b.push_bind(agent)
                        .push_bind(target.as_str())
                        .push_bind(check.as_str())
                        .push_bind(l.ts)
                        .push_bind(l.result.status.as_str())
                        .push_bind(l.result.value.filter(|v| v.is_finite()))
                        .push_bind(l.result.unit.as_str())
                        .push_bind(l.result.warning)
                        .push_bind(l.result.critical)
                        .push_bind(l.result.message.as_str())
                        .push_bind(l.result.subject.as_deref())
                        .push_bind(l.run_id.as_deref())
                        .push_bind(l.since);
                });
                q.push(
                    " ON CONFLICT (agent, target, check_name) DO UPDATE SET ts = excluded.ts, \
                     status = excluded.status, value = excluded.value, unit = excluded.unit, \
                     warning = excluded.warning, critical = excluded.critical, message = excluded.message, \
                     subject = excluded.subject, run_id = excluded.run_id, since = excluded.since",
                );
                q.build().execute(&mut *c).await?;
            }

            let tables: Vec<_> = plan.latest_tables.iter().collect();
            for chunk in tables.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO table_stats_latest (agent, target, table_name, ts, n_rows, dead_rows, size_bytes, inserts_delta, updates_delta, deletes_delta, seq_scans, idx_scans, last_vacuum, last_analyze, free_bytes, last_modified) ",
                );
                q.push_values(chunk, |mut b, ((target, table), (ts, s))| {
                    b.push_bind(agent)
                        .push_bind(target.as_str())
                        .push_bind(table.as_str())
                        .push_bind(*ts)
                        .push_bind(s.rows)
                        .push_bind(s.dead_rows)
                        .push_bind(s.size_bytes)
                        .push_bind(s.inserts_delta)
                        .push_bind(s.updates_delta)
                        .push_bind(s.deletes_delta)
                        .push_bind(s.seq_scans)
                        .push_bind(s.idx_scans)
                        .push_bind(s.last_vacuum)
                        .push_bind(s.last_analyze)
                        .push_bind(s.free_bytes)
                        .push_bind(s.last_modified);
                });
                q.push(
                    " ON CONFLICT (agent, target, table_name) DO UPDATE SET ts = excluded.ts, \
                     n_rows = excluded.n_rows, dead_rows = excluded.dead_rows, size_bytes = excluded.size_bytes, \
                     inserts_delta = excluded.inserts_delta, updates_delta = excluded.updates_delta, \
                     deletes_delta = excluded.deletes_delta, seq_scans = excluded.seq_scans, \
                     idx_scans = excluded.idx_scans, last_vacuum = excluded.last_vacuum, \
                     last_analyze = excluded.last_analyze, free_bytes = excluded.free_bytes, \
                     last_modified = excluded.last_modified",
                );
                q.build().execute(&mut *c).await?;
            }
            Ok(())
        }
    };
}

series_sql!(
    load_sqlite,
    write_sqlite,
    sqlx::Sqlite,
    sqlx::SqliteConnection
);
series_sql!(
    load_postgres,
    write_postgres,
    sqlx::Postgres,
    sqlx::PgConnection
);
