//! `dbwarden history …`, `dbwarden forecast` and `dbwarden run-job` of a rollup job through
//! the real binary, on a SQLite history seeded with a growing database size; the readers
//! open the store read-only (SQLite and PostgreSQL).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_dbwarden");
const H: i64 = 3_600_000;
const MB: f64 = 1024.0 * 1024.0;

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["-c", "c.toml"])
        .args(args)
        .current_dir(dir)
        .env_remove("DBWARDEN_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap_or_else(|e| panic!("run {BIN}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

/// A config with two SQLite targets (`grows`: 10 days of a size growing 20 MB/day toward
/// its 1 GB capacity; `young`: one day of history) and a rollup job; the store migrated and
/// seeded.
async fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let body = "[daemon]\nhistory = \"sqlite://./data/history.db\"\n\
         [[target]]\nname = \"grows\"\nurl = \"sqlite://./grows.db?mode=rwc\"\ncapacity = \"1GB\"\n\
         [[target]]\nname = \"young\"\nurl = \"sqlite://./young.db?mode=rwc\"\ncapacity = \"1GB\"\n\
         [[job]]\nname = \"rollup\"\nkind = \"rollup\"\nschedule = \"@every 10m\"\ntargets = [\"*\"]\n";
    std::fs::write(dir.path().join("c.toml"), body).unwrap_or_else(|e| panic!("{e}"));
    let o = run(dir.path(), &["migrate"]);
    assert!(o.status.success(), "{}", all(&o));
    let url = format!("sqlite://{}/data/history.db", dir.path().display());
    let mut c = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let now = chrono::Utc::now().timestamp_millis();
    // The agent the binary runs as (its host name), so its rollup job finds the series.
    let a = dbwarden::store::agent_name().replace('\'', "''");
    let mut sql = format!(
        "INSERT INTO series (id, agent, target, metric, label, unit, last_ts) VALUES \
         (1, '{a}', 'grows', 'sqlite_file_size', '', 'bytes', {now}), \
         (2, '{a}', 'young', 'sqlite_file_size', '', 'bytes', {now}); \
         INSERT INTO check_periods (agent, target, check_name, status, from_ts, to_ts, value_min, value_max, unit, message, rounds) VALUES \
         ('{a}', 'grows', 'sqlite_freelist', 'warning', {}, {now}, 30.0, 35.5, 'percent', 'freelist 35.5% of pages', 12);",
        now - H
    );
    for h in (0..240).rev() {
        let size = 600.0 * MB + 20.0 * MB * (240 - h) as f64 / 24.0;
        sql.push_str(&format!(
            "INSERT INTO samples (series_id, ts, value) VALUES (1, {}, {size});",
            now - h * H
        ));
    }
    for h in (0..24).rev() {
        sql.push_str(&format!(
            "INSERT INTO samples (series_id, ts, value) VALUES (2, {}, {});",
            now - h * H,
            100.0 * MB + h as f64
        ));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Closed, not dropped: the last connection's close checkpoints and removes -wal/-shm.
    let _ = c.close().await;
    dir
}

#[tokio::test]
async fn forecast_history_and_rollup_job_through_the_binary() {
    let dir = setup().await;
    let d = dir.path();

    // ~800 MB now, 20 MB/day, 1024 MB capacity: full in about 11 days (WARNING < 30).
    let o = run(d, &["forecast", "--target", "grows", "--format", "json"]);
    assert!(o.status.success(), "{}", all(&o));
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", all(&o)));
    let f = &v["forecasts"][0];
    assert_eq!(f["check"], "forecast_full", "{v}");
    assert_eq!(f["status"], "WARNING", "{v}");
    let days = f["days"].as_f64().unwrap_or_default();
    assert!((9.0..13.0).contains(&days), "{v}");

    // One day of history: exit 0, and how much more it needs.
    let o = run(d, &["forecast", "--target", "young"]);
    assert!(o.status.success(), "{}", all(&o));
    assert!(stdout(&o).contains("more days"), "{}", all(&o));

    // The target's series, and one as buckets.
    let o = run(d, &["history", "metrics", "--target", "grows"]);
    assert!(o.status.success(), "{}", all(&o));
    assert!(stdout(&o).contains("sqlite_file_size"), "{}", all(&o));
    let o = run(
        d,
        &[
            "history",
            "metrics",
            "--target",
            "grows",
            "--metric",
            "sqlite_file_size",
            "--since",
            "2d",
            "--step",
            "1h",
            "--format",
            "csv",
        ],
    );
    assert!(o.status.success(), "{}", all(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "time,avg,min,max,last");
    assert!((48..=49).contains(&(lines.len() - 1)), "{out}");
    let o = run(
        d,
        &[
            "history",
            "metrics",
            "--target",
            "grows",
            "--metric",
            "sqlite_file_size",
            "--since",
            "2d",
        ],
    );
    assert!(stdout(&o).contains("MB"), "readable units: {}", all(&o));
    assert!(stdout(&o).contains('█'), "a sparkline: {}", all(&o));

    // Check periods: from, to, status, value range, last message.
    let o = run(
        d,
        &["history", "checks", "--target", "grows", "--since", "2h"],
    );
    assert!(o.status.success(), "{}", all(&o));
    let out = stdout(&o);
    assert!(
        out.contains("sqlite_freelist") && out.contains("warning") && out.contains("30%–35.5%"),
        "{out}"
    );
    let o = run(
        d,
        &["history", "checks", "--target", "grows", "--format", "json"],
    );
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", all(&o)));
    assert_eq!(v[0]["rounds"], 12);

    // The rollup job runs through the same contract as every kind.
    let o = run(d, &["run-job", "rollup", "--target", "grows"]);
    assert!(o.status.success(), "{}", all(&o));
    assert!(stdout(&o).contains("rolled up"), "{}", all(&o));
    let url = format!("sqlite://{}/data/history.db", d.display());
    let mut c = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rollups WHERE series_id = 1")
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(rows >= 239, "hourly and daily rollups of 10 days: {rows}");
    let o = run(
        d,
        &["history", "jobs", "--target", "grows", "--format", "csv"],
    );
    assert!(stdout(&o).contains(",rollup,rollup,ok,"), "{}", all(&o));
}

/// Each file of a directory: name, a hash of its bytes, and its modification time.
fn snapshot(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| {
            let e = e.unwrap_or_else(|e| panic!("{e}"));
            let meta = e.metadata().unwrap_or_else(|e| panic!("{e}"));
            let mtime = meta.modified().unwrap_or_else(|e| panic!("{e}"));
            let bytes = std::fs::read(e.path()).unwrap_or_else(|e| panic!("{e}"));
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&bytes, &mut h);
            let hash = std::hash::Hasher::finish(&h);
            (e.file_name().to_string_lossy().to_string(), hash, mtime)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn names(s: &[(String, u64, std::time::SystemTime)]) -> Vec<&str> {
    s.iter().map(|f| f.0.as_str()).collect()
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// Every command that only reads the history (its words), with what its output must show.
const READERS: &[(&str, &str)] = &[
    ("history checks --target grows --since 2h", "freelist 35.5%"),
    ("history metrics --target grows", "sqlite_file_size"),
    (
        "history metrics -t grows --metric sqlite_file_size --since 2d",
        "",
    ),
    ("history jobs --target grows", ""),
    ("history transitions --target grows", ""),
    ("history maintenance --target grows", ""),
    ("history alerts --target grows", ""),
    ("forecast --target grows", "forecast_full"),
    ("slow-queries --target grows", ""),
    ("status", "reachable"),
    ("silence list", "no active silences"),
];

#[tokio::test]
async fn cli_readers_open_a_sqlite_store_read_only_and_change_nothing() {
    let dir = setup().await;
    let d = dir.path();
    let data = d.join("data");
    let db = data.join("history.db");
    // The seeding connection has closed: the last connection removed -wal and -shm.
    let before = snapshot(&data);
    assert_eq!(names(&before), ["history.db"]);
    chmod(&db, 0o444);
    chmod(&data, 0o555);
    for (cmd, shows) in READERS {
        let args: Vec<&str> = cmd.split(' ').collect();
        let o = run(d, &args);
        assert!(o.status.success(), "{args:?}: {}", all(&o));
        assert!(stdout(&o).contains(shows), "{args:?}: {}", all(&o));
    }
    // Not even a -wal or -shm: without a -wal no process has the store open, and the
    // readers open the file immutable (a read-only WAL reader would create both and, not
    // allowed to remove them, leave them behind).
    assert_eq!(
        snapshot(&data),
        before,
        "a reader changed the history directory"
    );

    // As a user who may not write the directory (root may write anything): the same.
    chmod(d, 0o755);
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args([
            "-c", "c.toml", "history", "checks", "--target", "grows", "--since", "2h",
        ])
        .current_dir(d)
        .env_remove("DBWARDEN_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("setpriv: {e}"));
    assert!(o.status.success(), "as nobody: {}", all(&o));
    assert!(stdout(&o).contains("freelist 35.5%"), "{}", all(&o));
    assert_eq!(
        snapshot(&data),
        before,
        "a reader changed the history directory"
    );

    // A store being written (its -wal holds rows not yet in the file): the readers see
    // them through the WAL and still do not touch the file.
    chmod(&data, 0o755);
    chmod(&db, 0o644);
    let url = format!("sqlite://{}", db.display());
    let mut w = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let now = chrono::Utc::now().timestamp_millis();
    let a = dbwarden::store::agent_name().replace('\'', "''");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO check_periods (agent, target, check_name, status, from_ts, to_ts, value_min, value_max, unit, message, rounds) VALUES \
         ('{a}', 'grows', 'sqlite_wal', 'ok', {}, {now}, 1.0, 1.0, 'percent', 'only in the wal', 1);",
        now - 60_000
    )))
    .execute(&mut w)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let file = std::fs::read(&db).unwrap_or_else(|e| panic!("{e}"));
    let during = snapshot(&data);
    assert_eq!(
        names(&during),
        ["history.db", "history.db-shm", "history.db-wal"]
    );
    let o = run(
        d,
        &["history", "checks", "--target", "grows", "--since", "2h"],
    );
    assert!(o.status.success(), "{}", all(&o));
    assert!(stdout(&o).contains("only in the wal"), "{}", all(&o));
    assert_eq!(std::fs::read(&db).unwrap_or_else(|e| panic!("{e}")), file);
    assert_eq!(snapshot(&data)[0], during[0], "the reader wrote the file");
    let _ = w.close().await;
}

#[tokio::test]
async fn a_missing_store_is_an_error_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    std::fs::write(
        d.join("c.toml"),
        "[daemon]\nhistory = \"sqlite://./data/history.db\"\n\
         [[target]]\nname = \"grows\"\nurl = \"sqlite://./grows.db?mode=rwc\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (cmd, _) in READERS {
        let args: Vec<&str> = cmd.split(' ').collect();
        let o = run(d, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", all(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("data/history.db does not exist: start the daemon first"),
            "{args:?}: {err}"
        );
    }
    assert!(
        !d.join("data").exists(),
        "a reader created the store's directory"
    );
}

#[tokio::test]
async fn an_older_schema_is_an_error_saying_how_to_upgrade_and_a_newer_one_is_read() {
    let dir = setup().await;
    let d = dir.path();
    let url = format!("sqlite://{}/data/history.db", d.display());
    let mut c = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version DESC")
            .fetch_all(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let (latest, older) = (versions[0], versions[1]);
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ?")
        .bind(latest)
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = c.close().await;
    let o = run(d, &["history", "checks", "--target", "grows"]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    let want = format!(
        "the history store is at schema {older}, this dbwarden needs {latest}: start the daemon once (or run `dbwarden migrate`) to upgrade it"
    );
    assert!(all(&o).contains(&want), "{}", all(&o));

    // A newer agent of the fleet upgraded the store: readable as is.
    let mut c = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (?, 'from the future', 1, X'00', 0), (?, 'was deleted', 1, X'00', 0)",
    )
    .bind(latest + 1000)
    .bind(latest)
    .execute(&mut c)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = c.close().await;
    let o = run(
        d,
        &["history", "checks", "--target", "grows", "--since", "2h"],
    );
    assert!(o.status.success(), "{}", all(&o));
    assert!(stdout(&o).contains("freelist 35.5%"), "{}", all(&o));
}

/// A PostgreSQL store read by a role with only SELECT grants; a read-only Store refuses
/// writes itself, and its sessions refuse them too.
#[tokio::test]
async fn postgres_readers_use_a_read_only_session() {
    use dbwarden::config::SecretUrl;
    use dbwarden::store::{Store, StoreError};
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let db = common::pg::PgDb::create(&admin).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let config = |url: &str| {
        let body = format!(
            "[daemon]\nhistory = \"{url}\"\n\
             [[target]]\nname = \"grows\"\nurl = \"sqlite://./grows.db?mode=rwc\"\n"
        );
        std::fs::write(d.join("c.toml"), body).unwrap_or_else(|e| panic!("{e}"));
    };
    config(&db.url);
    let o = run(d, &["migrate"]);
    assert!(o.status.success(), "{}", all(&o));

    let role = format!("dbw_rocli_{:08x}", rand::random::<u32>());
    let mut c = db.connect().await;
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN; \
         GRANT CONNECT ON DATABASE {} TO {role}; GRANT USAGE ON SCHEMA public TO {role}; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}; \
         INSERT INTO series (id, agent, target, metric, label, unit, last_ts) VALUES (1, 'a', 'grows', 'size', '', 'bytes', {now}); \
         INSERT INTO samples (series_id, ts, value) VALUES (1, {}, 1.0), (1, {now}, 2.0); \
         INSERT INTO check_periods (agent, target, check_name, status, from_ts, to_ts, value_min, value_max, unit, message, rounds) VALUES \
         ('a', 'grows', 'pg_size', 'warning', {}, {now}, 1.0, 2.0, 'bytes', 'seen by a reader', 3);",
        db.name,
        now - 3 * 3_600_000,
        now - 60_000
    )))
    .execute(&mut c)
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let base = db.url.replace("postgres@", &format!("{role}@"));
    assert_ne!(base, db.url, "the test URL names the user postgres");
    config(&base);
    let o = run(
        d,
        &["history", "checks", "--target", "grows", "--since", "2h"],
    );
    assert!(o.status.success(), "{}", all(&o));
    assert!(stdout(&o).contains("seen by a reader"), "{}", all(&o));
    for args in [
        &["silence", "list"][..],
        &["status"],
        &["forecast", "--target", "grows"],
    ] {
        let o = run(d, args);
        assert!(o.status.success(), "{args:?}: {}", all(&o));
    }

    // Even as the owner, a read-only Store's session refuses writes, and the Store itself
    // refuses the writes it knows.
    let store = Store::open_read_only(&SecretUrl::new(db.url.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let r = dbwarden::history::store::roll_up(
        &store,
        "a",
        "grows",
        dbwarden::history::rollup::Grain::Hour,
        now,
        &cancel,
    )
    .await;
    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("read-only transaction"), "{e}");
    let r = store
        .silence_add("grows", chrono::Utc::now(), "x", "test")
        .await;
    assert!(matches!(r, Err(StoreError::ReadOnly(_))), "{r:?}");
    assert!(
        r.err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("is open read-only")
    );
    let _ = store.close(std::time::Duration::from_secs(2)).await;

    // Dropping the database drops the role's grants in it; then the role can go.
    let _ = c.close().await;
    db.drop_db().await;
    let mut a = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&mut a)
        .await;
    let _ = a.close().await;
}
