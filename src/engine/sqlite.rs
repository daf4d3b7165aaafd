//! SQLite engine: latency, `quick_check`/`integrity_check`, freelist, WAL, file size and
//! journal mode. A target file that does not exist is CRITICAL "file not found": dbwarden
//! never creates a database it was asked to watch unless the URL says `mode=rwc`.

mod maintain;

pub use maintain::SqliteMaintenance;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};

use super::round::{Checks, Round};
use super::{EngineError, HealthReport, RunScope};
use crate::config::Target;
use crate::health::{CheckSpec, Direction, Measurement, Observation, Status, Unit};

const MIB: f64 = 1024.0 * 1024.0;

/// SQLite's checks besides connectivity (names, units, built-in thresholds).
pub const CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: "sqlite_quick_check",
        label: "quick_check",
        unit: Unit::None,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "PRAGMA quick_check (or integrity_check when the target sets integrity_check = true); any finding is CRITICAL",
    },
    CheckSpec {
        name: "sqlite_freelist",
        label: "of pages free",
        unit: Unit::Percent,
        direction: Direction::HigherIsWorse,
        warning: Some(25.0),
        critical: Some(50.0),
        floor: Some(16.0 * MIB),
        description: "freelist_count / page_count; floor is the file size in bytes (files below it are not judged)",
    },
    CheckSpec {
        name: "sqlite_wal_size",
        label: "write-ahead log",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: Some(256.0 * MIB),
        critical: Some(1024.0 * MIB),
        floor: None,
        description: "bytes of write-ahead log not yet checkpointed into the database (frames in the WAL minus frames checkpointed, from the -shm wal-index header, read-only); grows while a checkpoint cannot complete behind a long reader. Not the -wal file's size, which stays at its high-water mark after every checkpoint",
    },
    CheckSpec {
        name: "sqlite_file_size",
        label: "database file",
        unit: Unit::Bytes,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "page_count × page_size; no thresholds by default, recorded for growth trends",
    },
    CheckSpec {
        name: "sqlite_journal_mode",
        label: "journal mode",
        unit: Unit::None,
        direction: Direction::HigherIsWorse,
        warning: None,
        critical: None,
        floor: None,
        description: "reports the journal mode (wal, delete, ...); informational",
    },
];

/// A SQLite database is one file: nothing is server-level.
static TABLE: Checks = Checks {
    specs: CHECKS,
    server_level: &[],
};

/// Parsed form of a `sqlite://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteUrl {
    pub path: PathBuf,
    /// `mode=rwc`: the URL explicitly asks for the file to be created.
    pub create: bool,
    /// `mode=ro`.
    pub read_only: bool,
}

/// `sqlite://./data/x.db`, `sqlite:///abs/x.db`, `sqlite:x.db`, with `?mode=rwc|rw|ro`.
/// `None` for in-memory databases, which cannot be watched.
pub fn path_from_url(url: &str) -> Option<SqliteUrl> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || path.contains("mode=memory") {
        return None;
    }
    let mode = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("mode="))
        .unwrap_or("rw");
    if mode == "memory" {
        return None;
    }
    Some(SqliteUrl {
        path: PathBuf::from(path),
        create: mode == "rwc",
        read_only: mode == "ro",
    })
}

/// How many SQLite VM steps (integrity_check: pages and cells) pass between two looks at
/// the run's cancel flag: an atomic load, so often enough that a cancel takes effect at
/// once, rarely enough to cost nothing.
const PROGRESS_STEPS: i32 = 1000;

/// What a check interrupted by [`super::Engine::cancel`] reports.
const INTERRUPTED: &str = "interrupted (timeout or shutdown)";

/// SQLite statements run in this process, on sqlx's worker thread of the connection, and
/// dropping a run's future does not stop them: the worker keeps stepping the statement
/// until its first row, which `PRAGMA quick_check`/`integrity_check` return only at the
/// end. So every connection a round uses gets a progress handler that checks the run's
/// [`RunScope`] flag, and `Engine::cancel` sets it: the statement stops with
/// SQLITE_INTERRUPT. A [`RunScope`] holds no sessions for SQLite.
pub struct SqliteEngine {
    target: String,
    url: SqliteUrl,
    pool: SqlitePool,
    /// Callers waiting for a connection of the pool.
    waiting: super::conn::Waiting,
}

