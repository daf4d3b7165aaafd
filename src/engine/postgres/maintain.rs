//! Maintenance on PostgreSQL: statistics for the planner (no relation locks), the horizon
//! holder, and a session that runs `ANALYZE` / `VACUUM (ANALYZE)` / `VACUUM (FREEZE,
//! ANALYZE)` one table at a time under `lock_timeout` and a cost delay, holding the
//! database's maintenance advisory lock.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Postgres, Row};

use super::decode::decode_table;
use super::{PostgresEngine, conn, sql};
use crate::engine::RunScope;
use crate::engine::conn::Lease;
use crate::maintenance::run::{After, GuardLimits, Load, Refusal, Session, StepResult};
use crate::maintenance::{Action, HorizonHolder, Outcome, Skip, SkipKind, Step, TableFacts};

/// How a maintenance session is set up.
#[derive(Debug, Clone)]
pub struct MaintenanceSettings {
    /// A table whose lock is not granted within this is skipped.
    pub lock_timeout: Duration,
    /// `vacuum_cost_delay` of our VACUUMs, so they yield I/O to the application.
    pub cost_delay: Duration,
}

/// What the planner needs from this database.
#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    pub tables: Vec<TableFacts>,
    pub horizon: Option<HorizonHolder>,
    pub freeze_max_age: f64,
}

/// A maintenance session: one connection in the run's scope holding the advisory lock.
pub struct PgMaintenance {
    lease: Option<Lease<Postgres>>,
    /// The connection to database `postgres` holding the server-wide lock.
    server_lock: Option<sqlx::PgConnection>,
    pid: i32,
    lock_timeout: Duration,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl PostgresEngine {
    /// Opens a maintenance session: a connection registered in `scope`, refused on a hot
    /// standby or while another dbwarden holds this database's maintenance lock.
    pub async fn maintenance(
        &self,
        scope: &RunScope,
        settings: &MaintenanceSettings,
    ) -> Result<PgMaintenance, Refusal> {
        let mut lease = self
            .connection()
            .await
            .map_err(|e| Refusal::Failed(e.message()))?;
        let failed = |e: sqlx::Error| Refusal::Failed(format!("{}: {e}", self.endpoint));
        let (pid, started) = conn::identify(&mut lease).await.map_err(failed)?;
        self.enter(&mut lease, pid, started, scope);
        let in_recovery: bool = sqlx::query_scalar("/* dbwarden */ SELECT pg_is_in_recovery()")
            .fetch_one(&mut *lease)
            .await
            .map_err(failed)?;
        if in_recovery {
            lease.release().await;
            return Err(Refusal::Skipped(Skip::new(
                SkipKind::Standby,
                "the server is a hot standby (pg_is_in_recovery()): maintenance runs on the primary",
            )));
        }
        sqlx::query(sql::MAINTENANCE_SESSION)
            .bind(ms(settings.lock_timeout))
            .bind(ms(settings.cost_delay))
            .execute(&mut *lease)
            .await
            .map_err(failed)?;
        let locked: bool = sqlx::query_scalar(sql::MAINTENANCE_LOCK)
            .fetch_one(&mut *lease)
            .await
            .map_err(failed)?;
        if !locked {
            lease.release().await;
            return Err(Refusal::Skipped(Skip::new(
                SkipKind::Locked,
                "another dbwarden holds the lock",
            )));
        }
        let server_lock = match self.server_lock().await {
            Ok(c) => c,
            Err(r) => {
                let _ = sqlx::query(sql::MAINTENANCE_UNLOCK)
                    .execute(&mut *lease)
                    .await;
                lease.release().await;
                return Err(r);
            }
        };
        Ok(PgMaintenance {
            lease: Some(lease),
            server_lock: Some(server_lock),
            pid,
            lock_timeout: settings.lock_timeout,
        })
    }
}

impl PostgresEngine {
    /// At most one maintenance run per server (several targets may be databases of it):
    /// a second connection, to database `postgres`, holding the server-wide advisory lock
    /// for the run (advisory locks are per database, so every dbwarden takes it there).
    async fn server_lock(&self) -> Result<sqlx::PgConnection, Refusal> {
        let db = sql::MAINTENANCE_SERVER_LOCK_DB;
        let opts = self
            .connect_options()
            .map_err(Refusal::Failed)?
            .database(db);
        let mut c = crate::engine::conn::connect_direct::<Postgres>(&opts, self.connect_timeout)
            .await
            .map_err(|_| {
                Refusal::Failed(format!(
                    "{}: cannot connect to database \"{db}\" to take the server-wide maintenance lock (one run per server); let the maintenance role connect to it (GRANT CONNECT ON DATABASE {db})",
                    self.endpoint
                ))
            })?;
        let got: Result<bool, sqlx::Error> = sqlx::query_scalar(sql::MAINTENANCE_SERVER_LOCK)
            .fetch_one(&mut c)
            .await;
        match got {
            Ok(true) => Ok(c),
            Ok(false) => {
                let _ = sqlx::Connection::close(c).await;
                Err(Refusal::ServerBusy(
                    "another maintenance run holds this server's lock (one run per server at a time)"
                        .into(),
                ))
            }
            Err(e) => {
                let _ = sqlx::Connection::close(c).await;
                Err(Refusal::Failed(format!(
                    "{}: taking the server-wide maintenance lock: {e}",
                    self.endpoint
                )))
            }
        }
    }
}

impl PgMaintenance {
    fn conn(&mut self) -> Result<&mut Lease<Postgres>, String> {
        self.lease
            .as_mut()
            .ok_or_else(|| "the maintenance session is closed".to_string())
    }

