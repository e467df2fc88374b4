// The room terminal: the hub full screen, this room's camera small, the
// bridge's name and the connection state. The operator touches nothing.
import { apply, mountSwitch, t, errorText } from "/static/i18n.js";
import { Session, readToken, openCamera, ROOM_LAYERS } from "/static/client.js";

const el = (id) => document.getElementById(id);
// window.citybridge is what tests and technicians' tools read.
const page = { state: "starting", errors: [], bye: "", session: null };
window.citybridge = page;

function render() {
  const badge = el("state");
  badge.textContent = t("state_" + page.state);
  badge.className = "badge " + page.state;
}
apply();
mountSwitch(el("lang"), render);
render();

const hub = el("hub");
const hubStream = new MediaStream();

function showHub() {
  const hasVideo = hubStream.getVideoTracks().length > 0;
  el("waiting").hidden = hasVideo;
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

const { token, conference } = readToken();
let stream = null;
try {
  stream = await openCamera(640, 360);
  el("self").srcObject = stream;
} catch (e) {
  el("notice").textContent = t("camera_error", { msg: e.message });
}

const s = new Session({ token, conference, stream, layers: ROOM_LAYERS });
page.session = s;
page.inbound = () => s.inbound();
page.outbound = () => s.outbound();
s.addEventListener("joined", (e) => {
  el("bridge-name").textContent = e.detail.bridge.name;
  document.title = `${e.detail.bridge.name} · citybridge`;
});
s.addEventListener("state", (e) => {
  page.state = e.detail.state;
  render();
});
s.addEventListener("error", (e) => {
  page.errors.push(e.detail);
  el("notice").textContent = errorText(e.detail.code, e.detail.message);
});
s.addEventListener("bye", (e) => {
  page.bye = e.detail.reason;
  el("notice").textContent = t("bye_" + e.detail.reason);
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