impl SqliteEngine {
    /// The pool now (`/metrics`).
    pub fn pool_stats(&self) -> crate::engine::PoolStats {
        crate::engine::PoolStats::of(&self.pool, &self.waiting)
    }

    pub fn open(target: &Target) -> Result<Self, EngineError> {
        let url = path_from_url(target.url.expose()).ok_or_else(|| EngineError::Setup {
            target: target.name.clone(),
            message: "not a file-backed sqlite:// URL".into(),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(&url.path)
            .create_if_missing(url.create)
            // Health rounds only read. A read-only connection also never checkpoints: the
            // last connection to close a WAL database checkpoints it and deletes the WAL,
            // which would be dbwarden writing to the application's database (e.g. after the
            // application crashed and left its WAL). Only `mode=rwc`, which asks dbwarden
            // to create the file, opens it read-write. Maintenance has its own connection.
            .read_only(url.read_only || !url.create)
            .busy_timeout(target.busy_timeout);
        let pool = super::conn::pool_options::<sqlx::Sqlite>(target).connect_lazy_with(options);
        Ok(SqliteEngine {
            target: target.name.clone(),
            url,
            pool,
            waiting: Default::default(),
        })
    }

    pub(crate) async fn health(&self, round: &Round<'_>, scope: &RunScope) -> HealthReport {
        let path = &self.url.path;
        if let Err(message) = regular_file(path, self.url.create) {
            return round.unreachable(&TABLE, &message, None);
        }
        let integrity = round.opts.integrity_check || round.target.integrity_check;
        match self.probe(path, integrity, scope.cancel_flag()).await {
            Ok(mut m) => {
                let connectivity = m.remove(0);
                round.finish(&TABLE, connectivity, m, None, &[], Vec::new())
            }
            Err(e) if interrupted(&e) => round.all_unknown(
                &TABLE,
                Measurement::unknown("connectivity", INTERRUPTED, None),
                INTERRUPTED,
                None,
            ),
            Err(e) => {
                tracing::debug!(target_name = %self.target, error = %e, "sqlite probe failed");
                round.unreachable(&TABLE, &describe(&e, path), None)
            }
        }
    }

    /// Connectivity first, then the checks, on one connection that `cancel` can interrupt.
    async fn probe(
        &self,
        path: &Path,
        integrity: bool,
        cancel: Arc<AtomicBool>,
    ) -> Result<Vec<Measurement>, sqlx::Error> {
        let started = Instant::now();
        let mut conn = self.waiting.on(self.pool.acquire()).await?;
        // Closed when the round is done with it, also when the run's future is dropped
        // mid-statement, never given back to the pool: the progress handler below belongs
        // to this run, and a cancelled run's flag stays set, so no other run may inherit
        // the connection (and no handler needs removing).
        conn.close_on_drop();
        conn.lock_handle()
            .await?
            .set_progress_handler(PROGRESS_STEPS, move || !cancel.load(Ordering::Relaxed));
        measure(&mut conn, path, integrity, started).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The round's statements on `conn`. A statement interrupted by the run's cancel makes its
/// check and the ones after it UNKNOWN [`INTERRUPTED`]; one interrupted before
/// connectivity was measured is an error the caller reports.
async fn measure(
    conn: &mut SqliteConnection,
    path: &Path,
    integrity: bool,
    started: Instant,
) -> Result<Vec<Measurement>, sqlx::Error> {
    // Reading the page count touches the file (a shared lock), so the latency includes
    // waiting for a writer that holds the database: what an application would feel.
    let page_count: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut *conn)
        .await?;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut out = vec![Measurement::value(
        "connectivity",
        Observation::new(latency_ms),
    )];
    match measure_checks(conn, path, integrity, page_count, &mut out).await {
        Ok(()) => {}
        Err(e) if interrupted(&e) => {
            for spec in CHECKS {
                if !out.iter().any(|m| m.check == spec.name) {
                    out.push(Measurement::unknown(spec.name, INTERRUPTED, None));
                }
            }
        }
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// The checks besides connectivity, appended to `out`.
async fn measure_checks(
    conn: &mut SqliteConnection,
    path: &Path,
    integrity: bool,
    page_count: i64,
    out: &mut Vec<Measurement>,
) -> Result<(), sqlx::Error> {
    let (pragma, name) = if integrity {
        ("PRAGMA integrity_check(20)", "integrity_check")
    } else {
        ("PRAGMA quick_check(20)", "quick_check")
    };
    let rows: Vec<String> = sqlx::query_scalar(pragma).fetch_all(&mut *conn).await?;
    if rows.len() == 1 && rows[0] == "ok" {
        out.push(Measurement::verdict(
            "sqlite_quick_check",
            Status::Ok,
            Some(0.0),
            format!("{name}: ok"),
        ));
    } else {
        let shown: Vec<&str> = rows.iter().take(3).map(String::as_str).collect();
        out.push(Measurement::verdict(
            "sqlite_quick_check",
            Status::Critical,
            Some(rows.len() as f64),
            format!(
                "{name} found {}{} problem(s): {}; restore from backup or run .recover",
                rows.len(),
                if rows.len() >= 20 { "+" } else { "" },
                shown.join("; ")
            ),
        ));
    }

    let row = sqlx::query(
        "SELECT (SELECT page_size FROM pragma_page_size()), \
                (SELECT freelist_count FROM pragma_freelist_count()), \
                (SELECT journal_mode FROM pragma_journal_mode())",
    )
    .fetch_one(&mut *conn)
    .await?;
    let page_size: i64 = row.try_get(0)?;
    let freelist: i64 = row.try_get(1)?;
    let journal_mode: String = row.try_get(2)?;
    let file_size = (page_count * page_size) as f64;
    let freelist_pct = if page_count > 0 {
        freelist as f64 * 100.0 / page_count as f64
    } else {
        0.0
    };
    out.push(Measurement::value(
        "sqlite_freelist",
        Observation::new(freelist_pct)
            .floor(file_size)
            .detail(format!("{freelist} of {page_count} pages")),
    ));
    out.push(wal_backlog(path, &journal_mode));
    out.push(Measurement::value(
        "sqlite_file_size",
        Observation::new(file_size),
    ));
    out.push(Measurement::verdict(
        "sqlite_journal_mode",
        Status::Ok,
        None,
        format!("journal_mode={journal_mode}"),
    ));
    Ok(())
}

/// `-shm` files this process has opened, by (device, inode); never closed.
///
/// POSIX record locks belong to the process, and closing *any* descriptor of a file drops
/// every lock the process holds on it. The SQLite connections of this process (the
/// target's pool, the history store when it is also a target) hold their shared "DMS"
/// lock on the `-shm` file: opening it to read the header and closing it again released
/// that lock, so the next process to open the database believed it was alone, truncated
/// and rebuilt the wal-index under our mapping — and this process died of SIGBUS (seen
/// in CI: a test's reader opening the daemon's history). SQLite itself defers such
/// closes for the same reason. One descriptor per inode, for the life of the process.
static SHM_FILES: std::sync::Mutex<Vec<((u64, u64), std::fs::File)>> =
    std::sync::Mutex::new(Vec::new());

/// The first 136 bytes of a `-shm` file (fewer if it is shorter), read through a
/// descriptor that stays open (see [`SHM_FILES`]).
fn shm_header(shm_path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let meta = std::fs::metadata(shm_path)?;
    let key = (meta.dev(), meta.ino());
    let mut files = SHM_FILES.lock().unwrap_or_else(|p| p.into_inner());
    let at = match files.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            let f = std::fs::File::open(shm_path)?;
            // The file opened is the one measured (not replaced in between).
            let m = f.metadata()?;
            if (m.dev(), m.ino()) != key {
                // Keep it anyway: closing it could drop this process's locks too.
                files.push(((m.dev(), m.ino()), f));
                return Err(std::io::Error::other(
                    "the -shm file was replaced while reading it",
                ));
            }
            files.push((key, f));
            files.len() - 1
        }
    };
    let mut buf = vec![0u8; 136];
    let mut n = 0;
    while n < buf.len() {
        match files[at].1.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// The file next to the database with `suffix` (`-wal`, `-shm`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// What the wal-index header (the first 136 bytes of the `-shm` file) says about the WAL.
/// Layout: sqlite.org/walformat.html, "2.1 The WAL-Index Header": two copies of the
/// 48-byte `WalIndexHdr` (iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame,
/// nPage, ...), then `WalCkptInfo` (nBackfill, aReadMark[5], aLock, nBackfillAttempted).
/// Integers are in the host's native byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalIndex {
    /// Page size in bytes (the header stores 65536 as 1).
    pub page_size: u32,
    /// Valid frames in the WAL.
    pub max_frame: u32,
    /// Frames already copied back into the database by a checkpoint.
    pub backfilled: u32,
}

impl WalIndex {
    /// Bytes of WAL not yet checkpointed: each frame is a 24-byte header and a page.
    pub fn pending_bytes(&self) -> u64 {
        u64::from(self.max_frame.saturating_sub(self.backfilled)) * (u64::from(self.page_size) + 24)
    }
}

/// Parses the wal-index header. `None` when it is not initialized (no connection has
/// opened the WAL since), or a writer is changing it (the two copies differ: the caller
/// reads again), or it is not a header at all.
pub fn parse_wal_index(shm: &[u8]) -> Option<WalIndex> {
    if shm.len() < 136 {
        return None;
    }
    let u32_at = |o: usize| u32::from_ne_bytes([shm[o], shm[o + 1], shm[o + 2], shm[o + 3]]);
    // Version 3007000 is the only one SQLite has written; isInit must be set.
    if u32_at(0) != 3_007_000 || shm[12] != 1 || shm[..48] != shm[48..96] {
        return None;
    }
    let page_size = match u16::from_ne_bytes([shm[14], shm[15]]) {
        1 => 65_536,
        n if n >= 512 && n.is_power_of_two() => u32::from(n),
        _ => return None,
    };
    Some(WalIndex {
        page_size,
        max_frame: u32_at(16),
        backfilled: u32_at(96),
    })
}

/// `sqlite_wal_size`: WAL bytes not yet checkpointed, read from the `-shm` file without
/// writing anything (no checkpoint, no PRAGMA that writes).
fn wal_backlog(path: &Path, journal_mode: &str) -> Measurement {
    const CHECK: &str = "sqlite_wal_size";
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Measurement::verdict(
            CHECK,
            Status::Ok,
            Some(0.0),
            format!("journal_mode={journal_mode}: no write-ahead log"),
        );
    }
    let wal_file = std::fs::metadata(sibling(path, "-wal")).map_or(0, |m| m.len());
    if wal_file == 0 {
        // Nothing in the WAL (no -wal file, or one truncated by a checkpoint). A read-only
        // connection does not initialize the wal-index for a missing WAL, so the -shm
        // header may be blank here: nothing is pending either way.
        return Measurement::value(
            CHECK,
            Observation::new(0.0).detail("the write-ahead log is empty"),
        );
    }
    let shm_path = sibling(path, "-shm");
    let read = || shm_header(&shm_path);
    // A writer may be updating the header between our reads of its two copies: retry.
    let mut last = None;
    for _ in 0..5 {
        match read() {
            Ok(buf) => {
                last = Some(buf.len());
                if let Some(idx) = parse_wal_index(&buf) {
                    let pending = idx.pending_bytes();
                    return Measurement::value(
                        CHECK,
                        Observation::new(pending as f64).detail(format!(
                            "{} of {} WAL frames not yet checkpointed; -wal file {}",
                            idx.max_frame.saturating_sub(idx.backfilled),
                            idx.max_frame,
                            Unit::Bytes.format(wal_file as f64)
                        )),
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => {
                return Measurement::unknown(
                    CHECK,
                    format!("cannot read {}: {e}", shm_path.display()),
                    Some("let dbwarden's user read the database's -shm file".into()),
                );
            }
        }
    }
    match last {
        // The connection that read the database just now keeps the -shm in use, so a
        // missing one means the WAL index lives in heap memory (locking_mode=EXCLUSIVE).
        None => Measurement::unknown(
            CHECK,
            format!(
                "no {} (exclusive locking mode?): the WAL's checkpoint progress cannot be read; -wal file {}",
                shm_path.display(),
                Unit::Bytes.format(wal_file as f64)
            ),
            None,
        ),
        Some(_) => Measurement::unknown(
            CHECK,
            format!("{}: no readable wal-index header", shm_path.display()),
            None,
        ),
    }
}

/// SQLITE_INTERRUPT (9): the run's progress handler stopped the statement.
fn interrupted(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("9"))
}

/// A watched database must be a regular file: SQLite opens `/dev/null`, a directory or a
/// fifo without complaint and reports an empty database, which would read as OK. A
/// missing file is an error too unless the URL asks for it to be created (`mode=rwc`).
fn regular_file(path: &Path, create: bool) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) => {
            let kind = if m.is_dir() {
                "a directory"
            } else {
                use std::os::unix::fs::FileTypeExt;
                let t = m.file_type();
                if t.is_char_device() || t.is_block_device() {
                    "a device"
                } else if t.is_fifo() {
                    "a fifo"
                } else if t.is_socket() {
                    "a socket"
                } else {
                    "not a regular file"
                }
            };
            Err(format!(
                "{} is {kind}, not a database file (fix the target's path)",
                path.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "file not found: {} (dbwarden never creates a watched database; fix the path)",
            path.display()
        )),
        Err(e) => Err(format!(
            "{}: {e} (check the permissions of the file and its directory)",
            path.display()
        )),
    }
}

/// A one-line reason for a failed probe, with what to do about it.
fn describe(e: &sqlx::Error, path: &Path) -> String {
    let text = e.to_string();
    if text.contains("database is locked") || text.contains("busy") {
        format!(
            "{}: database is locked by another connection for longer than busy_timeout",
            path.display()
        )
    } else if matches!(e, sqlx::Error::PoolTimedOut) {
        format!(
            "{}: no connection within acquire_timeout (a previous probe is still waiting on a lock?)",
            path.display()
        )
    } else if text.contains("unable to open") {
        format!(
            "{}: cannot open the file (check permissions of the file and its directory)",
            path.display()
        )
    } else if text.contains("not a database") || text.contains("malformed") {
        format!(
            "{}: {text}; the file is not a healthy SQLite database",
            path.display()
        )
    } else {
        format!("{}: {text}", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlite_urls() {
        assert_eq!(
            path_from_url("sqlite://./data/demo.db?mode=rwc"),
            Some(SqliteUrl {
                path: "./data/demo.db".into(),
                create: true,
                read_only: false
            })
        );
        assert_eq!(
            path_from_url("sqlite:///var/lib/app.db").map(|u| u.path),
            Some(PathBuf::from("/var/lib/app.db"))
        );
        assert_eq!(
            path_from_url("sqlite:app.db").map(|u| u.path),
            Some(PathBuf::from("app.db"))
        );
        assert!(path_from_url("sqlite::memory:").is_none());
        assert!(path_from_url("sqlite://x.db?mode=memory").is_none());
        assert!(path_from_url("postgres://x").is_none());
    }

    /// A wal-index header as SQLite writes it (native byte order, two equal copies).
    fn header(page_size: u16, max_frame: u32, backfilled: u32) -> Vec<u8> {
        let mut h = vec![0u8; 136];
        h[0..4].copy_from_slice(&3_007_000u32.to_ne_bytes());
        h[12] = 1;
        h[14..16].copy_from_slice(&page_size.to_ne_bytes());
        h[16..20].copy_from_slice(&max_frame.to_ne_bytes());
        let copy = h[..48].to_vec();
        h[48..96].copy_from_slice(&copy);
        h[96..100].copy_from_slice(&backfilled.to_ne_bytes());
        h
    }

    #[test]
    fn wal_index_header_gives_the_frames_not_checkpointed() {
        let idx = parse_wal_index(&header(4096, 1000, 400));
        assert_eq!(
            idx,
            Some(WalIndex {
                page_size: 4096,
                max_frame: 1000,
                backfilled: 400
            })
        );
        assert_eq!(idx.map(|i| i.pending_bytes()), Some(600 * (4096 + 24)));
        // Fully checkpointed: nothing pending, however large the -wal file.
        let done = parse_wal_index(&header(4096, 1000, 1000));
        assert_eq!(done.map(|i| i.pending_bytes()), Some(0));
        // 65536-byte pages are stored as 1.
        assert_eq!(
            parse_wal_index(&header(1, 2, 0)).map(|i| i.pending_bytes()),
            Some(2 * (65_536 + 24))
        );
        // Not initialized, torn (copies differ), too short: no reading.
        let mut uninit = header(4096, 10, 0);
        uninit[12] = 0;
        uninit[60] = 0;
        assert_eq!(parse_wal_index(&uninit), None);
        let mut torn = header(4096, 10, 0);
        torn[16] ^= 1;
        assert_eq!(parse_wal_index(&torn), None);
        assert_eq!(parse_wal_index(&header(4096, 10, 0)[..100]), None);
    }

    #[test]
    fn only_regular_files_are_databases() {
        for p in ["/dev/null", "/tmp"] {
            let e = regular_file(Path::new(p), false).err().unwrap_or_default();
            assert!(e.contains("not a database file"), "{p}: {e}");
        }
        let missing = Path::new("/nonexistent/x.db");
        assert!(regular_file(missing, false).is_err_and(|e| e.contains("file not found")));
        assert!(regular_file(missing, true).is_ok());
    }

    /// The engine reads thresholds from the target of each round, not from the one it was
    /// opened with: a reload that disables a check needs no new engine.
    #[tokio::test]
    async fn thresholds_come_with_each_round() {
        let (_dir, t) = crate::engine::tests::sqlite_target();
        let e = match SqliteEngine::open(&t) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        };
        let opts = crate::engine::HealthOptions::default();
        let checks =
            |r: &HealthReport| -> Vec<&str> { r.measurements.iter().map(|m| m.check).collect() };
        let scope = RunScope::default();
        let first = e.health(&Round::new(&t, &opts), &scope).await;
        assert!(checks(&first).contains(&"sqlite_wal_size"), "{first:?}");
        assert!(
            matches!(
                first.measurements[0].outcome,
                crate::health::Outcome::Values(_)
            ),
            "{first:?}"
        );
        let mut reloaded = t.clone();
        reloaded.thresholds.insert(
            "sqlite_wal_size",
            crate::health::CheckThresholds {
                enabled: false,
                warning: None,
                critical: None,
                floor: None,
            },
        );
        let second = e.health(&Round::new(&reloaded, &opts), &scope).await;
        assert!(!checks(&second).contains(&"sqlite_wal_size"), "{second:?}");
        assert_eq!(checks(&second).len() + 1, checks(&first).len());
        e.close().await;
    }

    #[tokio::test]
    async fn dev_null_is_critical_not_an_empty_database() {
        let (_dir, mut t) = crate::engine::tests::sqlite_target();
        t.url = crate::config::SecretUrl::new("sqlite:///dev/null");
        let e = match SqliteEngine::open(&t) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        };
        let opts = crate::engine::HealthOptions::default();
        let report = e.health(&Round::new(&t, &opts), &RunScope::default()).await;
        let c = &report.measurements[0];
        assert!(
            matches!(&c.outcome, crate::health::Outcome::Verdict { status: Status::Critical, message, .. } if message.contains("a device")),
            "{c:?}"
        );
    }
}
