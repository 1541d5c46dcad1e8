// Live tiles and state for the mjpegd pages. No external assets, no framework.
"use strict";

// Browsers open about 6 connections per host; streams hold one each for ever. Beyond this many
// cameras the grid shows refreshed snapshots instead, leaving room for state polls and clicks.
const MAX_STREAM_TILES = 4;
const SNAPSHOT_INTERVAL_MS = 1000;
const RETRY_MS = 2000;
// A stream younger than this may not be counted by the server yet: never judged dead.
const STREAM_GRACE_MS = 5000;

// Chromium fires neither "error" nor "load" when a multipart stream that has shown frames ends
// (server restart) or breaks (network): the <img> just freezes on its last frame, or goes blank.
// So the state poll watches the streams and restarts those that must be dead.
const streams = [];

function bust(base) {
  return base + (base.includes("?") ? "&" : "?") + "t=" + Date.now();
}

function restartStream(s) {
  s.since = Date.now();
  s.img.src = bust(s.base);
}

function liveImage(img) {
  const base = img.dataset.src;
  if (img.dataset.mode === "snapshot") {
    const next = () => { img.src = bust(base); };
    img.addEventListener("load", () => setTimeout(next, SNAPSHOT_INTERVAL_MS));
    img.addEventListener("error", () => setTimeout(next, RETRY_MS));
    next();
  } else {
    const tile = img.closest("[data-camera]");
    const s = { img, base, camera: tile ? tile.dataset.camera : null, since: Date.now() };
    streams.push(s);
    // A (re)connection that fails before its first frame does fire "error": retry.
    img.addEventListener("error", () => setTimeout(() => restartStream(s), RETRY_MS));
    img.src = base;
  }
}

// Restarts every stream after the server came back (a failed poll, or its uptime went back: it
// restarted between two polls), and any stream that is broken (no picture) or that the server
// no longer counts as a viewer (it ended).
let serverLost = false;
let lastUptime = null;

function watchStreams(state) {
  const restarted = serverLost || (lastUptime !== null && state.uptime_seconds < lastUptime);
  serverLost = false;
  lastUptime = state.uptime_seconds;
  const now = Date.now();
  for (const s of streams) {
    const cam = state.cameras.find((c) => c.name === s.camera);
    const settled = now - s.since > STREAM_GRACE_MS;
    const broken = s.img.complete && s.img.naturalWidth === 0;
    if (restarted || (settled && (broken || (cam && cam.viewers === 0)))) restartStream(s);
  }
}

function setText(root, sel, text) {
  const el = root.querySelector(sel);
  if (el && el.textContent !== text) el.textContent = text;
}

async function pollState() {
  try {
    const resp = await fetch("/api/state", { cache: "no-store" });
    if (!resp.ok) throw new Error("state: HTTP " + resp.status);
    const state = await resp.json();
    for (const cam of state.cameras) {
      const tile = document.querySelector(`[data-camera="${cam.name}"]`);
      if (!tile) continue;
      tile.dataset.state = cam.state;
      tile.dataset.fps = cam.measured_fps;
      tile.dataset.viewers = cam.viewers;
      setText(tile, ".fps", cam.measured_fps.toFixed(1) + " fps");
      setText(tile, ".viewers", cam.viewers + (cam.viewers === 1 ? " viewer" : " viewers"));
      const st = tile.querySelector(".state");
      if (st) { st.textContent = cam.state; st.className = "state state-" + cam.state; }
      setText(tile, ".error", cam.last_error || "");
    }
    watchStreams(state);
    document.body.dataset.stateOk = "1";
  } catch (e) {
    serverLost = true;
    document.body.dataset.stateOk = "0";
  }
  setTimeout(pollState, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("img[data-src]").forEach(liveImage);
  const fs = document.getElementById("fullscreen");
  if (fs) fs.addEventListener("click", () => {
    const img = document.querySelector(".single img");
    if (img && img.requestFullscreen) img.requestFullscreen();
  });
  pollState();
});
