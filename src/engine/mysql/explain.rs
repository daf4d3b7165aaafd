//! `dbwarden explain` on MySQL/MariaDB: `EXPLAIN FORMAT=JSON` (or the tabular EXPLAIN),
//! with the same safety rules as on PostgreSQL.
//!
//! The guard is our own reading of the text by MySQL's lexical rules ([`check`]): one
//! statement only (a `;` outside strings, quoted identifiers and comments ends it); it must
//! start with SELECT, WITH, VALUES or TABLE; no data-modifying, locking or session-changing
//! keyword anywhere (`WITH … DELETE`, `INTO OUTFILE`, `FOR UPDATE` included); and no
//! executable comment (`/*! … */`, `/*M! … */`: the server runs their content). Strings are
//! read with backslash escapes, and the session runs without `NO_BACKSLASH_ESCAPES`, so
//! the server reads them the same way. Then the statement runs as a prepared statement
//! (which itself refuses a second statement) inside a READ ONLY transaction with a short
//! statement time limit, and the transaction is rolled back.
//!
//! `--analyze` (only where the target enables it) is `ANALYZE [FORMAT=JSON]` on MariaDB
//! and `EXPLAIN ANALYZE` on MySQL 8.0.18+ (text; JSON from 8.3).

use sqlx::{AssertSqlSafe, Column, Row};

use super::MysqlEngine;
use super::conn::{ServerVersion, error_message};
use crate::engine::explain::{PlanFormat, judge};
use crate::engine::{RunScope, Session};

/// How long the EXPLAIN may take, in seconds.
pub const EXPLAIN_TIMEOUT_SECS: u64 = 5;

/// Words that change data, schema, locks or session state: refused anywhere in the text
/// (as a keyword). `INTO` catches `INTO OUTFILE`/`DUMPFILE`/`@var`; `UPDATE`/`SHARE` row
/// locks (`FOR UPDATE`, `LOCK IN SHARE MODE`); `GET_LOCK` and sequences' `NEXTVAL` change
/// state even from a SELECT.
const REFUSED: &[&str] = &[
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "TRUNCATE",
    "DROP",
    "ALTER",
    "CREATE",
    "RENAME",
    "GRANT",
    "REVOKE",
    "CALL",
    "DO",
    "HANDLER",
    "LOAD",
    "LOCK",
    "UNLOCK",
    "SET",
    "RESET",
    "INTO",
    "OUTFILE",
    "DUMPFILE",
    "SHARE",
    "ANALYZE",
    "OPTIMIZE",
    "REPAIR",
    "FLUSH",
    "KILL",
    "PURGE",
    "INSTALL",
    "UNINSTALL",
    "SHUTDOWN",
    "BEGIN",
    "START",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "XA",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "EXPLAIN",
    "DESCRIBE",
    "CHANGE",
    "IMPORT",
    "BINLOG",
    "SIGNAL",
    "RESIGNAL",
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "NEXTVAL",
    "SETVAL",
    "LASTVAL",
];

/// Why a text is refused, or the statement (a trailing `;` removed).
pub fn check(sql: &str) -> Result<&str, String> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut words: Vec<String> = Vec::new();
    let mut end: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        let comment = line_comment(b, i) || (c == b'/' && b.get(i + 1) == Some(&b'*'));
        if end.is_some() && !c.is_ascii_whitespace() && !comment {
            return Err(
                "more than one statement: give exactly one query (nothing after `;`)".into(),
            );
        }
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            _ if line_comment(b, i) => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let body = &b[i + 2..];
                if body.starts_with(b"!") || body.starts_with(b"M!") {
                    return Err("refused: an executable comment (/*! … */ or /*M! … */) appears in the query; the server runs its content".into());
                }
                let close = body
                    .windows(2)
                    .position(|w| w == b"*/")
                    .ok_or("an unterminated /* comment")?;
                i += 2 + close + 2;
            }
            b';' => {
                end = Some(i);
                i += 1;
            }
            b'\'' | b'"' => i = quoted(b, i + 1, c, true)?,
            b'`' => i = quoted(b, i + 1, b'`', false)?,
            _ if c.is_ascii_digit() => {
                // A number (also `1e5`, `0x1F`): not a keyword.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                words.push(sql[start..i].to_ascii_uppercase());
            }
            _ => i += 1,
        }
    }
    judge(&words, REFUSED)?;
    Ok(sql[..end.unwrap_or(sql.len())].trim())
}

/// `#…` or `-- …` (MySQL needs a space or control character after `--`; `--1` is minus
/// minus one).
fn line_comment(b: &[u8], i: usize) -> bool {
    b[i] == b'#'
        || (b[i] == b'-'
            && b.get(i + 1) == Some(&b'-')
            && b.get(i + 2)
                .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()))
}

