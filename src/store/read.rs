//! Reads of the history (CLI, API, the daemon's start): each bounded by a short timeout
//! and failing with a clear error while the store is unreachable, never hanging.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::connect::READ_TIMEOUT;
use super::{Pool, Store, StoreError, from_ms, ms};
use crate::engine::TableStat;
use crate::health::Status;

/// A job run as read back from the store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: String,
    pub job: String,
    pub target: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub status: Option<String>,
    pub error: Option<String>,
}

/// A check result as read back from the store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckRow {
    pub ts: DateTime<Utc>,
    pub target: String,
    pub check: String,
    pub status: String,
    pub value: Option<f64>,
    pub message: String,
}

/// A maintenance step as read back from the store (`maintenance_actions`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MaintenanceRow {
    pub target: String,
    pub table: String,
    pub action: String,
    pub reason: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: String,
    /// Why it was skipped, the error, or what interrupted it.
    pub detail: Option<String>,
    pub dead_rows_before: Option<f64>,
    pub dead_rows_after: Option<f64>,
    pub freeze_age_before: Option<f64>,
    pub freeze_age_after: Option<f64>,
    pub size_before: Option<f64>,
    pub size_after: Option<f64>,
    pub run_id: Option<String>,
}

/// The latest believed status of a target (`check` None) or of one of its checks, as the
/// history last recorded it: for restoring hysteresis state after a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BelievedRow {
    pub target: String,
    pub check: Option<String>,
    pub status: Status,
    pub since: DateTime<Utc>,
}

/// How `dbwarden slow-queries` orders statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowOrder {
    Total,
    Mean,
    Calls,
}

/// One statement summed over the samples of a period (`dbwarden slow-queries`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SlowQueryRow {
    pub queryid: String,
    /// `None` when its text was never stored.
    pub query: Option<String>,
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub rows: i64,
    pub shared_hit: Option<i64>,
    pub shared_read: Option<i64>,
    /// How many samples it appeared in.
    pub samples: i64,
}

/// Runs a read within [`READ_TIMEOUT`].
pub(super) async fn bounded<T>(
    read: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {}s",
            READ_TIMEOUT.as_secs()
        ))),
    }
}

/// For each (target, check or NULL) the newest transition. One text for both dialects:
/// window functions exist in SQLite since 3.25 and PARTITION BY groups NULLs together in
/// both.
/// The newest transition per (target, check) of one agent (rows from before the `agent`
/// column, NULL, count as anyone's: the single-agent stores that existed then).
const BELIEVED_SQL: [&str; 2] = [
    "SELECT target, check_name, to_status, ts FROM ( \
     SELECT target, check_name, to_status, ts, \
            ROW_NUMBER() OVER (PARTITION BY target, check_name ORDER BY ts DESC) AS newest \
     FROM health_transitions WHERE agent IS NULL OR agent = ",
    ") latest WHERE newest = 1",
];

