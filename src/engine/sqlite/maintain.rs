//! Maintenance on SQLite: the database's numbers for the planner and a session that runs
//! `PRAGMA optimize`, `VACUUM` / `PRAGMA incremental_vacuum` and
//! `PRAGMA wal_checkpoint(TRUNCATE)` under a busy timeout; a busy database is skipped with
//! the reason. The run's cancel interrupts a statement (progress handler).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection};

use super::{PROGRESS_STEPS, SqliteEngine, regular_file, sibling};
use crate::engine::RunScope;
use crate::maintenance::run::{After, GuardLimits, Load, Refusal, Session, StepResult};
use crate::maintenance::{Action, Outcome, Skip, SkipKind, SqliteFacts, Step};

/// A maintenance session on one SQLite connection.
pub struct SqliteMaintenance {
    conn: SqliteConnection,
    path: PathBuf,
    busy_timeout: Duration,
    /// The integrity check of this run failed with this: the file is not rewritten.
    corrupt: Option<String>,
}

/// At most this many problems are asked of an integrity check (its message lists them).
const INTEGRITY_MAX_ERRORS: usize = 20;

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), extended codes included.
fn busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)))
}

impl SqliteEngine {
    /// Opens a maintenance connection waiting at most `busy_timeout` for the application's
    /// locks; refused for a read-only target or a missing file.
    pub async fn maintenance(
        &self,
        scope: &RunScope,
        busy_timeout: Duration,
    ) -> Result<SqliteMaintenance, Refusal> {
        let path = self.url.path.clone();
        if self.url.read_only {
            return Err(Refusal::Skipped(Skip::new(
                SkipKind::NotApplicable,
                "the target is opened read-only (mode=ro): maintenance needs to write",
            )));
        }
        regular_file(&path, false).map_err(Refusal::Failed)?;
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(busy_timeout);
        let mut conn = SqliteConnection::connect_with(&opts)
            .await
            .map_err(|e| Refusal::Failed(format!("{}: {e}", path.display())))?;
        let cancel = scope.cancel_flag();
        conn.lock_handle()
            .await
            .map_err(|e| Refusal::Failed(e.to_string()))?
            .set_progress_handler(PROGRESS_STEPS, move || !cancel.load(Ordering::Relaxed));
        Ok(SqliteMaintenance {
            conn,
            path,
            busy_timeout,
            corrupt: None,
        })
    }
}