/// The end of a string or quoted identifier whose body starts at `i`, closed by `q`
/// (doubled: an escaped quote; with `escapes`, a backslash escapes the next character).
fn quoted(b: &[u8], mut i: usize, q: u8, escapes: bool) -> Result<usize, String> {
    while i < b.len() {
        match b[i] {
            b'\\' if escapes => i += 2,
            c if c == q && b.get(i + 1) == Some(&q) => i += 2,
            c if c == q => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(if q == b'`' {
        "an unterminated quoted identifier".into()
    } else {
        "an unterminated string literal".into()
    })
}

/// The EXPLAIN statement for `stmt` on this server.
fn statement(
    v: &ServerVersion,
    stmt: &str,
    analyze: bool,
    format: PlanFormat,
) -> Result<String, String> {
    let json = format == PlanFormat::Json;
    Ok(match (analyze, v.is_mariadb()) {
        (false, _) if json => format!("EXPLAIN FORMAT=JSON {stmt}"),
        (false, _) => format!("EXPLAIN {stmt}"),
        (true, true) if json => format!("ANALYZE FORMAT=JSON {stmt}"),
        (true, true) => format!("ANALYZE {stmt}"),
        (true, false) if !v.at_least(8, 0, 18) => {
            return Err(format!(
                "--analyze needs EXPLAIN ANALYZE, which MySQL 8.0.18+ has; this server is {}.{}.{}",
                v.major, v.minor, v.patch
            ));
        }
        (true, false) if json && !v.at_least(8, 3, 0) => {
            return Err("EXPLAIN ANALYZE prints JSON from MySQL 8.3 on: use --format text".into());
        }
        (true, false) if json => format!("EXPLAIN ANALYZE FORMAT=JSON {stmt}"),
        (true, false) => format!("EXPLAIN ANALYZE {stmt}"),
    })
}

/// One cell of a result row as text (prepared statements return typed values).
fn cell(r: &sqlx::mysql::MySqlRow, i: usize) -> String {
    if let Ok(v) = r.try_get::<Option<String>, _>(i) {
        return v.unwrap_or_else(|| "NULL".into());
    }
    if let Ok(Some(v)) = r.try_get::<Option<i64>, _>(i) {
        return v.to_string();
    }
    if let Ok(Some(v)) = r.try_get::<Option<u64>, _>(i) {
        return v.to_string();
    }
    if let Ok(Some(v)) = r.try_get::<Option<f64>, _>(i) {
        return v.to_string();
    }
    match r.try_get_unchecked::<Option<Vec<u8>>, _>(i) {
        Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        _ => "NULL".into(),
    }
}

/// The rows as the server gave them: a single column (JSON, a tree) as its text; the
/// tabular EXPLAIN as `name: value` lines per row.
fn render(rows: &[sqlx::mysql::MySqlRow]) -> String {
    let single = rows.first().is_some_and(|r| r.columns().len() == 1);
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if single {
            out.push(cell(r, 0));
            continue;
        }
        let line: Vec<String> = r
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}={}", c.name(), cell(r, i)))
            .collect();
        out.push(line.join("  "));
    }
    out.join("\n")
}

