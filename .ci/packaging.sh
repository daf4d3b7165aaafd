#!/usr/bin/env bash
# Packaging tests (issue 4): the systemd unit (verify + hardening score) and the
# .deb installed, upgraded, removed and purged like an admin would.
#
# Run as root on a Debian 12 machine (systemd need not be PID 1):
#     bash .ci/packaging.sh
# It installs and purges the `dbwarden` package and its system user, and leaves
# the machine as it found it (re-runs work).
#
# Environment:
#   DBWARDEN_BIN      binary the verify copy of the unit points at
#                     (default: the release binary built for the .deb)
#   DBWARDEN_DEB      test this .deb instead of building one (skips the build)
#   MAX_EXPOSURE      highest accepted `systemd-analyze security` score (default 2.0)
#   CARGO_DEB_VERSION cargo-deb installed when missing (default 3.8.0)
#   DBWARDEN_CONTAINER_TEST=0 skips the run under a real systemd
#                     (packaging/container-test.sh; other variables of that script
#                     such as STUB=1 pass through)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
unit_src="$repo/packaging/systemd/dbwarden.service"
conf_src="$repo/packaging/dbwarden.toml"
max_exposure=${MAX_EXPOSURE:-2.0}
cargo_deb_version=${CARGO_DEB_VERSION:-3.8.0}

pkg=dbwarden
user=dbwarden
etc=/etc/dbwarden
conf=/etc/dbwarden/dbwarden.toml
state=/var/lib/dbwarden
wants_link=/etc/systemd/system/multi-user.target.wants/dbwarden.service

passed=0
failed=0
work=$(mktemp -d /tmp/dbwarden-packaging.XXXXXX)

log() { printf '\n== %s\n' "$*"; }
die() { printf 'packaging.sh: FATAL: %s\n' "$*" >&2; exit 1; }
# check DESCRIPTION COMMAND...: run a check, record it, keep going.
check() {
    local desc=$1; shift
    if "$@" >"$work/check.out" 2>&1; then
        passed=$((passed + 1)); printf '  ok    %s\n' "$desc"
    else
        failed=$((failed + 1)); printf '  FAIL  %s\n' "$desc"
        sed 's/^/        /' "$work/check.out" | tail -n 20
    fi
}
pkg_status() { dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true; }
is_installed_any() { [[ -n "$(pkg_status)" && "$(pkg_status)" != *"not-installed"* ]]; }

