//! Maintenance's second slice against real servers: `VACUUM FULL` for named tables, the
//! load guard (replication lag on the throwaway primary/standby pair, the target's
//! believed status) and SQLite's scheduled integrity check on really corrupted files.

mod common;

use std::time::Duration;

use dbwarden::config::Config;
use dbwarden::jobs::maintenance::{MaintenanceReport, Request, maintain, window_tz};
use dbwarden::maintenance::{Action, Outcome, SkipKind};
use sqlx::{AssertSqlSafe, Connection, Executor};
use tokio_util::sync::CancellationToken;

use common::pg::{PgDb, pg_url};

/// The PostgreSQL tests take the server-wide maintenance lock: they take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A config with one target `t` at `url` and a maintenance job (time zone UTC) with
/// `extra` keys.
fn config(url: &str, extra: &str) -> (tempfile::TempDir, Config) {
    common::maint::config("t", url, "", &format!("timezone = \"UTC\"\n{extra}"))
}

/// A window from an hour ago to an hour ahead (UTC), or one that closed an hour ago.
fn window(open: bool) -> String {
    let now = chrono::Utc::now();
    let h = chrono::Duration::hours(1);
    let (a, b) = if open {
        (now - h, now + h)
    } else {
        (now - h * 3, now - h)
    };
    format!("window = \"{}-{}\"", a.format("%H:%M"), b.format("%H:%M"))
}

async fn run_with(c: &Config, history: Option<&dbwarden::store::Store>) -> MaintenanceReport {
    let t = c.target("t").unwrap_or_else(|| panic!("no target"));
    let job = c.job("nightly").unwrap_or_else(|| panic!("no job"));
    let p = job
        .params
        .maintenance()
        .unwrap_or_else(|| panic!("not maintenance"));
    let req = Request {
        target: t,
        params: p,
        tz: window_tz(job),
        use_window: true,
        dry_run: false,
        watch_vacuum: None,
        status: &|| None,
        history,
    };
    maintain(req, &CancellationToken::new(), |_| {}, |_| {})
        .await
        .unwrap_or_else(|e| panic!("maintain: {e}"))
}

async fn run(c: &Config) -> MaintenanceReport {
    run_with(c, None).await
}

fn outcomes(r: &MaintenanceReport) -> Vec<String> {
    r.records
        .iter()
        .map(|x| format!("{} {} {}", x.step.table, x.step.action.as_str(), x.outcome))
        .collect()
}

