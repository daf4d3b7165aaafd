//! Maintenance on MySQL/MariaDB: table facts for the planner (information_schema.TABLES,
//! `mysql.innodb_table_stats`, MariaDB's `INNODB_SYS_TABLESTATS.MODIFIED_COUNTER` where
//! visible; no table locks) and a session that runs `ANALYZE TABLE` / `OPTIMIZE TABLE`
//! one table at a time under `lock_wait_timeout`, holding
//! `GET_LOCK('dbwarden-maint:<db>')` so two dbwardens never maintain one database at once.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{AssertSqlSafe, MySql};

use super::MysqlEngine;
use super::conn::{error_message, error_number, number, text};
use crate::engine::conn::Lease;
use crate::engine::{RunScope, Session as EngineSession};
use crate::maintenance::run::{After, GuardLimits, Load, Refusal, Session, StepResult};
use crate::maintenance::{Action, MysqlTableFacts, Outcome, Skip, SkipKind, Step};

/// A maintenance session: one connection in the run's scope holding the database's lock.
pub struct MysqlMaintenance {
    lease: Option<Lease<MySql>>,
    db: String,
    lock_timeout: Duration,
    /// The server's version (which replica status statement it speaks).
    version: Option<super::conn::ServerVersion>,
}

/// Load guard: other client threads running a statement (not sleeping, not replication
/// or system threads). Without PROCESS only the user's own threads are visible.
const ACTIVE_THREADS: &str = "/* dbwarden */ SELECT COUNT(*) FROM information_schema.PROCESSLIST \
    WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump', 'Binlog Dump GTID', 'Killed') \
    AND USER NOT IN ('system user', 'event_scheduler')";

/// The server-wide lock: at most one maintenance run per server.
pub const SERVER_LOCK: &str = "dbwarden-maint-server";

/// Quotes an identifier with backticks (a backtick inside is doubled).
pub fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

const TABLES: &str = "/* dbwarden */ SELECT t.TABLE_NAME, \
    COALESCE(t.DATA_LENGTH, 0) + COALESCE(t.INDEX_LENGTH, 0), COALESCE(t.DATA_FREE, 0), \
    COALESCE(t.TABLE_ROWS, 0), (UPPER(t.ENGINE) = 'INNODB' AND s.table_name IS NULL) \
    FROM information_schema.TABLES t LEFT JOIN mysql.innodb_table_stats s \
    ON s.database_name = t.TABLE_SCHEMA AND s.table_name = t.TABLE_NAME \
    WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' ORDER BY t.TABLE_NAME";

/// MariaDB; names as InnoDB stores them (`db/table`; names with characters outside
/// [A-Za-z0-9_] are encoded there and are not matched: their changed rows read as 0).
const MODIFIED: &str = "/* dbwarden */ SELECT SUBSTRING(NAME, LENGTH(DATABASE()) + 2), MODIFIED_COUNTER \
    FROM information_schema.INNODB_SYS_TABLESTATS WHERE NAME LIKE CONCAT(DATABASE(), '/%')";

