//! sqlx's TCP connections to PostgreSQL and MySQL/MariaDB have TCP_NODELAY set (issue 8,
//! "Connection cost"; sqlx 0.9.0 dropped it, `vendor/sqlx-core` puts it back). Without it a
//! TLS handshake stalls on Nagle's algorithm + delayed ACK (~40 ms a flight).
//!
//! No timing: each test opens a real connection, asks the server for the client port of that
//! very connection, finds our socket with that local port (`/proc/self/net/tcp{,6}` gives
//! its inode, `/proc/self/fd` the descriptor), duplicates it with `pidfd_getfd` on our own
//! process (an `OwnedFd`, no unsafe) and reads the option with `getsockopt(TCP_NODELAY)`.
//! Linux ≥ 5.6 only (pidfd_getfd).
//!
//! Needs DBWARDEN_TEST_PG_URL / DBWARDEN_TEST_MYSQL_URL with a TCP host (not a Unix socket);
//! without them each test prints "skipping" and passes, unless DBWARDEN_REQUIRE_SERVICES=1.

mod common;

use common::url_from_env;
use std::os::fd::OwnedFd;

use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

/// The inodes of the TCP sockets from `local_port` to `remote_port`, from the kernel's
/// tables of our network namespace (`/proc/self/net/tcp` and `tcp6`; columns
/// `sl local rem st … uid timeout inode`, addresses as `HEXADDR:HEXPORT`). Other processes'
/// sockets may be among them; `socket_fd` picks ours.
fn socket_inodes(local_port: u16, remote_port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue; // no IPv6 in this kernel
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = |col: usize| {
                cols.get(col)
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if port(1) == Some(local_port)
                && port(2) == Some(remote_port)
                && let Some(inode) = cols.get(9).and_then(|i| i.parse::<u64>().ok())
                && inode != 0
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// A duplicate of this process's descriptor of the socket with inode `inode`: the link
/// `/proc/self/fd/N -> socket:[inode]` names N, `pidfd_getfd` on our own pid copies it.
fn socket_fd(inode: u64) -> Option<OwnedFd> {
    let want = format!("socket:[{inode}]");
    let dir = std::fs::read_dir("/proc/self/fd").unwrap_or_else(|e| panic!("/proc/self/fd: {e}"));
    let number = dir.flatten().find_map(|entry| {
        let link = std::fs::read_link(entry.path()).ok()?;
        (link.to_str() == Some(want.as_str()))
            .then(|| entry.file_name().to_str()?.parse::<i32>().ok())
            .flatten()
    })?;
    let me = pidfd_open(getpid(), PidfdFlags::empty())
        .unwrap_or_else(|e| panic!("pidfd_open(self): {e} (Linux >= 5.3 needed)"));
    let fd = pidfd_getfd(&me, number, PidfdGetfdFlags::empty())
        .unwrap_or_else(|e| panic!("pidfd_getfd(self, {number}): {e} (Linux >= 5.6 needed)"));
    Some(fd)
}

/// TCP_NODELAY of our connection from `client_port` to `server_port`.
fn nodelay_of(client_port: u16, server_port: u16) -> bool {
    let inodes = socket_inodes(client_port, server_port);
    let mut ours = inodes.iter().filter_map(|&inode| socket_fd(inode));
    let fd = ours.next().unwrap_or_else(|| {
        panic!("none of our descriptors is a TCP socket {client_port} -> {server_port} (inodes {inodes:?})")
    });
    rustix::net::sockopt::tcp_nodelay(&fd)
        .unwrap_or_else(|e| panic!("getsockopt(TCP_NODELAY) on port {client_port}: {e}"))
}

#[tokio::test]
async fn postgres_connection_sets_tcp_nodelay() {
    let Some(url) = url_from_env("DBWARDEN_TEST_PG_URL") else {
        return;
    };
    let mut conn = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to DBWARDEN_TEST_PG_URL: {e}"));
    // Both are NULL over a Unix socket: the test needs a TCP host.
    let row = sqlx::query("SELECT inet_client_port(), inet_server_port()")
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("inet_client_port(): {e}"));
    let port = |i: usize| {
        let p: Option<i32> = row
            .try_get(i)
            .unwrap_or_else(|e| panic!("port column {i}: {e}"));
        p.and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("DBWARDEN_TEST_PG_URL is not a TCP connection"))
    };
    let (client, server) = (port(0), port(1));
    assert!(
        nodelay_of(client, server),
        "PostgreSQL connection {client} -> {server} lacks TCP_NODELAY"
    );
    conn.close().await.unwrap_or_else(|e| panic!("close: {e}"));
}

#[tokio::test]
async fn mysql_connection_sets_tcp_nodelay() {
    let Some(url) = url_from_env("DBWARDEN_TEST_MYSQL_URL") else {
        return;
    };
    let mut conn = MySqlConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to DBWARDEN_TEST_MYSQL_URL: {e}"));
    // HOST is `addr:port` for a TCP client, `localhost` over a Unix socket.
    let row = sqlx::query(
        "SELECT HOST, @@port FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("processlist: {e}"));
    let host: String = row
        .try_get(0)
        .unwrap_or_else(|e| panic!("processlist HOST: {e}"));
    let server: u64 = row.try_get(1).unwrap_or_else(|e| panic!("@@port: {e}"));
    let server = u16::try_from(server).unwrap_or_else(|e| panic!("@@port {server}: {e}"));
    let client = host
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or_else(|| {
            panic!("DBWARDEN_TEST_MYSQL_URL is not a TCP connection (HOST {host:?})")
        });
    assert!(
        nodelay_of(client, server),
        "MySQL connection {client} -> {server} lacks TCP_NODELAY"
    );
    conn.close().await.unwrap_or_else(|e| panic!("close: {e}"));
}
