#!/usr/bin/env bash
# Idle daemon memory with one PostgreSQL target of ~1,600 relations (issue 8, "Numbers":
# target VmRSS ≤ 13 MB; postgres_exporter measured 17.2 MB side by side), and where it goes.
#
#   bash bench/rss.sh [SECONDS]             # default 75 s = 3 health rounds at @every 30s
#   DBWARDEN_BIN=path/to/dbwarden bash bench/rss.sh
#   DBWARDEN_BENCH_PG_URL=postgres://postgres@host:5432    (server, no database; default local)
#   RSS_TABLES=400                          # tables in dbwarden_rss (4 relations each)
# Environment reaches the daemon, so allocator settings can be compared without a rebuild:
#   MALLOC_ARENA_MAX=1 bash bench/rss.sh
#
# It creates (once; idempotent) the database dbwarden_rss with RSS_TABLES tables, each
# `id int PRIMARY KEY, body text`: the table, its primary-key index, its TOAST table and the
# TOAST index = 4 relations a table. The daemon keeps its history in a temporary directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-75}
server=${DBWARDEN_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
tables=${RSS_TABLES:-400}
# The release profile (fat LTO) is what the package ships; its text size and layout are part
# of the resident set, so measure that one (or pass DBWARDEN_BIN).
if [ -z "${DBWARDEN_BIN:-}" ]; then cargo build --release --quiet --bin dbwarden; fi
bin=${DBWARDEN_BIN:-$PWD/target/release/dbwarden}
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; wait "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== database dbwarden_rss ($tables tables)"
if [ "$(psql "$server/postgres" -Atc "SELECT 1 FROM pg_database WHERE datname = 'dbwarden_rss'")" != 1 ]; then
    psql "$server/postgres" -qc "CREATE DATABASE dbwarden_rss"
fi
PGOPTIONS="-c client_min_messages=warning" psql "$server/dbwarden_rss" -q -v ON_ERROR_STOP=1 <<EOF
DO \$\$
BEGIN
  FOR i IN 1..$tables LOOP
    EXECUTE format('CREATE TABLE IF NOT EXISTS rss_%s (id int PRIMARY KEY, body text)', i);
  END LOOP;
END
\$\$;
EOF
psql "$server/dbwarden_rss" -At -c "
  SELECT 'relations: ' || count(*) FILTER (WHERE oid >= 16384)
         || ' user (tables, indexes, TOAST), ' || count(*) || ' in pg_class'
  FROM pg_class"

cat >"$work/rss.toml" <<EOF
[daemon]
history = "sqlite://$work/history.db"
listen = "127.0.0.1:0"

[[target]]
name = "rss"
url = "$server/dbwarden_rss?sslmode=disable"

[[job]]
name = "health"
kind = "health"
schedule = "@every 30s"
EOF

echo "== daemon for ${secs}s ($bin)"
"$bin" run -c "$work/rss.toml" --log-level warn 2>"$work/daemon.log" &
pid=$!
peak=0
for _ in $(seq "$secs"); do
    sleep 1
    [ -d "/proc/$pid" ] || { cat "$work/daemon.log"; echo "daemon exited" >&2; exit 1; }
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    ((rss > peak)) && peak=$rss
done
runs=$(sqlite3 "$work/history.db" "SELECT COUNT(*) FROM job_runs" 2>/dev/null || echo "?")

status() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f MB", k / 1024}'; }
echo "job runs recorded: $runs"
echo "VmRSS $(mb "$(status VmRSS)") (peak while idle $(mb "$peak")) = RssAnon $(mb "$(status RssAnon)") + RssFile $(mb "$(status RssFile)") + RssShmem $(mb "$(status RssShmem)")"
echo "Pss $(mb "$(awk '$1 == "Pss:" {print $2}' "/proc/$pid/smaps_rollup")"); threads $(status Threads); VmSize $(mb "$(status VmSize)")"
echo "threads by name: $(for t in /proc/$pid/task/*; do cat "$t/comm"; done | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')"

# Breakdown from /proc/PID/smaps. Anonymous mappings are classified by shape:
#   - [heap]: glibc's main arena (brk)
#   - glibc malloc arena: a 64 MiB reservation (rw part + PROT_NONE rest), one per arena
#     (glibc creates up to 8 × cores of them, one per thread that allocates concurrently)
#   - thread stack: an rw mapping (2 MiB) right after a one-page PROT_NONE guard; a small one
#     there is the sigaltstack Rust's runtime gives each thread for stack-overflow reports
#   - other anonymous: large allocations malloc served by mmap, TLS, runtime tables
echo "== resident memory by kind (kB; anon = of it private/anonymous, the rest file pages)"
awk -v bin="$(readlink -f "$bin")" '
    /^[0-9a-f]+-[0-9a-f]+ / {
        split($1, r, "-"); start = strtonum("0x" r[1]); end = strtonum("0x" r[2])
        n++; perms[n] = $2; path[n] = ($6 == "" ? "" : $6); lo[n] = start; hi[n] = end
        next
    }
    $1 == "Rss:" { rss[n] = $2 }
    $1 == "Anonymous:" { anon[n] = $2 }
    END {
        for (i = 1; i <= n; i++) {
            p = path[i]; kind = ""
            # The binary: text; read-only data (.rodata, unwind tables, relocations); RELRO
            # (.data.rel.ro: read-only after the dynamic loader wrote the PIE relocations
            # into it, so every page is a private copy); data.
            if (p == bin) kind = "binary " (perms[i] ~ /x/ ? "text" : (perms[i] ~ /w/ ? "data" : (anon[i] > 0 ? "RELRO (relocated)" : "rodata")))
            else if (p == "[heap]") kind = "heap (main arena, brk)"
            else if (p == "[stack]") kind = "main thread stack"
            else if (p ~ /^\[/) kind = "kernel (" p ")"
            else if (p ~ /libc\.so|ld-linux|libm\.so|libgcc|libpthread|libdl/) kind = "shared libraries"
            else if (p != "") kind = "other files (" p ")"
            else if (perms[i] == "---p") continue
            else if (i < n && perms[i + 1] == "---p" && hi[i] == lo[i + 1] && hi[i + 1] - lo[i] == 67108864) {
                kind = "glibc malloc arenas"; arenas++
            } else if (i > 1 && perms[i - 1] == "---p" && hi[i - 1] == lo[i] && hi[i - 1] - lo[i - 1] == 4096) {
                if (hi[i] - lo[i] >= 65536) { kind = "thread stacks"; stacks++ }
                else kind = "signal stacks (Rust, one per thread)"
            } else kind = "other anonymous"
            sum[kind] += rss[i]; an[kind] += anon[i]; total += rss[i]; tanon += anon[i]
        }
        printf "  %7s  %7s  %s\n", "rss", "anon", "kind"
        for (k in sum) if (sum[k] > 0) printf "  %7d  %7d  %s\n", sum[k], an[k], k | "sort -rn"
        close("sort -rn")
        printf "  %7d  %7d  total (%d malloc arenas besides the main one, %d thread stacks)\n", total, tanon, arenas, stacks
    }' "/proc/$pid/smaps"
echo "binary: $(stat -c %s "$(readlink -f "$bin")") bytes on disk"
kill -TERM "$pid"
wait "$pid" || true
