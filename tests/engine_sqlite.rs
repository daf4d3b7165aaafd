//! The SQLite engine against a real database file: cancelling a run interrupts the
//! `integrity_check` it is running (SQLite statements run in this process, and dropping a
//! future does not stop them), and only that run's. Needs no server.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dbwarden::config::Target;
use dbwarden::engine::{Engine, HealthOptions, HealthReport, RunScope};
use dbwarden::health::{Outcome, Status};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::task::JoinHandle;

/// A database whose `integrity_check` takes seconds: a table of 400,000 rows with two
/// indexes (about 60 MB).
async fn big_database(path: &Path) {
    let mut c = connect(path, true).await;
    for sql in [
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b BLOB)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400000) \
         INSERT INTO t SELECT i, hex(randomblob(16)), randomblob(32) FROM n",
        "CREATE INDEX t_a ON t(a)",
        "CREATE INDEX t_b ON t(b)",
    ] {
        if let Err(e) = sqlx::raw_sql(sql).execute(&mut c).await {
            panic!("{sql}: {e}");
        }
    }
    let _ = c.close().await;
}

async fn connect(path: &Path, create: bool) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .busy_timeout(Duration::ZERO)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The target "big" for the database at `path`, loaded as the daemon loads it.
fn target(dir: &Path, path: &Path) -> Target {
    let config = dir.join("dbwarden.toml");
    let body = format!(
        "[daemon]\nhistory = \"sqlite://{0}/h.db\"\n\n\
         [[target]]\nname = \"big\"\nurl = \"sqlite://{1}\"\n\
         pool = {{ max_connections = 2 }}\n\n\
         [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 30s\"\n",
        dir.display(),
        path.display()
    );
    std::fs::write(&config, body).unwrap_or_else(|e| panic!("{e}"));
    let config = dbwarden::config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    match config.target("big") {
        Some(t) => t.clone(),
        None => panic!("no target big"),
    }
}

