//! The MySQL/MariaDB probe queries, one function each, returning typed rows. Every one is
//! tagged `/* dbwarden */` and names no identifier of ours in SQL (`DATABASE()` instead).

use std::collections::BTreeMap;

use sqlx::mysql::MySqlConnection;

use super::checks::{
    AutoIncrementColumn, GroupMember, ReplicaChannel, TableIo, TableRow, TrxRow, replica_status_sql,
};
use super::conn::{ServerVersion, number, text, text_by_names};
use crate::health::Unit;

const STATUS_SQL: &str = "/* dbwarden */ SHOW GLOBAL STATUS WHERE Variable_name IN (\
    'Threads_connected', 'Threads_running', 'Max_used_connections', \
    'Innodb_buffer_pool_read_requests', 'Innodb_buffer_pool_reads', 'Innodb_deadlocks', \
    'Innodb_history_list_length', 'Slow_queries', 'Uptime', \
    'Connection_errors_max_connections', 'Aborted_connects', \
    'Created_tmp_tables', 'Created_tmp_disk_tables', \
    'wsrep_cluster_status', 'wsrep_local_state_comment', 'wsrep_ready', \
    'wsrep_cluster_size', 'wsrep_provider_name')";

/// The status variables the round uses, as text (the wsrep ones are words).
pub(super) async fn global_status(
    conn: &mut MySqlConnection,
) -> Result<BTreeMap<String, String>, sqlx::Error> {
    let rows = sqlx::raw_sql(STATUS_SQL).fetch_all(&mut *conn).await?;
    let mut out = BTreeMap::new();
    for row in rows {
        if let (Some(name), Some(v)) = (text(&row, 0)?, text(&row, 1)?) {
            out.insert(name, v);
        }
    }
    Ok(out)
}

/// `lock_deadlocks` and `trx_rseg_history_len` with their enabled flag. Needs PROCESS:
/// an access-denied error here also tells the round that PROCESS is missing.
pub(super) async fn innodb_metrics(
    conn: &mut MySqlConnection,
    v: ServerVersion,
) -> Result<BTreeMap<String, (f64, bool)>, sqlx::Error> {
    let rows = sqlx::raw_sql(innodb_metrics_sql(v))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = BTreeMap::new();
    for row in rows {
        let name = text(&row, 0)?.unwrap_or_default();
        let count = number(&row, 1)?.unwrap_or(0.0);
        let flag = text(&row, 2)?.unwrap_or_default().to_ascii_lowercase();
        out.insert(name, (count, flag == "1" || flag == "enabled"));
    }
    Ok(out)
}

/// "oldest transaction: connection 42, open 25min (RUNNING)".
pub(super) async fn oldest_transaction(
    conn: &mut MySqlConnection,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::raw_sql(
        "/* dbwarden */ SELECT trx_mysql_thread_id, TIMESTAMPDIFF(SECOND, trx_started, NOW()), trx_state \
         FROM information_schema.INNODB_TRX ORDER BY trx_started LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id = text(&row, 0)?.unwrap_or_default();
    let secs = number(&row, 1)?.unwrap_or(0.0);
    let state = text(&row, 2)?.unwrap_or_default();
    Ok(Some(format!(
        "oldest transaction: connection {id}, open {} ({state})",
        Unit::Seconds.format(secs)
    )))
}

pub(super) async fn replicas(
    conn: &mut MySqlConnection,
    v: ServerVersion,
) -> Result<Vec<ReplicaChannel>, sqlx::Error> {
    let rows = sqlx::raw_sql(replica_status_sql(v))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let get = |names: &[&str]| text_by_names(row, names);
            let err = |no: &str, msg: &str| {
                let n = get(&[no]).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
                let m = get(&[msg]).unwrap_or_default();
                (n != 0 || !m.is_empty()).then_some((n, m))
            };
            ReplicaChannel {
                name: get(&["Channel_Name", "Connection_name"]).unwrap_or_default(),
                source: format!(
                    "{}:{}",
                    get(&["Source_Host", "Master_Host"]).unwrap_or_default(),
                    get(&["Source_Port", "Master_Port"]).unwrap_or_default()
                ),
                io_running: get(&["Replica_IO_Running", "Slave_IO_Running"]).unwrap_or_default(),
                sql_running: get(&["Replica_SQL_Running", "Slave_SQL_Running"]).unwrap_or_default(),
                lag: get(&["Seconds_Behind_Source", "Seconds_Behind_Master"])
                    .and_then(|s| s.parse::<f64>().ok()),
                io_error: err("Last_IO_Errno", "Last_IO_Error"),
                sql_error: err("Last_SQL_Errno", "Last_SQL_Error"),
                sql_delay: get(&["SQL_Delay"]).and_then(|s| s.parse::<f64>().ok()),
                connecting_for: None,
            }
        })
        .collect())
}

