//! The HTTP API's own rows: the audit trail of mutating calls (`api_audit`, migration
//! 0009), written directly like the outbox (bounded; `Unavailable` while the store is down,
//! when the log line is the only record).

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::read::bounded;
use super::{Pool, Store, StoreError, from_ms, ms};

/// One mutating API call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRow {
    pub ts: DateTime<Utc>,
    pub agent: String,
    /// The client's address (`ip:port`).
    pub client: String,
    pub method: String,
    pub path: String,
    pub target: Option<String>,
    /// The HTTP status answered.
    pub status: i64,
    /// `ok`, or the error code answered (`unauthorized`, `conflict`, ...).
    pub outcome: String,
    pub run_id: Option<String>,
}

impl Store {
    /// Records one mutating API call.
    pub async fn audit_insert(&self, a: &AuditRow) -> Result<(), StoreError> {
        let pool = self.write_pool()?;
        bounded(async {
            on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "INSERT INTO api_audit (ts, agent, client, method, path, target, status, outcome, run_id) ",
                );
                q.push_values([a], |mut b, a| {
                    b.push_bind(ms(a.ts))
                        .push_bind(a.agent.as_str())
                        .push_bind(a.client.as_str())
                        .push_bind(a.method.as_str())
                        .push_bind(a.path.as_str())
                        .push_bind(a.target.as_deref())
                        .push_bind(a.status)
                        .push_bind(a.outcome.as_str())
                        .push_bind(a.run_id.as_deref());
                });
                q.build().execute(p).await?;
            });
            Ok(())
        })
        .await
    }

    /// The newest audit rows, newest first.
    pub async fn audit_recent(&self, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT ts, agent, client, method, path, target, status, outcome, run_id \
                     FROM api_audit ORDER BY ts DESC, id DESC LIMIT ",
                );
                q.push_bind(limit);
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<AuditRow, sqlx::Error> {
                        Ok(AuditRow {
                            ts: from_ms(r.try_get(0)?),
                            agent: r.try_get(1)?,
                            client: r.try_get(2)?,
                            method: r.try_get(3)?,
                            path: r.try_get(4)?,
                            target: r.try_get(5)?,
                            status: r.try_get(6)?,
                            outcome: r.try_get(7)?,
                            run_id: r.try_get(8)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }
}