/// Waits until some connection reads the file: then an exclusive lock cannot be had (the
/// database is in rollback-journal mode, where readers hold a shared lock).
async fn wait_until_read(path: &Path) {
    let mut c = connect(path, false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match sqlx::raw_sql("BEGIN EXCLUSIVE").execute(&mut c).await {
            Ok(_) => {
                if let Err(e) = sqlx::raw_sql("ROLLBACK").execute(&mut c).await {
                    panic!("rollback: {e}");
                }
            }
            Err(e) if e.to_string().contains("locked") => break,
            Err(e) => panic!("begin exclusive: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the round never read the database"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = c.close().await;
}

/// An `integrity_check` round of `t` as the run of `scope`.
fn spawn_round(e: &Arc<Engine>, t: &Target, scope: &RunScope) -> JoinHandle<HealthReport> {
    let (e, t, scope) = (e.clone(), t.clone(), scope.clone());
    tokio::spawn(async move {
        let opts = HealthOptions {
            integrity_check: true,
            ..HealthOptions::default()
        };
        e.health(&t, &opts, &scope).await
    })
}

/// The round's report; the deadline only keeps a broken cancel from hanging the test.
async fn finished(round: JoinHandle<HealthReport>) -> HealthReport {
    match tokio::time::timeout(Duration::from_secs(30), round).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("round panicked: {e}"),
        Err(_) => panic!("the round did not end within 30 s"),
    }
}

fn integrity(report: &HealthReport) -> &Outcome {
    match report
        .measurements
        .iter()
        .find(|m| m.check == "sqlite_quick_check")
    {
        Some(m) => &m.outcome,
        None => panic!("no integrity check in {report:?}"),
    }
}

fn is_interrupted(o: &Outcome) -> bool {
    matches!(o, Outcome::Unknown { reason, .. } if reason == "interrupted (timeout or shutdown)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_interrupts_only_its_own_integrity_check() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("big.db");
    big_database(&path).await;
    let t = target(dir.path(), &path);
    let e = Arc::new(Engine::open(&t).unwrap_or_else(|e| panic!("{e}")));

    // A run reading the file is cancelled: its integrity_check stops with SQLITE_INTERRUPT
    // instead of running to its end on sqlx's worker thread.
    let scope_a = RunScope::default();
    let a = spawn_round(&e, &t, &scope_a);
    wait_until_read(&path).await;
    e.cancel(&scope_a).await;
    let a = finished(a).await;
    assert!(is_interrupted(integrity(&a)), "{a:?}");
    assert!(a.reached(), "connectivity was measured first: {a:?}");

    // Another run of the same engine goes on while a third one is cancelled.
    let (scope_b, scope_c) = (RunScope::default(), RunScope::default());
    let b = spawn_round(&e, &t, &scope_b);
    wait_until_read(&path).await;
    let c = spawn_round(&e, &t, &scope_c);
    e.cancel(&scope_c).await;
    assert!(
        !b.is_finished(),
        "B's integrity_check ended before C was cancelled: the test database is too small"
    );
    let c = finished(c).await;
    assert!(is_interrupted(integrity(&c)), "{c:?}");
    let b = finished(b).await;
    assert!(
        matches!(integrity(&b), Outcome::Verdict { status: Status::Ok, message, .. } if message == "integrity_check: ok"),
        "{b:?}"
    );
    assert!(!scope_b.is_cancelled());
    e.close(Duration::from_secs(5)).await;
}

/// The target "app" for the WAL-mode database at `path`, with `sqlite_wal_size` warning
/// at 1 MB (so a test need not write hundreds of megabytes).
fn wal_target(dir: &Path, path: &Path) -> Target {
    let config = dir.join("wal.toml");
    let body = format!(
        "[daemon]\nhistory = \"sqlite://{0}/h.db\"\n\n\
         [[target]]\nname = \"app\"\nurl = \"sqlite://{1}\"\n\
         thresholds = {{ sqlite_wal_size = {{ warning = \"1MB\", critical = \"1GB\" }} }}\n\n\
         [[job]]\nname = \"health\"\nkind = \"health\"\nschedule = \"@every 30s\"\n",
        dir.display(),
        path.display()
    );
    std::fs::write(&config, body).unwrap_or_else(|e| panic!("{e}"));
    let config = dbwarden::config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    match config.target("app") {
        Some(t) => t.clone(),
        None => panic!("no target app"),
    }
}

async fn exec(c: &mut SqliteConnection, sql: &str) {
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *c)
        .await
    {
        panic!("{sql}: {e}");
    }
}

/// `sqlite_wal_size` of one round: (status, value, message).
async fn wal_result(e: &Engine, t: &Target) -> (Status, f64, String) {
    let report = e
        .health(t, &HealthOptions::default(), &RunScope::default())
        .await;
    let m = match report
        .measurements
        .iter()
        .find(|m| m.check == "sqlite_wal_size")
    {
        Some(m) => m,
        None => panic!("no sqlite_wal_size in {report:?}"),
    };
    let spec = match dbwarden::engine::catalog::spec(m.check) {
        Some(s) => s,
        None => panic!("sqlite_wal_size not in the catalogue"),
    };
    let r = dbwarden::health::evaluate(m, spec, &t.thresholds_for(spec));
    (r.status, r.value.unwrap_or(f64::NAN), r.message)
}

/// `sqlite_wal_size` judges the WAL not yet checkpointed, not the -wal file: after one big
/// transaction that the application checkpointed, the file stays large and the check is
/// OK; behind a reader holding an old snapshot, checkpoints cannot finish and the value
/// grows with every write. The engine itself never checkpoints.
#[tokio::test]
async fn wal_size_is_the_wal_not_yet_checkpointed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("app.db");
    let wal_file = || std::fs::metadata(dir.path().join("app.db-wal")).map_or(0, |m| m.len());
    let mut app = connect(&path, true).await;
    exec(&mut app, "PRAGMA journal_mode = WAL").await;
    exec(&mut app, "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)").await;
    // One big transaction (~4 MB of pages), then the application's own checkpoint.
    exec(
        &mut app,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) \
         INSERT INTO t(b) SELECT randomblob(1000) FROM n",
    )
    .await;
    exec(&mut app, "PRAGMA wal_checkpoint(PASSIVE)").await;
    let big = wal_file();
    assert!(big > 4_000_000, "-wal file {big}");

    let t = wal_target(dir.path(), &path);
    let e = Engine::open(&t).unwrap_or_else(|e| panic!("{e}"));
    let (status, value, message) = wal_result(&e, &t).await;
    assert_eq!((status, value), (Status::Ok, 0.0), "{message}");
    assert_eq!(wal_file(), big, "the -wal file keeps its high-water mark");

    // With the application's automatic checkpoints off, its writes stay in the WAL; the
    // engine reads the backlog round after round without checkpointing it away.
    exec(&mut app, "PRAGMA wal_autocheckpoint = 0").await;
    exec(
        &mut app,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) \
         INSERT INTO t(b) SELECT randomblob(1000) FROM n",
    )
    .await;
    let (_, pending, message) = wal_result(&e, &t).await;
    assert!(pending > 300_000.0, "{message}");
    let (_, again, message) = wal_result(&e, &t).await;
    assert_eq!(again, pending, "the engine must not checkpoint: {message}");
    exec(&mut app, "PRAGMA wal_checkpoint(PASSIVE)").await;
    exec(&mut app, "PRAGMA wal_autocheckpoint = 1000").await;
    let (_, value, message) = wal_result(&e, &t).await;
    assert_eq!(value, 0.0, "{message}");

    // A reader holds a snapshot; the application keeps writing (and SQLite's automatic
    // checkpoints run, but cannot pass the reader).
    let mut reader = connect(&path, false).await;
    exec(&mut reader, "BEGIN").await;
    exec(&mut reader, "SELECT count(*) FROM t").await;
    exec(
        &mut app,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
         INSERT INTO t(b) SELECT randomblob(1000) FROM n",
    )
    .await;
    let (_, first, message) = wal_result(&e, &t).await;
    assert!(first > 0.0, "{message}");
    exec(
        &mut app,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO t(b) SELECT randomblob(1000) FROM n",
    )
    .await;
    exec(&mut app, "PRAGMA wal_checkpoint(PASSIVE)").await;
    let (status, second, message) = wal_result(&e, &t).await;
    assert!(
        second > first + 1_000_000.0,
        "{first} then {second}: {message}"
    );
    assert_eq!(status, Status::Warning, "{message}");
    assert!(message.contains("not yet checkpointed"), "{message}");

    // The reader ends; the application's next checkpoint catches up.
    exec(&mut reader, "COMMIT").await;
    exec(&mut app, "PRAGMA wal_checkpoint(PASSIVE)").await;
    let (status, value, message) = wal_result(&e, &t).await;
    assert_eq!((status, value), (Status::Ok, 0.0), "{message}");
    let _ = reader.close().await;
    e.close(Duration::from_secs(5)).await;
    let _ = app.close().await;
}

