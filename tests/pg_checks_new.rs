//! The second pass of PostgreSQL checks against real servers: each test provokes its
//! condition for real (and shows the OK case), through a config loaded the way the daemon
//! loads it.
//!
//! Needs `DBWARDEN_TEST_PG_URL` (the shared server: autovacuum off, checksums off) and,
//! for replication, `DBWARDEN_TEST_PG_PRIMARY_URL` / `DBWARDEN_TEST_PG_STANDBY_URL` (the
//! throwaway primary on 5433 and its streaming standby on 5434, `.ci/run` starts them).
//! Unset, each test prints why it skips (a failure under DBWARDEN_REQUIRE_SERVICES=1).

mod common;

use std::time::Duration;

use dbwarden::config::{Config, Target};
use dbwarden::engine::{Engine, HealthOptions, HealthReport, RunScope, catalog};
use dbwarden::health::{CheckResult, Measurement, Outcome, Status, evaluate};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};

/// The standby's `cluster_name`, which its WAL receiver sends as application_name.
const STANDBY_NAME: &str = "dbwarden_ci_standby";

fn unique(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

async fn exec(c: &mut PgConnection, sql: &str) {
    if let Err(e) = c.execute(AssertSqlSafe(sql.to_string())).await {
        panic!("{sql}: {e}");
    }
}

/// `url` with another user (no password: the test servers trust local connections).
fn as_user(url: &str, user: &str) -> String {
    let mut u = url::Url::parse(url).unwrap_or_else(|e| panic!("{e}"));
    let _ = u.set_username(user);
    let _ = u.set_password(None);
    u.to_string()
}

/// A config with one PostgreSQL target "pg" (`extra` inside its table) and a health job.
/// `disk_space` is relaxed: a build machine's disk is not what these tests are about.
fn target(url: &str, extra: &str) -> (tempfile::TempDir, Config, Target) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("dbwarden.toml");
    let body = format!(
        r#"[daemon]
history = "sqlite://{}/history.db"

[thresholds]
disk_space = {{ warning = "99%", critical = "100%" }}

[[target]]
name = "pg"
url = "{url}"
pool = {{ max_connections = 2, connect_timeout = "2s", acquire_timeout = "2s" }}
{extra}

[[job]]
name = "health"
kind = "health"
schedule = "@every 30s"
"#,
        dir.path().display()
    );
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
    let config = dbwarden::config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
    let t = config
        .target("pg")
        .cloned()
        .unwrap_or_else(|| panic!("no target"));
    (dir, config, t)
}

async fn round(e: &Engine, t: &Target) -> HealthReport {
    e.health(t, &HealthOptions::default(), &RunScope::default())
        .await
}

fn judge(t: &Target, report: &HealthReport) -> Vec<CheckResult> {
    report
        .measurements
        .iter()
        .map(|m| {
            let spec = catalog::spec(m.check).unwrap_or_else(|| panic!("{}", m.check));
            evaluate(m, spec, &t.thresholds_for(spec))
        })
        .collect()
}

fn find<'a>(results: &'a [CheckResult], check: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.check == check)
        .unwrap_or_else(|| panic!("no result for {check}"))
}

fn measurement<'a>(report: &'a HealthReport, check: &str) -> &'a Measurement {
    report
        .measurements
        .iter()
        .find(|m| m.check == check)
        .unwrap_or_else(|| panic!("no measurement for {check}"))
}

/// The subjects of a measurement's observations.
fn subjects(m: &Measurement) -> Vec<String> {
    match &m.outcome {
        Outcome::Values(v) => v.iter().filter_map(|o| o.subject.clone()).collect(),
        _ => Vec::new(),
    }
}

async fn checked(url: &str, extra: &str, check: &str) -> (CheckResult, HealthReport) {
    let (_dir, _config, t) = target(url, extra);
    let e = Engine::open(&t).unwrap_or_else(|e| panic!("open: {e}"));
    let report = round(&e, &t).await;
    let r = find(&judge(&t, &report), check).clone();
    e.close(Duration::from_secs(2)).await;
    (r, report)
}

