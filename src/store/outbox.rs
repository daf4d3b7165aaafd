//! The alert outbox and silences: written and read directly (not through the buffered
//! writer), because the alerter must know whether a notification is durable and the
//! delivery loop whether a claim is its own. Each call is bounded like a read and fails
//! with `Unavailable` while the store is down; the alerter then keeps going from memory.
//!
//! Claims: a row is sent only by the agent process that holds its claim (`claimed_by`,
//! a lease until `claim_until`). Claiming is one conditional UPDATE (with `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), so two agents of one store never hold the same row.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::read::bounded;
use super::{Pool, Store, StoreError, from_ms, ms};

/// One outbox row: a notification (as JSON) for one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub key: String,
    pub channel: String,
    pub agent: String,
    pub target: String,
    pub event: String,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub payload: String,
    pub attempts: i64,
    pub next_at: DateTime<Utc>,
}

/// Undelivered notifications of one channel (for `dbwarden status`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Undelivered {
    pub channel: String,
    pub count: i64,
    pub oldest: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// A silence as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SilenceRow {
    pub id: i64,
    pub target: String,
    pub created_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub created_by: String,
}

const COLUMNS: &str =
    "id_key, channel, agent, target, event, created_at, due_at, payload, attempts, next_at";

fn row_of(r: &impl RowLike) -> Result<OutboxRow, sqlx::Error> {
    r.outbox()
}

/// Decoding one outbox row from either dialect.
trait RowLike {
    fn outbox(&self) -> Result<OutboxRow, sqlx::Error>;
}

macro_rules! impl_row_like {
    ($t:ty) => {
        impl RowLike for $t {
            fn outbox(&self) -> Result<OutboxRow, sqlx::Error> {
                Ok(OutboxRow {
                    key: self.try_get(0)?,
                    channel: self.try_get(1)?,
                    agent: self.try_get(2)?,
                    target: self.try_get(3)?,
                    event: self.try_get(4)?,
                    created_at: from_ms(self.try_get(5)?),
                    due_at: from_ms(self.try_get(6)?),
                    payload: self.try_get(7)?,
                    attempts: self.try_get(8)?,
                    next_at: from_ms(self.try_get(9)?),
                })
            }
        }
    };
}
impl_row_like!(sqlx::sqlite::SqliteRow);
impl_row_like!(sqlx::postgres::PgRow);

