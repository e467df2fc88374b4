// The host console: the hub's own camera, the roster with its counts, the
// wall of every invited bridge point (name, state, video, microphone,
// hand), the floor and mute controls, the hand queue, start and end, and
// the attendance record once the meeting is over. The server enforces
// every rule; this page only asks (see signaling/floor.go).
import { apply, mountSwitch, t } from "/static/i18n.js";
import { HUB_LAYERS, readToken } from "/static/client.js";
import { el, newPage, qualityText, renderState, startSession, videoHeights } from "/static/page.js";

const page = newPage({ roster: new Map(), floor: null, speaker: "" });

const tiles = new Map(); // bridge ID -> {root, video, badge, path, quality, mic, floorBtn, muteBtn, stream, audio}
let heights = {}; // bridge ID -> decoded height of its video
let sharing = null; // {stop} while the host shares a screen

const nameOf = (id) => page.roster.get(id)?.name || id;

function render() {
  renderState(page);
  const entries = [...page.roster.values()];
  const n = (st) => entries.filter((e) => e.state === st).length;
  const counts = {
    joined: n("connected") + n("connecting"),
    reconnecting: n("reconnecting"),
    dropped: n("dropped") + n("left"),
    never: n("absent"),
    total: entries.length,
  };
  page.counts = counts;
  el("count").textContent = t("counts", counts);
  const f = page.floor || { holder: "", unmuted: [], hands: [], locked: false, state: "" };
  const unmuted = new Set(f.unmuted);
  for (const [id, tile] of tiles) {
    const e = page.roster.get(id);
    const state = e ? e.state : "connected";
    const cls = ["tile", state];
    if (id === f.holder) cls.push("floor");
    if (id === page.speaker) cls.push("speaker");
    if (f.hands.includes(id)) cls.push("hand");
    tile.root.className = cls.join(" ");
    tile.badge.textContent = t("state_" + state);
    tile.badge.className = "badge " + state;
    // Only the unusual paths are shown: direct UDP is the normal case.
    const path = state === "connected" && e?.path && e.path !== "udp" ? e.path : "";
    tile.path.textContent = path ? t("path_short_" + path.replace("-", "_")) : "";
    tile.path.className = "path " + path;
    tile.path.title = path ? t("path_" + path.replace("-", "_")) : "";
    tile.quality.textContent = state === "connected" ? qualityText(heights[id], page.layers[id]) : "";
    tile.quality.title = tile.quality.textContent;
    tile.mic.textContent = unmuted.has(id) ? t("mic_short") : "";
    tile.floorBtn.hidden = id === f.holder;
    tile.floorBtn.disabled = state !== "connected" && state !== "reconnecting";
    tile.muteBtn.textContent = unmuted.has(id) ? t("mute") : t("unmute");
  }
  el("take-floor").hidden = !f.holder;
  el("floor-line").textContent = f.holder ? t("floor_holder", { name: nameOf(f.holder) }) : "";
  el("lock").textContent = f.locked ? t("unlock") : t("lock");
  el("record").textContent = f.recording ? t("stop_record") : t("record");
  el("recording").hidden = !f.recording;
  el("minutes").textContent = f.minutesState ? t("minutes_" + f.minutesState, { percent: f.minutesPercent || 0 }) : "";
  el("share").textContent = sharing ? t("stop_share") : t("share_screen");
  el("start").hidden = f.state !== "open";
  document.body.classList.toggle("ended", f.state === "ended");
  el("conf-state").textContent = f.state ? t("conf_state_" + f.state) : "";
  el("conf-state").className = "badge conf-" + f.state;
  const hands = el("hands");
  hands.replaceChildren(
    ...f.hands.map((id) => {
      const li = document.createElement("li");
      li.dataset.bridge = id;
      const name = document.createElement("span");
      name.textContent = nameOf(id);
      const grant = document.createElement("button");
      grant.textContent = t("give_floor");
      grant.addEventListener("click", () => s.control("give_floor", id));
      const dismiss = document.createElement("button");
      dismiss.className = "quiet";
      dismiss.textContent = "×";
      dismiss.addEventListener("click", () => s.control("lower_hand", id));
      li.append(name, grant, dismiss);
      return li;
    }),
  );
  el("no-hands").hidden = f.hands.length > 0;
}
apply();
mountSwitch(el("lang"), render);

