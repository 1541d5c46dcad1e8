#!/usr/bin/env bash
# Builds the Debian package of mjpegd from this checkout: target/debian/mjpegd_VERSION_ARCH.deb
# (under $CARGO_TARGET_DIR instead when that is set, as cargo does).
#
#   scripts/build-deb.sh            # release build, the manual page, then the package
#
# The package installs /usr/bin/mjpegd, a default config in /etc/mjpegd/ (a conffile: upgrades
# keep local edits), the systemd units (mjpegd.service enabled on install, mjpegd.socket
# available), a system user `mjpegd` (in the video group) with /var/lib/mjpegd for state, the
# manual page mjpegd(1) and the docs. Built with dpkg-deb alone (always on Debian), so no packaging tool has to be compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

locked=()
[ -n "${CI:-}" ] && locked=(--locked)
cargo build --release "${locked[@]}" -p mjpegd
# Where cargo put it: a relative CARGO_TARGET_DIR is relative to this directory, as for cargo.
target=${CARGO_TARGET_DIR:-target}
[[ $target = /* ]] || target=$root/$target
bin=$target/release/mjpegd
[ -x "$bin" ] || { echo "build-deb: cargo built no $bin" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml" >&2; exit 1; }

# The oldest glibc the binary needs, from its versioned symbols, so Depends is what it links.
glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)

stage=$target/debian/stage
rm -rf "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/etc/mjpegd" "$stage/lib/systemd/system" \
    "$stage/usr/share/doc/mjpegd" "$stage/usr/share/man/man1"
# Debian ships binaries stripped (lintian: unstripped-binary-or-object); symbols stay in target/.
install -m 0755 "$bin" "$stage/usr/bin/mjpegd"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/mjpegd"
install -m 0644 contrib/debian/mjpegd.toml "$stage/etc/mjpegd/mjpegd.toml"
install -m 0644 contrib/debian/mjpegd.service "$stage/lib/systemd/system/mjpegd.service"
install -m 0644 contrib/mjpegd.socket "$stage/lib/systemd/system/mjpegd.socket"
install -m 0644 README.md "$stage/usr/share/doc/mjpegd/README.md"
install -m 0644 docs/config.md "$stage/usr/share/doc/mjpegd/config.md"
# mjpegd(1), generated from the CLI definition (lintian: no-manual-page). In the dev profile:
# the page is the same, and CI's test run has built the example's dependencies in it already,
# where --release would compile the library a second time with the dev-dependencies' features.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
cargo run -q "${locked[@]}" -p mjpegd --example manpage -- "$stage/usr/share/man/man1/mjpegd.1"
gzip -9n "$stage/usr/share/man/man1/mjpegd.1"
cat > "$stage/usr/share/doc/mjpegd/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mjpegd

Files: *
Copyright: 2026 the mjpegd developers
License: MIT or Apache-2.0
COPYRIGHT
# A native package's changelog (lintian: no-changelog), compressed as policy asks.
cat > "$stage/usr/share/doc/mjpegd/changelog" <<CHANGELOG
mjpegd ($version) unstable; urgency=medium

  * Release $version: see README.md for what it serves.

 -- mjpegd developers <mjpegd@users.noreply.github.com>  $(date -R -d @"$SOURCE_DATE_EPOCH")
CHANGELOG
gzip -9n "$stage/usr/share/doc/mjpegd/changelog"
for script in postinst prerm postrm; do
    install -m 0755 "contrib/debian/$script" "$stage/DEBIAN/$script"
done
echo /etc/mjpegd/mjpegd.toml > "$stage/DEBIAN/conffiles"
# What dpkg --verify and debsums check installed files against (lintian: no-md5sums-control-file).
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: mjpegd
Version: $version
Architecture: $arch
Maintainer: mjpegd developers <mjpegd@users.noreply.github.com>
Installed-Size: $size
Depends: libc6 (>= $glibc), libgcc-s1, adduser, init-system-helpers (>= 1.52)
Section: video
Priority: optional
Description: live camera streaming server (Motion JPEG over HTTP)
 mjpegd streams cameras (V4L2 webcams, ffmpeg commands, other MJPEG
 cameras, image files) to any number of browsers, OctoPrint, Home
 Assistant, OpenCV, VLC and ffmpeg as multipart/x-mixed-replace, one
 capture per camera shared by every viewer. It keeps mjpg-streamer's URLs
 (/?action=stream, /?action=snapshot).
CONTROL
out=$target/debian/mjpegd_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$stage" "$out" >/dev/null
echo "$out"