async fn exec(c: &mut sqlx::PgConnection, sqls: &[&str]) {
    for sql in sqls {
        c.execute(AssertSqlSafe(sql.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// `public.big` with 20,000 rows, analyzed, then every row updated (dead rows), in `db`
/// (autovacuum off for it: the throwaway primary runs autovacuum).
async fn bloated(db: &PgDb) {
    let mut c = db.connect().await;
    exec(
        &mut c,
        &[
            "CREATE TABLE public.big (id int PRIMARY KEY, v int, pad text) WITH (autovacuum_enabled = false)",
            "INSERT INTO public.big SELECT g, 0, repeat('x', 200) FROM generate_series(1, 20000) g",
        ],
    )
    .await;
    let _ = c.close().await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        &["ANALYZE public.big", "UPDATE public.big SET v = v + 1"],
    )
    .await;
    let _ = c.close().await;
}

#[tokio::test]
async fn vacuum_full_rewrites_a_named_table_inside_the_window_only() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    bloated(&db).await;
    // Outside the window: a plain VACUUM (ANALYZE), and the plan says why not FULL.
    let (_d, closed) = config(
        &db.url,
        &format!("vacuum_full = [\"public.big\"]\n{}", window(false)),
    );
    let t = closed.target("t").unwrap_or_else(|| panic!("no target"));
    let p = closed
        .job("nightly")
        .and_then(|j| j.params.maintenance())
        .unwrap_or_else(|| panic!("no job"));
    let dry = Request {
        target: t,
        params: p,
        tz: chrono_tz::Tz::UTC,
        use_window: false,
        dry_run: true,
        watch_vacuum: None,
        status: &|| None,
        history: None,
    };
    let r = maintain(dry, &CancellationToken::new(), |_| {}, |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.plan.len(), 1, "{r:?}");
    assert_eq!(r.plan[0].action, Action::VacuumAnalyze);
    assert!(
        r.plan[0]
            .reason
            .contains("; VACUUM FULL not now: VACUUM FULL runs only inside the maintenance window"),
        "{}",
        r.plan[0].reason
    );

    // Inside it: VACUUM (FULL, ANALYZE), and the file shrinks (the dead half is gone).
    let (_d, open) = config(
        &db.url,
        &format!("vacuum_full = [\"public.big\"]\n{}", window(true)),
    );
    let r = run(&open).await;
    assert_eq!(outcomes(&r), ["public.big vacuum_full done"], "{r:?}");
    let rec = &r.records[0];
    assert!(
        rec.step
            .reason
            .ends_with("VACUUM FULL enabled for this table (vacuum_full)")
    );
    let after = rec.after.size_bytes.unwrap_or(f64::MAX);
    assert!(
        after < rec.step.size_bytes * 0.75,
        "size before {} after {after}",
        rec.step.size_bytes
    );
    db.drop_db().await;
}

#[tokio::test]
async fn vacuum_full_waits_at_most_lock_timeout_and_never_keeps_the_app_waiting_longer() {
    let _turn = SERIAL.lock().await;
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    bloated(&db).await;
    // An index whose expression sleeps 20 ms a row in sessions with dbw.slow = on (ours,
    // from the database default set below): the rewrite holds ACCESS EXCLUSIVE for ~400 s.
    let mut c = db.connect().await;
    exec(
        &mut c,
        &[
            "CREATE FUNCTION slow_id(i int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ \
             BEGIN IF current_setting('dbw.slow', true) = 'on' THEN PERFORM pg_sleep(0.02); END IF; \
             RETURN i; END $$",
            "CREATE INDEX big_slow ON public.big (slow_id(id))",
        ],
    )
    .await;
    let name = db.name.clone();
    exec(
        &mut c,
        &[&format!("ALTER DATABASE {name} SET dbw.slow = 'on'")],
    )
    .await;
    let _ = c.close().await;

    // 1. A table lock held by the application: skipped after lock_timeout, not queued.
    let (_d, cfg) = config(
        &db.url,
        &format!(
            "vacuum_full = [\"public.big\"]\nlock_timeout = \"1s\"\n{}",
            window(true)
        ),
    );
    let mut app = db.connect().await;
    exec(
        &mut app,
        &["BEGIN", "LOCK TABLE public.big IN ACCESS SHARE MODE"],
    )
    .await;
    let r = run(&cfg).await;
    assert_eq!(
        outcomes(&r),
        ["public.big vacuum_full skipped: lock not available within lock_timeout 1s"]
    );
    assert_eq!(r.records[0].outcome.skip_kind(), Some(SkipKind::LockHeld));
    exec(&mut app, &["ROLLBACK"]).await;

    // 2. The application arrives while the rewrite holds its lock: once it has waited for
    // lock_timeout, the rewrite is cancelled and the application goes on.
    let maint = tokio::spawn(async move { run(&cfg).await });
    let mut watch = db.connect().await;
    let mut holding = false;
    for _ in 0..200 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.relation = 'public.big'::regclass AND l.mode = 'AccessExclusiveLock' \
             AND l.granted AND a.query LIKE '%VACUUM (FULL, ANALYZE)%'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if n > 0 {
            holding = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(holding, "the VACUUM FULL never took its lock");
    // The application's query has no lock_timeout of its own: it waits behind us.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM public.big")
        .fetch_one(&mut app)
        .await
        .unwrap_or_else(|e| panic!("the application's query failed: {e}"));
    assert_eq!(rows, 20_000);
    let r = maint.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcomes(&r),
        [
            "public.big vacuum_full interrupted: VACUUM FULL cancelled: it kept 1 application session(s) waiting for longer than lock_timeout 1s"
        ]
    );
    // Nothing of ours is left running.
    let ours: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%dbwarden */ VACUUM%' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut watch)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ours, 0);
    let _ = app.close().await;
    let _ = watch.close().await;
    db.drop_db().await;
}

/// Resumes WAL replay on the standby when dropped (also when the test fails).
struct ResumeReplay(String);

impl Drop for ResumeReplay {
    fn drop(&mut self) {
        let url = self.0.clone();
        // A thread with its own runtime: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                        let _ = sqlx::query("SELECT pg_wal_replay_resume()")
                            .execute(&mut c)
                            .await;
                        let _ = c.close().await;
                    }
                });
            }
        })
        .join();
    }
}