function tileFor(id, name) {
  let tile = tiles.get(id);
  if (tile) return tile;
  const root = document.createElement("div");
  root.dataset.bridge = id;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true;
  const label = document.createElement("div");
  label.className = "label";
  const nameEl = document.createElement("span");
  nameEl.className = "name";
  nameEl.textContent = name || id;
  nameEl.title = name || id;
  const mic = document.createElement("span");
  mic.className = "mic";
  const badge = document.createElement("span");
  const path = document.createElement("span");
  path.className = "path";
  const quality = document.createElement("span");
  quality.className = "quality";
  label.append(nameEl, mic, badge, path, quality);
  const actions = document.createElement("div");
  actions.className = "actions";
  const floorBtn = document.createElement("button");
  floorBtn.className = "give-floor";
  floorBtn.textContent = t("give_floor");
  floorBtn.addEventListener("click", () => s.control("give_floor", id));
  const muteBtn = document.createElement("button");
  muteBtn.className = "quiet mute";
  muteBtn.addEventListener("click", () => {
    const on = page.floor?.unmuted.includes(id);
    s.control(on ? "mute" : "unmute", id);
  });
  actions.append(floorBtn, muteBtn);
  root.append(video, label, actions);
  el("wall").append(root);
  tile = { root, video, badge, path, quality, mic, floorBtn, muteBtn, stream: new MediaStream(), audio: null };
  tiles.set(id, tile);
  onScreen.observe(root);
  return tile;
}

// The wall receives what it shows: the server is told which tiles are on
// screen and how large, as the host scrolls, changes the tile size or
// hides the page, and sends the video of those rooms only (the floor
// holder's and the active speaker's always). A tile off screen keeps its
// name, state, link colour and last picture.
const WALL_SETTLE_MS = 250; // one message once scrolling or resizing stops
const shown = new Set(); // bridge IDs of the tiles on screen
let wallTimer = 0;
let wallSent = ""; // the last view sent, to send only changes
page.wall = { tiles: [], sent: 0 }; // for tests and diagnostics
const onScreen = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (e.isIntersecting) shown.add(e.target.dataset.bridge);
    else shown.delete(e.target.dataset.bridge);
  }
  wallChanged();
});
new ResizeObserver(() => wallChanged()).observe(el("wall"));
document.addEventListener("visibilitychange", () => wallChanged());

function wallChanged() {
  clearTimeout(wallTimer);
  wallTimer = setTimeout(sendWall, WALL_SETTLE_MS);
}

function sendWall() {
  const dpr = window.devicePixelRatio || 1;
  const view = [];
  if (document.visibilityState === "visible") {
    for (const id of [...shown].sort()) {
      const r = tiles.get(id)?.video.getBoundingClientRect();
      if (!r || r.width < 1 || r.height < 1) continue;
      view.push({ bridge: id, width: Math.round(r.width * dpr), height: Math.round(r.height * dpr) });
    }
  }
  const key = JSON.stringify(view);
  if (key === wallSent) return;
  if (page.session?.wall(view)) {
    wallSent = key;
    page.wall = { tiles: view, sent: page.wall.sent + 1, at: performance.now() };
  }
}