impl MysqlEngine {
    /// Opens a maintenance session on the target's database, refused while another
    /// dbwarden holds `GET_LOCK('dbwarden-maint:<db>')`.
    pub async fn maintenance(
        &self,
        scope: &RunScope,
        lock_timeout: Duration,
    ) -> Result<MysqlMaintenance, Refusal> {
        let mut lease = self.conn.acquire().await.map_err(Refusal::Failed)?;
        let failed = |e: sqlx::Error| Refusal::Failed(error_message(&e));
        let row = sqlx::raw_sql("/* dbwarden */ SELECT CONNECTION_ID(), DATABASE()")
            .fetch_one(&mut *lease)
            .await
            .map_err(failed)?;
        let id = number(&row, 0).map_err(failed)?.unwrap_or(0.0) as u64;
        let Some(db) = text(&row, 1).map_err(failed)? else {
            lease.release().await;
            return Err(Refusal::Failed(
                "the target's URL names no database; write it as mysql://user@host/DATABASE".into(),
            ));
        };
        lease.enter(EngineSession { id, started: None }, scope);
        // Health probes run under max_statement_time; maintenance is bounded by the
        // window, max_duration and the job's timeout instead (KILL QUERY). MySQL has no
        // such variable (its max_execution_time limits SELECTs only).
        let _ = sqlx::raw_sql("/* dbwarden */ SET SESSION max_statement_time = 0")
            .execute(&mut *lease)
            .await;
        let secs = lock_timeout.as_secs_f64().ceil().max(1.0) as u64;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "/* dbwarden */ SET SESSION lock_wait_timeout = {secs}"
        )))
        .execute(&mut *lease)
        .await
        .map_err(failed)?;
        let got: Option<i64> = sqlx::query_scalar("/* dbwarden */ SELECT GET_LOCK(?, 0)")
            .bind(format!("dbwarden-maint:{db}"))
            .fetch_one(&mut *lease)
            .await
            .map_err(failed)?;
        if got != Some(1) {
            lease.release().await;
            return Err(Refusal::Skipped(Skip::new(
                SkipKind::Locked,
                "another dbwarden holds the lock",
            )));
        }
        // At most one maintenance run per server: several targets may be databases of it.
        // GET_LOCK names are server-wide (a session may hold several: MariaDB 10.0.2+,
        // MySQL 5.7.5+); closing the connection releases both.
        let server: Option<i64> = sqlx::query_scalar("/* dbwarden */ SELECT GET_LOCK(?, 0)")
            .bind(SERVER_LOCK)
            .fetch_one(&mut *lease)
            .await
            .map_err(failed)?;
        if server != Some(1) {
            let _ = sqlx::query("/* dbwarden */ SELECT RELEASE_LOCK(?)")
                .bind(format!("dbwarden-maint:{db}"))
                .execute(&mut *lease)
                .await;
            lease.release().await;
            return Err(Refusal::ServerBusy(
                "another maintenance run holds this server's lock (one run per server at a time)"
                    .into(),
            ));
        }
        let version = *self.conn.version.lock().unwrap_or_else(|p| p.into_inner());
        Ok(MysqlMaintenance {
            lease: Some(lease),
            db,
            lock_timeout,
            version,
        })
    }
}

impl MysqlMaintenance {
    fn conn(&mut self) -> Result<&mut Lease<MySql>, String> {
        self.lease
            .as_mut()
            .ok_or_else(|| "the maintenance session is closed".to_string())
    }

