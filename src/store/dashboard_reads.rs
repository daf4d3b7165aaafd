//! Reads the dashboard needs beyond the API's: a target's alert history (the outbox rows
//! of its notifications, one per channel, with their delivery state), and the agents
//! writing to the store.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::read::bounded;
use super::{Pool, Store, StoreError, from_ms};

/// One notification of a target to one channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertRow {
    pub created_at: DateTime<Utc>,
    pub channel: String,
    /// What it announced (the alerter's event kind).
    pub event: String,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: i64,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// An agent that has written series to the store (several daemons may share one).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgentRow {
    pub agent: String,
    /// Targets it has written series of.
    pub targets: i64,
    /// The newest round it wrote (a series' heartbeat); `None` if it never wrote one.
    pub last_write: Option<DateTime<Utc>>,
}

impl Store {
    /// Every agent that wrote series to the store, by name: a scan of the series
    /// dictionary (one row per target, metric and label), so callers cache it.
    pub async fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                sqlx::query(
                    "SELECT agent, COUNT(DISTINCT target), MAX(last_ts) FROM series \
                     GROUP BY agent ORDER BY agent",
                )
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| -> Result<AgentRow, sqlx::Error> {
                    Ok(AgentRow {
                        agent: r.try_get(0)?,
                        targets: r.try_get(1)?,
                        last_write: r.try_get::<Option<i64>, _>(2)?.map(from_ms),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// A target's newest notifications, newest first. The delivery error text is not
    /// returned (`dbwarden status` shows it to the operator on the host).
    pub async fn alert_history(
        &self,
        target: &str,
        limit: i64,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT created_at, channel, event, state, attempts, delivered_at \
                     FROM alert_outbox WHERE target = ",
                );
                q.push_bind(target)
                    .push(" ORDER BY created_at DESC, channel LIMIT ")
                    .push_bind(limit);
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<AlertRow, sqlx::Error> {
                        Ok(AlertRow {
                            created_at: from_ms(r.try_get(0)?),
                            channel: r.try_get(1)?,
                            event: r.try_get(2)?,
                            state: r.try_get(3)?,
                            attempts: r.try_get(4)?,
                            delivered_at: r.try_get::<Option<i64>, _>(5)?.map(from_ms),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }
}