/// Base tables of the connection's database (`DATABASE()`, so no name is pasted into SQL).
pub(super) async fn table_rows(conn: &mut MySqlConnection) -> Result<Vec<TableRow>, sqlx::Error> {
    let rows = sqlx::raw_sql(
        "/* dbwarden */ SELECT TABLE_NAME, ENGINE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH, DATA_FREE, \
         UNIX_TIMESTAMP(UPDATE_TIME), UNIX_TIMESTAMP(CREATE_TIME), AUTO_INCREMENT \
         FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(TableRow {
            name: text(&row, 0)?.unwrap_or_default(),
            engine: text(&row, 1)?.unwrap_or_default(),
            rows: number(&row, 2)?,
            data: number(&row, 3)?.unwrap_or(0.0),
            index: number(&row, 4)?.unwrap_or(0.0),
            free: number(&row, 5)?.unwrap_or(0.0),
            modified: number(&row, 6)?,
            created: number(&row, 7)?,
            auto_increment: number(&row, 8)?,
        });
    }
    Ok(out)
}

/// Lifetime row counters of the connection's database's tables from performance_schema
/// (`DATABASE()`, so no name is pasted into SQL), one round trip: writes from
/// `table_io_waits_summary_by_table` (kind 0), rows fetched without an index (`INDEX_NAME`
/// NULL: table scans) and through one from `table_io_waits_summary_by_index_usage`
/// (kind 1). Both are in-memory tables. Needs SELECT on performance_schema.*.
pub(super) async fn table_io_rows(
    conn: &mut MySqlConnection,
) -> Result<BTreeMap<String, TableIo>, sqlx::Error> {
    let rows = sqlx::raw_sql(
        "/* dbwarden */ SELECT OBJECT_NAME, 0, COUNT_INSERT, COUNT_UPDATE, COUNT_DELETE \
         FROM performance_schema.table_io_waits_summary_by_table \
         WHERE OBJECT_TYPE = 'TABLE' AND OBJECT_SCHEMA = DATABASE() \
         UNION ALL \
         SELECT OBJECT_NAME, 1, SUM(IF(INDEX_NAME IS NULL, COUNT_FETCH, 0)), \
         SUM(IF(INDEX_NAME IS NULL, 0, COUNT_FETCH)), 0 \
         FROM performance_schema.table_io_waits_summary_by_index_usage \
         WHERE OBJECT_TYPE = 'TABLE' AND OBJECT_SCHEMA = DATABASE() \
         GROUP BY OBJECT_NAME",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<String, TableIo> = BTreeMap::new();
    for row in rows {
        let Some(name) = text(&row, 0)? else {
            continue;
        };
        let kind = number(&row, 1)?.unwrap_or(0.0);
        let (a, b, c) = (
            number(&row, 2)?.unwrap_or(0.0),
            number(&row, 3)?.unwrap_or(0.0),
            number(&row, 4)?.unwrap_or(0.0),
        );
        let io = out.entry(name).or_default();
        if kind == 0.0 {
            (io.inserts, io.updates, io.deletes) = (a, b, c);
        } else {
            (io.fetched_by_scan, io.fetched_by_index) = (a, b);
        }
    }
    Ok(out)
}

/// When InnoDB last recalculated each table's persistent statistics (ANALYZE TABLE or
/// the automatic recalculation after enough changes), by table name, as Unix seconds.
/// Needs SELECT on mysql.innodb_table_stats.
pub(super) async fn last_analyzed(
    conn: &mut MySqlConnection,
) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let rows = sqlx::raw_sql(
        "/* dbwarden */ SELECT table_name, UNIX_TIMESTAMP(last_update) \
         FROM mysql.innodb_table_stats WHERE database_name = DATABASE()",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = BTreeMap::new();
    for row in rows {
        if let (Some(name), Some(at)) = (text(&row, 0)?, number(&row, 1)?) {
            out.insert(name, at as i64);
        }
    }
    Ok(out)
}

/// InnoDB tables of the connection's database that live in the system tablespace
/// (MariaDB: space 0) or a shared tablespace (MySQL 8: System/General). Needs PROCESS.
pub(super) async fn shared_tablespace_tables(
    conn: &mut MySqlConnection,
    v: ServerVersion,
    schema: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::raw_sql(shared_tablespace_sql(v))
        .fetch_all(&mut *conn)
        .await?;
    let prefix = format!("{schema}/");
    let mut out = Vec::new();
    for row in rows {
        if let Some(name) = text(&row, 0)?
            && let Some(table) = name.strip_prefix(&prefix)
        {
            out.push(table.to_string());
        }
    }
    Ok(out)
}

/// The AUTO_INCREMENT columns of the connection's database (their tables' next values
/// come from [`table_rows`]).
pub(super) async fn auto_increment_columns(
    conn: &mut MySqlConnection,
) -> Result<Vec<AutoIncrementColumn>, sqlx::Error> {
    let rows = sqlx::raw_sql(
        "/* dbwarden */ SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE \
         FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND EXTRA LIKE '%auto_increment%'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(AutoIncrementColumn {
            table: text(&row, 0)?.unwrap_or_default(),
            column: text(&row, 1)?.unwrap_or_default(),
            data_type: text(&row, 2)?.unwrap_or_default(),
            column_type: text(&row, 3)?.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// InnoDB transactions open at least `min_secs`, oldest first, with their sessions
/// (idle ones included: COMMAND `Sleep`). Needs PROCESS.
pub(super) async fn long_transactions(
    conn: &mut MySqlConnection,
    min_secs: u64,
    limit: u32,
) -> Result<Vec<TrxRow>, sqlx::Error> {
    let sql = format!(
        "/* dbwarden */ SELECT t.trx_mysql_thread_id, TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), \
         t.trx_state, p.USER, p.HOST, p.COMMAND, p.TIME, LEFT(p.INFO, 2000) \
         FROM information_schema.INNODB_TRX t \
         LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
         WHERE t.trx_mysql_thread_id <> CONNECTION_ID() \
         AND t.trx_started <= NOW() - INTERVAL {min_secs} SECOND \
         ORDER BY t.trx_started LIMIT {limit}"
    );
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(TrxRow {
            connection: text(&row, 0)?.unwrap_or_default(),
            age: number(&row, 1)?.unwrap_or(0.0),
            state: text(&row, 2)?.unwrap_or_default(),
            user: text(&row, 3)?,
            host: text(&row, 4)?,
            command: text(&row, 5)?,
            idle: number(&row, 6)?,
            query: text(&row, 7)?,
        });
    }
    Ok(out)
}

/// `SHOW BINARY LOGS` as (file, bytes); `None` when binary logging is off (error 1381).
pub(super) async fn binary_logs(
    conn: &mut MySqlConnection,
) -> Result<Option<Vec<(String, f64)>>, sqlx::Error> {
    let rows = match sqlx::raw_sql("/* dbwarden */ SHOW BINARY LOGS")
        .fetch_all(&mut *conn)
        .await
    {
        Ok(r) => r,
        Err(e) if super::conn::error_number(&e) == Some(1381) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push((
            text(&row, 0)?.unwrap_or_default(),
            number(&row, 1)?.unwrap_or(0.0),
        ));
    }
    Ok(Some(out))
}

/// performance_schema.replication_group_members (MySQL with performance_schema on).
/// Needs SELECT on it.
pub(super) async fn group_members(
    conn: &mut MySqlConnection,
) -> Result<Vec<GroupMember>, sqlx::Error> {
    let rows = sqlx::raw_sql(
        "/* dbwarden */ SELECT MEMBER_HOST, MEMBER_PORT, MEMBER_STATE, MEMBER_ROLE, \
         MEMBER_ID = @@server_uuid FROM performance_schema.replication_group_members",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(GroupMember {
            host: text(&row, 0)?.unwrap_or_default(),
            port: text(&row, 1)?.unwrap_or_default(),
            state: text(&row, 2)?.unwrap_or_default(),
            role: text(&row, 3)?.unwrap_or_default(),
            is_self: number(&row, 4)?.is_some_and(|v| v > 0.0),
        });
    }
    Ok(out)
}

/// INNODB_METRICS' enabled flag is column `ENABLED` on MariaDB, `STATUS` on MySQL.
pub(super) fn innodb_metrics_sql(v: ServerVersion) -> &'static str {
    if v.is_mariadb() {
        "/* dbwarden */ SELECT NAME, COUNT, ENABLED FROM information_schema.INNODB_METRICS WHERE NAME IN ('lock_deadlocks', 'trx_rseg_history_len')"
    } else {
        "/* dbwarden */ SELECT NAME, COUNT, STATUS FROM information_schema.INNODB_METRICS WHERE NAME IN ('lock_deadlocks', 'trx_rseg_history_len')"
    }
}

/// Shared-tablespace tables: MySQL 8 `INNODB_TABLES.SPACE_TYPE`; MariaDB (and MySQL 5.7)
/// `INNODB_SYS_TABLES` space 0.
pub(super) fn shared_tablespace_sql(v: ServerVersion) -> &'static str {
    if !v.is_mariadb() && v.at_least(8, 0, 0) {
        "/* dbwarden */ SELECT NAME FROM information_schema.INNODB_TABLES \
         WHERE SPACE_TYPE IN ('System', 'General') AND NAME LIKE CONCAT(DATABASE(), '/%')"
    } else {
        "/* dbwarden */ SELECT NAME FROM information_schema.INNODB_SYS_TABLES \
         WHERE SPACE = 0 AND NAME LIKE CONCAT(DATABASE(), '/%')"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_chooses_the_innodb_statements() {
        let v = ServerVersion::parse;
        assert!(innodb_metrics_sql(v("10.11.19-MariaDB")).contains("ENABLED"));
        assert!(innodb_metrics_sql(v("8.4.0")).contains("STATUS"));
        assert!(shared_tablespace_sql(v("10.6.18-MariaDB")).contains("INNODB_SYS_TABLES"));
        assert!(shared_tablespace_sql(v("8.0.36")).contains("INNODB_TABLES"));
        assert!(shared_tablespace_sql(v("8.0.36")).contains("SPACE_TYPE"));
        assert!(shared_tablespace_sql(v("5.7.44")).contains("INNODB_SYS_TABLES"));
    }
}
