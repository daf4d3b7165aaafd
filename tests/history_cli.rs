//! `dbwarden history …`, `dbwarden forecast` and `dbwarden run-job` of a rollup job through
//! the real binary, on a SQLite history seeded with a growing database size.

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