/// A health round never writes to the application's database: after the application
/// crashed with writes still in its WAL, dbwarden's round reads the backlog, and closing
/// its connection (the last one to the file) does not checkpoint the WAL into the
/// database or delete it, as closing a read-write connection would.
#[tokio::test]
async fn a_round_never_checkpoints_an_applications_wal() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let live = dir.path().join("live.db");
    let mut app = connect(&live, true).await;
    exec(&mut app, "PRAGMA journal_mode = WAL").await;
    exec(&mut app, "PRAGMA wal_autocheckpoint = 0").await;
    exec(&mut app, "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)").await;
    exec(
        &mut app,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) \
         INSERT INTO t(b) SELECT randomblob(1000) FROM n",
    )
    .await;
    // The files as a crash would leave them: the database and its WAL, no -shm.
    let path = dir.path().join("app.db");
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    std::fs::write(&path, read(&live)).unwrap_or_else(|e| panic!("{e}"));
    let wal = dir.path().join("app.db-wal");
    std::fs::write(&wal, read(&dir.path().join("live.db-wal"))).unwrap_or_else(|e| panic!("{e}"));
    let _ = app.close().await;
    let (db_before, wal_before) = (read(&path), read(&wal));
    assert!(wal_before.len() > 500_000, "WAL {}", wal_before.len());

    let t = wal_target(dir.path(), &path);
    let e = Engine::open(&t).unwrap_or_else(|e| panic!("{e}"));
    let (_, pending, message) = wal_result(&e, &t).await;
    assert!(pending > 500_000.0, "the round sees the backlog: {message}");
    e.close(Duration::from_secs(5)).await;
    assert!(
        read(&path) == db_before,
        "the database file changed: dbwarden checkpointed it"
    );
    assert!(
        wal.exists() && read(&wal) == wal_before,
        "the WAL was checkpointed or removed by dbwarden"
    );
}

