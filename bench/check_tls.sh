#!/usr/bin/env bash
# One-shot `dbwarden check` against PostgreSQL over TLS vs without (issue 8, "Connection
# cost"): target TLS ≤ 1.5× disable. Runs are paired and interleaved (require, disable,
# require, …) so drift of the machine's load hits both sides alike; prints the medians and
# their ratio. Wall time of the whole process (start, config, connect, round, exit).
#
#   bash bench/check_tls.sh [RUNS]          # default 30 pairs; builds the `bench` profile
#   DBWARDEN_BIN=path/to/dbwarden bash bench/check_tls.sh
#   DBWARDEN_BENCH_PG_URL=postgres://postgres@host:5432/db   (default: the local test server;
#                                            it must have ssl = on and no query parameters)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-30}
base=${DBWARDEN_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
# The `bench` profile is release without fat LTO (see Cargo.toml): a few percent of client
# CPU do not matter next to network round trips, and it builds in minutes, not 12+.
if [ -z "${DBWARDEN_BIN:-}" ]; then cargo build --profile bench --quiet --bin dbwarden; fi
bin=${DBWARDEN_BIN:-$PWD/target/release/dbwarden}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for mode in require disable; do
    cat >"$work/$mode.toml" <<EOF
[daemon]
history = "sqlite://$work/history-$mode.db"

[[target]]
name = "pg"
url = "$base?sslmode=$mode"

[[job]]
name = "health"
kind = "health"
schedule = "@every 30s"
EOF
done

# One run: wall time in µs; a failed check (exit > 2: no answer) aborts the benchmark,
# since timing an error path would say nothing about the connect.
run_us() {
    local start end rc=0
    start=$(date +%s%N)
    "$bin" check -c "$work/$1.toml" >"$work/out" 2>&1 || rc=$?
    end=$(date +%s%N)
    if ((rc > 2)); then
        echo "check with sslmode=$1 failed (exit $rc):" >&2
        cat "$work/out" >&2
        exit 1
    fi
    echo $(((end - start) / 1000))
}

# Warm-up (page cache, server-side caches), not counted.
run_us require >/dev/null
run_us disable >/dev/null
: >"$work/require.us"
: >"$work/disable.us"
for _ in $(seq "$runs"); do
    run_us require >>"$work/require.us"
    run_us disable >>"$work/disable.us"
done

median() { sort -n "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
tls=$(median "$work/require.us")
plain=$(median "$work/disable.us")
echo "binary: $bin"
echo "dbwarden check, $runs paired runs, median wall time:"
printf '  sslmode=require  %8.1f ms\n' "$(awk -v u="$tls" 'BEGIN {print u / 1000}')"
printf '  sslmode=disable  %8.1f ms\n' "$(awk -v u="$plain" 'BEGIN {print u / 1000}')"
awk -v t="$tls" -v p="$plain" 'BEGIN {r = t / p; printf "  ratio            %8.2f  (target <= 1.50: %s)\n", r, (r <= 1.5 ? "met" : "NOT met")}'
