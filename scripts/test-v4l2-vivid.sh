#!/usr/bin/env bash
# Tests mjpegd's v4l2 source against a real V4L2 driver: Linux's `vivid` virtual camera, in a
# qemu VM (no camera, no KVM, no kernel modules on the host needed).
#
#   scripts/test-v4l2-vivid.sh
#
# 1. installs (apt-get, only what is missing) qemu-system-x86, busybox-static, xz-utils,
#    v4l-utils (v4l2-ctl, copied into the VM to read controls back);
# 2. downloads Debian's kernel package (the one linux-image-amd64 points to) into target/vivid/;
# 3. builds crates/v4l2-check (release, sharing scripts/build-deb.sh's build) and copies
#    the C library it links into the initramfs;
# 4. packs an initramfs: busybox, vivid and the modules it needs, the test binary, and
#    tests/v4l2_vivid/init, which loads vivid twice (a single-planar and a multi-planar
#    camera), runs the binary on both and powers off;
# 5. boots it under qemu (TCG) with a timeout; when the VM serves the camera page, runs the
#    browser test (tests/browser.rs, controls_panel) against it through a forwarded port,
#    then tells the VM it is done through a second one; then looks for the binary's PASS line.
#
# Environment: VIVID_TIMEOUT (seconds for the VM, default 300), VIVID_SMP (vCPUs, default 2),
# VIVID_PAGE_PORT (the host port forwarded to the VM's page, default 18080; the next port
# up is forwarded to the VM's done listener),
# VIVID_KERNEL_PKG (a linux-image-*-amd64 package name, default: the current one).
# Exit status 0 on PASS, 1 on FAIL.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
work=$root/target/vivid
timeout_s=${VIVID_TIMEOUT:-300}
smp=${VIVID_SMP:-2}
start=$(date +%s)
phase_start=$start