    /// The backend running this session's statements (progress, tests).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Fresh statistics for the planner, read without relation locks, and the oldest
    /// holder of the xmin horizon.
    pub async fn plan_input(&mut self) -> Result<PlanInput, String> {
        let c = self.conn()?;
        let s = sqlx::query(sql::MAINTENANCE_SETTINGS)
            .fetch_one(&mut **c)
            .await
            .map_err(|e| format!("reading autovacuum settings: {e}"))?;
        let get = |k: &str| s.try_get::<f64, _>(k).map_err(|e| e.to_string());
        let (vt, vs, at, asc) = (
            get("vacuum_threshold")?,
            get("vacuum_scale")?,
            get("analyze_threshold")?,
            get("analyze_scale")?,
        );
        let freeze_max_age = get("freeze_max_age")?;
        let rows = sqlx::query(sql::MAINTENANCE_TABLES)
            .fetch_all(&mut **c)
            .await
            .map_err(|e| format!("reading table statistics: {e}"))?;
        let mut tables = Vec::with_capacity(rows.len());
        for r in &rows {
            let t = decode_table(r, 0.0).map_err(|e| e.to_string())?;
            let display: String = r.try_get("display").map_err(|e| e.to_string())?;
            let freeze_age: Option<f64> = r.try_get("freeze_age").map_err(|e| e.to_string())?;
            tables.push(TableFacts {
                name: display,
                sql_name: t.name.clone(),
                size_bytes: t.size,
                live_rows: t.live,
                dead_rows: t.dead,
                vacuum_trigger: t.vacuum_trigger(vt, vs),
                changed_since_analyze: t.mod_since_analyze,
                analyze_trigger: t.analyze_trigger(at, asc),
                freeze_age,
            });
        }
        let horizon = sqlx::query_as::<_, (String, Option<f64>)>(sql::HORIZON_HOLDER)
            .fetch_optional(&mut **c)
            .await
            .map_err(|e| format!("reading the xmin horizon: {e}"))?
            .map(|(who, held_secs)| HorizonHolder { who, held_secs });
        Ok(PlanInput {
            tables,
            horizon,
            freeze_max_age,
        })
    }

