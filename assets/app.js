// Live tiles and state for the mjpegd pages. No external assets, no framework.
"use strict";

// Browsers open about 6 connections per host; streams hold one each for ever. Beyond this many
// cameras the grid shows refreshed snapshots instead, leaving room for state polls and clicks.
const MAX_STREAM_TILES = 4;
const SNAPSHOT_INTERVAL_MS = 1000;
const RETRY_MS = 2000;

function liveImage(img) {
  const base = img.dataset.src;
  if (img.dataset.mode === "snapshot") {
    const next = () => { img.src = base + (base.includes("?") ? "&" : "?") + "t=" + Date.now(); };
    img.addEventListener("load", () => setTimeout(next, SNAPSHOT_INTERVAL_MS));
    img.addEventListener("error", () => setTimeout(next, RETRY_MS));
    next();
  } else {
    // A broken stream (server restart, network) reconnects by itself.
    img.addEventListener("error", () => setTimeout(() => {
      img.src = base + (base.includes("?") ? "&" : "?") + "t=" + Date.now();
    }, RETRY_MS));
    img.src = base;
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
    document.body.dataset.stateOk = "1";
  } catch (e) {
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
