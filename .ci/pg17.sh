#!/usr/bin/env bash
# A throwaway PostgreSQL 17 on 127.0.0.1:5435 for the tests of what only PostgreSQL 16+
# can do (EXPLAIN (GENERIC_PLAN) of sampled statements) and of pg_stat_statements as
# renamed in 17. Called by .ci/run (ensure_pg17); also runs by hand, as root.
#
# The CI host is Debian 12 (PostgreSQL 15, glibc 2.36); Debian 13's postgresql-17 needs
# glibc 2.38, so it runs from its own Debian 13 (trixie) root fs, built once with
# debootstrap from deb.debian.org (a few minutes) and kept in $DBWARDEN_CI_PG17_ROOT
# (default /var/tmp/dbwarden-pg17-root). The server runs chrooted as that root fs's
# postgres user and shares the host's network: trust auth, database test,
# shared_preload_libraries = pg_stat_statements. Its data directory is
# /var/tmp/dbwarden-pg17-data inside the root fs, and the same path on the host is a
# symlink to it, so the host sees the server's data_directory (the disk_space check);
# its log is /var/tmp/dbwarden-pg17-data.log next to it. A server already answering on
# 5435 with version 17 is used as it is; a rerun takes well under a second.
# Stop it with:
#   chroot --userspec=postgres:postgres /var/tmp/dbwarden-pg17-root \
#       /usr/lib/postgresql/17/bin/pg_ctl stop -D /var/tmp/dbwarden-pg17-data
# and start afresh by deleting /var/tmp/dbwarden-pg17-root/var/tmp/dbwarden-pg17-data*
# (the data) or the whole root fs once it is stopped.
set -euo pipefail

root=${DBWARDEN_CI_PG17_ROOT:-/var/tmp/dbwarden-pg17-root}
port=5435
bin=/usr/lib/postgresql/17/bin
data=/var/tmp/dbwarden-pg17-data
mirror=http://deb.debian.org/debian

say() { printf '\n== %s\n' "$*"; }
fail() { echo ".ci/pg17.sh: $*" >&2; exit 1; }

# Host-side client (any version speaks to 17): one value, unaligned, no psqlrc.
sql() { # sql DB SQL
    PGCONNECT_TIMEOUT=5 PGOPTIONS="-c client_min_messages=warning" \
        psql -X -qtA -h 127.0.0.1 -p "$port" -U postgres -d "$1" -c "$2"
}
up() { pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres >/dev/null 2>&1; }
# Inside the root fs, as its postgres user, with a clean environment.
as_pg() {
    chroot --userspec=postgres:postgres "$root" \
        env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME=/var/lib/postgresql "$@"
}

if ! up; then
    [ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot)"
    if [ -L "$root" ] || { [ -e "$root" ] && [ ! -O "$root" ]; }; then
        fail "$root is a symlink or not owned by root: not using it"
    fi
    # The marker is written last: a root fs without it is a failed or interrupted build.
    if [ ! -e "$root/.dbwarden-pg17-complete" ]; then
        command -v debootstrap >/dev/null || {
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null ||
                { apt-get update -q >/dev/null &&
                    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; }
        }
        say "building a Debian 13 root fs with postgresql-17 in $root (first run only)"
        rm -rf "$root"
        t0=$(date +%s)
        if ! debootstrap --variant=minbase --include=postgresql-17 \
            trixie "$root" "$mirror" >"$root.debootstrap.log" 2>&1; then
            tail -n 20 "$root.debootstrap.log" >&2
            rm -rf "$root"
            fail "debootstrap of trixie failed (log: $root.debootstrap.log)"
        fi
        [ -x "$root$bin/postgres" ] || fail "no $bin/postgres in $root after debootstrap"
        touch "$root/.dbwarden-pg17-complete"
        echo "root fs built in $(($(date +%s) - t0)) s ($(du -sm "$root" | cut -f1) MB)"
    fi

    # A server of ours still running on the data directory without answering: stop it.
    if [ -e "$root$data/postmaster.pid" ] && as_pg "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" stop -D "$data" -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
    if [ ! -e "$root$data.initialized" ]; then
        say "initialising PostgreSQL 17 in $root$data"
        rm -rf "${root:?}$data"
        install -d -o "$(stat -c %u "$root/var/lib/postgresql")" \
            -g "$(stat -c %g "$root/var/lib/postgresql")" -m 0700 "$root$data"
        install -m 0644 /dev/null "$root$data.log"
        chown --reference="$root$data" "$root$data.log"
        if ! as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --no-sync \
            --encoding=UTF8 --locale=C.UTF-8 >"$root$data.initdb.log" 2>&1; then
            cat "$root$data.initdb.log" >&2
            fail "initdb failed"
        fi
        # The chroot's /dev/shm is a plain directory, not a tmpfs: dynamic shared memory
        # in files under the data directory instead.
        as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF

# dbwarden CI: a throwaway PostgreSQL 17 (.ci/pg17.sh)
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '/tmp'
cluster_name = 'dbwarden_ci_pg17'
shared_preload_libraries = 'pg_stat_statements'
dynamic_shared_memory_type = mmap
shared_buffers = 16MB
max_connections = 60
EOF
        touch "$root$data.initialized"
    fi
    # The same path on the host (see the top).
    if [ ! -e "$data" ] || [ -L "$data" ]; then
        ln -sfn "$root$data" "$data"
    fi
    say "starting PostgreSQL 17 on 127.0.0.1:$port ($root)"
    if ! as_pg "$bin/pg_ctl" start -D "$data" -l "$data.log" -w -t 60 >/dev/null 2>&1; then
        tail -n 20 "$root$data.log" >&2 || true
        fail "PostgreSQL 17 on 127.0.0.1:$port did not start"
    fi
fi

# Whatever answers must be a 17 with pg_stat_statements loaded: the tests rely on it.
version=$(sql postgres "SHOW server_version_num")
[ "${version:0:2}" = 17 ] || fail "the server on 127.0.0.1:$port is version $version, not 17"
if [ "$(sql postgres "SELECT count(*) FROM pg_database WHERE datname = 'test'")" = 0 ]; then
    sql postgres "CREATE DATABASE test" >/dev/null
fi
sql test "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