impl Store {
    /// For every (target, check-or-NULL) in `health_transitions` believed by this store's agent
    /// ([`Store::agent`]), the latest `to_status` and its time. Rows with a status this binary does not know are skipped.
    pub async fn believed_states(&self) -> Result<Vec<BelievedRow>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            let agent = self.agent().to_string();
            let rows = on_pool!(&pool, p => {
                let mut q = sqlx::QueryBuilder::new(BELIEVED_SQL[0]);
                q.push_bind(&agent).push(BELIEVED_SQL[1]);
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<(String, Option<String>, String, i64), sqlx::Error> {
                        Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            });
            let mut believed: Vec<BelievedRow> = rows
                .into_iter()
                .filter_map(|(target, check, status, ts)| {
                    Some(BelievedRow {
                        target,
                        check,
                        status: Status::parse(&status)?,
                        since: from_ms(ts),
                    })
                })
                .collect();
            // Sorted here: the dialects order NULL checks differently.
            believed.sort_by(|a, b| (&a.target, &a.check).cmp(&(&b.target, &b.check)));
            Ok(believed)
        })
        .await
    }

    /// Marks runs this agent left `running` (a crash, a kill -9) as `interrupted`.
    pub async fn close_orphaned_runs(&self, agent: &str) -> Result<u64, StoreError> {
        let pool = self.write_pool()?;
        let now = ms(Utc::now());
        bounded(async {
            Ok(on_pool!(&pool, p => orphans_update!(agent, now)
                .build()
                .execute(p)
                .await?
                .rows_affected()))
        })
        .await
    }

    /// The most recent runs, newest first, optionally of one job.
    pub async fn recent_runs(
        &self,
        job: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT id, job, target, started_at, finished_at, outcome, status, error FROM job_runs",
                );
                if let Some(job) = job {
                    q.push(" WHERE job = ").push_bind(job);
                }
                q.push(" ORDER BY started_at DESC, id DESC LIMIT ").push_bind(limit);
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<RunRow, sqlx::Error> {
                        Ok(RunRow {
                            id: r.try_get(0)?,
                            job: r.try_get(1)?,
                            target: r.try_get(2)?,
                            started_at: from_ms(r.try_get(3)?),
                            finished_at: r.try_get::<Option<i64>, _>(4)?.map(from_ms),
                            outcome: r.try_get(5)?,
                            status: r.try_get(6)?,
                            error: r.try_get(7)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// Maintenance steps started since `since`, of one target or all, oldest first.
    pub async fn maintenance_actions(
        &self,
        target: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<MaintenanceRow>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT target, table_name, action, reason, started_at, finished_at, outcome, detail, \
                     dead_rows_before, dead_rows_after, freeze_age_before, freeze_age_after, size_before, size_after, run_id \
                     FROM maintenance_actions WHERE started_at >= ",
                );
                q.push_bind(ms(since));
                if let Some(t) = target {
                    q.push(" AND target = ").push_bind(t);
                }
                q.push(" ORDER BY started_at, id");
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<MaintenanceRow, sqlx::Error> {
                        Ok(MaintenanceRow {
                            target: r.try_get(0)?,
                            table: r.try_get(1)?,
                            action: r.try_get(2)?,
                            reason: r.try_get(3)?,
                            started_at: from_ms(r.try_get(4)?),
                            finished_at: from_ms(r.try_get(5)?),
                            outcome: r.try_get(6)?,
                            detail: r.try_get(7)?,
                            dead_rows_before: r.try_get(8)?,
                            dead_rows_after: r.try_get(9)?,
                            freeze_age_before: r.try_get(10)?,
                            freeze_age_after: r.try_get(11)?,
                            size_before: r.try_get(12)?,
                            size_after: r.try_get(13)?,
                            run_id: r.try_get(14)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// The latest result of each check of a target (`check_latest`), newest first.
    pub async fn recent_checks(
        &self,
        target: &str,
        limit: i64,
    ) -> Result<Vec<CheckRow>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT ts, target, check_name, status, value, message FROM check_latest WHERE target = ",
                );
                q.push_bind(target)
                    .push(" ORDER BY ts DESC, check_name LIMIT ")
                    .push_bind(limit);
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<CheckRow, sqlx::Error> {
                        Ok(CheckRow {
                            ts: from_ms(r.try_get(0)?),
                            target: r.try_get(1)?,
                            check: r.try_get(2)?,
                            status: r.try_get(3)?,
                            value: r.try_get(4)?,
                            message: r.try_get(5)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// A target's table statistics of its latest round that stored any, by table name,
    /// with that round's time (`table_stats_latest`: tables gone since are left out).
    pub async fn latest_table_stats(
        &self,
        target: &str,
    ) -> Result<Vec<(DateTime<Utc>, TableStat)>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT ts, table_name, n_rows, dead_rows, size_bytes, inserts_delta, updates_delta, \
                     deletes_delta, seq_scans, idx_scans, last_vacuum, last_analyze, free_bytes, last_modified \
                     FROM table_stats_latest WHERE target = ",
                );
                q.push_bind(target)
                    .push(" AND ts = (SELECT max(ts) FROM table_stats_latest WHERE target = ")
                    .push_bind(target)
                    .push(") ORDER BY table_name");
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<(DateTime<Utc>, TableStat), sqlx::Error> {
                        Ok((
                            from_ms(r.try_get(0)?),
                            TableStat {
                                table: r.try_get(1)?,
                                rows: r.try_get(2)?,
                                dead_rows: r.try_get(3)?,
                                size_bytes: r.try_get(4)?,
                                inserts_delta: r.try_get(5)?,
                                updates_delta: r.try_get(6)?,
                                deletes_delta: r.try_get(7)?,
                                seq_scans: r.try_get(8)?,
                                idx_scans: r.try_get(9)?,
                                last_vacuum: r.try_get(10)?,
                                last_analyze: r.try_get(11)?,
                                free_bytes: r.try_get(12)?,
                                last_modified: r.try_get(13)?,
                            },
                        ))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// A target's latest statement snapshot as stored ([`crate::sample::wire`]), if any.
    pub async fn sample_snapshot(&self, target: &str) -> Result<Option<String>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new("SELECT snapshot FROM query_snapshots WHERE target = ");
                q.push_bind(target);
                q.build_query_scalar::<String>().fetch_optional(p).await?
            }))
        })
        .await
    }

    /// The statements of `target` sampled since `since`, summed over the samples, worst
    /// first by `by`, at most `limit`, with their stored texts.
    pub async fn slow_queries(
        &self,
        target: &str,
        since: DateTime<Utc>,
        by: SlowOrder,
        limit: i64,
    ) -> Result<Vec<SlowQueryRow>, StoreError> {
        let pool = self.reader()?;
        let order = match by {
            SlowOrder::Total => "total_ms",
            SlowOrder::Mean => "mean_ms",
            SlowOrder::Calls => "calls",
        };
        // PostgreSQL sums BIGINT into NUMERIC: cast back (CAST works in both dialects).
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT s.queryid, t.query, s.calls, s.total_ms, s.total_ms / s.calls AS mean_ms, \
                     s.n_rows, s.shared_hit, s.shared_read, s.samples FROM ( \
                     SELECT queryid, CAST(SUM(calls) AS BIGINT) AS calls, SUM(total_ms) AS total_ms, \
                     CAST(SUM(n_rows) AS BIGINT) AS n_rows, CAST(SUM(shared_hit) AS BIGINT) AS shared_hit, \
                     CAST(SUM(shared_read) AS BIGINT) AS shared_read, COUNT(*) AS samples \
                     FROM query_stats WHERE target = ",
                );
                q.push_bind(target)
                    .push(" AND ts >= ")
                    .push_bind(ms(since))
                    .push(" GROUP BY queryid) s LEFT JOIN query_texts t ON t.target = ")
                    .push_bind(target)
                    .push(" AND t.queryid = s.queryid ORDER BY ")
                    .push(order)
                    .push(" DESC, s.queryid LIMIT ")
                    .push_bind(limit);
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<SlowQueryRow, sqlx::Error> {
                        Ok(SlowQueryRow {
                            queryid: r.try_get(0)?,
                            query: r.try_get(1)?,
                            calls: r.try_get(2)?,
                            total_ms: r.try_get(3)?,
                            mean_ms: r.try_get(4)?,
                            rows: r.try_get(5)?,
                            shared_hit: r.try_get(6)?,
                            shared_read: r.try_get(7)?,
                            samples: r.try_get(8)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// The per-sample mean times of `queryids` of `target` stored in `[from, until)`, the
    /// newest `per_statement` of each: the baselines of the `query_regression` check.
    pub async fn statement_history(
        &self,
        target: &str,
        queryids: &[String],
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        per_statement: i64,
    ) -> Result<std::collections::HashMap<String, Vec<f64>>, StoreError> {
        let mut out: std::collections::HashMap<String, Vec<f64>> = Default::default();
        if queryids.is_empty() {
            return Ok(out);
        }
        let pool = self.reader()?;
        let rows: Vec<(String, f64)> = bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT queryid, mean_ms FROM (SELECT queryid, mean_ms, \
                     ROW_NUMBER() OVER (PARTITION BY queryid ORDER BY ts DESC) AS newest \
                     FROM query_stats WHERE target = ",
                );
                q.push_bind(target)
                    .push(" AND ts >= ")
                    .push_bind(ms(from))
                    .push(" AND ts < ")
                    .push_bind(ms(until))
                    .push(" AND queryid IN (");
                let mut sep = q.separated(", ");
                for id in queryids {
                    sep.push_bind(id.clone());
                }
                q.push(")) h WHERE newest <= ").push_bind(per_statement);
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<(String, f64), sqlx::Error> { Ok((r.try_get(0)?, r.try_get(1)?)) })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await?;
        for (id, mean) in rows {
            out.entry(id).or_default().push(mean);
        }
        Ok(out)
    }

    /// Counts rows of a history table (tests, `dbwarden status`).
    pub async fn count(&self, table: HistoryTable) -> Result<i64, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            let sql = format!("SELECT COUNT(*) FROM {}", table.name());
            Ok(
                on_pool!(&pool, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_one(p)
                .await?),
            )
        })
        .await
    }
}

/// The history tables, for [`Store::count`].
#[derive(Debug, Clone, Copy)]
pub enum HistoryTable {
    JobRuns,
    Series,
    Samples,
    CheckPeriods,
    CheckLatest,
    TableStatsLatest,
    HealthTransitions,
    QueryStats,
}

impl HistoryTable {
    fn name(self) -> &'static str {
        match self {
            HistoryTable::JobRuns => "job_runs",
            HistoryTable::Series => "series",
            HistoryTable::Samples => "samples",
            HistoryTable::CheckPeriods => "check_periods",
            HistoryTable::CheckLatest => "check_latest",
            HistoryTable::TableStatsLatest => "table_stats_latest",
            HistoryTable::HealthTransitions => "health_transitions",
            HistoryTable::QueryStats => "query_stats",
        }
    }
}
