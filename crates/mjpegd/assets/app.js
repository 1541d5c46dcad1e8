// Live tiles and state for the mjpegd pages. No external assets, no framework.
"use strict";

// Tiles are streams or refreshed snapshots as the server chose (data-mode): over HTTP/1.1 a
// browser opens about 6 connections per host, so big grids get snapshots (pages.rs).
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
    // A replay is not a live viewer of the camera: leave it alone.
    if (s.paused) continue;
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
  const rec = document.getElementById("recordings");
  if (rec) setupRecordings(rec);
  const ctl = document.getElementById("controls");
  if (ctl) setupControls(ctl);
});

// The recordings timeline of a camera page: spans from /cameras/NAME/recordings, a click
// replays from that moment in the live view, a drag selects a range for "Export". Motion
// events (/cameras/NAME/events) are marks on it: a click on one selects the event's range (so
// "Export" takes it) and replays it from its start.
const RECORDINGS_POLL_MS = 5000;
// The timeline shows at least this much, so a fresh recording is not one full-width block.
const MIN_TIMELINE_S = 60;

function setupRecordings(root) {
  const cam = root.dataset.camera;
  const bar = root.querySelector("#timeline");
  const selEl = bar.querySelector(".sel");
  const cursor = bar.querySelector(".cursor");
  const img = document.querySelector(".single img");
  const toggle = root.querySelector("#rec-toggle");
  let view = null;
  let spans = [];
  let events = [];
  let sel = null;
  let replayAt = null;
  let recording = null;
  const fmt = (t) => new Date(t * 1000).toISOString().replace(".000Z", "Z");
  const pct = (t) => (100 * (t - view.t0) / (view.t1 - view.t0)) + "%";
  const stream = () => streams.find((s) => s.img === img);

  function draw() {
    if (!view) return;
    bar.querySelectorAll(".span").forEach((e) => e.remove());
    for (const s of spans) {
      const a = Math.max(s.start_us / 1e6, view.t0), b = s.end_us / 1e6;
      const d = document.createElement("div");
      d.className = "span";
      d.style.left = pct(a);
      d.style.width = `max(2px, ${pct(view.t0 + b - a)})`;
      d.title = `${fmt(s.start_us / 1e6)} – ${fmt(b)}: ${s.frames} frames`;
      bar.insertBefore(d, selEl);
    }
    bar.querySelectorAll(".event").forEach((e) => e.remove());
    for (const ev of events) {
      const a = ev.start_us / 1e6;
      const b = ev.end_us === null ? Date.now() / 1000 : ev.end_us / 1e6;
      if (b < view.t0) continue;
      const d = document.createElement("div");
      d.className = "event";
      d.dataset.id = ev.id;
      if (ev.end) d.dataset.ended = "1";
      d.style.left = pct(Math.max(a, view.t0));
      d.style.width = `max(4px, ${pct(view.t0 + b - Math.max(a, view.t0))})`;
      d.title = `motion event ${ev.id}: ${fmt(a)} – ${ev.end ? fmt(b) : "now"}, peak ${(100 * ev.peak_score).toFixed(1)} %`;
      // A click on a mark is the event's, not the timeline's (no replay from the pointer).
      d.addEventListener("mousedown", (e) => e.stopPropagation());
      d.addEventListener("click", () => {
        sel = { a, b };
        replayFrom(a);
      });
      bar.insertBefore(d, selEl);
    }
    selEl.hidden = !sel;
    if (sel) { selEl.style.left = pct(sel.a); selEl.style.width = pct(view.t0 + sel.b - sel.a); }
    cursor.hidden = replayAt === null;
    if (replayAt !== null) cursor.style.left = pct(replayAt);
    root.querySelector(".t0").textContent = fmt(view.t0);
    root.querySelector(".t1").textContent = fmt(view.t1);
  }

  async function refresh() {
    try {
      const resp = await fetch(`/cameras/${cam}/recordings`, { cache: "no-store" });
      if (!resp.ok) throw new Error("recordings: HTTP " + resp.status);
      const j = await resp.json();
      spans = j.spans;
      recording = j.recording;
      // Cameras without motion detection answer 404: no marks.
      const ev = await fetch(`/cameras/${cam}/events`, { cache: "no-store" });
      events = ev.ok ? (await ev.json()).events : [];
      root.dataset.events = events.length;
      const now = Date.now() / 1000;
      const t0 = spans.length ? spans[0].start_us / 1e6 : now - MIN_TIMELINE_S;
      view = { t0: Math.min(t0, now - MIN_TIMELINE_S), t1: now };
      root.dataset.spans = spans.length;
      root.dataset.state = recording.state;
      root.querySelector(".rec-status").textContent = recording.state + ", " +
        spans.length + (spans.length === 1 ? " span" : " spans");
      root.querySelector(".rec-error").textContent = recording.error || "";
      toggle.textContent = recording.state === "off" ? "Start recording" : "Stop recording";
      draw();
    } catch (e) {
      root.querySelector(".rec-error").textContent = String(e);
    }
  }

  function replayFrom(t) {
    const s = stream();
    if (s) s.paused = true;
    replayAt = t;
    img.src = `/cameras/${cam}/replay?from=${t.toFixed(3)}`;
    root.dataset.replayFrom = t.toFixed(3);
    root.querySelector(".rec-position").textContent = "replaying from " + fmt(t);
    draw();
  }

  const timeAt = (clientX) => {
    const b = bar.getBoundingClientRect();
    const x = Math.min(Math.max(clientX - b.left, 0), b.width);
    return view.t0 + (x / b.width) * (view.t1 - view.t0);
  };
  let down = null;
  bar.addEventListener("mousedown", (e) => { if (view) down = { x: e.clientX, t: timeAt(e.clientX) }; e.preventDefault(); });
  window.addEventListener("mousemove", (e) => {
    if (!down || Math.abs(e.clientX - down.x) < 4) return;
    const t = timeAt(e.clientX);
    sel = { a: Math.min(down.t, t), b: Math.max(down.t, t) };
    draw();
  });
  window.addEventListener("mouseup", (e) => {
    if (!down) return;
    const start = down;
    down = null;
    if (Math.abs(e.clientX - start.x) < 4) replayFrom(start.t);
  });

  root.querySelector("#rec-live").addEventListener("click", () => {
    const s = stream();
    replayAt = null;
    delete root.dataset.replayFrom;
    root.querySelector(".rec-position").textContent = "";
    if (s) { s.paused = false; restartStream(s); }
    draw();
  });

  // Exports the selection, or without one the whole of the last span.
  root.querySelector("#rec-export").addEventListener("click", () => {
    const last = spans[spans.length - 1];
    const range = sel || (last && { a: last.start_us / 1e6, b: last.end_us / 1e6 });
    if (!range) return;
    const href = `/cameras/${cam}/export.mkv?from=${range.a.toFixed(3)}&to=${range.b.toFixed(3)}`;
    root.dataset.exportHref = href;
    const a = document.createElement("a");
    a.href = href;
    a.download = "";
    document.body.appendChild(a);
    a.click();
    a.remove();
  });

  toggle.addEventListener("click", async () => {
    const verb = recording && recording.state === "off" ? "start" : "stop";
    await fetch(`/cameras/${cam}/record/${verb}`, { method: "POST" });
    refresh();
  });

  refresh();
  setInterval(refresh, RECORDINGS_POLL_MS);
}

