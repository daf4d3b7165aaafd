//! `dbwarden explain` against the real MariaDB (`DBWARDEN_TEST_MYSQL_URL`), through the
//! binary: plans of read-only queries in text and JSON, and each refusal with a real
//! attempt whose damage would be visible (the rows and the table are still there).

mod common;

use sqlx::{AssertSqlSafe, Connection, MySqlConnection};

async fn exec(c: &mut MySqlConnection, sql: &str) {
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(c)
        .await
    {
        panic!("{sql}: {e}");
    }
}

async fn rows(c: &mut MySqlConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM victims")
        .fetch_one(c)
        .await
        .unwrap_or_else(|e| panic!("victims: {e}"))
}

fn config(dir: &std::path::Path, url: &str, analyze: bool) -> std::path::PathBuf {
    common::explain::config(dir, "my", url, analyze)
}

fn explain(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    common::explain::run(config, "my", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_are_printed_and_every_writing_attempt_is_refused() {
    let Some(admin) = common::url_from_env("DBWARDEN_TEST_MYSQL_URL") else {
        return;
    };
    let name = format!("dbw_test_explain_{:08x}", rand::random::<u32>());
    let mut a = MySqlConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("connect {admin}: {e}"));
    exec(&mut a, &format!("CREATE DATABASE {name}")).await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let url = format!("{base}/{name}");
    let mut c = MySqlConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    exec(&mut c, "CREATE TABLE victims (id int)").await;
    exec(
        &mut c,
        "INSERT INTO victims WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100) SELECT n FROM s",
    )
    .await;
    exec(
        &mut c,
        "CREATE FUNCTION wipe() RETURNS int MODIFIES SQL DATA BEGIN DELETE FROM victims; RETURN 1; END",
    )
    .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let plain = config(dir.path(), &url, false);
    let allowed = config(dir.path(), &url, true);

    // Plans, text and JSON.
    let (code, out, err) = explain(&plain, &["SELECT * FROM victims WHERE id = 5"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("table=victims") && out.contains("type=ALL"),
        "{out}"
    );
    let (code, out, err) = explain(&plain, &["--format", "json", "SELECT * FROM victims"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        v["query_block"]["nested_loop"][0]["table"]["table_name"], "victims",
        "{v}"
    );

    // dbwarden's own guard refuses (exit 2) before anything reaches the server.
    for (q, why) in [
        ("DELETE FROM victims", "starts with DELETE"),
        ("DROP TABLE victims", "starts with DROP"),
        ("SELECT 1; DROP TABLE victims", "more than one statement"),
        ("WITH d AS (SELECT 1) DELETE FROM victims", "DELETE appears"),
        ("SELECT 1 /*! ; DROP TABLE victims */", "executable comment"),
        (
            "SELECT * FROM victims INTO OUTFILE '/tmp/dbw_victims'",
            "INTO appears",
        ),
        ("SELECT * FROM victims FOR UPDATE", "UPDATE appears"),
    ] {
        let (code, out, err) = explain(&plain, &[q]);
        assert_eq!(code, Some(2), "{q}: {out}{err}");
        assert!(err.contains(why), "{q}: {err}");
    }
    assert_eq!(rows(&mut c).await, 100, "the rows are still there");
    // A backslash-escaped quote: one string, for the guard and (sql_mode without
    // NO_BACKSLASH_ESCAPES) for the server alike; nothing after it runs.
    let (code, out, err) = explain(&plain, &["SELECT 'x\\'; DROP TABLE victims; -- '"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(rows(&mut c).await, 100);

    // A function with side effects. MariaDB evaluates it while optimizing a query without
    // tables, even under plain EXPLAIN: the READ ONLY transaction stops its DELETE.
    // --analyze is refused unless the target allows it; allowed, the same.
    let (code, out, err) = explain(&plain, &["SELECT wipe()"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("READ ONLY"), "{err}");
    assert_eq!(rows(&mut c).await, 100);
    let (code, out, err) = explain(&plain, &["--analyze", "SELECT wipe()"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("explain_analyze = true"), "{err}");
    assert_eq!(rows(&mut c).await, 100);
    let (code, out, err) = explain(&allowed, &["--analyze", "SELECT wipe()"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("READ ONLY"), "{err}");
    assert_eq!(rows(&mut c).await, 100, "the rows are still there");
    // ANALYZE of a harmless query works where allowed, and shows what it measured.
    let (code, out, err) = explain(
        &allowed,
        &[
            "--analyze",
            "--format",
            "json",
            "SELECT count(*) FROM victims",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("r_total_time_ms"), "{out}");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'victims'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tables, 1);
    drop(c);
    exec(&mut a, &format!("DROP DATABASE {name}")).await;
}