cleanup() {
    local rc=$?
    if is_installed_any; then
        echo "cleanup: purging $pkg" >&2
        dpkg -P "$pkg" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || die "must run as root (installs and purges a package)"

# ---------------------------------------------------------------- tools
log "tools"
need_pkgs=()
for p in systemd dpkg-dev adduser passwd ca-certificates init-system-helpers util-linux procps; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        need_pkgs+=("$p")
    fi
done
if ((${#need_pkgs[@]})); then
    echo "apt-get install ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
command -v systemd-analyze >/dev/null || die "systemd-analyze not found"
if [[ -z "${DBWARDEN_DEB:-}" ]] && ! cargo deb --version >/dev/null 2>&1; then
    echo "cargo install cargo-deb@$cargo_deb_version"
    cargo install cargo-deb --locked --version "$cargo_deb_version"
fi
systemd-analyze --version | head -n 1
[[ -n "${DBWARDEN_DEB:-}" ]] || cargo deb --version

# Leftovers of an aborted run would make the install tests lie.
if is_installed_any; then
    echo "removing a previously installed $pkg ($(pkg_status))"
    dpkg -P "$pkg"
fi
if [[ -e $etc || -e $state ]] || getent passwd "$user" >/dev/null; then
    if [[ "${CI:-}" == true || "${DBWARDEN_PKG_FORCE_CLEAN:-}" == 1 ]]; then
        echo "removing leftovers: $etc $state, user $user"
        rm -rf "$etc" "$state"
        getent passwd "$user" >/dev/null && userdel "$user"
        getent group "$user" >/dev/null && groupdel "$user"
    else
        die "$etc, $state or user $user exist without the package; remove them or set DBWARDEN_PKG_FORCE_CLEAN=1"
    fi
fi

# ---------------------------------------------------------------- unit: hardening score
log "systemd-analyze security --offline=true (max $max_exposure)"
mkdir -p "$work/unit"
cp "$unit_src" "$work/unit/dbwarden.service"
systemd-analyze security --offline=true --no-pager "$work/unit/dbwarden.service" >"$work/security.txt" 2>&1 || true
grep -E '✗' "$work/security.txt" || true
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$work/security.txt")
[[ -n $exposure ]] || { cat "$work/security.txt"; die "no exposure level in systemd-analyze output"; }
echo "exposure: $exposure"
check "exposure $exposure <= $max_exposure" awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e + 0 <= m + 0) }'

# ---------------------------------------------------------------- build
if [[ -n "${DBWARDEN_DEB:-}" ]]; then
    deb=$(readlink -f "$DBWARDEN_DEB")
    [[ -f $deb ]] || die "DBWARDEN_DEB=$DBWARDEN_DEB: no such file"
else
    log "build the .deb (packaging/build-deb.sh)"
    mkdir -p "$work/deb"
    bash "$repo/packaging/build-deb.sh" --output "$work/deb/"
    deb=$(ls "$work"/deb/*.deb)
fi
echo "deb: $deb ($(stat -c %s "$deb") bytes)"
dpkg-deb -I "$deb" | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\):/  \1:/p'

if [[ -z "${DBWARDEN_BIN:-}" ]]; then
    target_dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    DBWARDEN_BIN="${target_dir:-$repo/target}/release/dbwarden"
    if [[ ! -x $DBWARDEN_BIN ]]; then  # prebuilt .deb: take the binary out of it
        dpkg-deb -x "$deb" "$work/extract"
        DBWARDEN_BIN="$work/extract/usr/bin/dbwarden"
    fi
fi
DBWARDEN_BIN=$(readlink -f "$DBWARDEN_BIN")
[[ -x $DBWARDEN_BIN ]] || die "DBWARDEN_BIN=$DBWARDEN_BIN is not executable"

# ---------------------------------------------------------------- unit: verify
log "systemd-analyze verify --man=no (ExecStart -> $DBWARDEN_BIN)"
sed "s#/usr/bin/dbwarden#$DBWARDEN_BIN#g" "$unit_src" >"$work/unit/dbwarden.service"
check "unit copy pointing at the built binary verifies" \
    systemd-analyze verify --man=no "$work/unit/dbwarden.service"
check "shipped config passes config check (built binary)" \
    "$DBWARDEN_BIN" config check "$conf_src"

# maintainer scripts: the DEBHELPER token was replaced, scripts parse
dpkg-deb -e "$deb" "$work/control"
check "postinst/postrm/prerm parse with sh -n" \
    sh -c "sh -n '$work/control/postinst' && sh -n '$work/control/postrm' && sh -n '$work/control/prerm'"
check "cargo-deb systemd snippets inserted, no token left" \
    sh -c "grep -q deb-systemd-helper '$work/control/postinst' && ! grep -q '#DEBHELPER#' '$work/control/postinst' '$work/control/postrm'"

# ---------------------------------------------------------------- install
log "dpkg -i (systemd is $( [[ -d /run/systemd/system ]] && echo running || echo 'not running' ))"
dpkg -i "$deb" 2>&1 | tee "$work/dpkg-i.txt" || die "dpkg -i failed"
check "package state is installed" sh -c "dpkg-query -W -f='\${Status}' $pkg | grep -qx 'install ok installed'"
check "/usr/bin/dbwarden is executable" test -x /usr/bin/dbwarden
unit_installed=""
for d in /usr/lib/systemd/system /lib/systemd/system; do
    [[ -f $d/dbwarden.service ]] && { unit_installed=$d/dbwarden.service; break; }
done
check "unit installed under (/usr)/lib/systemd/system" test -n "$unit_installed"
check "installed unit is packaging/systemd/dbwarden.service" cmp "${unit_installed:-/nonexistent}" "$unit_src"
check "installed unit verifies (real /usr/bin/dbwarden)" \
    systemd-analyze verify --man=no "${unit_installed:-/nonexistent}"
if command -v man >/dev/null; then
    check "installed unit verifies with Documentation=man:dbwarden(1)" \
        systemd-analyze verify "${unit_installed:-/nonexistent}"
fi
check "unit enabled (multi-user.target.wants symlink)" test -L "$wants_link"
check "config installed" test -f "$conf"
check "config is root:dbwarden 0640" sh -c "[ \"\$(stat -c '%U:%G %a' $conf)\" = 'root:dbwarden 640' ]"
check "/etc/dbwarden is root:dbwarden 0750" sh -c "[ \"\$(stat -c '%U:%G %a' $etc)\" = 'root:dbwarden 750' ]"
check "installed config is the shipped one" cmp "$conf" "$conf_src"
check "config is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}\n' $pkg | grep -q '^ $conf '"
check "man page installed and is roff" sh -c "zcat /usr/share/man/man1/dbwarden.1.gz | grep -q '^\.TH'"
check "bash completion installed" test -s /usr/share/bash-completion/completions/dbwarden
check "zsh completion installed" test -s /usr/share/zsh/vendor-completions/_dbwarden
check "fish completion installed" test -s /usr/share/fish/vendor_completions.d/dbwarden.fish
check "README installed" test -s /usr/share/doc/dbwarden/README.md
check "config examples installed" sh -c "ls /usr/share/doc/dbwarden/examples/*.toml"
check "user dbwarden exists" getent passwd "$user"
check "group dbwarden exists" getent group "$user"
pw=$(getent passwd "$user" || true)
IFS=: read -r _ _ pw_uid _ _ pw_home pw_shell <<<"${pw:-::::::}"
check "user is a system user (uid ${pw_uid:-?} < 1000)" test "${pw_uid:-1000}" -lt 1000
check "user's home is $state, shell nologin" test "$pw_home:$pw_shell" = "$state:/usr/sbin/nologin"
check "state dir is dbwarden:dbwarden 0750" sh -c "[ \"\$(stat -c '%U:%G %a' $state)\" = 'dbwarden:dbwarden 750' ]"
check "config check as root" /usr/bin/dbwarden config check "$conf"
check "config check as dbwarden in $state (like ExecStartPre)" \
    sh -c "cd $state && runuser -u $user -- /usr/bin/dbwarden config check $conf"

# Run the daemon briefly the way the unit does (user, cwd, config), so there is
# real data in the state dir for the remove/purge checks. No systemd here: no
# NOTIFY_SOCKET, logs to stderr. Listen on a free port in case 9645 is taken.
log "dbwarden run as $user for a few seconds"
run_rc=0
(cd "$state" && DBWARDEN_DAEMON__LISTEN=127.0.0.1:0 \
    runuser -u "$user" -- timeout --preserve-status -k 40 -s TERM 5 \
    /usr/bin/dbwarden run -c "$conf") >"$work/run.log" 2>&1 || run_rc=$?
tail -n 15 "$work/run.log"
check "daemon exits 0 on SIGTERM (got $run_rc)" test "$run_rc" = 0
check "history store created by the daemon, owned by dbwarden" \
    sh -c "[ \"\$(stat -c %U $state/history.db)\" = $user ]"

# ---------------------------------------------------------------- upgrade / reinstall
log "reinstall over an edited config (the upgrade path of the maintainer scripts)"
echo "# local edit by the admin" >>"$conf"
install -m 0600 /dev/null "$etc/orders.password"   # an admin-added secret
dpkg -i "$deb" >"$work/dpkg-reinstall.txt" 2>&1 || { cat "$work/dpkg-reinstall.txt"; die "reinstall failed"; }
check "edited conffile kept on upgrade" grep -q '^# local edit by the admin' "$conf"
check "no .dpkg-dist/.dpkg-new left next to it" sh -c "! ls $etc/*.dpkg-* 2>/dev/null"
check "config still root:dbwarden 0640 after upgrade" sh -c "[ \"\$(stat -c '%U:%G %a' $conf)\" = 'root:dbwarden 640' ]"
check "edited config still passes config check" \
    sh -c "cd $state && runuser -u $user -- /usr/bin/dbwarden config check $conf"

# ---------------------------------------------------------------- remove
log "dpkg -r $pkg"
dpkg -r "$pkg" 2>&1 | tee "$work/dpkg-r.txt" || die "dpkg -r failed"
check "package state is config-files" sh -c "dpkg-query -W -f='\${Status}' $pkg | grep -qx 'deinstall ok config-files'"
check "binary removed" test ! -e /usr/bin/dbwarden
check "unit removed" sh -c "[ ! -e /usr/lib/systemd/system/dbwarden.service ] && [ ! -e /lib/systemd/system/dbwarden.service ]"
check "config kept (with the admin's edit)" grep -q '^# local edit by the admin' "$conf"
check "admin-added secret kept" test -f "$etc/orders.password"
check "history data kept" test -f "$state/history.db"
check "user kept" getent passwd "$user"

# reinstall from config-files state: the admin's config comes back untouched
dpkg -i "$deb" >"$work/dpkg-i2.txt" 2>&1 || { cat "$work/dpkg-i2.txt"; die "install after remove failed"; }
check "install after remove keeps the edited config" grep -q '^# local edit by the admin' "$conf"
check "install after remove re-enables the unit" test -L "$wants_link"

# ---------------------------------------------------------------- purge
log "dpkg -P $pkg"
dpkg -P "$pkg" 2>&1 | tee "$work/dpkg-p.txt" || die "dpkg -P failed"
check "package is gone" sh -c "! dpkg-query -W -f='\${Status}' $pkg 2>/dev/null | grep -q installed"
check "/etc/dbwarden gone (config and secrets)" test ! -e "$etc"
check "/var/lib/dbwarden gone (data)" test ! -e "$state"
check "user gone" sh -c "! getent passwd $user"
check "group gone" sh -c "! getent group $user"
check "no enable symlink or mask left" sh -c "[ ! -e $wants_link ] && [ ! -L $wants_link ] && [ ! -L /etc/systemd/system/dbwarden.service ]"

# ---------------------------------------------------------------- under a real systemd
if [[ "${DBWARDEN_CONTAINER_TEST:-1}" == 1 ]]; then
    log "the service under a real systemd (packaging/container-test.sh)"
    ct_rc=0
    bash "$repo/packaging/container-test.sh" "$deb" || ct_rc=$?
    case $ct_rc in
        0) passed=$((passed + 1)); echo "  ok    service runs hardened under systemd in a container" ;;
        77) echo "  SKIP  container test could not run here (see above)" ;;
        *) failed=$((failed + 1)); echo "  FAIL  service under systemd in a container" ;;
    esac
fi

log "packaging summary"
echo "exposure: $exposure; binary $DBWARDEN_BIN: $(stat -c %s "$DBWARDEN_BIN") bytes; deb: $(stat -c %s "$deb") bytes"
echo "packaging: $passed passed, $failed failed"
((failed == 0))
