#!/usr/bin/env bash
# Run the packaged service under a real systemd: boot a Debian 12 container
# (systemd-nspawn), install the .deb, start dbwarden.service with all its
# hardening, and check readiness, the watchdog, reload, stop and the sandbox.
# CI machines have no systemd as PID 1, so this is the only place where the
# unit's sandbox meets the real binary.
#
#   packaging/container-test.sh target/debian/dbwarden_*.deb
#
# Needs root, debootstrap and systemd-container (installed when missing) and
# Debian's package mirror (the first run builds a root fs, ~3 min; it is kept
# in $ROOTFS and reused).
# Environment: ROOTFS (default /var/tmp/dbwarden-nspawn-root),
#   STUB=1 for a stand-in binary that only speaks sd_notify: skips the checks
#     that need the real daemon (SIGHUP reload, journal fields, a SQLite target),
#   WATCHDOG_WAIT seconds to stay up to prove the watchdog pings (default 35).
# Exit status: 0 all checks passed, 1 a check failed, 77 the container could not
# be set up or booted here (no mirror, no nspawn): nothing was tested.
set -euo pipefail

deb=$(readlink -f "${1:?usage: container-test.sh PATH/TO/dbwarden.deb}")
rootfs=${ROOTFS:-/var/tmp/dbwarden-nspawn-root}
[[ $(id -u) == 0 ]] || { echo "container-test.sh: must run as root" >&2; exit 1; }

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v script >/dev/null || missing+=(bsdutils)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; }; then
        echo "container-test.sh: cannot install ${missing[*]}; container test skipped" >&2
        exit 77
    fi
fi

if [[ ! -x $rootfs/lib/systemd/systemd ]]; then
    rm -rf "$rootfs"
    if ! debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,adduser,ca-certificates,procps,man-db \
        bookworm "$rootfs" http://deb.debian.org/debian; then
        rm -rf "$rootfs"
        echo "container-test.sh: debootstrap failed; container test skipped" >&2
        exit 77
    fi
    systemd-machine-id-setup --root="$rootfs" >/dev/null
    echo dbwarden-test >"$rootfs/etc/hostname"
fi

