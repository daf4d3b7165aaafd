//! The SQLite history store maintains itself with the maintenance code every SQLite target
//! gets (`maintenance::plan_sqlite`, `engine::sqlite` sessions): `PRAGMA optimize`,
//! `VACUUM` (or `incremental_vacuum`) once purges left enough of the file free, and a
//! TRUNCATE checkpoint of a grown WAL. Run by a rollup job after its purge.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::RunScope;
use crate::engine::sqlite::SqliteMaintenance;
use crate::maintenance::run::{Guard, Refusal, Session, run_plan};
use crate::maintenance::{Allowed, SqlitePolicy, StepRecord, plan_sqlite};

/// When the history file is vacuumed or its WAL truncated.
pub fn policy() -> SqlitePolicy {
    SqlitePolicy {
        allowed: vec![Allowed::Analyze, Allowed::Vacuum],
        // A quarter of the file free after purges: rewrite it. Below that SQLite reuses
        // the free pages for new rows, so the file does not grow either.
        freelist_percent: 25.0,
        min_file_bytes: 4.0 * 1024.0 * 1024.0,
        wal_bytes: 64.0 * 1024.0 * 1024.0,
        // The history is checked by its own health target (`sqlite_quick_check`), if any.
        integrity: None,
    }
}

fn reason(r: Refusal) -> String {
    match r {
        Refusal::Skipped(s) => s.to_string(),
        Refusal::Failed(m) | Refusal::ServerBusy(m) => m,
    }
}

/// Maintains the history file at `path`; what was done, step by step.
pub async fn maintain_store(
    path: PathBuf,
    cancel: &CancellationToken,
) -> Result<Vec<StepRecord>, String> {
    let scope = RunScope::default();
    let mut session = SqliteMaintenance::open(path, Duration::from_secs(5), &scope)
        .await
        .map_err(reason)?;
    let facts = match session.read_facts().await {
        Ok(f) => f,
        Err(r) => {
            session.finish().await;
            return Err(reason(r));
        }
    };
    let plan = plan_sqlite(&facts, &policy());
    let records = run_plan(
        &mut session,
        &plan,
        &Guard::none(),
        None,
        cancel,
        || async { scope.interrupt_sqlite() },
        |_, _, _| {},
    )
    .await;
    session.finish().await;
    Ok(records)
}