    /// The tables of the database with the numbers the planner needs.
    pub async fn tables(&mut self) -> Result<Vec<MysqlTableFacts>, String> {
        let db = self.db.clone();
        let c = self.conn()?;
        let modified: HashMap<String, f64> = match sqlx::raw_sql(MODIFIED).fetch_all(&mut **c).await
        {
            Ok(rows) => rows
                .iter()
                .filter_map(|r| Some((text(r, 0).ok().flatten()?, number(r, 1).ok().flatten()?)))
                .collect(),
            // MySQL (no such table) or no PROCESS privilege: never-analyzed tables only.
            Err(_) => HashMap::new(),
        };
        let rows = sqlx::raw_sql(TABLES)
            .fetch_all(&mut **c)
            .await
            .map_err(|e| {
                format!(
                    "reading table statistics (needs SELECT on mysql.innodb_table_stats): {}",
                    error_message(&e)
                )
            })?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let f = |i: usize| {
                number(r, i)
                    .map(|v| v.unwrap_or(0.0))
                    .map_err(|e| error_message(&e))
            };
            let name = text(r, 0)
                .map_err(|e| error_message(&e))?
                .unwrap_or_default();
            out.push(MysqlTableFacts {
                sql_name: format!("{}.{}", quote(&db), quote(&name)),
                changed_rows: modified.get(&name).copied().unwrap_or(0.0),
                size_bytes: f(1)?,
                data_free: f(2)?,
                rows: f(3)?,
                never_analyzed: f(4)? != 0.0,
                name: format!("{db}.{name}"),
            });
        }
        Ok(out)
    }

    async fn run_step(&mut self, step: &Step) -> StepResult {
        let verb = match step.action {
            Action::Analyze => "ANALYZE",
            Action::Optimize => "OPTIMIZE",
            other => {
                return StepResult {
                    outcome: Outcome::Failed(format!("{} is not a MySQL action", other.as_str())),
                    after: After::default(),
                };
            }
        };
        let lock = self.lock_timeout;
        let sql = format!("/* dbwarden */ {verb} TABLE {}", step.sql_name);
        let c = match self.conn() {
            Ok(c) => c,
            Err(e) => {
                return StepResult {
                    outcome: Outcome::Failed(e),
                    after: After::default(),
                };
            }
        };
        let lock_skip = || {
            Outcome::skipped(
                SkipKind::LockHeld,
                format!(
                    "lock not available (not granted within lock_wait_timeout {})",
                    humantime::format_duration(lock)
                ),
            )
        };
        let outcome = match sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(&mut **c).await {
            // The statement reports per table: rows of (Table, Op, Msg_type, Msg_text).
            Ok(rows) => {
                let errors: Vec<String> = rows
                    .iter()
                    .filter(|r| {
                        text(r, 2)
                            .ok()
                            .flatten()
                            .is_some_and(|t| t.eq_ignore_ascii_case("error"))
                    })
                    .filter_map(|r| text(r, 3).ok().flatten())
                    .collect();
                if errors.is_empty() {
                    Outcome::Done
                } else if errors.iter().any(|e| e.contains("Lock wait timeout")) {
                    lock_skip()
                } else {
                    Outcome::Failed(errors.join("; "))
                }
            }
            Err(e) if error_number(&e) == Some(1205) => lock_skip(),
            Err(e) => Outcome::Failed(error_message(&e)),
        };
        let after = if outcome == Outcome::Done {
            self.after(step).await
        } else {
            After::default()
        };
        StepResult { outcome, after }
    }

    /// The table's data_free (in the dead-rows column, as planned) and data + index size
    /// right after a step (`None` when they cannot be read).
    async fn after(&mut self, step: &Step) -> After {
        let prefix = format!("{}.", self.db);
        let Some(name) = step.table.strip_prefix(&prefix).map(str::to_string) else {
            return After::default();
        };
        let Ok(c) = self.conn() else {
            return After::default();
        };
        let row = sqlx::query(
            "/* dbwarden */ SELECT COALESCE(DATA_FREE, 0), COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
        )
        .bind(name)
        .fetch_optional(&mut **c)
        .await;
        match row {
            Ok(Some(r)) => After {
                dead_rows: number(&r, 0).ok().flatten(),
                freeze_age: None,
                size_bytes: number(&r, 1).ok().flatten(),
                size_before: None,
            },
            _ => After::default(),
        }
    }

    /// The load guard's readings: other active threads, and on a replica its own lag
    /// (Seconds_Behind_Source/Master beyond the channel's intended SQL_Delay, the worst
    /// channel; a channel whose threads are stopped has no lag to read).
    async fn read_load(&mut self, limits: &GuardLimits) -> Result<Load, String> {
        let version = self.version;
        let c = self.conn()?;
        let mut load = Load::default();
        if limits.max_active_sessions.is_some() {
            let row = sqlx::raw_sql(ACTIVE_THREADS)
                .fetch_one(&mut **c)
                .await
                .map_err(|e| format!("counting active threads: {}", error_message(&e)))?;
            let n = number(&row, 0).map_err(|e| error_message(&e))?;
            load.active_sessions = Some(n.unwrap_or(0.0).max(0.0) as u64);
        }
        if limits.max_replication_lag.is_some() {
            let Some(v) = version else {
                return Err("the server's version is not known: replica status not read".into());
            };
            let channels = super::queries::replicas(c, v).await.map_err(|e| {
                format!(
                    "reading replica status (needs {}): {}",
                    super::checks::replica_privilege(v),
                    error_message(&e)
                )
            })?;
            load.replication_lag = channels
                .iter()
                .filter_map(|ch| {
                    let lag = ch.lag? - ch.sql_delay.unwrap_or(0.0);
                    Some((lag.max(0.0), ch.label()))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
        }
        Ok(load)
    }

    /// Releases the lock and the connection.
    pub async fn close(mut self) {
        if let Some(mut lease) = self.lease.take() {
            let _ = sqlx::query("/* dbwarden */ SELECT RELEASE_LOCK(?), RELEASE_LOCK(?)")
                .bind(format!("dbwarden-maint:{}", self.db))
                .bind(SERVER_LOCK)
                .execute(&mut *lease)
                .await;
            lease.release().await;
        }
    }
}

impl Session for MysqlMaintenance {
    type Facts = Vec<MysqlTableFacts>;

    async fn facts(&mut self) -> Result<Vec<MysqlTableFacts>, Refusal> {
        self.tables().await.map_err(Refusal::Failed)
    }

    fn load(
        &mut self,
        limits: &GuardLimits,
    ) -> impl std::future::Future<Output = Result<Load, String>> + Send {
        self.read_load(limits)
    }

    fn execute(&mut self, step: &Step) -> impl std::future::Future<Output = StepResult> + Send {
        self.run_step(step)
    }

    fn finish(self) -> impl std::future::Future<Output = ()> + Send {
        self.close()
    }
}
