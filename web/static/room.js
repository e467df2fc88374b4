// The room terminal: the hub full screen, this room's camera small, the
// bridge's name and the connection state. The operator touches nothing.
import { apply, mountSwitch } from "/static/i18n.js";
import { ROOM_LAYERS } from "/static/client.js";
import { el, newPage, qualityText, renderState, startSession, videoHeights } from "/static/page.js";

const page = newPage();
let hubHeight = 0;
const render = () => {
  renderState(page);
  const info = page.layers.hub;
  const q = el("quality");
  q.textContent = qualityText(hubHeight, info);
  q.className = "quality " + (info?.reason || "");
};
apply();
mountSwitch(el("lang"), render);
render();

const hub = el("hub");
const hubStream = new MediaStream();

function showHub() {
  el("waiting").hidden = hubStream.getVideoTracks().length > 0;
  hub.srcObject = hubStream;
  hub.play().catch(() => {
    // The browser wants a gesture before sound: play muted, offer a button.
    hub.muted = true;
    el("sound").hidden = false;
    hub.play().catch(() => {});
  });
}
el("sound").addEventListener("click", () => {
  hub.muted = false;
  el("sound").hidden = true;
});

const s = await startSession(page, { width: 640, height: 360, layers: ROOM_LAYERS, preview: "self", render });
s.addEventListener("joined", (e) => {
  el("bridge-name").textContent = e.detail.bridge.name;
  document.title = `${e.detail.bridge.name} · citybridge`;
});
s.addEventListener("track", (e) => {
  const { stream: remote, track } = e.detail;
  if (remote.id !== "hub") return;
  hubStream.addTrack(track);
  remote.addEventListener("removetrack", (ev) => {
    hubStream.removeTrack(ev.track);
    showHub();
  });
  showHub();
});
s.connect();
// The decoded size of the hub's picture, for the quality line.
setInterval(async () => {
  hubHeight = (await videoHeights(s)).hub || 0;
  render();
}, 2000);
