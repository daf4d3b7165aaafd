//! Slow-query sampling on PostgreSQL: one read of the pg_stat_statements counters of the
//! target's database (a target is a database: several targets on one server each get
//! their own statements, not every database's again; no texts), the texts of only the statements asked for, and the live long runners of
//! pg_stat_activity with their literals redacted. Every statement runs under the engine's
//! `statement_timeout` (a connection startup option).

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use super::PostgresEngine;
use super::probe::quote_ident;
use crate::engine::RunScope;
use crate::engine::redact::{Dialect, redact_literals, shorten};
use crate::sample::{Counters, Epoch, LongRunner, Reading, SampleError, Snapshot, StatementKey};

/// Where the extension lives and what its views have.
const EXTENSION: &str = "/* dbwarden */ SELECT n.nspname::text AS schema, e.extversion::text AS version, \
     pg_postmaster_start_time() AS started, now() AS now \
     FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
     WHERE e.extname = 'pg_stat_statements'";

fn fix(db: &str) -> String {
    format!(
        "pg_stat_statements is not available in database {db}: add pg_stat_statements to \
         shared_preload_libraries in postgresql.conf, restart the server, then run \
         CREATE EXTENSION pg_stat_statements; in that database as a superuser"
    )
}

/// Parses "1.10" into (1, 10).
fn ext_version(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The counters query for an extension version (its columns changed with releases).
fn counters_sql(schema: &str, version: (u32, u32)) -> String {
    // 1.9 (PostgreSQL 14) added toplevel; 1.11 (17) added stats_since.
    let toplevel = if version >= (1, 9) {
        "toplevel"
    } else {
        "true"
    };
    let since = if version >= (1, 11) {
        "stats_since"
    } else {
        "NULL::timestamptz"
    };
    format!(
        "/* dbwarden */ SELECT queryid::text AS queryid, \
         userid::int8::text || '/' || dbid::int8::text || '/' || CASE WHEN {toplevel} THEN 't' ELSE 'n' END AS scope, \
         calls, total_exec_time, max_exec_time, rows, shared_blks_hit, shared_blks_read, \
         temp_blks_read, temp_blks_written, total_plan_time, {since} AS since \
         FROM {schema}pg_stat_statements(false) WHERE queryid IS NOT NULL \
         AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
}

/// Whether a server error says the library is not preloaded (SQLSTATE 55000 from the view).
fn not_preloaded(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().as_deref() == Some("55000") && d.message().contains("shared_preload_libraries")
    })
}