// ---------------------------------------------------------------------------------------
// settings, long_transaction, sequence_exhaustion, checksum_failures, wal_volume
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn settings_warns_of_autovacuum_off_and_is_critical_for_track_counts_off() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let db = common::pg::PgDb::create(&admin).await;
    // The shared server runs with autovacuum off.
    let (r, _) = checked(&db.url, "", "settings").await;
    assert_eq!(r.status, Status::Warning, "{}", r.message);
    assert!(r.message.contains("autovacuum is off"), "{}", r.message);

    let mut c = connect(&admin).await;
    exec(
        &mut c,
        &format!("ALTER DATABASE {} SET track_counts = off", db.name),
    )
    .await;
    let _ = c.close().await;
    let (r, _) = checked(&db.url, "", "settings").await;
    assert_eq!(r.status, Status::Critical, "{}", r.message);
    assert!(r.message.contains("track_counts is off"), "{}", r.message);
    db.drop_db().await;
}

#[tokio::test]
async fn settings_is_ok_on_a_server_with_autovacuum_on() {
    let Some(url) = common::url_from_env("DBWARDEN_TEST_PG_PRIMARY_URL") else {
        return;
    };
    let (r, _) = checked(&url, "", "settings").await;
    assert_eq!(r.status, Status::Ok, "{}", r.message);
}

#[tokio::test]
async fn long_transaction_names_an_idle_open_transaction() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let db = common::pg::PgDb::create(&admin).await;
    let th = r#"thresholds = { long_transaction = { warning = "0s", critical = "1h" } }"#;
    let (r, _) = checked(&db.url, th, "long_transaction").await;
    assert_eq!(r.status, Status::Ok, "no transaction open: {}", r.message);

    let mut holder = db.connect().await;
    exec(&mut holder, "BEGIN; SELECT txid_current()").await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (r, _) = checked(&db.url, th, "long_transaction").await;
    assert_eq!(r.status, Status::Warning, "{}", r.message);
    assert!(r.message.contains(&format!("pid {pid}")), "{}", r.message);
    assert!(r.message.contains("idle in transaction"), "{}", r.message);
    let _ = holder.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn sequence_exhaustion_names_the_owning_column() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let db = common::pg::PgDb::create(&admin).await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE orders (id int GENERATED BY DEFAULT AS IDENTITY, v text);
         INSERT INTO orders (v) VALUES ('a');
         CREATE TABLE fresh (id serial PRIMARY KEY);",
    )
    .await;
    let (r, _) = checked(&db.url, "", "sequence_exhaustion").await;
    assert_eq!(r.status, Status::Ok, "fresh sequences: {}", r.message);

    // An identity column at 98% of integer's range: CRITICAL, named with its column.
    exec(
        &mut c,
        "SELECT setval(pg_get_serial_sequence('orders', 'id'), 2105000000)",
    )
    .await;
    let (r, _) = checked(&db.url, "", "sequence_exhaustion").await;
    assert_eq!(r.status, Status::Critical, "{}", r.message);
    assert!(r.message.contains("public.orders.id"), "{}", r.message);

    // A bigint sequence (not serial) owned by an integer column counts to the column's
    // limit; an unowned sequence is judged too.
    exec(
        &mut c,
        "SELECT setval(pg_get_serial_sequence('orders', 'id'), 2);
         CREATE TABLE legacy (n int);
         CREATE SEQUENCE legacy_n AS bigint OWNED BY legacy.n;
         SELECT setval('legacy_n', 1900000000);
         CREATE SEQUENCE loose AS smallint;
         SELECT setval('loose', 100);",
    )
    .await;
    let (r, report) = checked(&db.url, "", "sequence_exhaustion").await;
    assert_eq!(r.status, Status::Warning, "{}", r.message);
    assert!(r.message.contains("public.legacy.n"), "{}", r.message);
    let s = subjects(measurement(&report, "sequence_exhaustion"));
    assert!(s.iter().any(|s| s.contains("public.loose")), "{s:?}");
    let _ = c.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn checksum_failures_and_wal_volume_on_a_server_without_checksums() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let db = common::pg::PgDb::create(&admin).await;
    let (r, report) = checked(&db.url, "", "checksum_failures").await;
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    assert!(
        r.message.contains("data checksums are off"),
        "{}",
        r.message
    );
    // pg_wal is measured (a superuser has pg_monitor): a real size, judged.
    let (_dir, _c, t) = target(&db.url, "");
    let w = find(&judge(&t, &report), "wal_volume").clone();
    assert_eq!(w.status, Status::Ok, "{}", w.message);
    assert!(w.value.is_some_and(|v| v > 0.0), "{}", w.message);
    let th = r#"thresholds = { wal_volume = { warning = "0%" } }"#;
    let (w, _) = checked(&db.url, th, "wal_volume").await;
    assert_eq!(w.status, Status::Warning, "{}", w.message);
    assert!(w.message.contains("in pg_wal"), "{}", w.message);
    // Without pg_monitor: UNKNOWN with the GRANT, not a guess.
    let role = unique("dbw_test_role");
    let mut c = connect(&admin).await;
    exec(&mut c, &format!("CREATE ROLE {role} LOGIN")).await;
    let (w, _) = checked(&as_user(&db.url, &role), "", "wal_volume").await;
    exec(&mut c, &format!("DROP ROLE {role}")).await;
    let _ = c.close().await;
    assert_eq!(w.status, Status::Unknown, "{}", w.message);
    assert!(w.message.contains("GRANT pg_monitor"), "{}", w.message);
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// Replication: the throwaway primary (5433) and its standby (5434)
// ---------------------------------------------------------------------------------------