#[tokio::test]
async fn a_standby_lagging_past_max_replication_lag_holds_off_every_table() {
    let _turn = SERIAL.lock().await;
    let Some(primary) = common::url_from_env("DBWARDEN_TEST_PG_PRIMARY_URL") else {
        return;
    };
    let Some(standby) = common::url_from_env("DBWARDEN_TEST_PG_STANDBY_URL") else {
        return;
    };
    let db = PgDb::create(&primary).await;
    bloated(&db).await;

    // No lag: the table is vacuumed.
    let (_d, calm) = config(&db.url, "max_replication_lag = \"5s\"\nmin_dead_rows = 1");
    let r = run(&calm).await;
    assert_eq!(outcomes(&r)[0], "public.big vacuum_analyze done", "{r:?}");

    // Replay paused on the standby while the primary writes: its replay lag, as the
    // primary's pg_stat_replication reports it, grows past 1 s.
    let mut s = sqlx::PgConnection::connect(&standby)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _resume = ResumeReplay(standby.clone());
    exec(&mut s, &["SELECT pg_wal_replay_pause()"]).await;
    let mut c = db.connect().await;
    let mut lag = 0.0;
    for _ in 0..100 {
        exec(&mut c, &["UPDATE public.big SET v = v + 1 WHERE id <= 100"]).await;
        lag = sqlx::query_scalar::<_, f64>(
            "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication",
        )
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if lag > 1.5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(lag > 1.5, "no replay lag produced ({lag} s)");
    exec(&mut c, &["UPDATE public.big SET v = v + 1"]).await;
    let _ = c.close().await;
    let (_d, strict) = config(&db.url, "max_replication_lag = \"1s\"\nmin_dead_rows = 1");
    let r = run(&strict).await;
    exec(&mut s, &["SELECT pg_wal_replay_resume()"]).await;
    let _ = s.close().await;
    assert_eq!(r.records.len(), 1, "{r:?}");
    assert_eq!(r.records[0].outcome.skip_kind(), Some(SkipKind::Guard));
    let why = r.records[0].outcome.why().unwrap_or_default().to_string();
    assert!(
        why.starts_with("load guard: replication lag of dbwarden_ci_standby ")
            && why.ends_with("s > max_replication_lag 1s"),
        "{why}"
    );
    db.drop_db().await;
}

/// A SQLite file with table `t` (2,000 rows) and index `t_v`.
async fn sqlite_file(path: &std::path::Path) {
    // Rollback journal: the damage written to the file below is what SQLite reads (in
    // WAL mode the newest pages would be in the -wal file).
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Delete)
        .create_if_missing(true);
    let mut c = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for sql in [
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        "CREATE INDEX t_v ON t (v)",
        "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < 1999) \
         INSERT INTO t SELECT i, 'value ' || i FROM g",
    ] {
        c.execute(sql).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let _ = c.close().await;
}

/// Damages the first index leaf page (type 0x0a) of the file: `structure` sets an
/// impossible cell count (any check sees it), else one key is altered so the index no
/// longer matches its table (only the thorough integrity_check sees that).
fn corrupt(path: &std::path::Path, structure: bool) {
    let mut data = std::fs::read(path).unwrap_or_else(|e| panic!("{e}"));
    let ps = 4096;
    // An index leaf page holding cells (bytes 3-4: the cell count).
    let page = (1..data.len() / ps)
        .map(|p| p * ps)
        .find(|&off| data[off] == 0x0a && (data[off + 3], data[off + 4]) != (0, 0))
        .unwrap_or_else(|| panic!("no index leaf page"));
    if structure {
        data[page + 3] = 0x0f;
        data[page + 4] = 0xff;
    } else {
        // The first cell (its offset is the first entry of the cell pointer array):
        // "value N" becomes "valuX N".
        let cell = page + usize::from(u16::from_be_bytes([data[page + 8], data[page + 9]]));
        let at = data[cell..cell + 32]
            .windows(5)
            .position(|w| w == b"value")
            .unwrap_or_else(|| panic!("no key to alter"));
        data[cell + at + 4] = b'X';
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn sqlite_integrity_check_finds_a_corrupt_index_and_the_rest_is_not_rewritten() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("app.db");
    sqlite_file(&db).await;
    let url = format!("sqlite://{}", db.display());
    let (_d, cfg) = config(&url, "integrity_check_every = \"7d\"");
    let r = run(&cfg).await;
    let name = db.display().to_string();
    assert_eq!(
        outcomes(&r),
        [
            format!("{name} integrity_check done"),
            format!("{name} optimize done")
        ]
    );
    assert_eq!(
        r.records[0].step.reason,
        "integrity_check_every 7days: no history store to remember the last check in"
    );

    corrupt(&db, false);
    // quick_check does not compare an index with its table: it passes.
    let (_d, quick) = config(
        &url,
        "integrity_check_every = \"7d\"\nintegrity_check_pragma = \"quick_check\"",
    );
    assert_eq!(
        outcomes(&run(&quick).await)[0],
        format!("{name} quick_check done")
    );
    let r = run(&cfg).await;
    let got = outcomes(&r);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with(&format!(
            "{name} integrity_check failed: PRAGMA integrity_check: row "
        )) && got[0].ends_with(" missing from index t_v"),
        "{}",
        got[0]
    );
    assert_eq!(
        got[1],
        format!(
            "{name} optimize skipped: not run on a database that failed its integrity check (integrity_check)"
        )
    );
}

#[tokio::test]
async fn a_structurally_corrupt_sqlite_file_fails_its_check_and_the_health_round_sees_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("app.db");
    sqlite_file(&db).await;
    corrupt(&db, true);
    let url = format!("sqlite://{}", db.display());
    let (cdir, cfg) = config(
        &url,
        "integrity_check_every = \"7d\"\nintegrity_check_pragma = \"quick_check\"",
    );
    let r = run(&cfg).await;
    let first = r
        .records
        .first()
        .map(|x| x.outcome.to_string())
        .unwrap_or_default();
    assert!(
        first.starts_with("failed: PRAGMA quick_check: *** in database main ***")
            && first.contains("btreeInitPage() returns error code 11"),
        "{first}"
    );
    assert_eq!(
        r.records.get(1).and_then(|x| x.outcome.skip_kind()),
        Some(SkipKind::NotApplicable),
        "nothing rewrites a corrupt file"
    );
    // The health round's own check reports it CRITICAL.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dbwarden"))
        .arg("-c")
        .arg(cdir.path().join("dbwarden.toml"))
        .args(["check", "--target", "t", "--format", "json"])
        .output()
        .unwrap_or_else(|e| panic!("run dbwarden: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let check = v["targets"][0]["checks"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["check"] == "sqlite_quick_check")
                .cloned()
        })
        .unwrap_or_else(|| panic!("no sqlite_quick_check in {text}"));
    assert_eq!(check["status"], "CRITICAL", "{check}");
}

