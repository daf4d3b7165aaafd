//! Slow-query sampling on MySQL/MariaDB: `performance_schema.events_statements_summary_by_digest`
//! read in one query (without the digest texts; the digests of the target's database, as
//! the sessions' default database, or every digest when the target names no database), the texts of only the digests asked
//! for, and the processlist's long runners with their literals redacted. Every statement
//! runs under the engine's session statement limit.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::mysql::MySqlConnection;

use super::MysqlEngine;
use super::conn::{error_message, number, text};
use crate::engine::RunScope;
use crate::engine::Session;
use crate::engine::redact::{Dialect, redact_literals, shorten};
use crate::sample::{Counters, Epoch, LongRunner, Reading, SampleError, Snapshot, StatementKey};

const COUNTERS: &str = "/* dbwarden */ SELECT DIGEST, COALESCE(SCHEMA_NAME, ''), COUNT_STAR, \
     SUM_TIMER_WAIT, MAX_TIMER_WAIT, SUM_ROWS_SENT, SUM_ROWS_EXAMINED, SUM_NO_INDEX_USED, \
     UNIX_TIMESTAMP(FIRST_SEEN) \
     FROM performance_schema.events_statements_summary_by_digest WHERE DIGEST IS NOT NULL \
     AND (DATABASE() IS NULL OR SCHEMA_NAME = DATABASE())";

/// Timer columns are in picoseconds.
const PS_PER_MS: f64 = 1e9;

fn fix(place: &str) -> String {
    format!(
        "performance_schema is OFF on {place}: set performance_schema=ON in the [mysqld] \
         section of the server's configuration and restart the server (MariaDB has it off \
         by default)"
    )
}

fn time(secs: f64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros((secs * 1e6).round() as i64)
}

/// Whether `d` is a digest as performance_schema writes it (hex), so it can be quoted
/// into the text protocol's SQL as it is.
fn is_digest(d: &str) -> bool {
    !d.is_empty() && d.len() <= 64 && d.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn rows(
    c: &mut MySqlConnection,
    sql: &str,
) -> Result<Vec<sqlx::mysql::MySqlRow>, SampleError> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .fetch_all(c)
        .await
        .map_err(|e| SampleError::Failed(error_message(&e)))
}

fn num(r: &sqlx::mysql::MySqlRow, i: usize) -> Result<f64, SampleError> {
    number(r, i)
        .map(|v| v.unwrap_or(0.0))
        .map_err(|e| SampleError::Failed(error_message(&e)))
}

fn txt(r: &sqlx::mysql::MySqlRow, i: usize) -> Option<String> {
    text(r, i).ok().flatten()
}

impl MysqlEngine {
    /// Reads every digest's counters (one query, no texts), the server's start time, and
    /// the statements running for at least `long_running` seconds.
    pub async fn sample_statements(
        &self,
        long_running: f64,
        query_text_length: usize,
        scope: &RunScope,
    ) -> Result<Reading, SampleError> {
        let mut conn = self.conn.acquire().await.map_err(SampleError::Failed)?;
        let result = async {
            let head = rows(
                &mut conn,
                "/* dbwarden */ SELECT @@performance_schema, UNIX_TIMESTAMP(NOW(6)), CONNECTION_ID()",
            )
            .await?;
            let head = head
                .first()
                .ok_or_else(|| SampleError::Failed("no answer to the first query".into()))?;
            let id = num(head, 2)? as u64;
            conn.enter(Session { id, started: None }, scope);
            if num(head, 0)? == 0.0 {
                return Err(SampleError::Unavailable(fix(&self.conn.place)));
            }
            let now = num(head, 1)?;
            let uptime = rows(&mut conn, "/* dbwarden */ SHOW GLOBAL STATUS LIKE 'Uptime'").await?;
            let uptime = uptime.first().map(|r| num(r, 1)).transpose()?.unwrap_or(0.0);
            let mut snapshot = Snapshot {
                taken_at: time(now).unwrap_or_else(Utc::now),
                epoch: Epoch {
                    server_start: time((now - uptime).round()),
                    ..Epoch::default()
                },
                entries: Default::default(),
            };
            for r in rows(&mut conn, COUNTERS).await? {
                let Some(digest) = txt(&r, 0) else { continue };
                let key = StatementKey {
                    id: digest,
                    scope: txt(&r, 1).unwrap_or_default(),
                };
                let c = Counters {
                    calls: num(&r, 2)? as i64,
                    total_ms: num(&r, 3)? / PS_PER_MS,
                    max_ms: num(&r, 4)? / PS_PER_MS,
                    rows: num(&r, 5)? as i64,
                    rows_examined: num(&r, 6)? as i64,
                    no_index_used: num(&r, 7)? as i64,
                    since: number(&r, 8).ok().flatten().and_then(time),
                    ..Counters::default()
                };
                snapshot.entries.insert(key, c);
            }
            let secs = long_running.max(0.0).floor() as u64;
            let long_runners = rows(
                &mut conn,
                &format!(
                    "/* dbwarden */ SELECT ID, USER, COMMAND, TIME, STATE, INFO \
                     FROM information_schema.PROCESSLIST \
                     WHERE COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump') AND TIME >= {secs} \
                       AND ID <> CONNECTION_ID() AND INFO IS NOT NULL ORDER BY TIME DESC"
                ),
            )
            .await?
            .iter()
            .map(|r| LongRunner {
                pid: number(r, 0).ok().flatten().unwrap_or(0.0) as i64,
                user: txt(r, 1),
                application: None,
                state: txt(r, 2),
                wait_event: txt(r, 4).filter(|s| !s.is_empty()),
                seconds: number(r, 3).ok().flatten().unwrap_or(0.0),
                query: txt(r, 5)
                    .map(|q| shorten(&redact_literals(&q, Dialect::Mysql), query_text_length))
                    .unwrap_or_default(),
            })
            .collect();
            Ok(Reading {
                snapshot,
                long_runners,
                texts_from: String::new(),
            })
        }
        .await;
        conn.release().await;
        result
    }

    /// The normalised texts (`DIGEST_TEXT`) of the given digests, trimmed to `max`.
    pub async fn statement_texts(
        &self,
        digests: &[String],
        max: usize,
        scope: &RunScope,
    ) -> Result<Vec<(String, String)>, SampleError> {
        let list: Vec<String> = digests
            .iter()
            .filter(|d| is_digest(d))
            .map(|d| format!("'{d}'"))
            .collect();
        if list.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.acquire().await.map_err(SampleError::Failed)?;
        let result = async {
            let id = rows(&mut conn, "/* dbwarden */ SELECT CONNECTION_ID()").await?;
            if let Some(r) = id.first() {
                conn.enter(
                    Session {
                        id: num(r, 0)? as u64,
                        started: None,
                    },
                    scope,
                );
            }
            rows(
                &mut conn,
                &format!(
                    "/* dbwarden */ SELECT DIGEST, MIN(DIGEST_TEXT) \
                     FROM performance_schema.events_statements_summary_by_digest \
                     WHERE DIGEST IN ({}) AND DIGEST_TEXT IS NOT NULL GROUP BY DIGEST",
                    list.join(", ")
                ),
            )
            .await
        }
        .await;
        conn.release().await;
        Ok(result?
            .iter()
            .filter_map(|r| Some((txt(r, 0)?, shorten(&txt(r, 1)?, max))))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_digests_are_quoted_into_sql() {
        assert!(is_digest("0a1b2c3d4e5f"));
        assert!(!is_digest("x' OR '1'='1"));
        assert!(!is_digest(""));
    }
}