const s = await startSession(page, { width: 1280, height: 720, layers: HUB_LAYERS, preview: "preview", render });
s.addEventListener("joined", (e) => {
  wallSent = ""; // a new place on the server knows nothing of the wall yet
  wallChanged();
  el("conference-title").textContent = e.detail.conference.title;
  document.title = `${e.detail.conference.title} · citybridge`;
  page.conference = e.detail.conference.id;
});
s.addEventListener("roster", (e) => {
  for (const b of e.detail.bridges) {
    page.roster.set(b.id, b);
    tileFor(b.id, b.name);
  }
  render();
});
s.addEventListener("presence", (e) => {
  page.roster.set(e.detail.id, e.detail);
  tileFor(e.detail.id, e.detail.name);
  render();
});
s.addEventListener("floor", (e) => {
  page.floor = e.detail;
  if (e.detail.speaker !== undefined) page.speaker = e.detail.speaker || "";
  render();
  if (e.detail.state === "ended") setTimeout(showAttendance, 1000, 5);
});
s.addEventListener("speaker", (e) => {
  page.speaker = e.detail.bridge || "";
  render();
});
s.addEventListener("track", (e) => {
  const { stream: remote, track } = e.detail;
  const tile = tileFor(remote.id);
  if (track.kind === "video") {
    tile.stream.getVideoTracks().forEach((old) => tile.stream.removeTrack(old));
    tile.stream.addTrack(track);
    tile.video.srcObject = tile.stream;
    tile.video.play().catch(() => {});
  } else {
    tile.audio ??= new Audio();
    tile.audio.srcObject = new MediaStream([track]);
    tile.audio.play().catch(() => {});
  }
  render();
});
// A fresh join after a long outage rebuilt the media: the old tracks are gone.
s.addEventListener("reset", () => {
  for (const tile of tiles.values()) {
    tile.stream.getTracks().forEach((tr) => tile.stream.removeTrack(tr));
    tile.audio?.pause();
    tile.audio = null;
  }
});
s.connect();

el("start").addEventListener("click", () => s.control("start"));
el("end").addEventListener("click", () => {
  if (confirm(t("end_confirm"))) s.control("end");
});
el("take-floor").addEventListener("click", () => s.control("take_floor"));
el("mute-all").addEventListener("click", () => s.control("mute_all"));
el("lock").addEventListener("click", () => s.control(page.floor?.locked ? "unlock" : "lock"));
el("record").addEventListener("click", () => s.control(page.floor?.recording ? "stop_record" : "record"));
el("share").addEventListener("click", async () => {
  if (sharing) {
    await sharing.stop();
    sharing = null;
  } else {
    try {
      sharing = await s.shareScreen();
      sharing.track.addEventListener("ended", () => {
        sharing = null;
        render();
      });
    } catch (err) {
      el("notice").textContent = t("camera_error", { msg: err.message });
    }
  }
  render();
});
el("density").addEventListener("change", (e) => {
  el("wall").style.setProperty("--tile", e.target.value + "px");
});

// The attendance record, once the meeting is over (also on demand for
// tests: window.citybridge.showAttendance()).
async function fetchAttendance(format) {
  const { token } = readToken();
  const q = format === "csv" ? "?format=csv" : "";
  const resp = await fetch(`/api/conferences/${page.conference}/attendance${q}`, {
    headers: { Authorization: "Bearer " + token },
  });
  if (!resp.ok) throw new Error(`attendance: ${resp.status}`);
  return format === "csv" ? resp.blob() : resp.json();
}

function duration(sec) {
  const m = Math.floor(sec / 60);
  return `${m}:${String(Math.round(sec % 60)).padStart(2, "0")}`;
}

// retries: while some interval is still open (the rooms' sessions are
// closing as the conference ends), fetch again a second later.
async function showAttendance(retries = 0) {
  const rec = await fetchAttendance("json");
  const open = rec.bridges.some((b) => b.intervals.some((iv) => !iv.leave));
  if (open && retries > 0) {
    setTimeout(showAttendance, 1000, retries - 1);
    return;
  }
  const rows = rec.bridges.map((b) => {
    const tr = document.createElement("tr");
    tr.dataset.bridge = b.bridge;
    const spans = b.intervals.length
      ? b.intervals
          .map((iv) => `${new Date(iv.join).toLocaleTimeString()}–${iv.leave ? new Date(iv.leave).toLocaleTimeString() : "…"}`)
          .join(", ")
      : t("never_joined");
    const worst = b.worst ? t("link_" + b.worst) : "";
    for (const text of [b.name, duration(b.connected_seconds), String(b.drops), worst, spans]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  });
  el("attendance-rows").replaceChildren(...rows);
  el("attendance").hidden = false;
  page.attendance = rec;
}
page.showAttendance = showAttendance;
el("attendance-csv").addEventListener("click", async () => {
  const blob = await fetchAttendance("csv");
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `attendance-${page.conference}.csv`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
});

setInterval(async () => {
  heights = await videoHeights(s);
  render();
}, 2000);