#[tokio::test]
async fn the_last_passed_integrity_check_is_remembered_in_the_history_store() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("app.db");
    sqlite_file(&db).await;
    let url = format!("sqlite://{}", db.display());
    let (cdir, cfg) = config(&url, "integrity_check_every = \"7d\"");
    let store_url = format!("sqlite://{}/history.db", cdir.path().display());
    let store = dbwarden::store::Store::open(&dbwarden::config::SecretUrl::new(store_url), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = run_with(&cfg, Some(&store)).await;
    assert_eq!(r.records[0].step.action, Action::IntegrityCheck);
    assert_eq!(
        r.records[0].step.reason,
        "no passed integrity check recorded in the last 7days (integrity_check_every)"
    );
    for rec in r.records {
        store
            .write(dbwarden::store::Record::Maintenance {
                target: "t".into(),
                run_id: None,
                record: Box::new(rec),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let r = run_with(&cfg, Some(&store)).await;
    let acts: Vec<Action> = r.records.iter().map(|x| x.step.action).collect();
    assert_eq!(acts, [Action::Optimize], "passed within 7 days: not due");
    store.close(Duration::from_secs(2)).await;
}

/// One scheduled run of the maintenance job on a runtime whose status tracker believes
/// target `t` is `believed`: the outcome of each step, from the event stream, and the
/// whole-run skip noted for `maintenance_failing`.
async fn scheduled_run(
    cfg: &std::sync::Arc<Config>,
    believed: dbwarden::health::Status,
) -> (Vec<Outcome>, Option<dbwarden::maintenance::Skip>) {
    let (Some(job), Some(target)) = (cfg.job("nightly").cloned(), cfg.target("t").cloned()) else {
        panic!("job or target missing")
    };
    let events = dbwarden::events::Events::default();
    let mut seen = events.subscribe("test");
    let (shared, ctx) = dbwarden::jobs::runtime(cfg, events);
    shared.tracker.restore([("t".to_string(), None, believed)]);
    let f = dbwarden::scheduler::run_now(ctx, job, target, cfg.clone()).await;
    assert_eq!(f.outcome, dbwarden::store::RunOutcome::Ok, "{:?}", f.error);
    let mut got = Vec::new();
    while let Some(e) = seen.try_recv() {
        if let dbwarden::events::Event::Maintenance { records, .. } = &*e {
            got.extend(records.iter().map(|r| r.outcome.clone()));
        }
    }
    (got, shared.take_maintenance_skip(&f.run_id))
}

#[tokio::test]
async fn a_target_believed_critical_is_not_maintained_with_skip_when_status() {
    use dbwarden::health::Status;

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("app.db");
    sqlite_file(&db).await;
    let url = format!("sqlite://{}", db.display());
    let (_d, cfg) = config(&url, "skip_when_status = \"critical\"");
    let cfg = std::sync::Arc::new(cfg);
    let (got, whole) = scheduled_run(&cfg, Status::Critical).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].skip_kind(), Some(SkipKind::Guard));
    assert_eq!(
        got[0].why(),
        Some("load guard: the target's status is CRITICAL (skip_when_status CRITICAL)")
    );
    // Every planned step held off: the run did not do its work (maintenance_failing).
    assert_eq!(whole.map(|s| s.kind), Some(SkipKind::Guard));
    assert_eq!(
        scheduled_run(&cfg, Status::Warning).await,
        (vec![Outcome::Done], None)
    );
}

#[test]
fn the_new_maintenance_keys_are_validated_all_at_once() {
    let load = |extra: &str| common::maint::try_config("t", "postgres://127.0.0.1/x", "", extra).1;
    let err = load(
        "vacuum_full = [\"big\", \"public.*\"]\nactions = [\"analyze\"]\nmax_replication_lag = \"0s\"\nintegrity_check_every = \"0s\"",
    )
    .err()
    .unwrap_or_else(|| panic!("accepted bad keys"));
    for (key, what) in [
        ("job[0].vacuum_full", "\"big\" is not a table name"),
        ("job[0].vacuum_full", "\"public.*\" is not a table name"),
        ("job[0].vacuum_full", "runs only inside the job's window"),
        ("job[0].vacuum_full", "actions does not allow \"vacuum\""),
        ("job[0].max_replication_lag", "0 would hold off every table"),
        ("job[0].integrity_check_every", "0 is no interval"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(key) && l.contains(what)),
            "{key}: {what} missing from:\n{err}"
        );
    }
    let err = load("skip_when_status = \"bad\"")
        .err()
        .unwrap_or_else(|| panic!("accepted a bad status"));
    assert!(
        err.contains("skip_when_status")
            && err.contains("use \"warning\", \"unknown\" or \"critical\""),
        "{err}"
    );
    let err = load("guard_action = \"wait\"")
        .err()
        .unwrap_or_else(|| panic!("accepted a bad guard_action"));
    assert!(err.contains("guard_action"), "{err}");
    let ok = load(
        "window = \"01:00-04:00\"\nvacuum_full = [\"public.big\"]\nmax_replication_lag = \"30s\"\nskip_when_status = \"Critical\"\nguard_action = \"pause\"\nintegrity_check_every = \"7d\"\nintegrity_check_pragma = \"quick_check\"",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let p = ok
        .job("nightly")
        .and_then(|j| j.params.maintenance())
        .unwrap_or_else(|| panic!("no job"));
    assert_eq!(p.skip_when_status, Some(dbwarden::health::Status::Critical));
    assert_eq!(p.guard_action, dbwarden::maintenance::OnGuard::Pause);
    assert_eq!(
        p.integrity_check_every,
        Some(Duration::from_secs(7 * 86_400))
    );
}
