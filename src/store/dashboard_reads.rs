//! Reads the dashboard needs beyond the API's: a target's alert history (the outbox rows
//! of its notifications, one per channel, with their delivery state).

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

impl Store {
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