    /// Releases the advisory lock and gives the connection back.
    pub async fn close(mut self) {
        if let Some(mut lease) = self.lease.take() {
            let _ = sqlx::query(sql::MAINTENANCE_UNLOCK)
                .execute(&mut *lease)
                .await;
            lease.release().await;
        }
        // Closing the connection releases the server-wide lock.
        if let Some(c) = self.server_lock.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), sqlx::Connection::close(c)).await;
        }
    }

    async fn after(&mut self, sql_name: &str) -> After {
        let Ok(c) = self.conn() else {
            return After::default();
        };
        match sqlx::query_as::<_, (Option<f64>, Option<f64>, Option<f64>)>(sql::MAINTENANCE_AFTER)
            .bind(sql_name)
            .fetch_optional(&mut **c)
            .await
        {
            Ok(Some((dead, freeze, size))) => After {
                dead_rows: dead,
                freeze_age: freeze,
                size_bytes: size,
                size_before: None,
            },
            _ => After::default(),
        }
    }

    async fn run_step(&mut self, step: &Step) -> StepResult {
        // sql_name is format('%I.%I') from the server: quoted by PostgreSQL's own rules.
        let stmt = match step.action {
            Action::Analyze => format!("/* dbwarden */ ANALYZE {}", step.sql_name),
            Action::VacuumAnalyze => format!("/* dbwarden */ VACUUM (ANALYZE) {}", step.sql_name),
            Action::VacuumFreeze => {
                format!("/* dbwarden */ VACUUM (FREEZE, ANALYZE) {}", step.sql_name)
            }
            Action::VacuumFull => {
                format!("/* dbwarden */ VACUUM (FULL, ANALYZE) {}", step.sql_name)
            }
            other => {
                return StepResult {
                    outcome: Outcome::Failed(format!(
                        "{} is not a PostgreSQL action",
                        other.as_str()
                    )),
                    after: After::default(),
                };
            }
        };
        let lock_timeout = self.lock_timeout;
        let pid = self.pid;
        let (Some(c), watch) = (self.lease.as_mut(), self.server_lock.as_mut()) else {
            return StepResult {
                outcome: Outcome::Failed("the maintenance session is closed".into()),
                after: After::default(),
            };
        };
        // VACUUM FULL's point is the size: measure it, not the plan's relpages estimate.
        let full = step.action == Action::VacuumFull;
        let mut size_before = None;
        if full {
            match table_size(c, &step.sql_name).await {
                Ok(s) => size_before = s,
                Err(e) if conn::lock_timeout(&e) => {
                    return StepResult {
                        outcome: Outcome::skipped(
                            SkipKind::LockHeld,
                            format!(
                                "lock not available within lock_timeout {}",
                                humantime::format_duration(lock_timeout)
                            ),
                        ),
                        after: After::default(),
                    };
                }
                Err(_) => {}
            }
        }
        let run = sqlx::raw_sql(AssertSqlSafe(stmt)).execute(&mut **c);
        // VACUUM FULL holds ACCESS EXCLUSIVE for the whole rewrite: lock_timeout only
        // bounds our wait for it, so a watcher bounds the application's wait behind it.
        // Set by the watcher before it cancels (the statement's error may arrive first).
        let kept_waiting = std::sync::atomic::AtomicUsize::new(0);
        let r = match (step.action, watch) {
            (Action::VacuumFull, Some(w)) => {
                let watcher = watch_blocking(w, pid, lock_timeout, &kept_waiting);
                tokio::pin!(run);
                tokio::pin!(watcher);
                tokio::select! {
                    r = &mut run => r,
                    () = &mut watcher => run.await,
                }
            }
            _ => run.await,
        };
        let blocked = match kept_waiting.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        };
        let outcome = match r {
            Ok(_) => Outcome::Done,
            Err(_) if blocked.is_some() => Outcome::Interrupted(format!(
                "VACUUM FULL cancelled: it kept {} application session(s) waiting for longer than lock_timeout {}",
                blocked.unwrap_or_default(),
                humantime::format_duration(lock_timeout)
            )),
            Err(e) if conn::lock_timeout(&e) => Outcome::skipped(
                SkipKind::LockHeld,
                format!(
                    "lock not available within lock_timeout {}",
                    humantime::format_duration(lock_timeout)
                ),
            ),
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42P01") => {
                Outcome::skipped(SkipKind::Gone, "the table no longer exists")
            }
            Err(sqlx::Error::Database(d)) => Outcome::Failed(d.message().to_string()),
            Err(e) => {
                // The connection is gone: nothing more can run on it.
                if let Some(l) = self.lease.take() {
                    l.discard();
                }
                Outcome::Failed(e.to_string())
            }
        };
        let mut after = self.after(&step.sql_name).await;
        if full && outcome == Outcome::Done {
            if let Ok(c) = self.conn() {
                after.size_bytes = table_size(c, &step.sql_name).await.ok().flatten();
            }
            after.size_before = size_before;
        }
        StepResult { outcome, after }
    }

    /// The load guard's readings: other active sessions and the worst standby's replay
    /// lag (this is a primary: a standby refuses maintenance).
    async fn read_load(&mut self, limits: &GuardLimits) -> Result<Load, String> {
        let c = self.conn()?;
        let mut load = Load::default();
        if limits.max_active_sessions.is_some() {
            let n = sqlx::query_scalar::<_, i64>(sql::ACTIVE_SESSIONS)
                .fetch_one(&mut **c)
                .await
                .map_err(|e| format!("counting active sessions: {e}"))?;
            load.active_sessions = Some(n.max(0) as u64);
        }
        if limits.max_replication_lag.is_some() {
            load.replication_lag =
                sqlx::query_as::<_, (String, f64)>(sql::MAINTENANCE_REPLICATION_LAG)
                    .fetch_optional(&mut **c)
                    .await
                    .map_err(|e| format!("reading the standbys' replay lag: {e}"))?
                    .map(|(who, lag)| (lag, who));
        }
        Ok(load)
    }
}

