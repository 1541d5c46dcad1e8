#!/usr/bin/env bash
# Installs the external tools some tests drive as real clients or sources: ffmpeg, mpv and VLC,
# and Debian's chromium (headless, for tests/browser.rs, which drives it over the DevTools
# protocol itself: no chromedriver needed), WebKitGTK's WebDriver with Xvfb (for
# tests/webkit.rs) and Firefox ESR (headless, for tests/firefox.rs, which speaks Firefox's
# Marionette protocol itself: Debian has no geckodriver).
# Idempotent: installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# curl, for the recording tests' Range and resumed downloads (tests/recording.rs).
command -v curl >/dev/null 2>&1 || need+=(curl)
# systemd-socket-activate, for the socket-activation test.
command -v systemd-socket-activate >/dev/null 2>&1 || need+=(systemd)
# WebKitWebDriver (with MiniBrowser and WebKitGTK, about 67 MiB to download, 280 MiB installed)
# and Xvfb, the X server it paints into, for tests/webkit.rs.
command -v WebKitWebDriver >/dev/null 2>&1 || need+=(webkit2gtk-driver)
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
command -v firefox-esr >/dev/null 2>&1 || command -v firefox >/dev/null 2>&1 || need+=(firefox-esr)
# nats-server, for tests/bus.rs (camera nodes and edges over NATS; Debian installs it in /usr/sbin).
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
# mpv and VLC (cvlc, with its base plugins: Matroska, MJPEG, HTTP, the scene snapshot filter;
# about 9 MB to download together), real players seeking in recording exports (tests/recording.rs).
command -v mpv >/dev/null 2>&1 || need+=(mpv)
command -v cvlc >/dev/null 2>&1 || need+=(vlc-bin vlc-plugin-base)
# cmake and nasm build the libjpeg-turbo bundled with the `turbojpeg` feature (CI builds it).
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v nasm >/dev/null 2>&1 || need+=(nasm)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-test-deps: missing ${need[*]} and not root; install them with your package manager" >&2
    exit 1
  fi
fi
echo "install-test-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