impl SqliteMaintenance {
    /// The numbers the planner needs (busy: the reason).
    pub async fn read_facts(&mut self) -> Result<SqliteFacts, Refusal> {
        let b = self.busy_timeout;
        let map = |e: sqlx::Error| {
            if busy(&e) {
                Refusal::Skipped(Skip::new(
                    SkipKind::Busy,
                    format!(
                        "database is busy (not available within busy_timeout {})",
                        humantime::format_duration(b)
                    ),
                ))
            } else {
                Refusal::Failed(e.to_string())
            }
        };
        let int = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
        let page_count = int("PRAGMA page_count")
            .fetch_one(&mut self.conn)
            .await
            .map_err(map)?;
        let page_size = int("PRAGMA page_size")
            .fetch_one(&mut self.conn)
            .await
            .map_err(map)?;
        let freelist = int("PRAGMA freelist_count")
            .fetch_one(&mut self.conn)
            .await
            .map_err(map)?;
        let auto_vacuum = int("PRAGMA auto_vacuum")
            .fetch_one(&mut self.conn)
            .await
            .map_err(map)?;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut self.conn)
            .await
            .map_err(map)?;
        Ok(SqliteFacts {
            name: self.path.display().to_string(),
            page_count: page_count as f64,
            page_size: page_size as f64,
            freelist_count: freelist as f64,
            auto_vacuum,
            wal: journal.eq_ignore_ascii_case("wal"),
            wal_bytes: self.wal_bytes(),
        })
    }

    fn wal_bytes(&self) -> f64 {
        std::fs::metadata(sibling(&self.path, "-wal")).map_or(0.0, |m| m.len() as f64)
    }

    async fn after(&mut self, action: Action) -> After {
        let pages: Result<(i64, i64, i64), sqlx::Error> = async {
            Ok((
                sqlx::query_scalar("PRAGMA page_count")
                    .fetch_one(&mut self.conn)
                    .await?,
                sqlx::query_scalar("PRAGMA page_size")
                    .fetch_one(&mut self.conn)
                    .await?,
                sqlx::query_scalar("PRAGMA freelist_count")
                    .fetch_one(&mut self.conn)
                    .await?,
            ))
        }
        .await;
        let Ok((count, size, free)) = pages else {
            return After::default();
        };
        After {
            dead_rows: Some(free as f64),
            freeze_age: None,
            size_bytes: Some(if action == Action::Checkpoint {
                self.wal_bytes()
            } else {
                (count * size) as f64
            }),
            size_before: None,
        }
    }

    /// `PRAGMA integrity_check` / `quick_check`: `Ok(None)` for "ok", else the problems.
    async fn integrity(&mut self, quick: bool) -> Result<Option<String>, sqlx::Error> {
        let pragma = if quick {
            "quick_check"
        } else {
            "integrity_check"
        };
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "PRAGMA {pragma}({INTEGRITY_MAX_ERRORS})"
        )))
        .fetch_all(&mut self.conn)
        .await?;
        if rows.len() == 1 && rows[0] == "ok" {
            return Ok(None);
        }
        Ok(Some(format!("PRAGMA {pragma}: {}", rows.join("; "))))
    }

    async fn run_step(&mut self, step: &Step) -> StepResult {
        if let Some(why) = &self.corrupt {
            return StepResult {
                outcome: Outcome::skipped(
                    SkipKind::NotApplicable,
                    format!("not run on a database that failed its integrity check ({why})"),
                ),
                after: After::default(),
            };
        }
        if let a @ (Action::IntegrityCheck | Action::QuickCheck) = step.action {
            let outcome = match self.integrity(a == Action::QuickCheck).await {
                Ok(None) => Outcome::Done,
                Ok(Some(problems)) => {
                    self.corrupt = Some(a.as_str().to_string());
                    Outcome::Failed(problems)
                }
                Err(e) if busy(&e) => self.busy_skip(),
                Err(e) => {
                    // A file too damaged to read at all is as corrupt as it gets.
                    self.corrupt = Some(a.as_str().to_string());
                    Outcome::Failed(format!("PRAGMA {}: {e}", a.as_str()))
                }
            };
            return StepResult {
                outcome,
                after: After::default(),
            };
        }
        let r: Result<Option<String>, sqlx::Error> = match step.action {
            Action::Optimize => sqlx::query("PRAGMA optimize=0x10002")
                .fetch_all(&mut self.conn)
                .await
                .map(|_| None),
            Action::Vacuum => sqlx::query("VACUUM")
                .execute(&mut self.conn)
                .await
                .map(|_| None),
            Action::IncrementalVacuum => sqlx::query("PRAGMA incremental_vacuum")
                .fetch_all(&mut self.conn)
                .await
                .map(|_| None),
            Action::Checkpoint => {
                sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(&mut self.conn)
                    .await
                    .map(|(blocked, log, done)| {
                        (blocked != 0).then(|| {
                            format!("database is busy: another connection kept the checkpoint from completing ({done} of {log} WAL frames copied, the file not truncated)")
                        })
                    })
            }
            other => Ok(Some(format!("{} is not a SQLite action", other.as_str()))),
        };
        let outcome = match r {
            Ok(None) => Outcome::Done,
            Ok(Some(why)) => Outcome::skipped(SkipKind::Busy, why),
            Err(e) if busy(&e) => self.busy_skip(),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let after = self.after(step.action).await;
        StepResult { outcome, after }
    }

    fn busy_skip(&self) -> Outcome {
        Outcome::skipped(
            SkipKind::Busy,
            format!(
                "database is busy (not available within busy_timeout {})",
                humantime::format_duration(self.busy_timeout)
            ),
        )
    }
}

impl Session for SqliteMaintenance {
    type Facts = SqliteFacts;

    fn facts(&mut self) -> impl std::future::Future<Output = Result<SqliteFacts, Refusal>> + Send {
        self.read_facts()
    }

    /// Nothing to measure on a file: the status guard is judged above the engines.
    async fn load(&mut self, _: &GuardLimits) -> Result<Load, String> {
        Ok(Load::default())
    }

    fn execute(&mut self, step: &Step) -> impl std::future::Future<Output = StepResult> + Send {
        self.run_step(step)
    }

    async fn finish(self) {
        let _ = self.conn.close().await;
    }
}
