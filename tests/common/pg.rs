//! The test PostgreSQL servers (`DBWARDEN_TEST_PG_URL`, `DBWARDEN_TEST_PG17_URL`) and
//! throwaway databases on them.

use sqlx::Connection;

/// The admin URL of the test server, or None (with a printed reason) when unset.
pub fn pg_url() -> Option<String> {
    match std::env::var("DBWARDEN_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            super::skip("DBWARDEN_TEST_PG_URL not set");
            None
        }
    }
}

/// A fresh PostgreSQL database for one test; drop it with [`PgDb::drop_db`].
pub struct PgDb {
    admin: String,
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create(admin: &str) -> PgDb {
        let name = format!("dbw_test_{:08x}", rand::random::<u32>());
        let mut c = sqlx::PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("connect {admin}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("create database: {e}"));
        let _ = c.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
        PgDb {
            admin: admin.to_string(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// A direct connection to this database.
    pub async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.url))
    }

    pub async fn drop_db(self) {
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut c)
            .await;
            let _ = c.close().await;
        }
    }
}

/// The PostgreSQL 17 test server (`DBWARDEN_TEST_PG17_URL`, `.ci/pg17.sh`), or None (with
/// a printed reason, a failure under `DBWARDEN_REQUIRE_SERVICES=1`) when unset. What only
/// 16+ can do (`EXPLAIN (GENERIC_PLAN)`) and pg_stat_statements as 17 has it run there.
pub async fn pg17_url() -> Option<String> {
    let url = super::url_from_env("DBWARDEN_TEST_PG17_URL")?;
    let version = server_version(&url).await;
    assert!(
        version >= 170_000,
        "DBWARDEN_TEST_PG17_URL is a PostgreSQL {version}, not 17+"
    );
    Some(url)
}

/// The `server_version_num` of the server at `url` (160000 for 16.0).
pub async fn server_version(url: &str) -> i32 {
    let mut c = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let v = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| panic!("server_version_num: {e}"));
    let _ = c.close().await;
    v
}