t=$rootfs/root/dbwarden-test
rm -rf "$t" "$rootfs"/var/log/journal/*
mkdir -p "$t"
cp "$deb" "$t/dbwarden.deb"
python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("pragma journal_mode=wal")
c.execute("create table t(x)"); c.execute("insert into t values (1)"); c.commit(); c.close()' "$t/app.db"
cat >"$t/test.sh" <<EOF
#!/bin/bash
# Runs inside the container as a oneshot service after boot.
STUB=${STUB:-0}
WATCHDOG_WAIT=${WATCHDOG_WAIT:-35}
EOF
cat >>"$t/test.sh" <<'EOF'
exec >/root/dbwarden-test/result.log 2>&1
pass=0; fail=0
ok()   { pass=$((pass+1)); echo "  ok    $*"; }
bad()  { fail=$((fail+1)); echo "  FAIL  $*"; }
check() { local d=$1; shift; if "$@" >/tmp/c.out 2>&1; then ok "$d"; else bad "$d"; sed 's/^/        /' /tmp/c.out | tail -20; fi; }
prop() { systemctl show -P "$1" dbwarden.service; }

echo "== install"
dpkg -i /root/dbwarden-test/dbwarden.deb || bad "dpkg -i"
check "unit is enabled by the package" test "$(systemctl is-enabled dbwarden)" = enabled
check "unit is not started by the package" test "$(systemctl is-active dbwarden)" = inactive

# A drop-in like an admin's: a credential and a SQLite target dir outside the state dir.
install -d -m 0700 /etc/dbwarden/secrets
printf 's3cret' >/etc/dbwarden/secrets/orders.password
chmod 600 /etc/dbwarden/secrets/orders.password
# A SQLite target owned by another user, readable and writable by the dbwarden
# group (group access must work through PrivateUsers=), in WAL mode (needs -shm).
install -d -m 0770 -o root -g dbwarden /srv/app
install -m 0660 -o root -g dbwarden /root/dbwarden-test/app.db /srv/app/app.db
if [ "$STUB" != 1 ]; then
    printf '\n[[target]]\nname = "app"\nurl = "sqlite:///srv/app/app.db"\n' >>/etc/dbwarden/dbwarden.toml
fi
mkdir -p /etc/systemd/system/dbwarden.service.d
cat >/etc/systemd/system/dbwarden.service.d/override.conf <<'UNIT'
[Service]
LoadCredential=orders.password:/etc/dbwarden/secrets/orders.password
ReadWritePaths=/srv/app
# Routine finished runs are DEBUG lines; the journal checks below look for them.
Environment=DBWARDEN_LOG=debug
UNIT
systemctl daemon-reload

echo "== start"
t0=$(date +%s%N)
check "systemctl start" systemctl start dbwarden
t1=$(date +%s%N)
echo "  start (ExecStartPre + READY=1) took $(( (t1 - t0) / 1000000 )) ms"
check "active (running)" test "$(prop ActiveState)/$(prop SubState)" = active/running
pid=$(prop MainPID)
check "runs as dbwarden" test "$(ps -o user= -p "$pid")" = dbwarden
check "state dir owned by dbwarden, 0750" test "$(stat -c '%U %a' /var/lib/dbwarden)" = "dbwarden 750"
sleep 2
if [ -e /var/lib/dbwarden/history.db ]; then
    check "history.db is dbwarden's, 0600 (UMask=0077)" test "$(stat -c '%U %a' /var/lib/dbwarden/history.db)" = "dbwarden 600"
else
    bad "no /var/lib/dbwarden/history.db after start"
fi
check "credential handed over" test -n "$(ls /run/credentials/dbwarden.service/ 2>/dev/null)"

echo "== watchdog: up for ${WATCHDOG_WAIT}s (WatchdogSec=$(prop WatchdogUSec))"
sleep "$WATCHDOG_WAIT"
check "still active, same pid, no restarts" test "$(prop ActiveState)/$(prop MainPID)/$(prop NRestarts)" = "active/$pid/0"

if [ "$STUB" != 1 ]; then
    echo "== reload"
    check "systemctl reload" systemctl reload dbwarden
    sleep 2
    check "after reload: active, same pid" test "$(prop ActiveState)/$(prop MainPID)" = "active/$pid"
fi

echo "  status text: $(prop StatusText)"
if [ "$STUB" != 1 ]; then
    check "journal records carry TARGET= (journalctl -u dbwarden TARGET=dbwarden-history)" \
        test -n "$(journalctl -u dbwarden TARGET=dbwarden-history --no-pager -q -o cat)"
    check "journal records carry JOB= (journalctl -u dbwarden JOB=health)" \
        test -n "$(journalctl -u dbwarden JOB=health --no-pager -q -o cat)"
    check "SQLite target in /srv/app (ReadWritePaths=, group access) is OK" \
        test -n "$(journalctl -u dbwarden TARGET=app STATUS=OK --no-pager -q -o cat)"
    journalctl -u dbwarden TARGET=app --no-pager -q -o verbose | grep -E '^ +(MESSAGE|STATUS|CHECK)=' | head -n 20
fi

echo "== upgrade while running (dpkg -i again: try-restart)"
dpkg -i /root/dbwarden-test/dbwarden.deb >/tmp/upgrade.log 2>&1 || { bad "dpkg -i (upgrade)"; cat /tmp/upgrade.log; }
sleep 1
check "restarted by the upgrade: active, new pid" \
    sh -c "[ \"\$(systemctl show -P ActiveState dbwarden)\" = active ] && [ \"\$(systemctl show -P MainPID dbwarden)\" != $pid ]"

echo "== stop"
t0=$(date +%s%N)
check "systemctl stop" systemctl stop dbwarden
t1=$(date +%s%N)
echo "  stop took $(( (t1 - t0) / 1000000 )) ms"
check "stopped cleanly (Result=success)" test "$(prop Result)" = success
check "no sandbox or seccomp complaints in the journal" \
    sh -c '! journalctl -u dbwarden --no-pager | grep -Ei "seccomp|SIGSYS|Operation not permitted|Permission denied|status=31"'

echo "== security (online)"
systemd-analyze security dbwarden.service --no-pager | tail -n 1

echo "== dpkg -r stops a running service, keeps data"
systemctl start dbwarden
dpkg -r dbwarden >/tmp/remove.log 2>&1 || { bad "dpkg -r"; cat /tmp/remove.log; }
check "inactive after dpkg -r" test "$(systemctl is-active dbwarden)" != active
check "history kept after dpkg -r" test -e /var/lib/dbwarden/history.db

echo "== journal"
journalctl -b -u dbwarden --no-pager -o short-monotonic | tail -n 40
echo "== one record with its fields"
journalctl -b -u dbwarden --no-pager -o verbose -n 1 _COMM=dbwarden | head -n 40

echo "== purge"
rm -rf /etc/systemd/system/dbwarden.service.d /srv/app
systemctl daemon-reload
dpkg -P dbwarden || bad "dpkg -P"
check "user gone after purge" sh -c '! getent passwd dbwarden'
check "data gone after purge" test ! -e /var/lib/dbwarden

echo "container: $pass passed, $fail failed"
echo "$fail" >/root/dbwarden-test/failed
EOF
chmod +x "$t/test.sh"

cat >"$rootfs/etc/systemd/system/dbwarden-test.service" <<'EOF'
[Unit]
Description=dbwarden packaging test
After=multi-user.target dbus.service
[Service]
Type=oneshot
ExecStart=/root/dbwarden-test/test.sh
ExecStopPost=/bin/systemctl --no-block poweroff
[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/dbwarden-test.service \
    "$rootfs/etc/systemd/system/multi-user.target.wants/dbwarden-test.service"

# The host may run without systemd (no bus, cgroup v1): no registration, no
# scope; `script` gives the container's console a pty.
timeout 300 script -qfec "systemd-nspawn -q -b -D '$rootfs' --register=no --keep-unit" \
    "$t/console.log" >/dev/null 2>&1 || true
rm -f "$rootfs/etc/systemd/system/dbwarden-test.service" \
    "$rootfs/etc/systemd/system/multi-user.target.wants/dbwarden-test.service"

if [[ ! -f $t/result.log ]]; then
    echo "container-test.sh: the container did not boot or the test did not run; console:" >&2
    tr -d '\r' <"$t/console.log" | tail -n 40 >&2
    exit 77
fi
cat "$t/result.log"
[[ "$(cat "$t/failed" 2>/dev/null)" == 0 ]]
