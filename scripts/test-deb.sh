#!/usr/bin/env bash
# Builds the Debian package and checks it the way an installation goes (needs root: it really
# installs and removes the package on this machine):
#   0. lintian (installed if missing): no error and no warning; info and pedantic tags are shown;
#   1. dpkg -i: the system user, /var/lib/mjpegd, the conffile, the units, the man page, the unit
#      enabled;
#   2. the service's own command line (ExecStart of the packaged unit) run as that user with the
#      packaged config: it serves, and a snapshot is a whole JPEG;
#   3. dpkg -r stops it (no mjpegd process left) and removes the binary; dpkg -P purges the state.
# Machines without systemd running (containers, CI) cannot start the unit itself, so step 2 runs
# the unit's ExecStart line by hand, as the unit's User.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "DEB TEST: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (it installs the package)"
if dpkg -s mjpegd >/dev/null 2>&1; then
    dpkg -P mjpegd >/dev/null || fail "an mjpegd package is already installed and cannot be purged"
fi

deb=$(scripts/build-deb.sh | tail -n 1)
[ -f "$deb" ] || fail "no package built"
echo "deb: $deb ($(du -h "$deb" | cut -f1)); binary $(dpkg-deb --fsys-tarfile "$deb" | tar -tvf - ./usr/bin/mjpegd | awk '{print $3}') bytes"

# Debian's own checks of a package. Errors and warnings fail; I: and P: tags are printed only.
if ! command -v lintian >/dev/null 2>&1; then
    echo "test-deb: installing lintian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends lintian >/dev/null || fail "cannot install lintian"
fi
# The tags decide, not lintian's status (1 means tags at its --fail-on level, which varies by
# version); 2 and above mean it could not check the package at all.
lint=$(lintian --display-info --pedantic "$deb" 2>&1) && status=0 || status=$?
[ "$status" -le 1 ] || { echo "$lint" >&2; fail "lintian could not check $deb (status $status)"; }
[ -z "$lint" ] || echo "$lint"
if grep -qE '^[EW]: ' <<<"$lint"; then
    fail "lintian reports errors or warnings: $(grep -cE '^[EW]: ' <<<"$lint") (above)"
fi
echo "lintian: no errors, no warnings ($(grep -cE '^[IP]: ' <<<"$lint" || true) info/pedantic tags)"

dpkg -i "$deb" >/dev/null || fail "dpkg -i failed"
getent passwd mjpegd >/dev/null || fail "no mjpegd system user"
[ "$(stat -c %U /var/lib/mjpegd)" = mjpegd ] || fail "/var/lib/mjpegd is not owned by mjpegd"
[ -f /etc/mjpegd/mjpegd.toml ] || fail "no /etc/mjpegd/mjpegd.toml"
[ -f /lib/systemd/system/mjpegd.service ] || fail "no unit file"
# grep -c reads it all: an early exit of grep -q would fail the pipe under pipefail.
[ "$(zcat /usr/share/man/man1/mjpegd.1.gz | grep -c '^\.SH OPTIONS')" = 1 ] \
    || fail "no manual page mjpegd(1) (/usr/share/man/man1/mjpegd.1.gz)"
[ -L /etc/systemd/system/multi-user.target.wants/mjpegd.service ] \
    || fail "mjpegd.service is not enabled (no multi-user.target.wants link)"
/usr/bin/mjpegd --check-config /etc/mjpegd/mjpegd.toml >/dev/null || fail "packaged config does not check"

exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/mjpegd.service)
user=$(sed -n 's/^User=//p' /lib/systemd/system/mjpegd.service)
[ "$user" = mjpegd ] || fail "unit runs as ${user:-root}, not mjpegd"
listen=$(sed -n 's/^listen = "\(.*\)"/\1/p' /etc/mjpegd/mjpegd.toml | head -n 1)
log=$(mktemp)
# shellcheck disable=SC2086 # ExecStart is a command line.
(cd /var/lib/mjpegd && exec runuser -u "$user" -- $exec_start) >"$log" 2>&1 &
pid=$!
snap=$(mktemp)
ok=0
for _ in $(seq 1 100); do
    if curl -fsS -o "$snap" "http://$listen/snapshot.jpg" 2>/dev/null; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[ "$ok" = 1 ] || { cat "$log" >&2; fail "no snapshot from the packaged service at http://$listen/"; }
[ "$(ps -o user= -p "$(pgrep -f -x "/usr/bin/mjpegd --config /etc/mjpegd/mjpegd.toml" | head -n 1)")" = mjpegd ] \
    || fail "the service is not running as mjpegd"
# A whole JPEG: starts with SOI (ffd8), ends with EOI (ffd9).
[ "$(head -c 2 "$snap" | od -An -tx1 | tr -d ' \n')" = ffd8 ] || fail "snapshot is not a JPEG"
[ "$(tail -c 2 "$snap" | od -An -tx1 | tr -d ' \n')" = ffd9 ] || fail "snapshot is truncated"
echo "snapshot: $(stat -c %s "$snap") bytes from http://$listen/snapshot.jpg, served as $user"

dpkg -r mjpegd >/dev/null || fail "dpkg -r failed"
for _ in $(seq 1 50); do pgrep -u mjpegd -x mjpegd >/dev/null || break; sleep 0.1; done
if pgrep -a -u mjpegd -x mjpegd; then fail "mjpegd still running after dpkg -r"; fi
[ ! -e /usr/bin/mjpegd ] || fail "/usr/bin/mjpegd left after dpkg -r"
[ -f /etc/mjpegd/mjpegd.toml ] || fail "dpkg -r removed the conffile (only purge should)"
dpkg -P mjpegd >/dev/null || fail "dpkg -P failed"
[ ! -e /var/lib/mjpegd ] || fail "/var/lib/mjpegd left after purge"
[ ! -e /etc/mjpegd/mjpegd.toml ] || fail "conffile left after purge"
wait "$pid" 2>/dev/null || true
rm -f "$log" "$snap"
echo "DEB TEST: PASS"
