#!/usr/bin/env bash
# Issue 11 "Numbers" for PostgreSQL maintenance (quote the output; CI does not time things):
#  (1) pgbench -c 4 -j 2 -T 60 on a scale-10 database whose pgbench tables need VACUUM:
#      3 runs with `dbwarden maintain` running during the load and 3 without; medians of
#      TPS and p99 latency (p99 from pgbench --log per-transaction logs).
#  (2) VACUUM (ANALYZE) of a 1 M-row table with 700 k dead rows: psql (\timing, the
#      statement alone) vs. the duration dbwarden records for that step (started..finished
#      of `maintain --format json`; it also includes the step's load-guard and
#      after-statistics queries, so it is an upper bound of the statement's time).
#      Both with vacuum_cost_delay = $COST_DELAY_MS ms. 3 runs each, medians.
# Uses the scratch database dbw_mbench on 127.0.0.1:5432 (autovacuum off there) and drops it.
# Usage: bash bench/maintenance_pgbench.sh   (release build; about 10 minutes)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOSTPORT=${HOSTPORT:-127.0.0.1:5432}
host=${HOSTPORT%:*}; port=${HOSTPORT#*:}
db=dbw_mbench
secs=${SECS:-60}
COST_DELAY_MS=${COST_DELAY_MS:-2}
if [ -z "${DBWARDEN_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${DBWARDEN_BIN:-$PWD/target/release/dbwarden}
work=$(mktemp -d)
pg() { psql -X -q -h "$host" -p "$port" -U postgres -v ON_ERROR_STOP=1 "$@"; }
trap 'pg -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

cat >"$work/dbwarden.toml" <<TOML
[daemon]
history = "sqlite://$work/history.db"

[[target]]
name = "mbench"
url = "postgres://postgres@$host:$port/$db"

[[job]]
name = "mbench-maintenance"
kind = "maintenance"
schedule = "0 3 * * *"
targets = ["mbench"]
lock_timeout = "5s"
vacuum_cost_delay = "${COST_DELAY_MS}ms"
TOML
maintain() { "$bin" maintain -c "$work/dbwarden.toml" --target mbench --format json --log-level warn; }

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# p99 latency in ms over all per-transaction log files of a run (field 3 is µs).
p99() { cat "$@" | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%.2f\n", a[int(NR*0.99+0.5)]/1000}'; }

prepare() {
  pg -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  pgbench -q -h "$host" -p "$port" -U postgres -i -s 10 "$db" >/dev/null 2>&1
  # Make the pgbench tables need VACUUM: every account row updated once (1 M dead rows).
  pg -d "$db" -c "UPDATE pgbench_accounts SET abalance = abalance + 1" -c "ANALYZE"
  pg -d "$db" -c "SELECT pg_stat_force_next_flush()" >/dev/null 2>&1 || true
}

run_pgbench() { # $1 = label; prints "tps p99"
  local dir="$work/$1"; mkdir -p "$dir"
  (cd "$dir" && pgbench -h "$host" -p "$port" -U postgres -c 4 -j 2 -T "$secs" --log \
    "$db" >out.txt 2>err.txt)
  local tps; tps=$(awk '/^tps = /{print $3}' "$dir/out.txt")
  local failed; failed=$(awk '/number of failed transactions/{print $5}' "$dir/out.txt")
  local max; max=$(cat "$dir"/pgbench_log.* | awk '$3>m{m=$3} END {printf "%.1f", m/1000}')
  echo "$tps $(p99 "$dir"/pgbench_log.*) max_ms=$max failed=${failed:-0}"
}

echo "== (1) pgbench -c 4 -j 2 -T $secs, scale 10, 1 M dead rows in pgbench_accounts"
: >"$work/without"; : >"$work/with"
for i in $(seq "${RUNS:-3}"); do
  prepare
  r=$(run_pgbench "without$i"); echo "without maintenance run $i: tps p99_ms max failed = $r"; echo "$r" >>"$work/without"
  prepare
  ( sleep 5; maintain >"$work/maint$i.json" 2>"$work/maint$i.err"; echo $? >"$work/maint$i.rc" ) &
  r=$(run_pgbench "with$i"); wait
  echo "with maintenance    run $i: tps p99_ms max failed = $r (maintain exit $(cat "$work/maint$i.rc"))"
  echo "$r" >>"$work/with"
  jq -r '.records[] | "   \(.table) \(.action) \(.outcome | tostring)"' "$work/maint$i.json" 2>/dev/null | head -8 || true
  grep -h -c . "$work/with$i/err.txt" >/dev/null 2>&1 && grep -h -i "lock" "$work/with$i/err.txt" | head -3 || true
done
tw=$(awk '{print $1}' "$work/without" | median); pw=$(awk '{print $2}' "$work/without" | median)
tm=$(awk '{print $1}' "$work/with" | median); pm=$(awk '{print $2}' "$work/with" | median)
echo "median without: tps $tw  p99 ${pw} ms"
echo "median with:    tps $tm  p99 ${pm} ms"
awk -v a="$tw" -v b="$tm" 'BEGIN {printf "TPS drop: %.1f%%\n", (a-b)/a*100}'

echo "== (2) VACUUM (ANALYZE) of 1 M rows / 700 k dead, vacuum_cost_delay = ${COST_DELAY_MS}ms"
mk() {
  pg -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  pg -d "$db" -c "CREATE TABLE big (id int PRIMARY KEY, v int, pad text)" \
    -c "INSERT INTO big SELECT g, 0, repeat('x', 60) FROM generate_series(1, 1000000) g" \
    -c "VACUUM (FREEZE, ANALYZE) big" -c "DELETE FROM big WHERE id % 10 < 7" -c "CHECKPOINT"
  pg -d "$db" -c "SELECT pg_stat_force_next_flush()" >/dev/null 2>&1 || true
}
: >"$work/psql_ms"; : >"$work/dbw_ms"
for i in $(seq "${RUNS:-3}"); do
  mk
  ms=$(pg -d "$db" -c "SET vacuum_cost_delay = '${COST_DELAY_MS}ms'" -c '\timing on' \
    -c "VACUUM (ANALYZE) big" | awk '/^Time:/{print $2}')
  echo "psql     run $i: $ms ms"; echo "$ms" >>"$work/psql_ms"
  mk
  maintain >"$work/vac$i.json" || true
  ms=$(python3 - "$work/vac$i.json" <<'PY'
import json, sys
from datetime import datetime, timezone
d = json.load(open(sys.argv[1]))
def t(s):  # RFC 3339 with nanoseconds -> seconds since the epoch
    base, frac = s.rstrip("Z").split(".")
    dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return dt.timestamp() + int(frac) / 10 ** len(frac)
r = next(r for r in d["records"] if r["table"] == "public.big" and r["action"] == "vacuum_analyze")
assert r["outcome"] == "done", r["outcome"]
print(round((t(r["finished"]) - t(r["started"])) * 1000, 3))
PY
)
  echo "dbwarden run $i: $ms ms (recorded step duration)"; echo "$ms" >>"$work/dbw_ms"
done
a=$(median <"$work/psql_ms"); b=$(median <"$work/dbw_ms")
echo "median psql $a ms, dbwarden $b ms"
awk -v a="$a" -v b="$b" 'BEGIN {printf "ratio dbwarden/psql: %.3f\n", b/a}'
