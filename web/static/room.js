// The room terminal: the hub full screen (beside the room holding the
// floor, under the host's shared screen), this room's camera small, the
// bridge's name, the connection state and the microphone state. The
// operator touches nothing; the one button asks the host for the floor.
import { apply, mountSwitch, t } from "/static/i18n.js";
import { ROOM_LAYERS } from "/static/client.js";
import { el, newPage, qualityText, renderState, startSession, videoHeights } from "/static/page.js";

const page = newPage({ floor: null, bridge: "", path: "" });
let hubHeight = 0;

const render = () => {
  renderState(page);
  // How the media reaches the server: a technician standing in the room
  // sees at once when it goes through TCP or the relay.
  const path = el("path");
  path.textContent = page.path ? t("path_" + page.path.replace("-", "_")) : "";
  path.className = "path " + page.path;
  const info = page.layers.hub;
  const q = el("quality");
  q.textContent = qualityText(hubHeight, info);
  q.className = "quality " + (info?.reason || "");
  const f = page.floor;
  if (!f) return;
  el("recording").hidden = !f.recording;
  const me = page.bridge;
  const unmuted = f.unmuted.includes(me);
  const mic = el("mic");
  mic.textContent = f.holder === me ? t("floor_yours") : unmuted ? t("mic_on") : t("mic_off");
  mic.className = "mic-state " + (unmuted ? "on" : "off");
  const raised = f.hands.includes(me);
  const hand = el("hand");
  hand.hidden = f.holder === me || f.state === "ended";
  hand.textContent = raised ? t("lower_hand") : t("raise_hand");
  hand.className = raised ? "raised" : "quiet";
  if (raised) el("notice").textContent = t("hand_raised");
  else if (el("notice").textContent === t("hand_raised")) el("notice").textContent = "";
  el("floor-name").textContent = f.holder && f.holder !== me ? t("floor_holder", { name: f.holderName || f.holder }) : "";
};
apply();
mountSwitch(el("lang"), render);
render();

// Streams by publisher: the hub's camera and sound, the host's screen,
// the floor holder's camera, and the sound of every unmuted room.
const hub = el("hub");
const hubStream = new MediaStream();
const floorStream = new MediaStream();
const screenStream = new MediaStream();
const roomAudio = new Map(); // bridge -> Audio

function play(video, stream) {
  if (video.srcObject !== stream) video.srcObject = stream;
  video.play().catch(() => {
    // The browser wants a gesture before sound: play muted, offer a button.
    video.muted = true;
    el("sound").hidden = false;
    video.play().catch(() => {});
  });
}

function layout() {
  el("waiting").hidden = hubStream.getVideoTracks().length > 0;
  const screen = page.floor?.screen || "";
  const screenTrack = screen && [...hubStream.getVideoTracks(), ...screenStream.getVideoTracks()].find((tr) => tr.id === screen);
  // The host's shared screen takes the stage; the hub camera goes small.
  for (const tr of hubStream.getVideoTracks()) {
    if (tr === screenTrack) hubStream.removeTrack(tr);
  }
  for (const tr of screenStream.getVideoTracks()) {
    if (tr !== screenTrack) {
      screenStream.removeTrack(tr);
      if (tr.readyState === "live") hubStream.addTrack(tr);
    }
  }
  if (screenTrack && !screenStream.getVideoTracks().includes(screenTrack)) screenStream.addTrack(screenTrack);
  el("screen").hidden = !screenTrack;
  document.body.classList.toggle("sharing", !!screenTrack);
  if (screenTrack) play(el("screen"), screenStream);
  const floorOn = floorStream.getVideoTracks().length > 0;
  el("floor-box").hidden = !floorOn;
  el("stage").classList.toggle("split", floorOn);
  if (floorOn) play(el("floor"), floorStream);
  play(hub, hubStream);
}

el("sound").addEventListener("click", () => {
  for (const v of [hub, el("floor")]) v.muted = false;
  for (const a of roomAudio.values()) a.play().catch(() => {});
  el("sound").hidden = true;
});

const s = await startSession(page, { width: 640, height: 360, layers: ROOM_LAYERS, preview: "self", render });
s.addEventListener("joined", (e) => {
  page.bridge = e.detail.bridge.id;
  el("bridge-name").textContent = e.detail.bridge.name;
  document.title = `${e.detail.bridge.name} · citybridge`;
});
s.addEventListener("floor", (e) => {
  page.floor = e.detail;
  render();
  layout();
});
s.addEventListener("path", (e) => {
  page.path = e.detail.path;
  render();
});
s.addEventListener("track", (e) => {
  const { stream: remote, track } = e.detail;
  if (remote.id === page.bridge) {
    // The readiness check: our own camera, back from the server. The
    // preview shows it while it lasts, so the operator sees what the
    // others would see.
    const self = el("self");
    const local = self.srcObject;
    self.srcObject = new MediaStream([track]);
    self.classList.add("echo");
    page.selfTest = true;
    remote.addEventListener("removetrack", () => {
      self.srcObject = local;
      self.classList.remove("echo");
      page.selfTest = false;
    });
    return;
  }
  if (remote.id === "hub") {
    hubStream.addTrack(track);
  } else if (track.kind === "video") {
    floorStream.getVideoTracks().forEach((old) => floorStream.removeTrack(old));
    floorStream.addTrack(track);
  } else {
    const a = new Audio();
    a.srcObject = new MediaStream([track]);
    a.play().catch(() => {});
    roomAudio.set(remote.id, a);
  }
  remote.addEventListener("removetrack", (ev) => {
    for (const st of [hubStream, floorStream, screenStream]) st.removeTrack(ev.track);
    if (ev.track.kind === "audio") {
      roomAudio.get(remote.id)?.pause();
      roomAudio.delete(remote.id);
    }
    layout();
  });
  layout();
});
// A fresh join after a long outage rebuilt the media: the old tracks are gone.
s.addEventListener("reset", () => {
  for (const st of [hubStream, floorStream, screenStream]) st.getTracks().forEach((tr) => st.removeTrack(tr));
  for (const a of roomAudio.values()) a.pause();
  roomAudio.clear();
  layout();
});
el("hand").addEventListener("click", () => {
  s.control(page.floor?.hands.includes(page.bridge) ? "lower_hand" : "raise_hand");
});
s.connect();
// The decoded size of the hub's picture, for the quality line.
setInterval(async () => {
  hubHeight = (await videoHeights(s)).hub || 0;
  render();
}, 2000);
