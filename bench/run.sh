#!/usr/bin/env bash
# Benchmarks for the spine's numbers (quote the output in notes; CI does not time things):
#   - `dbwarden config check` wall time on the demo config (target ≤ 50 ms)
#   - idle daemon on the demo config: resident memory (≤ 20 MB) and CPU between runs (≈ 0)
#   - history writes into SQLite through the batching writer (≥ 50,000 results/s)
# Usage: bash bench/run.sh [IDLE_SECONDS]   (release build; takes about two minutes)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
idle=${1:-90}
# DBWARDEN_BIN: measure this binary instead of building one.
if [ -z "${DBWARDEN_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${DBWARDEN_BIN:-$PWD/target/release/dbwarden}
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
cp config/dbwarden.toml "$work/"
cd "$work"

echo "== config check (demo), 50 runs"
"$bin" config check dbwarden.toml >/dev/null
start=$(date +%s%N)
for _ in $(seq 50); do "$bin" config check dbwarden.toml >/dev/null; done
end=$(date +%s%N)
echo "config check: $(( (end - start) / 50 / 1000 )) µs per run (wall, including process start)"

echo "== idle daemon on the demo config for ${idle}s (health every 30 s)"
"$bin" run -c dbwarden.toml --log-level warn 2>daemon.log &
pid=$!
sleep 5
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu); t0=$(date +%s%N)
peak=0
for _ in $(seq "$idle"); do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    (( rss > peak )) && peak=$rss
    sleep 1
done
c1=$(cpu); t1=$(date +%s%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
threads=$(awk '/Threads/ {print $2}' "/proc/$pid/status")
secs=$(( (t1 - t0) / 1000000000 ))
echo "resident memory: now $((rss / 1024)) MB ($rss kB), peak $((peak / 1024)) MB; threads: $threads"
echo "cpu: $(( c1 - c0 )) ticks of 1/${ticks}s in ${secs}s = $(awk -v c=$((c1 - c0)) -v t="$ticks" -v s="$secs" 'BEGIN {printf "%.3f", 100 * c / t / s}')% of one core (includes $(( secs / 30 )) health rounds)"
runs=$(sqlite3 data/history.db "SELECT COUNT(*) FROM job_runs" 2>/dev/null || echo "?")
echo "job runs recorded: $runs"
kill -TERM "$pid"; wait "$pid" || true
cd - >/dev/null

echo "== history writes"
if [ -z "${SKIP_WRITE_BENCH:-}" ]; then cargo bench --quiet --bench history_write; fi