/// A table's size on disk (`pg_table_size`: heap, TOAST, maps), under the session's
/// lock_timeout (it takes ACCESS SHARE).
async fn table_size(c: &mut Lease<Postgres>, sql_name: &str) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(sql::MAINTENANCE_TABLE_SIZE)
        .bind(sql_name)
        .fetch_one(&mut **c)
        .await
}

/// While our VACUUM FULL runs, polls on `watch` (the server-lock connection: the views are
/// cluster-wide) for sessions waiting on our backend `pid`; once some have waited for
/// `limit` without a break, stores how many in `kept_waiting` and cancels our statement.
/// Ends when our backend is no longer running a statement.
async fn watch_blocking(
    watch: &mut sqlx::PgConnection,
    pid: i32,
    limit: Duration,
    kept_waiting: &std::sync::atomic::AtomicUsize,
) {
    let every = (limit / 5).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(every).await;
        let r = sqlx::query_as::<_, (bool, i64)>(sql::MAINTENANCE_BLOCKING)
            .bind(pid)
            .fetch_one(&mut *watch)
            .await;
        let Ok((running, waiting)) = r else {
            return;
        };
        if !running {
            return;
        }
        if waiting == 0 {
            since = None;
            continue;
        }
        let first = *since.get_or_insert_with(tokio::time::Instant::now);
        if first.elapsed() >= limit {
            kept_waiting.store(
                usize::try_from(waiting).unwrap_or(1).max(1),
                std::sync::atomic::Ordering::SeqCst,
            );
            let _ = sqlx::query("/* dbwarden */ SELECT pg_cancel_backend($1)")
                .bind(pid)
                .execute(&mut *watch)
                .await;
            return;
        }
    }
}

impl Session for PgMaintenance {
    type Facts = PlanInput;

    fn backend(&self) -> Option<i32> {
        Some(self.pid)
    }

    async fn facts(&mut self) -> Result<PlanInput, Refusal> {
        self.plan_input().await.map_err(Refusal::Failed)
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

/// Progress of the VACUUM running on backend `pid`: phase and heap blocks scanned / total.
impl PostgresEngine {
    pub async fn vacuum_progress(&self, pid: i32) -> Option<(String, f64, f64)> {
        let mut lease = self.connection().await.ok()?;
        let r = sqlx::query_as::<_, (String, f64, f64)>(sql::VACUUM_PROGRESS)
            .bind(pid)
            .fetch_optional(&mut *lease)
            .await;
        lease.release().await;
        r.ok().flatten()
    }
}
