//! `dbwarden explain`: a query's plan, safely.
//!
//! PostgreSQL plans `EXPLAIN WITH d AS (DELETE ...) SELECT ...` even in a READ ONLY
//! transaction, and `EXPLAIN ANALYZE` executes the query (functions' side effects
//! included), so the guard is our own reading of the text by PostgreSQL's lexical rules
//! ([`check`]): one statement only (a `;` outside strings, quoted identifiers, dollar
//! quotes and comments ends it); it must start with SELECT, WITH, VALUES or TABLE; and no
//! data-modifying or session-changing keyword may appear anywhere (a writable CTE
//! included). Then the statement runs as `EXPLAIN (...)` through the extended protocol
//! (which itself refuses a second statement; a text with parameters, planned with
//! `GENERIC_PLAN`, is parsed that way, then run unbound through the simple protocol)
//! inside a READ ONLY transaction with a short `statement_timeout` and
//! `standard_conforming_strings = on` (the rules [`check`] reads strings by), and the
//! transaction is rolled back.

use sqlx::{AssertSqlSafe, Executor, Row, SqlSafeStr};

use super::PostgresEngine;
use crate::engine::RunScope;
use crate::sample::plan::{self, PlanSummary};

/// How long the EXPLAIN may take.
pub const EXPLAIN_TIMEOUT: &str = "5s";

/// Words that change data, schema or session state: refused anywhere in the text (as a
/// keyword, not inside strings, quoted identifiers or comments). `INTO` catches
/// `SELECT ... INTO new_table`; `UPDATE`/`SHARE` also refuse row locks (`FOR UPDATE`).
const REFUSED: &[&str] = &[
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "TRUNCATE",
    "DROP",
    "ALTER",
    "CREATE",
    "GRANT",
    "REVOKE",
    "COPY",
    "CALL",
    "DO",
    "LOCK",
    "VACUUM",
    "ANALYZE",
    "ANALYSE",
    "REINDEX",
    "CLUSTER",
    "REFRESH",
    "NOTIFY",
    "LISTEN",
    "UNLISTEN",
    "SET",
    "RESET",
    "DISCARD",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "BEGIN",
    "START",
    "COMMIT",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "INTO",
    "IMPORT",
    "COMMENT",
    "SECURITY",
    "CHECKPOINT",
    "LOAD",
    "SHARE",
    "EXPLAIN",
];

/// A statement that passed [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The statement, a trailing `;` removed.
    pub text: &'a str,
    /// It has parameters (`$1`), as pg_stat_statements' normalised texts do: only
    /// `EXPLAIN (GENERIC_PLAN)` (PostgreSQL 16+) can plan it.
    pub parameters: bool,
}

/// Why a text is refused, or the statement.
pub fn check(sql: &str) -> Result<Checked<'_>, String> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut parameters = false;
    let mut words: Vec<String> = Vec::new();
    let mut end: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        if end.is_some() && !c.is_ascii_whitespace() && !starts_comment(b, i) {
            return Err(
                "more than one statement: give exactly one query (nothing after `;`)".into(),
            );
        }
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = block_comment(b, i)?,
            b';' => {
                end = Some(i);
                i += 1;
            }
            b'\'' => i = string(b, i + 1, false)?,
            b'"' => i = quoted_ident(b, i + 1)?,
            b'$' => {
                if let Some(tag_end) = dollar_tag(b, i) {
                    let tag = &b[i..=tag_end];
                    let body = tag_end + 1;
                    let close = b[body..]
                        .windows(tag.len())
                        .position(|w| w == tag)
                        .ok_or("an unterminated dollar-quoted string")?;
                    i = body + close + tag.len();
                } else {
                    // A parameter ($1) or a lone dollar: not a keyword.
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        parameters = true;
                        i += 1;
                    }
                }
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                let word = &sql[start..i];
                // String prefixes: E'..' (backslash escapes), B'..', X'..', N'..', U&'..'.
                if i < b.len() && b[i] == b'\'' && word.len() == 1 {
                    let escapes = word.eq_ignore_ascii_case("e");
                    if "eEbBxXnN".contains(word) {
                        i = string(b, i + 1, escapes)?;
                        continue;
                    }
                }
                if word.eq_ignore_ascii_case("u") && b.get(i) == Some(&b'&') {
                    match b.get(i + 1) {
                        Some(b'\'') => {
                            i = string(b, i + 2, false)?;
                            continue;
                        }
                        Some(b'"') => {
                            i = quoted_ident(b, i + 2)?;
                            continue;
                        }
                        _ => {}
                    }
                }
                words.push(word.to_ascii_uppercase());
            }
            _ => i += 1,
        }
    }
    crate::engine::explain::judge(&words, REFUSED)?;
    Ok(Checked {
        text: sql[..end.unwrap_or(sql.len())].trim(),
        parameters,
    })
}