impl MysqlEngine {
    /// Explains `sql` after [`check`]: plain EXPLAIN, or the server's ANALYZE when
    /// `analyze` (the caller checks the target allows it), in a READ ONLY transaction
    /// rolled back.
    pub async fn explain(
        &self,
        sql: &str,
        analyze: bool,
        format: PlanFormat,
        scope: &RunScope,
    ) -> Result<String, String> {
        let stmt = check(sql)?;
        let mut lease = self.conn.acquire().await?;
        let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
            .fetch_one(&mut *lease)
            .await
            .map_err(|e| error_message(&e))?;
        lease.enter(Session { id, started: None }, scope);
        let known = *self.conn.version.lock().unwrap_or_else(|p| p.into_inner());
        let version = known.ok_or("the server's version is not known")?;
        let limit = if version.is_mariadb() {
            format!("max_statement_time = {EXPLAIN_TIMEOUT_SECS}")
        } else {
            format!("max_execution_time = {}", EXPLAIN_TIMEOUT_SECS * 1000)
        };
        let saved_mode: String = sqlx::query_scalar("SELECT @@SESSION.sql_mode")
            .fetch_one(&mut *lease)
            .await
            .map_err(|e| error_message(&e))?;
        let result = async {
            // Strings are then read as `check` read them (backslash escapes).
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SET SESSION {limit}, sql_mode = TRIM(BOTH ',' FROM REPLACE(CONCAT(',', @@SESSION.sql_mode, ','), ',NO_BACKSLASH_ESCAPES,', ',')); \
                 START TRANSACTION READ ONLY"
            )))
            .execute(&mut *lease)
            .await
            .map_err(|e| error_message(&e))?;
            let explain = statement(&version, stmt, analyze, format)?;
            // A prepared statement: the server refuses a second statement too.
            let rows = sqlx::query(AssertSqlSafe(explain))
                .persistent(false)
                .fetch_all(&mut *lease)
                .await
                .map_err(|e| format!("the server refused the query: {}", error_message(&e)))?;
            Ok::<String, String>(render(&rows))
        }
        .await;
        let rollback = sqlx::raw_sql("ROLLBACK").execute(&mut *lease).await;
        let restore = sqlx::query(AssertSqlSafe(format!(
            "SET SESSION {} = DEFAULT, sql_mode = ?",
            if version.is_mariadb() {
                "max_statement_time"
            } else {
                "max_execution_time"
            }
        )))
        .bind(saved_mode)
        .execute(&mut *lease)
        .await;
        lease.release().await;
        rollback.map_err(|e| format!("rolling back the EXPLAIN failed: {e}"))?;
        restore.map_err(|e| format!("restoring the session after the EXPLAIN failed: {e}"))?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::explain::assert_guard;

    #[test]
    fn read_only_queries_pass() {
        let pass = [
            "SELECT 1",
            "select * from t where x = 'DELETE; DROP TABLE t'",
            "SELECT \"it\\\"s; DROP\" FROM t",
            "SELECT 'it\\'s; drop', 'a''b;'",
            "WITH a AS (SELECT 1) SELECT * FROM a;",
            "VALUES ROW(1), ROW(2)",
            "TABLE t",
            "SELECT `delete` FROM `up``date` -- ; drop table t\n",
            "SELECT 1 # ; DROP TABLE t",
            "SELECT 1 /* ; DROP TABLE t */",
            "SELECT /*+ MAX_EXECUTION_TIME(1000) */ a FROM t",
            "SELECT 1--1",
            "SELECT 1; -- trailing comment",
            "SELECT a FROM t ORDER BY a DESC",
        ];
        assert_guard(|q| check(q).map(|_| ()), &pass, &[]);
        assert_eq!(check("SELECT 1;  "), Ok("SELECT 1"));
    }

    #[test]
    fn everything_else_is_refused() {
        let refuse = [
            ("DELETE FROM t", "starts with DELETE"),
            ("DROP TABLE t", "starts with DROP"),
            ("SELECT 1; DROP TABLE t", "more than one statement"),
            ("SELECT 1;# x\nDROP TABLE t", "more than one statement"),
            ("WITH d AS (SELECT 1) DELETE FROM t", "DELETE appears"),
            ("SELECT * FROM t INTO OUTFILE '/tmp/x'", "INTO appears"),
            ("SELECT a INTO @x FROM t", "INTO appears"),
            ("SELECT * FROM t FOR UPDATE", "UPDATE appears"),
            ("SELECT * FROM t LOCK IN SHARE MODE", "LOCK appears"),
            ("SELECT 1 /*! ; DROP TABLE t */", "executable comment"),
            (
                "SELECT 1 /*M!100000 ; DROP TABLE t */",
                "executable comment",
            ),
            ("SELECT GET_LOCK('x', 10)", "GET_LOCK appears"),
            ("EXPLAIN SELECT 1", "without EXPLAIN"),
            ("SELECT 'unterminated", "unterminated string"),
            ("SELECT 'a\\'; DELETE FROM t", "unterminated string"),
            ("SELECT `a", "unterminated quoted identifier"),
            ("SELECT 1 /* open", "unterminated /*"),
            ("-- x\n", "no query"),
            ("SELECT 1 --\nDROP TABLE t", "DROP appears"),
        ];
        assert_guard(|q| check(q).map(|_| ()), &[], &refuse);
    }

    #[test]
    fn analyze_is_the_servers_own_form() {
        let maria = ServerVersion::parse("10.11.6-MariaDB");
        let mysql = ServerVersion::parse("8.0.36");
        let old = ServerVersion::parse("8.0.17");
        let s = |v, a, f| statement(v, "SELECT 1", a, f);
        assert_eq!(
            s(&maria, false, PlanFormat::Json),
            Ok("EXPLAIN FORMAT=JSON SELECT 1".into())
        );
        assert_eq!(
            s(&maria, true, PlanFormat::Json),
            Ok("ANALYZE FORMAT=JSON SELECT 1".into())
        );
        assert_eq!(
            s(&mysql, true, PlanFormat::Text),
            Ok("EXPLAIN ANALYZE SELECT 1".into())
        );
        assert!(s(&mysql, true, PlanFormat::Json).is_err_and(|e| e.contains("8.3")));
        assert!(s(&old, true, PlanFormat::Text).is_err_and(|e| e.contains("8.0.18")));
    }
}
