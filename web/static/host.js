// The host console: the hub's own camera, and the wall of every invited
// bridge point with its name, state and (once connected) its video.
import { apply, mountSwitch, t } from "/static/i18n.js";
import { HUB_LAYERS } from "/static/client.js";
import { el, newPage, qualityText, renderState, startSession, videoHeights } from "/static/page.js";

const page = newPage({ roster: new Map() });

const tiles = new Map(); // bridge ID -> {root, video, badge, quality, stream, audio}
let heights = {}; // bridge ID -> decoded height of its video

function render() {
  renderState(page);
  const entries = [...page.roster.values()];
  const connected = entries.filter((e) => e.state === "connected").length;
  el("count").textContent = t("joined_count", { n: connected, total: entries.length });
  for (const [id, tile] of tiles) {
    const e = page.roster.get(id);
    const state = e ? e.state : "connected";
    tile.root.className = "tile " + state;
    tile.badge.textContent = t("state_" + state);
    tile.badge.className = "badge " + state;
    tile.quality.textContent = state === "connected" ? qualityText(heights[id], page.layers[id]) : "";
  }
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
  nameEl.textContent = name || id;
  const badge = document.createElement("span");
  const quality = document.createElement("span");
  quality.className = "quality";
  label.append(nameEl, badge, quality);
  root.append(video, label);
  el("wall").append(root);
  tile = { root, video, badge, quality, stream: new MediaStream(), audio: null };
  tiles.set(id, tile);
  return tile;
}

const s = await startSession(page, { width: 1280, height: 720, layers: HUB_LAYERS, preview: "preview", render });
s.addEventListener("joined", (e) => {
  el("conference-title").textContent = e.detail.conference.title;
  document.title = `${e.detail.conference.title} · citybridge`;
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
s.connect();
setInterval(async () => {
  heights = await videoHeights(s);
  render();
}, 2000);
