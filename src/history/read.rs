//! Reads for `dbwarden history checks|jobs|transitions|alerts`: one target's rows since a
//! time, oldest first, each bounded by a timeout.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use sqlx::{QueryBuilder, Row};

use crate::store::{Pool, Store, StoreError};

const READ_TIMEOUT: Duration = Duration::from_secs(10);

macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// One check's status period (`check_periods`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodRow {
    pub check: String,
    pub status: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub value_min: Option<f64>,
    pub value_max: Option<f64>,
    pub unit: String,
    pub message: String,
    pub rounds: i64,
}

/// A believed status change (`health_transitions`); `check` None for the target's own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionRow {
    pub ts: DateTime<Utc>,
    pub check: Option<String>,
    pub from: String,
    pub to: String,
    pub message: String,
}

/// A job run of the target (`job_runs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub job: String,
    pub kind: String,
    pub outcome: String,
    pub status: Option<String>,
    pub error: Option<String>,
}

/// A notification of the target (`alert_outbox`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub created_at: DateTime<Utc>,
    pub channel: String,
    pub event: String,
    pub state: String,
    pub attempts: i64,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(READ_TIMEOUT, f).await {
        Ok(r) => r.map_err(StoreError::from),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {}s",
            READ_TIMEOUT.as_secs()
        ))),
    }
}

/// The target's check status periods overlapping `[since, now]`, oldest first.
pub async fn check_periods(
    store: &Store,
    target: &str,
    since: DateTime<Utc>,
) -> Result<Vec<PeriodRow>, StoreError> {
    let pool = store.history_pool()?;
    bounded(async {
        on_pool!(&pool, p => {
            let mut q = QueryBuilder::new(
                "SELECT check_name, status, from_ts, to_ts, value_min, value_max, unit, message, rounds \
                 FROM check_periods WHERE target = ",
            );
            q.push_bind(target)
                .push(" AND to_ts >= ")
                .push_bind(since.timestamp_millis())
                .push(" ORDER BY check_name, from_ts");
            q.build()
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    Ok(PeriodRow {
                        check: r.try_get(0)?,
                        status: r.try_get(1)?,
                        from: at(r.try_get(2)?),
                        to: at(r.try_get(3)?),
                        value_min: r.try_get(4)?,
                        value_max: r.try_get(5)?,
                        unit: r.try_get(6)?,
                        message: r.try_get(7)?,
                        rounds: r.try_get(8)?,
                    })
                })
                .collect()
        })
    })
    .await
}

/// The target's believed status changes since `since`, oldest first.
pub async fn transitions(
    store: &Store,
    target: &str,
    since: DateTime<Utc>,
) -> Result<Vec<TransitionRow>, StoreError> {
    let pool = store.history_pool()?;
    bounded(async {
        on_pool!(&pool, p => {
            let mut q = QueryBuilder::new(
                "SELECT ts, check_name, from_status, to_status, message FROM health_transitions WHERE target = ",
            );
            q.push_bind(target)
                .push(" AND ts >= ")
                .push_bind(since.timestamp_millis())
                .push(" ORDER BY ts");
            q.build()
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    Ok(TransitionRow {
                        ts: at(r.try_get(0)?),
                        check: r.try_get(1)?,
                        from: r.try_get(2)?,
                        to: r.try_get(3)?,
                        message: r.try_get(4)?,
                    })
                })
                .collect()
        })
    })
    .await
}

/// The target's job runs started since `since`, oldest first.
pub async fn job_runs(
    store: &Store,
    target: &str,
    since: DateTime<Utc>,
) -> Result<Vec<JobRow>, StoreError> {
    let pool = store.history_pool()?;
    bounded(async {
        on_pool!(&pool, p => {
            let mut q = QueryBuilder::new(
                "SELECT started_at, finished_at, job, kind, outcome, status, error FROM job_runs WHERE target = ",
            );
            q.push_bind(target)
                .push(" AND started_at >= ")
                .push_bind(since.timestamp_millis())
                .push(" ORDER BY started_at");
            q.build()
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    Ok(JobRow {
                        started_at: at(r.try_get(0)?),
                        finished_at: r.try_get::<Option<i64>, _>(1)?.map(at),
                        job: r.try_get(2)?,
                        kind: r.try_get(3)?,
                        outcome: r.try_get(4)?,
                        status: r.try_get(5)?,
                        error: r.try_get(6)?,
                    })
                })
                .collect()
        })
    })
    .await
}

/// The target's notifications created since `since`, oldest first.
pub async fn alerts(
    store: &Store,
    target: &str,
    since: DateTime<Utc>,
) -> Result<Vec<AlertRow>, StoreError> {
    let pool = store.history_pool()?;
    bounded(async {
        on_pool!(&pool, p => {
            let mut q = QueryBuilder::new(
                "SELECT created_at, channel, event, state, attempts, delivered_at, last_error FROM alert_outbox WHERE target = ",
            );
            q.push_bind(target)
                .push(" AND created_at >= ")
                .push_bind(since.timestamp_millis())
                .push(" ORDER BY created_at, channel");
            q.build()
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    Ok(AlertRow {
                        created_at: at(r.try_get(0)?),
                        channel: r.try_get(1)?,
                        event: r.try_get(2)?,
                        state: r.try_get(3)?,
                        attempts: r.try_get(4)?,
                        delivered_at: r.try_get::<Option<i64>, _>(5)?.map(at),
                        last_error: r.try_get(6)?,
                    })
                })
                .collect()
        })
    })
    .await
}