log() { printf '[vivid %4ss] %s\n' "$(($(date +%s) - start))" "$*"; }
phase() {
    local now
    now=$(date +%s)
    log "$1 ($((now - phase_start)) s)"
    phase_start=$now
}
fail() {
    log "V4L2 VIVID TEST: FAIL: $*"
    exit 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# --- 1. tools -------------------------------------------------------------------------------
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v xz >/dev/null || missing+=(xz-utils)
command -v gzip >/dev/null || missing+=(gzip)
# v4l2-ctl reads camera controls back inside the VM: a second opinion that is not mjpegd.
command -v v4l2-ctl >/dev/null || missing+=(v4l-utils)
apt_updated=
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    apt_updated=1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
busybox=$(command -v busybox || echo /bin/busybox)
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
    [ "$(ldd "$busybox" 2>&1 | grep -c 'not a dynamic')" -gt 0 ] ||
    fail "$busybox is not statically linked (install busybox-static)"
phase "tools ready"

# --- 2. kernel ------------------------------------------------------------------------------
mkdir -p "$work/download"
kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
pkg=${VIVID_KERNEL_PKG:-$(kernel_pkg)}
if [ -z "$pkg" ] && [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    pkg=$(kernel_pkg)
fi
[ -n "$pkg" ] || fail "no linux-image-*-amd64 package found (apt-cache depends linux-image-amd64)"
kver=${pkg#linux-image-}
kdir=$work/kernel-$kver
if [ ! -e "$kdir/.extracted" ]; then
    log "downloading $pkg"
    rm -rf "$kdir" "$work/download"/*.deb
    (cd "$work/download" && apt-get download -qq "$pkg" 2>&1 | grep -v 'unsandboxed' || true)
    deb=$(ls "$work/download"/linux-image-*.deb 2>/dev/null | head -n1)
    [ -n "$deb" ] || fail "apt-get download $pkg produced no package"
    dpkg-deb -x "$deb" "$kdir"
    rm -f "$deb"
    touch "$kdir/.extracted"
fi
vmlinuz=$kdir/boot/vmlinuz-$kver
moddir=$kdir/lib/modules/$kver
[ -f "$vmlinuz" ] || fail "no kernel at $vmlinuz"
[ -d "$moddir" ] || fail "no modules at $moddir"
phase "kernel $kver ready"

# --- 3. test binary -------------------------------------------------------------------------
locked=()
[ -n "${CI:-}" ] && locked=(--locked)
# The release profile and mjpegd's features as in `cargo build --release`, so after
# scripts/build-deb.sh (CI runs it first) only the check itself is compiled; the VM gets the
# host's C library.
log "building crates/v4l2-check (release)"
cargo build -q --release "${locked[@]}" -p v4l2-check
bin=$root/target/release/v4l2-check
phase "test binary built"

# --- 4. initramfs ---------------------------------------------------------------------------
# Module name (dashes and underscores are the same to the kernel) -> file.
declare -A ko=()
while IFS= read -r f; do
    name=$(basename "$f")
    name=${name%%.ko*}
    ko[${name//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst')

ko_cat() {
    case "$1" in
    *.xz) xz -dc "$1" ;;
    *.zst) zstd -dc "$1" ;;
    *) cat "$1" ;;
    esac
}

# Load order: each module after the modules named in its `depends=` modinfo field.
order=()
declare -A seen=()
resolve() {
    local name=${1//-/_} deps dep
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    [ -n "${ko[$name]:-}" ] || fail "module $1 not found under $moddir"
    deps=$(ko_cat "${ko[$name]}" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1)
    for dep in ${deps//,/ }; do
        resolve "$dep"
    done
    order+=("$name")
}
resolve vivid
# The VM's network card, for the host's browser test of the camera page.
resolve e1000

initramfs=$work/initramfs
rm -rf "$initramfs"
mkdir -p "$initramfs"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$busybox" "$initramfs/bin/busybox"
cp "$bin" "$initramfs/bin/v4l2_capture"
v4l2ctl=$(command -v v4l2-ctl) || fail "no v4l2-ctl (install v4l-utils)"
cp "$v4l2ctl" "$initramfs/bin/v4l2-ctl"
# The dynamic loader and the libraries the binaries link (glibc's, and v4l-utils' own), at the
# paths they name.
libs=$( (ldd "$bin"; ldd "$v4l2ctl") | grep -o '/[^ ]*' | sort -u)
[ -n "$libs" ] || fail "ldd found no libraries for $bin"
for lib in $libs; do
    mkdir -p "$initramfs$(dirname "$lib")"
    cp -L "$lib" "$initramfs$lib"
done
cp crates/mjpegd/tests/v4l2_vivid/init "$initramfs/init"
chmod +x "$initramfs/init"
for name in "${order[@]}"; do
    ko_cat "${ko[$name]}" >"$initramfs/lib/modules/$name.ko"
    echo "$name" >>"$initramfs/lib/modules/order"
done
# The kernel opens /dev/console for init before /init mounts devtmpfs (root can mknod).
as_root mknod -m 600 "$initramfs/dev/console" c 5 1 2>/dev/null || true
(cd "$initramfs" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1 >"$work/initrd.gz")
log "modules: ${order[*]}"
phase "initramfs ready ($(du -h "$work/initrd.gz" | cut -f1))"

# --- 5. boot --------------------------------------------------------------------------------
# The browser test on the host: headless Chromium (scripts/install-test-deps.sh) opens the
# camera page the VM serves, through qemu's forwarded port, and moves its controls.
scripts/install-test-deps.sh
page_port=${VIVID_PAGE_PORT:-18080}
done_port=$((page_port + 1))
# Tells the VM the browser test has ended, so it stops its server and goes on. The VM answers
# `bye`; until its listener is up, qemu accepts the connection and closes it, hence the tries.
say_done() {
    local answer
    for _ in $(seq 1 20); do
        answer=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$done_port && printf 'done\\n' >&3 && head -c 4 <&3" 2>/dev/null || true)
        [ "$answer" = bye ] && return 0
        sleep 0.5
    done
    log "the VM never answered done on 127.0.0.1:$done_port"
    return 1
}
# `--workspace`, as scripts/test.sh builds it: the same features for every dependency, so after
# the test suite (CI runs it first) nothing is compiled again.
log "building the browser test (tests/browser.rs)"
cargo test -q "${locked[@]}" --workspace --test browser --no-run 2>&1 | grep -v '^ *Executable' || true
vmlog=$work/qemu.log
log "booting qemu (TCG, ${smp} vCPU, timeout ${timeout_s} s); console in $vmlog"
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -smp "$smp" -m 1024 \
    -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1" \
    -nic "user,model=e1000,hostfwd=tcp:127.0.0.1:${page_port}-10.0.2.15:8080,hostfwd=tcp:127.0.0.1:${done_port}-10.0.2.15:8081" \
    -nographic -no-reboot </dev/null >"$vmlog" 2>&1 &
qemu=$!
page_result="page: not reached"
while kill -0 "$qemu" 2>/dev/null; do
    if grep -aq 'V4L2_PAGE_READY' "$vmlog"; then
        phase "the VM serves the camera page on 127.0.0.1:$page_port"
        if MJPEGD_VIVID_URL="http://127.0.0.1:$page_port" cargo test -q "${locked[@]}" --workspace \
            --test browser controls_panel -- --ignored --nocapture >"$work/browser.log" 2>&1; then
            page_result="page: sliders, menus and reset in Chromium"
            say_done || page_result="page: FAILED (the VM did not take the done signal)"
        else
            page_result="page: FAILED (browser test log below)"
            sed 's/^/    browser: /' "$work/browser.log" | tail -n 40
            kill "$qemu" 2>/dev/null || true
        fi
        break
    fi
    sleep 0.5
done
set +e
wait "$qemu"
status=$?
set -e
tr -d '\r' <"$vmlog" >"$vmlog.txt"
phase "qemu exited with status $status; $page_result"
[[ $page_result == *FAILED* ]] && fail "$page_result"

grep -E '^(frame|opening|opened|busy|missing|controls|[A-Z0-9]{4}:|/dev/video|[0-9]+ frames)' "$vmlog.txt" | sed 's/^/    /' || true
result=$(grep -a 'V4L2_CAPTURE_RESULT:' "$vmlog.txt" | tail -n1 || true)
total=$(($(date +%s) - start))
if [[ $result == *"V4L2_CAPTURE_RESULT: PASS"* ]]; then
    log "V4L2 VIVID TEST: PASS in ${total} s — ${result#*PASS }"
    exit 0
fi
if [ "$status" = 124 ]; then
    log "the VM did not finish within ${timeout_s} s"
fi
tail -n 40 "$vmlog.txt" | sed 's/^/    /'
fail "${result:-no result line from the test binary} (${total} s)"