// The camera controls panel: one row per control from /cameras/NAME/controls (a slider for
// integers, a checkbox for booleans, a menu, a button), each with a reset to the driver's
// default. A change is POSTed as JSON at once; the answer (the values the driver took, and
// which controls an automatic mode now makes inactive) redraws the panel.
function setupControls(root) {
  const cam = root.dataset.camera;
  const list = root.querySelector(".ctl-list");
  const err = root.querySelector(".ctl-error");
  const url = `/cameras/${cam}/controls`;

  async function send(path, body) {
    err.textContent = "";
    const r = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok) {
      err.textContent = (await r.text()).trim();
      load();
      return;
    }
    draw((await r.json()).controls);
  }

  function row(c) {
    const el = document.createElement("div");
    el.className = "ctl";
    el.dataset.key = c.key;
    const label = document.createElement("label");
    label.textContent = c.name;
    label.title = `${c.key} (id ${c.id})${c.flags.length ? " — " + c.flags.join(", ") : ""}`;
    el.appendChild(label);
    const fixed = c.flags.includes("read-only") || c.flags.includes("disabled") || c.flags.includes("inactive");
    let input;
    const set = (v) => send(url, { [c.key]: v });
    if (c.type === "integer" || c.type === "integer64") {
      input = document.createElement("input");
      input.type = "range";
      input.min = c.min; input.max = c.max; input.step = c.step || 1;
      input.value = c.value;
      const out = document.createElement("output");
      out.textContent = c.value;
      input.addEventListener("input", () => { out.textContent = input.value; });
      input.addEventListener("change", () => set(Number(input.value)));
      el.appendChild(input);
      el.appendChild(out);
    } else if (c.type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = c.value === 1;
      input.addEventListener("change", () => set(input.checked));
      el.appendChild(input);
      el.appendChild(document.createElement("span"));
    } else if (c.type === "menu" || c.type === "integer_menu") {
      input = document.createElement("select");
      for (const m of c.menu) {
        const o = document.createElement("option");
        o.value = m.index; o.textContent = m.name;
        if (m.index === c.value) o.selected = true;
        input.appendChild(o);
      }
      input.addEventListener("change", () => set(Number(input.value)));
      el.appendChild(input);
      el.appendChild(document.createElement("span"));
    } else if (c.type === "button") {
      input = document.createElement("button");
      input.type = "button";
      input.textContent = c.name;
      input.addEventListener("click", () => set(1));
      el.appendChild(input);
      el.appendChild(document.createElement("span"));
    } else {
      const v = document.createElement("span");
      v.textContent = c.value === null ? "" : String(c.value);
      el.appendChild(v);
      el.appendChild(document.createElement("span"));
    }
    if (input) input.disabled = fixed;
    if (c.type !== "button" && !fixed && c.value !== null) {
      const reset = document.createElement("button");
      reset.type = "button";
      reset.className = "ctl-default";
      reset.textContent = "↺";
      reset.title = `back to the default, ${c.default}`;
      reset.disabled = c.value === c.default;
      reset.addEventListener("click", () => set("default"));
      el.appendChild(reset);
    }
    return el;
  }

  function draw(controls) {
    list.textContent = "";
    let group = null;
    for (const c of controls) {
      if (c.group !== group) {
        group = c.group;
        const h = document.createElement("h3");
        h.textContent = group;
        list.appendChild(h);
      }
      list.appendChild(row(c));
    }
    root.dataset.loaded = "1";
  }

  async function load() {
    try {
      const r = await fetch(url, { cache: "no-store" });
      if (!r.ok) { err.textContent = (await r.text()).trim(); return; }
      draw((await r.json()).controls);
    } catch (e) {
      err.textContent = `cannot load the controls: ${e}`;
    }
  }

  root.querySelector("#ctl-reset").addEventListener("click", () => send(`${url}/reset`));
  load();
}
