//! The writer task: drains the channel into batches and commits each batch in one
//! transaction with multi-row inserts. A failed batch is retried with backoff, never
//! dropped silently; after several failures it is logged and dropped so the daemon keeps
//! working (the store being down is reported, not fatal).

use std::time::Duration;

use sqlx::QueryBuilder;
use tokio::sync::{mpsc, oneshot};

use super::{BATCH_MAX, BATCH_WINDOW, Command, Pool, Record, ms};

/// Rows per INSERT statement: SQLite allows 32766 bound parameters; 13 columns × 500 fits.
const ROWS_PER_STATEMENT: usize = 500;
const MAX_ATTEMPTS: u32 = 5;

pub(super) async fn writer(pool: Pool, mut rx: mpsc::Receiver<Command>) {
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH_MAX);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let Some(first) = rx.recv().await else { break };
        match first {
            Command::Write(r) => batch.push(r),
            Command::Flush(w) => waiters.push(w),
        }
        // Fill the batch for at most BATCH_WINDOW, unless a flush is waiting.
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < BATCH_MAX && waiters.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Command::Write(r))) => batch.push(r),
                Ok(Some(Command::Flush(w))) => waiters.push(w),
                Ok(None) | Err(_) => break,
            }
        }
        // Take whatever else is already queued without waiting.
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(Command::Write(r)) => batch.push(r),
                Ok(Command::Flush(w)) => waiters.push(w),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit_with_retry(&pool, &batch).await;
            batch.clear();
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
    if !batch.is_empty() {
        commit_with_retry(&pool, &batch).await;
    }
    for w in waiters.drain(..) {
        let _ = w.send(());
    }
}

async fn commit_with_retry(pool: &Pool, batch: &[Record]) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=MAX_ATTEMPTS {
        match commit(pool, batch).await {
            Ok(()) => return,
            Err(e) if attempt < MAX_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, records = batch.len(), "history store write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "history store write failed {MAX_ATTEMPTS} times; these records are lost");
            }
        }
    }
}

/// Writes one batch in one transaction. Run starts go first and run ends last so an end
/// always finds its start, whatever the order inside the batch.
async fn commit(pool: &Pool, batch: &[Record]) -> Result<(), sqlx::Error> {
    let mut runs = Vec::new();
    let mut ends = Vec::new();
    let mut checks = Vec::new();
    let mut metrics = Vec::new();
    let mut tables = Vec::new();
    let mut transitions = Vec::new();
    for r in batch {
        match r {
            Record::Run(x) => runs.push(x),
            Record::RunEnd(x) => ends.push(x),
            Record::Check { .. } => checks.push(r),
            Record::Metric { .. } => metrics.push(r),
            Record::Table { .. } => tables.push(r),
            Record::Transition { .. } => transitions.push(r),
        }
    }
    // The same statements for both dialects: QueryBuilder renders `?` or `$n` itself.
    macro_rules! write_all {
        ($pool:expr, $db:ty) => {{
            let mut tx = $pool.begin().await?;
            for chunk in runs.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO job_runs (id, job, kind, target, agent, scheduled_at, started_at, finished_at, outcome, status, error, coalesced) ",
                );
                let agent = super::agent_name();
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
            for chunk in checks.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO check_results (ts, target, check_name, status, value, unit, warning, critical, message, subject, run_id) ",
                );
                q.push_values(chunk, |mut b, r| {
                    if let Record::Check { ts, target, run_id, result } = r {
                        b.push_bind(ms(*ts))
                            .push_bind(target.clone())
                            .push_bind(result.check.clone())
                            .push_bind(result.status.as_str())
                            .push_bind(result.value)
                            .push_bind(result.unit.as_str())
                            .push_bind(result.warning)
                            .push_bind(result.critical)
                            .push_bind(result.message.clone())
                            .push_bind(result.subject.clone())
                            .push_bind(run_id.clone());
                    }
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in metrics.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO metric_samples (ts, target, metric, value) ");
                q.push_values(chunk, |mut b, r| {
                    if let Record::Metric { ts, target, metric, value } = r {
                        b.push_bind(ms(*ts))
                            .push_bind(target.clone())
                            .push_bind(metric.clone())
                            .push_bind(*value);
                    }
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in tables.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO table_stats (ts, target, table_name, n_rows, dead_rows, size_bytes, inserts_delta, updates_delta, deletes_delta, seq_scans, idx_scans, last_vacuum, last_analyze, free_bytes, last_modified) ",
                );
                q.push_values(chunk, |mut b, r| {
                    if let Record::Table { ts, target, stat } = r {
                        b.push_bind(ms(*ts))
                            .push_bind(target.clone())
                            .push_bind(stat.table.clone())
                            .push_bind(stat.rows)
                            .push_bind(stat.dead_rows)
                            .push_bind(stat.size_bytes)
                            .push_bind(stat.inserts_delta)
                            .push_bind(stat.updates_delta)
                            .push_bind(stat.deletes_delta)
                            .push_bind(stat.seq_scans)
                            .push_bind(stat.idx_scans)
                            .push_bind(stat.last_vacuum)
                            .push_bind(stat.last_analyze)
                            .push_bind(stat.free_bytes)
                            .push_bind(stat.last_modified);
                    }
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in transitions.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO health_transitions (ts, target, check_name, from_status, to_status, message) ",
                );
                q.push_values(chunk, |mut b, r| {
                    if let Record::Transition { ts, target, check, from, to, message } = r {
                        b.push_bind(ms(*ts))
                            .push_bind(target.clone())
                            .push_bind(check.clone())
                            .push_bind(from.as_str())
                            .push_bind(to.as_str())
                            .push_bind(message.clone());
                    }
                });
                q.build().execute(&mut *tx).await?;
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
            tx.commit().await
        }};
    }
    match pool {
        Pool::Sqlite(p) => write_all!(p, sqlx::Sqlite),
        Pool::Postgres(p) => write_all!(p, sqlx::Postgres),
    }
}