impl PostgresEngine {
    /// Reads every statement's counters (one query, no texts), the reset facts, and the
    /// statements running longer than `long_running` seconds.
    pub async fn sample_statements(
        &self,
        long_running: f64,
        query_text_length: usize,
        scope: &RunScope,
    ) -> Result<Reading, SampleError> {
        let mut lease = self
            .connection()
            .await
            .map_err(|e| SampleError::Failed(e.message()))?;
        let (pid, started) = super::conn::identify(&mut lease)
            .await
            .map_err(|e| SampleError::Failed(e.to_string()))?;
        self.enter(&mut lease, pid, started, scope);
        let result = async {
            let db = self
                .options
                .get_database()
                .unwrap_or("(default)")
                .to_string();
            let failed = |e: sqlx::Error| SampleError::Failed(e.to_string());
            let Some(ext) = sqlx::query(EXTENSION)
                .fetch_optional(&mut *lease)
                .await
                .map_err(failed)?
            else {
                return Err(SampleError::Unavailable(fix(&db)));
            };
            let schema = format!("{}.", quote_ident(&ext.try_get::<String, _>("schema").map_err(failed)?));
            let version = ext_version(&ext.try_get::<String, _>("version").map_err(failed)?);
            let taken_at: DateTime<Utc> = ext.try_get("now").map_err(failed)?;
            let server_start: DateTime<Utc> = ext.try_get("started").map_err(failed)?;
            let rows = sqlx::query(AssertSqlSafe(counters_sql(&schema, version)))
                .fetch_all(&mut *lease)
                .await
                .map_err(|e| {
                    if not_preloaded(&e) {
                        SampleError::Unavailable(fix(&db))
                    } else {
                        failed(e)
                    }
                })?;
            let mut snapshot = Snapshot {
                taken_at,
                epoch: Epoch {
                    server_start: Some(server_start),
                    ..Epoch::default()
                },
                entries: Default::default(),
            };
            snapshot.entries.reserve(rows.len());
            for r in rows {
                let key = StatementKey {
                    id: r.try_get("queryid").map_err(failed)?,
                    scope: r.try_get("scope").map_err(failed)?,
                };
                let c = Counters {
                    calls: r.try_get("calls").map_err(failed)?,
                    total_ms: r.try_get("total_exec_time").map_err(failed)?,
                    max_ms: r.try_get("max_exec_time").map_err(failed)?,
                    rows: r.try_get("rows").map_err(failed)?,
                    shared_hit: r.try_get("shared_blks_hit").map_err(failed)?,
                    shared_read: r.try_get("shared_blks_read").map_err(failed)?,
                    temp_read: r.try_get("temp_blks_read").map_err(failed)?,
                    temp_written: r.try_get("temp_blks_written").map_err(failed)?,
                    plan_ms: r.try_get("total_plan_time").map_err(failed)?,
                    since: r.try_get("since").map_err(failed)?,
                    ..Counters::default()
                };
                snapshot.entries.insert(key, c);
            }
            if version >= (1, 9) {
                let info = sqlx::query(AssertSqlSafe(format!(
                    "/* dbwarden */ SELECT dealloc, stats_reset FROM {schema}pg_stat_statements_info"
                )))
                .fetch_one(&mut *lease)
                .await
                .map_err(failed)?;
                snapshot.epoch.dealloc = info.try_get("dealloc").map_err(failed)?;
                snapshot.epoch.stats_reset = info.try_get("stats_reset").map_err(failed)?;
            }
            let long_runners = sqlx::query(
                "/* dbwarden */ SELECT pid::int8 AS pid, usename::text AS usename, application_name, state, \
                 wait_event_type || ':' || wait_event AS wait, \
                 extract(epoch FROM now() - query_start)::float8 AS seconds, query \
                 FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND state IS DISTINCT FROM 'idle' \
                   AND pid <> pg_backend_pid() AND query_start < now() - make_interval(secs => $1) \
                 ORDER BY query_start",
            )
            .bind(long_running)
            .fetch_all(&mut *lease)
            .await
            .map_err(failed)?
            .into_iter()
            .map(|r| {
                let q: Option<String> = r.try_get("query").ok().flatten();
                LongRunner {
                    pid: r.try_get("pid").unwrap_or(0),
                    user: r.try_get("usename").ok().flatten(),
                    application: r.try_get("application_name").ok().flatten(),
                    state: r.try_get("state").ok().flatten(),
                    wait_event: r.try_get("wait").ok().flatten(),
                    seconds: r.try_get("seconds").unwrap_or(0.0),
                    query: q
                        .map(|q| shorten(&redact_literals(&q, Dialect::Postgres), query_text_length))
                        .unwrap_or_else(|| "<not visible to the monitoring user>".into()),
                }
            })
            .collect();
            Ok(Reading {
                snapshot,
                long_runners,
                texts_from: schema,
            })
        }
        .await;
        lease.release().await;
        result
    }

    /// The normalised texts of the given queryids (texts can be large: only those asked
    /// for are returned), trimmed to `max` characters. `schema`: [`Reading::texts_from`].
    pub async fn statement_texts(
        &self,
        schema: &str,
        queryids: &[String],
        max: usize,
        scope: &RunScope,
    ) -> Result<Vec<(String, String)>, SampleError> {
        if queryids.is_empty() {
            return Ok(Vec::new());
        }
        let mut lease = self
            .connection()
            .await
            .map_err(|e| SampleError::Failed(e.message()))?;
        let (pid, started) = super::conn::identify(&mut lease)
            .await
            .map_err(|e| SampleError::Failed(e.to_string()))?;
        self.enter(&mut lease, pid, started, scope);
        let result = sqlx::query(AssertSqlSafe(format!(
            "/* dbwarden */ SELECT DISTINCT ON (queryid) queryid::text AS queryid, query \
             FROM {schema}pg_stat_statements(true) WHERE queryid::text = ANY($1) AND query IS NOT NULL \
             AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )))
        .bind(queryids)
        .fetch_all(&mut *lease)
        .await;
        lease.release().await;
        let rows = result.map_err(|e| SampleError::Failed(e.to_string()))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let id: String = r.try_get("queryid").ok()?;
                let q: String = r.try_get("query").ok()?;
                Some((id, shorten(&q, max)))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_the_extension_version() {
        let old = counters_sql("public.", ext_version("1.8"));
        assert!(old.contains("CASE WHEN true") && old.contains("NULL::timestamptz"));
        let v14 = counters_sql("public.", ext_version("1.9"));
        assert!(v14.contains("WHEN toplevel") && !v14.contains("stats_since"));
        let v17 = counters_sql("\"my schema\".", ext_version("1.11"));
        assert!(v17.contains("stats_since AS since"));
        assert!(v17.contains("FROM \"my schema\".pg_stat_statements(false)"));
        assert!(ext_version("1.10") > ext_version("1.9"));
    }
}
