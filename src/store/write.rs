//! Writing a batch: one transaction with multi-row inserts, the same statements for both
//! dialects (QueryBuilder renders `?` or `$n`). A failure is classified: the store being
//! unavailable (keep the records, retry later) or the batch holding a bad record (split
//! the batch until the bad record is alone, write the rest, drop only that one).

use std::sync::Mutex;
use std::time::Duration;

use sqlx::{Connection, QueryBuilder};

use super::buffer::Entry;
use super::connect::WriteConn;
use super::series::Cache;
use super::series_write;
use super::{Record, ms};

/// Rows per INSERT statement: SQLite allows 32766 bound parameters; 15 columns × 500 fits.
const ROWS_PER_STATEMENT: usize = 500;
/// One transaction, at most: a store that stops answering (a frozen server, a network
/// black hole) counts as unavailable instead of stalling the writer.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// The store cannot write now (I/O, connection refused or closed, disk full, database
    /// locked or busy, timeouts): keep the records and retry.
    Unavailable(String),
    /// Something in the batch is rejected (constraint or data error): split it.
    Bad(String),
}

/// Sorts an error into "retry later" or "this batch is bad". Unknown errors count as
/// unavailable: retrying an error that is really about the data costs buffer space (bounded
/// and counted), while dropping records because of a store problem would lose them.
pub(super) fn classify(e: &sqlx::Error) -> Failure {
    let text = e.to_string();
    let bad = match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // SQLSTATE class 22 (data exception, e.g. a NUL byte in text) and 23
                // (integrity constraint violation).
                code.starts_with("22") || code.starts_with("23")
            } else {
                // SQLite extended result code; the primary code is its low byte.
                // SQLITE_TOOBIG 18, SQLITE_CONSTRAINT 19 (also a trigger's RAISE(ABORT)),
                // SQLITE_MISMATCH 20, SQLITE_RANGE 25.
                let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(0);
                matches!(primary, 18 | 19 | 20 | 25)
            }
        }
        sqlx::Error::Encode(_) | sqlx::Error::InvalidArgument(_) => true,
        _ => false,
    };
    if bad {
        Failure::Bad(text)
    } else {
        Failure::Unavailable(text)
    }
}

/// What became of a batch.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Records committed.
    pub written: u64,
    /// Records dropped as bad, by index into the batch, with the reason.
    pub bad: Vec<(usize, String)>,
    /// The store became unavailable: the index of the first record not finished (all
    /// from there on go back to the buffer) and the reason.
    pub stopped: Option<(usize, String)>,
}

/// Writes `batch` in order. A bad batch is split in halves until the bad records are
/// alone; each costs about 2·log2(n) extra transactions. `done` is advanced past every
/// record that is finished (written or dropped), so a caller that is cancelled midway
/// knows what to give back.
pub(super) async fn write_batch(
    conn: &mut WriteConn,
    batch: &[Entry],
    done: &mut usize,
    cache: &Mutex<Cache>,
    agent: &str,
) -> Outcome {
    let mut out = Outcome::default();
    // Ranges still to write, the next one on top: processing stays in record order, so
    // a run's start is always written before its end.
    let mut todo = vec![(0, batch.len())];
    while let Some((lo, hi)) = todo.pop() {
        if lo == hi {
            continue;
        }
        let attempt =
            tokio::time::timeout(WRITE_TIMEOUT, commit(conn, &batch[lo..hi], cache, agent)).await;
        let result = match attempt {
            Ok(r) => r,
            Err(_) => Err(Failure::Unavailable(format!(
                "no answer within {}s",
                WRITE_TIMEOUT.as_secs()
            ))),
        };
        match result {
            Ok(()) => {
                out.written += (hi - lo) as u64;
                *done = hi;
            }
            Err(Failure::Bad(reason)) if hi - lo == 1 => {
                out.bad.push((lo, reason));
                *done = hi;
            }
            Err(Failure::Bad(_)) => {
                let mid = lo + (hi - lo) / 2;
                todo.push((mid, hi));
                todo.push((lo, mid));
            }
            Err(Failure::Unavailable(reason)) => {
                out.stopped = Some((lo, reason));
                return out;
            }
        }
    }
    out
}