impl Store {
    /// Writes notifications to the outbox, claimed by `claimer` until `claim_until` (the
    /// writer sends them itself). A row already there (same key and channel) is left
    /// alone: writing again after an outage is harmless.
    pub async fn outbox_insert(
        &self,
        rows: &[OutboxRow],
        claimer: &str,
        claim_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let pool = self.write_pool()?;
        bounded(async {
            on_pool!(&pool, p => {
                for chunk in rows.chunks(500) {
                    let mut q = QueryBuilder::new(format!(
                        "INSERT INTO alert_outbox ({COLUMNS}, claimed_by, claim_until) "
                    ));
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(&r.key)
                            .push_bind(&r.channel)
                            .push_bind(&r.agent)
                            .push_bind(&r.target)
                            .push_bind(&r.event)
                            .push_bind(ms(r.created_at))
                            .push_bind(ms(r.due_at))
                            .push_bind(&r.payload)
                            .push_bind(r.attempts)
                            .push_bind(ms(r.next_at))
                            .push_bind(claimer)
                            .push_bind(ms(claim_until));
                    });
                    q.push(" ON CONFLICT (id_key, channel) DO NOTHING");
                    q.build().execute(p).await?;
                }
            });
            Ok(())
        })
        .await
    }

    /// Claims up to `limit` pending rows of `channels` that nobody holds (or whose claim
    /// expired), oldest due first; returns them.
    pub async fn outbox_claim(
        &self,
        claimer: &str,
        channels: &[String],
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let pool = self.write_pool()?;
        let skip_locked = matches!(pool, Pool::Postgres(_));
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new("UPDATE alert_outbox SET claimed_by = ");
                q.push_bind(claimer)
                    .push(", claim_until = ")
                    .push_bind(ms(claim_until))
                    .push(
                        " WHERE (id_key, channel) IN (SELECT id_key, channel FROM alert_outbox \
                         WHERE state = 'pending' AND channel IN (",
                    );
                let mut sep = q.separated(", ");
                for c in channels {
                    sep.push_bind(c);
                }
                q.push(") AND (claim_until IS NULL OR claim_until < ")
                    .push_bind(ms(now))
                    .push(") ORDER BY next_at LIMIT ")
                    .push_bind(limit);
                if skip_locked {
                    q.push(" FOR UPDATE SKIP LOCKED");
                }
                q.push(format!(") RETURNING {COLUMNS}"));
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(row_of)
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// Extends the claims `claimer` holds on rows still pending.
    pub async fn outbox_renew(
        &self,
        claimer: &str,
        claim_until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let pool = self.write_pool()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new("UPDATE alert_outbox SET claim_until = ");
                q.push_bind(ms(claim_until))
                    .push(" WHERE state = 'pending' AND claimed_by = ")
                    .push_bind(claimer);
                q.build().execute(p).await?.rows_affected()
            }))
        })
        .await
    }

    /// Releases the claims of earlier processes of this agent (`claimed_by` starting with
    /// `agent:`): at start, a killed predecessor's rows are this process's to send.
    pub async fn outbox_release_agent(&self, agent: &str) -> Result<u64, StoreError> {
        let pool = self.write_pool()?;
        let prefix = format!("{agent}:");
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "UPDATE alert_outbox SET claimed_by = NULL, claim_until = NULL \
                     WHERE state = 'pending' AND agent = ",
                );
                q.push_bind(agent)
                    .push(" AND substr(claimed_by, 1, CAST(")
                    .push_bind(prefix.len() as i64)
                    .push(" AS INTEGER)) = ")
                    .push_bind(&prefix);
                q.build().execute(p).await?.rows_affected()
            }))
        })
        .await
    }

    /// Marks a row delivered (only if still pending: a cancelled row stays cancelled).
    pub async fn outbox_delivered(
        &self,
        key: &str,
        channel: &str,
        attempts: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let pool = self.write_pool()?;
        bounded(async {
            on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "UPDATE alert_outbox SET state = 'delivered', last_error = NULL, delivered_at = ",
                );
                q.push_bind(ms(at))
                    .push(", attempts = ")
                    .push_bind(attempts)
                    .push(" WHERE id_key = ")
                    .push_bind(key)
                    .push(" AND channel = ")
                    .push_bind(channel);
                q.build().execute(p).await?;
            });
            Ok(())
        })
        .await
    }

    /// Records a failed attempt and when the next one is due.
    pub async fn outbox_failed(
        &self,
        key: &str,
        channel: &str,
        attempts: i64,
        error: &str,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let pool = self.write_pool()?;
        bounded(async {
            on_pool!(&pool, p => {
                let mut q = QueryBuilder::new("UPDATE alert_outbox SET attempts = ");
                q.push_bind(attempts)
                    .push(", last_error = ")
                    .push_bind(error)
                    .push(", next_at = ")
                    .push_bind(ms(next_at))
                    .push(" WHERE state = 'pending' AND id_key = ")
                    .push_bind(key)
                    .push(" AND channel = ")
                    .push_bind(channel);
                q.build().execute(p).await?;
            });
            Ok(())
        })
        .await
    }

    /// Cancels every pending row of a notification (a later change made it moot).
    pub async fn outbox_cancel(&self, key: &str) -> Result<(), StoreError> {
        let pool = self.write_pool()?;
        bounded(async {
            on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "UPDATE alert_outbox SET state = 'cancelled' WHERE state = 'pending' AND id_key = ",
                );
                q.push_bind(key);
                q.build().execute(p).await?;
            });
            Ok(())
        })
        .await
    }

    /// Deletes up to `limit` rows delivered (or cancelled) before `before`; returns how
    /// many. Pending rows are never deleted. Bounded, so a large backlog is pruned in
    /// steps that do not hold the table for long.
    pub async fn outbox_prune(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let pool = self.write_pool()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "DELETE FROM alert_outbox WHERE (id_key, channel) IN (\
                     SELECT id_key, channel FROM alert_outbox \
                     WHERE state IN ('delivered', 'cancelled') AND COALESCE(delivered_at, created_at) < ",
                );
                q.push_bind(ms(before)).push(" LIMIT ").push_bind(limit).push(")");
                q.build().execute(p).await?.rows_affected()
            }))
        })
        .await
    }

    /// Pending rows per channel, with the oldest and the latest error.
    pub async fn outbox_undelivered(&self) -> Result<Vec<Undelivered>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                sqlx::query(
                    "SELECT channel, COUNT(*), MIN(created_at), MAX(last_error) FROM alert_outbox \
                     WHERE state = 'pending' GROUP BY channel ORDER BY channel",
                )
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| -> Result<Undelivered, sqlx::Error> {
                    Ok(Undelivered {
                        channel: r.try_get(0)?,
                        count: r.try_get(1)?,
                        oldest: from_ms(r.try_get(2)?),
                        last_error: r.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// Adds a silence; returns its id.
    pub async fn silence_add(
        &self,
        target: &str,
        ends_at: DateTime<Utc>,
        reason: &str,
        created_by: &str,
    ) -> Result<i64, StoreError> {
        let pool = self.write_pool()?;
        let now = ms(Utc::now());
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "INSERT INTO alert_silences (target, created_at, ends_at, reason, created_by) VALUES (",
                );
                q.push_bind(target)
                    .push(", ")
                    .push_bind(now)
                    .push(", ")
                    .push_bind(ms(ends_at))
                    .push(", ")
                    .push_bind(reason)
                    .push(", ")
                    .push_bind(created_by)
                    .push(") RETURNING id");
                q.build().fetch_one(p).await?.try_get::<i64, _>(0)?
            }))
        })
        .await
    }

    /// Silences still in force at `at` (not ended, not removed), soonest end first.
    pub async fn silences_active(&self, at: DateTime<Utc>) -> Result<Vec<SilenceRow>, StoreError> {
        let pool = self.reader()?;
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new(
                    "SELECT id, target, created_at, ends_at, reason, created_by FROM alert_silences \
                     WHERE removed_at IS NULL AND ends_at > ",
                );
                q.push_bind(ms(at)).push(" ORDER BY ends_at, id");
                q.build()
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| -> Result<SilenceRow, sqlx::Error> {
                        Ok(SilenceRow {
                            id: r.try_get(0)?,
                            target: r.try_get(1)?,
                            created_at: from_ms(r.try_get(2)?),
                            ends_at: from_ms(r.try_get(3)?),
                            reason: r.try_get(4)?,
                            created_by: r.try_get(5)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }))
        })
        .await
    }

    /// Ends a silence now; false when no active silence has that id.
    pub async fn silence_remove(&self, id: i64) -> Result<bool, StoreError> {
        let pool = self.write_pool()?;
        let now = ms(Utc::now());
        bounded(async {
            Ok(on_pool!(&pool, p => {
                let mut q = QueryBuilder::new("UPDATE alert_silences SET removed_at = ");
                q.push_bind(now)
                    .push(" WHERE removed_at IS NULL AND ends_at > ")
                    .push_bind(now)
                    .push(" AND id = ")
                    .push_bind(id);
                q.build().execute(p).await?.rows_affected() > 0
            }))
        })
        .await
    }
}