fn starts_comment(b: &[u8], i: usize) -> bool {
    (b[i] == b'-' && b.get(i + 1) == Some(&b'-')) || (b[i] == b'/' && b.get(i + 1) == Some(&b'*'))
}

/// The end of a nesting `/* */` comment starting at `i`.
fn block_comment(b: &[u8], mut i: usize) -> Result<usize, String> {
    let mut depth = 0;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Ok(i);
            }
        } else {
            i += 1;
        }
    }
    Err("an unterminated /* comment".into())
}

/// The end of a string whose body starts at `i` (`''` escapes a quote; with `escapes`,
/// a backslash escapes the next character).
fn string(b: &[u8], mut i: usize, escapes: bool) -> Result<usize, String> {
    while i < b.len() {
        match b[i] {
            b'\\' if escapes => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("an unterminated string literal".into())
}

fn quoted_ident(b: &[u8], mut i: usize) -> Result<usize, String> {
    while i < b.len() {
        match b[i] {
            b'"' if b.get(i + 1) == Some(&b'"') => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("an unterminated quoted identifier".into())
}

/// The index of the closing `$` of a dollar-quote tag opening at `i` (`$$`, `$tag$`).
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    // A `$` glued to an identifier (`a$b`) is part of it; the caller only sees free ones.
    let mut j = i + 1;
    if j < b.len() && b[j].is_ascii_digit() {
        return None;
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    (j < b.len() && b[j] == b'$').then_some(j)
}

pub use crate::engine::explain::PlanFormat;

impl PostgresEngine {
    /// Explains `sql` after [`check`]: plain EXPLAIN, or EXPLAIN ANALYZE when `analyze`
    /// (the caller checks the target allows it), in a READ ONLY transaction rolled back.
    pub async fn explain(
        &self,
        sql: &str,
        analyze: bool,
        format: PlanFormat,
        scope: &RunScope,
    ) -> Result<String, String> {
        let checked = check(sql)?;
        let stmt = checked.text;
        if checked.parameters && analyze {
            return Err("a query with parameters ($1) cannot be run by EXPLAIN ANALYZE: replace them with values".into());
        }
        let mut lease = self.connection().await.map_err(|e| e.message())?;
        let (pid, started) = super::conn::identify(&mut lease)
            .await
            .map_err(|e| e.to_string())?;
        self.enter(&mut lease, pid, started, scope);
        let result = async {
            sqlx::raw_sql(AssertSqlSafe(format!(
                "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = '{EXPLAIN_TIMEOUT}'; \
                 SET LOCAL standard_conforming_strings = on"
            )))
            .execute(&mut *lease)
            .await
            .map_err(|e| e.to_string())?;
            let mut opts = match (format, analyze) {
                (PlanFormat::Text, false) => "FORMAT TEXT",
                (PlanFormat::Text, true) => "ANALYZE, FORMAT TEXT",
                (PlanFormat::Json, false) => "FORMAT JSON",
                (PlanFormat::Json, true) => "ANALYZE, FORMAT JSON",
            }
            .to_string();
            if checked.parameters {
                let version: String = sqlx::query_scalar("SHOW server_version_num")
                    .fetch_one(&mut *lease)
                    .await
                    .map_err(|e| e.to_string())?;
                let version: u32 = version.trim().parse().unwrap_or(0);
                if version < 160_000 {
                    return Err(format!(
                        "the query has parameters ($1, as pg_stat_statements shows statements): planning it needs EXPLAIN (GENERIC_PLAN), which PostgreSQL 16+ has; this server is {}.{}: replace the parameters with values",
                        version / 10_000,
                        version % 10_000
                    ));
                }
                opts.push_str(", GENERIC_PLAN");
            }
            let explain = format!("EXPLAIN ({opts}) {stmt}");
            let refused = |e: sqlx::Error| match e.as_database_error() {
                Some(d) => format!("the server refused the query: {}", d.message()),
                None => e.to_string(),
            };
            let rows = if checked.parameters {
                // A generic plan needs its parameters unbound. The extended protocol binds
                // them: none given is refused ("bind message supplies 0 parameters"), and
                // values given are planned as constants (a custom plan, not the generic
                // one). So the simple protocol, once the server has parsed the text as a
                // single statement (Parse refuses a second one, as below).
                (&mut *lease)
                    .prepare(AssertSqlSafe(explain.as_str()).into_sql_str())
                    .await
                    .map_err(refused)?;
                sqlx::raw_sql(AssertSqlSafe(explain))
                    .fetch_all(&mut *lease)
                    .await
                    .map_err(refused)?
            } else {
                // Extended protocol, unprepared: the server refuses a second statement too.
                sqlx::query(AssertSqlSafe(explain))
                    .persistent(false)
                    .fetch_all(&mut *lease)
                    .await
                    .map_err(refused)?
            };
            let lines: Vec<String> = rows
                .iter()
                .filter_map(|r| {
                    r.try_get::<String, _>(0).ok().or_else(|| {
                        r.try_get::<serde_json::Value, _>(0)
                            .ok()
                            .map(|v| v.to_string())
                    })
                })
                .collect();
            Ok::<String, String>(lines.join("\n"))
        }
        .await;
        let rollback = sqlx::raw_sql("ROLLBACK").execute(&mut *lease).await;
        lease.release().await;
        rollback.map_err(|e| format!("rolling back the EXPLAIN failed: {e}"))?;
        result
    }
}

impl PostgresEngine {
    /// The server's `server_version_num` (160000 for 16.0).
    pub async fn server_version_num(&self, scope: &RunScope) -> Result<u32, String> {
        let mut lease = self.connection().await.map_err(|e| e.message())?;
        let (pid, started) = super::conn::identify(&mut lease)
            .await
            .map_err(|e| e.to_string())?;
        self.enter(&mut lease, pid, started, scope);
        let v = sqlx::query_scalar::<_, String>("SHOW server_version_num")
            .fetch_one(&mut *lease)
            .await;
        lease.release().await;
        let v = v.map_err(|e| e.to_string())?;
        v.trim()
            .parse()
            .map_err(|_| format!("server_version_num {v:?} is not a number"))
    }

    /// Plans `sql` like `dbwarden explain --format json` (a normalised text with `$1` as a
    /// generic plan: PostgreSQL 16+) and summarises it; a Seq Scan's table is large by its
    /// `pg_class.reltuples` (found by name on the search path; no lock taken).
    pub async fn plan_summary(
        &self,
        sql: &str,
        scope: &RunScope,
    ) -> Result<(String, PlanSummary), String> {
        let json = self.explain(sql, false, PlanFormat::Json, scope).await?;
        let v: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| format!("the plan is not JSON: {e}"))?;
        let summary = plan::summarize(&v)?;
        if summary.seq_scans.is_empty() {
            return Ok((json, summary));
        }
        let mut lease = self.connection().await.map_err(|e| e.message())?;
        let (pid, started) = super::conn::identify(&mut lease)
            .await
            .map_err(|e| e.to_string())?;
        self.enter(&mut lease, pid, started, scope);
        let rows: Result<Vec<(String, f64)>, sqlx::Error> = sqlx::query_as(
            "/* dbwarden */ SELECT r, c.reltuples::float8 FROM unnest($1::text[]) AS r \
             JOIN pg_class c ON c.oid = to_regclass(quote_ident(r))",
        )
        .bind(&summary.seq_scans)
        .fetch_all(&mut *lease)
        .await;
        lease.release().await;
        let rows = rows.map_err(|e| e.to_string())?;
        let summary = plan::with_table_rows(summary, &rows.into_iter().collect());
        Ok((json, summary))
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
            "WITH a AS (SELECT 1) SELECT * FROM a;",
            "VALUES (1), (2)",
            "TABLE pg_class",
            "SELECT $$ ; DROP TABLE t $$, $x$ insert $x$",
            "SELECT \"delete\" FROM \"update\" -- ; drop table t\n",
            "SELECT 1 /* nested /* ; */ DROP */",
            "SELECT E'it\\'s; DROP', U&'d\\0061ta'",
            "SELECT a$b FROM t WHERE c = $1",
            "SELECT 1; -- trailing comment",
        ];
        assert_guard(|q| check(q).map(|_| ()), &pass, &[]);
        assert_eq!(
            check("SELECT 1;  "),
            Ok(Checked {
                text: "SELECT 1",
                parameters: false
            })
        );
        assert!(check("SELECT * FROM t WHERE a = $1").is_ok_and(|c| c.parameters));
        assert!(check("SELECT '$1', $$ $2 $$, a$1").is_ok_and(|c| !c.parameters));
    }

    #[test]
    fn everything_else_is_refused() {
        let refuse = [
            ("DELETE FROM t", "starts with DELETE"),
            ("DROP TABLE t", "starts with DROP"),
            ("SELECT 1; DROP TABLE t", "more than one statement"),
            ("SELECT 1;/**/;DROP TABLE t", "more than one statement"),
            (
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "DELETE appears",
            ),
            (
                "with u as (update t set x = 1 returning 1) select 1",
                "UPDATE appears",
            ),
            ("SELECT * INTO t2 FROM t", "INTO appears"),
            ("SELECT * FROM t FOR UPDATE", "UPDATE appears"),
            ("EXPLAIN ANALYZE SELECT 1", "without EXPLAIN"),
            ("SELECT 'unterminated", "unterminated string"),
            ("SELECT E'\\'; DELETE FROM t", "unterminated string"),
            ("SELECT $$ x", "unterminated dollar"),
            ("SELECT 1 /* open", "unterminated /*"),
            ("", "no query"),
            ("(DELETE FROM t)", "DELETE"),
        ];
        assert_guard(|q| check(q).map(|_| ()), &[], &refuse);
    }
}