/// Writes one batch in one transaction. Run starts go first and run ends last so an end
/// always finds its start, whatever the order inside the batch.
async fn commit(
    conn: &mut WriteConn,
    batch: &[Entry],
    cache: &Mutex<Cache>,
    agent: &str,
) -> Result<(), Failure> {
    let mut runs = Vec::new();
    let mut ends = Vec::new();
    let mut rounds = Vec::new();
    let mut transitions = Vec::new();
    let mut query_stats = Vec::new();
    let mut query_texts = Vec::new();
    let mut long_queries = Vec::new();
    let mut snapshots = Vec::new();
    let mut maintenance = Vec::new();
    for e in batch {
        let r = &e.record;
        match r {
            Record::Run(x) => runs.push(x),
            Record::RunEnd(x) => ends.push(x),
            Record::Checks { .. } | Record::Metric { .. } | Record::Tables { .. } => rounds.push(r),
            Record::Transition { .. } => transitions.push(r),
            Record::QueryStat { .. } => query_stats.push(r),
            Record::QueryText { .. } => query_texts.push(r),
            Record::LongQuery { .. } => long_queries.push(r),
            Record::SampleSnapshot { .. } => snapshots.push(r),
            Record::Maintenance { .. } => maintenance.push(r),
        }
    }
    // The targets of the rounds leave the cache for the batch and come back only when it
    // is committed (series.rs).
    let mut work = lock(cache).checkout(rounds.iter().filter_map(|r| match r {
        Record::Checks { target, .. }
        | Record::Metric { target, .. }
        | Record::Tables { target, .. } => Some(target.as_str()),
        _ => None,
    }));
    let agent = agent.to_string();
    // The same statements for both dialects: QueryBuilder renders `?` or `$n` itself.
    macro_rules! write_all {
        ($conn:expr, $db:ty, $series:path) => {{
            let mut tx = $conn.begin().await.map_err(|e| classify(&e))?;
            let written: Result<(), sqlx::Error> = async {
            for chunk in runs.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO job_runs (id, job, kind, target, agent, scheduled_at, started_at, finished_at, outcome, status, error, coalesced) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.id.clone())
                        .push_bind(r.job.clone())
                        .push_bind(r.kind.clone())
                        .push_bind(r.target.clone())
                        .push_bind(agent.clone())
                        .push_bind(r.scheduled_at.map(ms))
                        .push_bind(ms(r.started_at))
                        .push_bind(r.finished_at.map(ms))
                        .push_bind(r.outcome.as_str())
                        .push_bind(r.status.map(|s| s.as_str()))
                        .push_bind(r.error.clone())
                        .push_bind(i64::from(r.coalesced));
                });
                q.build().execute(&mut *tx).await?;
            }
            $series(&mut *tx, &agent, &mut work, &rounds).await?;
            for chunk in transitions.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO health_transitions (ts, target, check_name, from_status, to_status, message, agent) ",
                );
                q.push_values(chunk, |mut b, r| {
                    if let Record::Transition { ts, target, check, from, to, message } = r {
                        b.push_bind(ms(*ts))
                            .push_bind(target.clone())
                            .push_bind(check.clone())
                            .push_bind(from.as_str())
                            .push_bind(to.as_str())
                            .push_bind(message.clone())
                            .push_bind(agent.clone());
                    }
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in query_stats.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO query_stats (ts, target, queryid, scope, calls, total_ms, mean_ms, max_ms, n_rows, shared_hit, shared_read, temp_read, temp_written, plan_ms, rows_examined, no_index_used) ",
                );
                q.push_values(chunk, |mut b, r| {
                    if let Record::QueryStat { ts, target, delta: d } = r {
                        b.push_bind(ms(*ts))
                            .push_bind(target.clone())
                            .push_bind(d.key.id.clone())
                            .push_bind(d.key.scope.clone())
                            .push_bind(d.calls)
                            .push_bind(d.total_ms)
                            .push_bind(d.mean_ms)
                            .push_bind(d.max_ms)
                            .push_bind(d.rows)
                            .push_bind(d.shared_hit)
                            .push_bind(d.shared_read)
                            .push_bind(d.temp_read)
                            .push_bind(d.temp_written)
                            .push_bind(d.plan_ms)
                            .push_bind(d.rows_examined)
                            .push_bind(d.no_index_used);
                    }
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in maintenance.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO maintenance_actions (run_id, target, table_name, action, reason, started_at, finished_at, outcome, detail, dead_rows_before, dead_rows_after, freeze_age_before, freeze_age_after, size_before, size_after, agent) ",
                );
                q.push_values(chunk, |mut b, r| {
                    if let Record::Maintenance { target, run_id, record } = r {
                        b.push_bind(run_id.clone())
                            .push_bind(target.clone())
                            .push_bind(record.step.table.clone())
                            .push_bind(record.step.action.as_str())
                            .push_bind(record.step.reason.clone())
                            .push_bind(ms(record.started))
                            .push_bind(ms(record.finished))
                            .push_bind(record.outcome.as_str())
                            .push_bind(record.outcome.why().map(str::to_string))
                            .push_bind(record.step.dead_rows)
                            .push_bind(record.after.dead_rows)
                            .push_bind(record.step.freeze_age)
                            .push_bind(record.after.freeze_age)
                            .push_bind(record.step.size_bytes)
                            .push_bind(record.after.size_bytes)
                            .push_bind(agent.clone());
                    }
                });
                q.build().execute(&mut *tx).await?;
            }
            // Once per (target, queryid): a text already stored stays as first seen.
            for chunk in query_texts.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO query_texts (target, queryid, query, first_seen) ",
                );
                q.push_values(chunk, |mut b, r| {
                    if let Record::QueryText { ts, target, queryid, query } = r {
                        b.push_bind(target.clone())
                            .push_bind(queryid.clone())
                            .push_bind(query.clone())
                            .push_bind(ms(*ts));
                    }
                });
                q.push(" ON CONFLICT (target, queryid) DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            for chunk in long_queries.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO long_queries (ts, target, pid, user_name, application, state, wait_event, seconds, query) ",
                );
                q.push_values(chunk, |mut b, r| {
                    if let Record::LongQuery { ts, target, runner: l } = r {
                        b.push_bind(ms(*ts))
                            .push_bind(target.clone())
                            .push_bind(l.pid)
                            .push_bind(l.user.clone())
                            .push_bind(l.application.clone())
                            .push_bind(l.state.clone())
                            .push_bind(l.wait_event.clone())
                            .push_bind(l.seconds)
                            .push_bind(l.query.clone());
                    }
                });
                q.build().execute(&mut *tx).await?;
            }
            // One statement per snapshot, in order (the newest wins): PostgreSQL refuses
            // an ON CONFLICT DO UPDATE that touches one row twice in one statement.
            for r in &snapshots {
                if let Record::SampleSnapshot { target, taken_at, snapshot } = r {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO query_snapshots (target, taken_at, snapshot) VALUES (",
                    );
                    q.push_bind(target.clone())
                        .push(", ")
                        .push_bind(ms(*taken_at))
                        .push(", ")
                        .push_bind(snapshot.clone())
                        .push(") ON CONFLICT (target) DO UPDATE SET taken_at = excluded.taken_at, snapshot = excluded.snapshot");
                    q.build().execute(&mut *tx).await?;
                }
            }
            for e in &ends {
                let mut q = QueryBuilder::<$db>::new("UPDATE job_runs SET finished_at = ");
                q.push_bind(ms(e.finished_at))
                    .push(", outcome = ")
                    .push_bind(e.outcome.as_str())
                    .push(", status = ")
                    .push_bind(e.status.map(|s| s.as_str()))
                    .push(", error = ")
                    .push_bind(e.error.clone())
                    .push(" WHERE id = ")
                    .push_bind(e.id.clone());
                q.build().execute(&mut *tx).await?;
            }
            Ok(())
            }
            .await;
            match written {
                Ok(()) => tx.commit().await.map_err(|e| classify(&e)),
                Err(e) => {
                    let failure = classify(&e);
                    // Roll back now rather than when the connection is next used; if that
                    // fails too the connection is in an unknown state: treat it as gone.
                    match tx.rollback().await {
                        Ok(()) => Err(failure),
                        Err(r) => Err(Failure::Unavailable(format!("{e}; then rollback failed: {r}"))),
                    }
                }
            }
        }};
    }
    match conn {
        WriteConn::Sqlite(c) => write_all!(c, sqlx::Sqlite, series_write::write_sqlite),
        WriteConn::Postgres(c) => write_all!(c, sqlx::Postgres, series_write::write_postgres),
    }?;
    lock(cache).checkin(work);
    Ok(())
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    // The cache is only ever replaced whole per target; a panic mid-way leaves it usable.
    cache.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks runs this agent left `running` (a crash, a kill -9) as `interrupted`.
pub(super) async fn close_orphaned_runs(
    conn: &mut WriteConn,
    agent: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    Ok(match conn {
        WriteConn::Sqlite(c) => orphans_update!(agent, now)
            .build()
            .execute(&mut *c)
            .await?
            .rows_affected(),
        WriteConn::Postgres(c) => orphans_update!(agent, now)
            .build()
            .execute(&mut *c)
            .await?
            .rows_affected(),
    })
}