fn replication_urls() -> Option<(String, String)> {
    let primary = common::url_from_env("DBWARDEN_TEST_PG_PRIMARY_URL")?;
    let standby = common::url_from_env("DBWARDEN_TEST_PG_STANDBY_URL")?;
    Some((primary, standby))
}

#[tokio::test]
async fn an_expected_standby_missing_from_the_primary_alarms() {
    let Some((primary, _)) = replication_urls() else {
        return;
    };
    let present = format!(r#"expected_replicas = ["{STANDBY_NAME}"]"#);
    let (r, _) = checked(&primary, &present, "replication_lag").await;
    assert_ne!(r.status, Status::Warning, "{}", r.message);
    assert!(!r.message.contains("not connected"), "{}", r.message);

    let absent = unique("dbw_absent");
    let both = format!(r#"expected_replicas = ["{STANDBY_NAME}", "{absent}"]"#);
    let (r, _) = checked(&primary, &both, "replication_lag").await;
    assert!(r.status == Status::Warning || r.status == Status::Critical);
    assert!(r.message.contains(&format!("'{absent}'")), "{}", r.message);
    let missing = r.message.split("(no row").next().unwrap_or_default();
    assert!(!missing.contains(STANDBY_NAME), "{}", r.message);

    let (r, _) = checked(&primary, "expected_replicas = 2", "replication_lag").await;
    assert!(
        r.message.contains("of 2 expected replica(s)"),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn bytes_behind_are_judged_per_replica() {
    let Some((primary, _)) = replication_urls() else {
        return;
    };
    let (r, _) = checked(&primary, "", "replication_behind").await;
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    let th = r#"thresholds = { replication_behind = { warning = "0B", critical = "1TB" } }"#;
    let (r, _) = checked(&primary, th, "replication_behind").await;
    assert_eq!(r.status, Status::Warning, "{}", r.message);
    assert!(r.message.contains(STANDBY_NAME), "{}", r.message);
}

/// On the primary, a role without pg_read_all_stats sees its standby's row in
/// pg_stat_replication but not its positions: replication_behind is UNKNOWN with the
/// GRANT, not a silent OK with nothing judged.
#[tokio::test]
async fn a_primary_without_read_all_stats_is_unknown_for_bytes_behind() {
    let Some((primary, _)) = replication_urls() else {
        return;
    };
    let role = unique("dbw_test_role");
    let mut p = connect(&primary).await;
    exec(&mut p, &format!("CREATE ROLE {role} LOGIN")).await;
    let (b, _) = checked(&as_user(&primary, &role), "", "replication_behind").await;
    let (ok, _) = checked(&primary, "", "replication_behind").await;
    exec(&mut p, &format!("DROP ROLE {role}")).await;
    let _ = p.close().await;
    assert_eq!(b.status, Status::Unknown, "{}", b.message);
    assert!(b.message.contains("GRANT pg_monitor"), "{}", b.message);
    assert_eq!(ok.status, Status::Ok, "{}", ok.message);
}

/// On the standby, a role without pg_read_all_stats sees the WAL receiver's pid but not
/// its status: replication_lag is UNKNOWN with the GRANT, not a false "no WAL receiver".
#[tokio::test]
async fn a_standby_without_read_all_stats_is_unknown_not_critical() {
    let Some((primary, standby)) = replication_urls() else {
        return;
    };
    let role = unique("dbw_test_role");
    let mut p = connect(&primary).await;
    exec(&mut p, &format!("CREATE ROLE {role} LOGIN")).await;
    // The role reaches the standby by replication.
    let mut s = connect(&standby).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_one(&mut s)
            .await
            .unwrap_or(0);
        if n == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "role did not replicate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (r, _) = checked(&as_user(&standby, &role), "", "replication_lag").await;
    let (b, _) = checked(&as_user(&standby, &role), "", "replication_behind").await;
    // As a superuser the same standby streams and is judged.
    let (ok, _) = checked(&standby, "", "replication_lag").await;
    exec(&mut p, &format!("DROP ROLE {role}")).await;
    let _ = p.close().await;
    let _ = s.close().await;
    assert_eq!(r.status, Status::Unknown, "{}", r.message);
    assert!(r.message.contains("pg_read_all_stats"), "{}", r.message);
    assert!(r.message.contains("GRANT pg_monitor"), "{}", r.message);
    assert_eq!(b.status, Status::Unknown, "{}", b.message);
    assert_ne!(ok.status, Status::Unknown, "{}", ok.message);
    assert!(!ok.message.contains("no WAL receiver"), "{}", ok.message);
}

#[tokio::test]
async fn an_inactive_slot_alarms_after_the_threshold() {
    let Some((primary, _)) = replication_urls() else {
        return;
    };
    let slot = unique("dbw_test_slot");
    let th = r#"thresholds = { inactive_slots = { warning = "1s", critical = "1h" } }"#;
    let (_dir, _c, t) = target(&primary, th);
    let e = Engine::open(&t).unwrap_or_else(|e| panic!("open: {e}"));
    let before = round(&e, &t).await;
    assert!(
        !subjects(measurement(&before, "inactive_slots"))
            .iter()
            .any(|s| s.contains(&slot)),
        "slot not created yet"
    );
    let mut p = connect(&primary).await;
    exec(
        &mut p,
        &format!("SELECT pg_create_physical_replication_slot('{slot}', true)"),
    )
    .await;
    // First sighting: inactive for 0 s (before 17 the clock starts when dbwarden sees it).
    let first = round(&e, &t).await;
    // Waiting, not timing: the slot must be seen inactive for longer than 1 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = round(&e, &t).await;
    exec(
        &mut p,
        &format!("SELECT pg_drop_replication_slot('{slot}')"),
    )
    .await;
    let _ = p.close().await;
    e.close(Duration::from_secs(2)).await;
    let value_of = |r: &HealthReport| match &measurement(r, "inactive_slots").outcome {
        Outcome::Values(v) => v
            .iter()
            .find(|o| o.subject.as_deref().is_some_and(|s| s.contains(&slot)))
            .map(|o| o.value),
        _ => None,
    };
    let v1 = value_of(&first).unwrap_or_else(|| panic!("slot not seen"));
    let v2 = value_of(&later).unwrap_or_else(|| panic!("slot not seen"));
    assert!(v1 < 1.0, "{v1}");
    assert!(v2 >= 1.0, "{v2}");
    let r = find(&judge(&t, &later), "inactive_slots").clone();
    assert_ne!(r.status, Status::Ok, "{}", r.message);
    // The slot retains WAL but is reserved: replication_slots judges its bytes only.
    let s = find(&judge(&t, &later), "replication_slots").clone();
    assert!(!s.message.contains("unreserved"), "{}", s.message);
}

// ---------------------------------------------------------------------------------------
// Version-chosen SQL
// ---------------------------------------------------------------------------------------

/// Every version branch's text runs on the real server: the 16 and 17 columns (slots'
/// `conflicting`, `invalidation_reason`, `inactive_since`; `pg_stat_checkpointer`) come
/// from views in a schema searched before pg_catalog, standing in for a newer release.
#[tokio::test]
async fn every_version_branch_of_the_sql_runs() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let db = common::pg::PgDb::create(&admin).await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE SCHEMA newer;
         CREATE VIEW newer.pg_replication_slots AS
           SELECT s.*, true AS conflicting, 'rows_removed'::text AS invalidation_reason,
                  now() - interval '2 hours' AS inactive_since
           FROM pg_catalog.pg_replication_slots s;
         CREATE VIEW newer.pg_stat_checkpointer AS
           SELECT checkpoints_timed AS num_timed, checkpoints_req AS num_requested
           FROM pg_catalog.pg_stat_bgwriter;
         SELECT pg_create_physical_replication_slot('dbw_test_branch_' || current_database(), false);
         SET search_path = newer, pg_catalog, public;",
    )
    .await;
    let statements = dbwarden::engine::postgres::bench_support::versioned_statements();
    assert_eq!(statements.len(), 6);
    let mut texts = std::collections::HashSet::new();
    for (name, version, sql) in &statements {
        texts.insert(*sql);
        let row = sqlx::query(AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut c)
            .await;
        let row = match row {
            Ok(r) => r,
            Err(e) => panic!("{name} for {version}: {e}"),
        };
        if *name == "ACTIVITY" {
            use sqlx::Row;
            let slots: Option<String> = row.try_get("slots_json").unwrap_or(None);
            let slots = slots.unwrap_or_default();
            assert!(slots.contains("dbw_test_branch_"), "{slots}");
            match version {
                170_000 => assert!(slots.contains("\"rows_removed\""), "{slots}"),
                160_000 => assert!(
                    slots.contains("\"conflicting\":true")
                        && slots.contains("\"invalidation_reason\":null"),
                    "{slots}"
                ),
                _ => assert!(slots.contains("\"conflicting\":null"), "{slots}"),
            }
        }
    }
    // Three slot variants and two checkpoint views: five distinct texts.
    assert_eq!(texts.len(), 5);
    exec(
        &mut c,
        "SELECT pg_drop_replication_slot('dbw_test_branch_' || current_database())",
    )
    .await;
    let _ = c.close().await;
    db.drop_db().await;
}

/// `wal_status = unreserved` cannot be provoked on the shared servers without changing
/// max_slot_wal_keep_size (a server setting): the target's database gets a view standing
/// in for pg_replication_slots (its search_path puts it before pg_catalog) that reports
/// this test's real slot as unreserved, so the real round turns CRITICAL naming it, and
/// the same slot reported as reserved is judged on its bytes only.
#[tokio::test]
async fn an_unreserved_slot_is_critical_through_the_real_round() {
    let Some(admin) = common::pg::pg_url() else {
        return;
    };
    let db = common::pg::PgDb::create(&admin).await;
    let slot = unique("dbw_test_unres");
    let mut c = db.connect().await;
    exec(
        &mut c,
        &format!(
            "CREATE SCHEMA newer;
             CREATE VIEW newer.pg_replication_slots AS
               SELECT slot_name, plugin, slot_type, datoid, database, temporary, active,
                      active_pid, xmin, catalog_xmin, restart_lsn, confirmed_flush_lsn,
                      CASE WHEN slot_name = '{slot}' THEN 'unreserved' ELSE wal_status END AS wal_status,
                      safe_wal_size, two_phase
               FROM pg_catalog.pg_replication_slots;
             ALTER DATABASE {} SET search_path = newer, pg_catalog, public;
             SELECT pg_create_physical_replication_slot('{slot}', false);",
            db.name
        ),
    )
    .await;
    let (r, _) = checked(&db.url, "", "replication_slots").await;
    exec(
        &mut c,
        &format!("SELECT pg_drop_replication_slot('{slot}')"),
    )
    .await;
    let _ = c.close().await;
    db.drop_db().await;
    assert_eq!(r.status, Status::Critical, "{}", r.message);
    assert!(
        r.message
            .contains(&format!("slot '{slot}': wal_status unreserved")),
        "{}",
        r.message
    );
}