/// A WAL database closed cleanly has no -wal file; dbwarden's read-only connection does not
/// create one nor initialize the wal-index, and the check reads "nothing pending", not
/// UNKNOWN.
#[tokio::test]
async fn a_wal_database_without_a_wal_file_is_ok() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("app.db");
    let mut app = connect(&path, true).await;
    exec(&mut app, "PRAGMA journal_mode = WAL").await;
    exec(&mut app, "CREATE TABLE t(id INTEGER PRIMARY KEY)").await;
    let _ = app.close().await;
    assert!(!dir.path().join("app.db-wal").exists(), "closed cleanly");
    let t = wal_target(dir.path(), &path);
    let e = Engine::open(&t).unwrap_or_else(|e| panic!("{e}"));
    let (status, value, message) = wal_result(&e, &t).await;
    assert_eq!((status, value), (Status::Ok, 0.0), "{message}");
    e.close(Duration::from_secs(5)).await;
}

/// Whether another process sees a lock on the `-shm` file's "DMS" byte (offset 128, the
/// byte every connection with the wal-index open holds a shared lock on). Asked from a
/// child process: F_GETLK does not report the asking process's own locks. `None` when
/// python3 is not there to ask.
fn dms_locked_by_another_process(shm: &Path) -> Option<bool> {
    let script = "import fcntl, struct, sys\n\
                  f = open(sys.argv[1], 'rb')\n\
                  req = struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 128, 1, 0)\n\
                  got = struct.unpack('hhqqi4x', fcntl.fcntl(f, fcntl.F_GETLK, req))\n\
                  print('free' if got[0] == fcntl.F_UNLCK else 'locked')\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(shm)
        .output()
        .ok()?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match said.as_str() {
        "locked" => Some(true),
        "free" => Some(false),
        _ => panic!(
            "python3 F_GETLK: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Reading the wal-index header must not drop this process's SQLite locks. POSIX record
/// locks belong to the process and closing any descriptor of a file releases them all:
/// a check that opened the `-shm` file and closed it again left the process's own
/// connections (the history store is also a target in the demo config) without their
/// shared lock, so the next process to open the database truncated the wal-index under
/// them and the daemon died of SIGBUS.
#[tokio::test]
async fn reading_the_wal_index_keeps_this_processs_locks() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("app.db");
    let mut app = connect(&path, true).await;
    exec(&mut app, "PRAGMA journal_mode = WAL").await;
    exec(&mut app, "PRAGMA wal_autocheckpoint = 0").await;
    exec(&mut app, "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)").await;
    exec(&mut app, "INSERT INTO t(b) SELECT randomblob(1000)").await;
    let shm = dir.path().join("app.db-shm");
    let Some(before) = dms_locked_by_another_process(&shm) else {
        println!("SKIP: python3 is needed to ask for the lock from another process");
        return;
    };
    assert!(before, "the application's connection holds the DMS lock");

    let t = wal_target(dir.path(), &path);
    let e = Engine::open(&t).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..3 {
        let (_, pending, message) = wal_result(&e, &t).await;
        assert!(pending > 0.0, "{message}");
        assert_eq!(
            dms_locked_by_another_process(&shm),
            Some(true),
            "after a round the process must still hold its lock on {}",
            shm.display()
        );
    }
    // The engine's own connection closed: the application's connection keeps its lock.
    e.close(Duration::from_secs(5)).await;
    assert_eq!(dms_locked_by_another_process(&shm), Some(true));
    let _ = app.close().await;
}
