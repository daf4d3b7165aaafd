//! `dbwarden explain` against the real PostgreSQL (`DBWARDEN_TEST_PG_URL`) and PostgreSQL
//! 17 (`DBWARDEN_TEST_PG17_URL`), through the binary: plans of read-only queries in text
//! and JSON, and each refusal with a real attempt whose damage would be visible (the rows
//! and the table are still there).

mod common;

use sqlx::{AssertSqlSafe, PgConnection};

async fn exec(c: &mut PgConnection, sql: &str) {
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(c)
        .await
    {
        panic!("{sql}: {e}");
    }
}

async fn rows(c: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM victims")
        .fetch_one(c)
        .await
        .unwrap_or_else(|e| panic!("victims: {e}"))
}

fn config(dir: &std::path::Path, url: &str, analyze: bool) -> std::path::PathBuf {
    common::explain::config(dir, "pg", url, analyze)
}

fn explain(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    common::explain::run(config, "pg", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_are_printed_and_every_writing_attempt_is_refused() {
    if let Some(admin) = common::pg::pg_url() {
        plans_and_refusals(&admin).await;
    }
}

/// The same on PostgreSQL 17, where a normalised text with `$1` is planned with
/// `EXPLAIN (GENERIC_PLAN)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg17_plans_are_printed_and_every_writing_attempt_is_refused() {
    if let Some(admin) = common::pg::pg17_url().await {
        plans_and_refusals(&admin).await;
    }
}

async fn plans_and_refusals(admin: &str) {
    let db = common::pg::PgDb::create(admin).await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE victims (id int); INSERT INTO victims SELECT generate_series(1, 100); \
         CREATE FUNCTION purge() RETURNS bigint LANGUAGE sql AS \
         'WITH d AS (DELETE FROM victims RETURNING 1) SELECT count(*) FROM d'",
    )
    .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let plain = config(dir.path(), &db.url, false);
    let allowed = config(dir.path(), &db.url, true);

    // Plans, text and JSON; the text ends with the summary, naming a Seq Scan on a large
    // table (pg_class.reltuples ≥ 10,000) and not on a small one.
    let (code, out, err) = explain(&plain, &["SELECT * FROM victims WHERE id = 5"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Seq Scan on victims"), "{out}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("summary: Seq Scan on victims (cost ")
                && !l.contains("large table")),
        "{out}"
    );
    exec(
        &mut c,
        "CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 20000) g; ANALYZE big",
    )
    .await;
    let (code, out, err) = explain(&plain, &["SELECT count(*) FROM big WHERE id = 5"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("; Seq Scan on large table big (~20000 rows)"),
        "{out}"
    );
    let (code, out, err) = explain(&plain, &["--format", "json", "SELECT * FROM victims"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v[0]["Plan"]["Node Type"], "Seq Scan", "{v}");

    // dbwarden's own guard refuses (exit 2) before anything reaches the server.
    for (q, why) in [
        ("DELETE FROM victims", "starts with DELETE"),
        ("DROP TABLE victims", "starts with DROP"),
        ("SELECT 1; DROP TABLE victims", "more than one statement"),
        (
            "WITH d AS (DELETE FROM victims RETURNING *) SELECT * FROM d",
            "DELETE appears",
        ),
        ("SELECT * INTO copy_of_victims FROM victims", "INTO appears"),
    ] {
        let (code, out, err) = explain(&plain, &[q]);
        assert_eq!(code, Some(2), "{q}: {out}{err}");
        assert!(err.contains(why), "{q}: {err}");
    }
    assert_eq!(rows(&mut c).await, 100, "the rows are still there");

    // A function with side effects: plain EXPLAIN does not run it; --analyze is refused
    // unless the target allows it; allowed, the READ ONLY transaction stops the DELETE.
    let (code, out, err) = explain(&plain, &["SELECT purge()"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(rows(&mut c).await, 100);
    let (code, out, err) = explain(&plain, &["--analyze", "SELECT purge()"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("explain_analyze = true"), "{err}");
    assert_eq!(rows(&mut c).await, 100);
    let (code, out, err) = explain(&allowed, &["--analyze", "SELECT purge()"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("read-only transaction"), "{err}");
    assert_eq!(rows(&mut c).await, 100, "the rows are still there");
    // A normalised text with parameters (as pg_stat_statements shows it) needs
    // EXPLAIN (GENERIC_PLAN): PostgreSQL 16+; an older server is named as the reason.
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err) = explain(&plain, &["SELECT * FROM victims WHERE id = $1"]);
    if version >= 160_000 {
        // A generic plan: the parameter is still there, not a value.
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(
            out.contains("Seq Scan on victims") && out.contains("(id = $1)"),
            "{out}"
        );
    } else {
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(err.contains("GENERIC_PLAN") && err.contains("16+"), "{err}");
    }
    // ANALYZE of a harmless query works where allowed, and shows actual times.
    let (code, out, err) = explain(&allowed, &["--analyze", "SELECT count(*) FROM victims"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("actual time="), "{out}");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('victims') IS NOT NULL")
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exists);
    drop(c);
    db.drop_db().await;
}
