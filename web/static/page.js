// What the host console and the room terminal share: the state badge, the
// notice line, the camera, and window.citybridge (state, errors, stats) for
// tests and diagnostics.
import { t, errorText } from "/static/i18n.js";
import { Session, readToken, openCamera } from "/static/client.js";

export const el = (id) => document.getElementById(id);

// newPage makes the page object and publishes it as window.citybridge.
export function newPage(extra = {}) {
  // layers: the video layer received from each publisher and why, as the
  // server last said ({layer: "q"|"h"|"f"|"", reason, estimate}).
  const page = { state: "starting", errors: [], bye: "", session: null, layers: {}, ...extra };
  window.citybridge = page;
  return page;
}

// renderState shows the session state in the #state badge, and while the
// connection is lost a full-screen notice with the time since the drop.
export function renderState(page) {
  const badge = el("state");
  badge.textContent = t("state_" + page.state);
  badge.className = "badge " + page.state;
  let overlay = el("reconnecting");
  if (!overlay) {
    overlay = document.createElement("div");
    overlay.id = "reconnecting";
    overlay.className = "overlay";
    overlay.setAttribute("role", "status");
    document.body.append(overlay);
  }
  const lostAt = page.session?.lostAt || page.reconnectingSince || 0;
  overlay.hidden = !(page.state === "reconnecting" && lostAt);
  if (!overlay.hidden) {
    overlay.textContent = t("reconnecting_for", { s: Math.round((Date.now() - lostAt) / 1000) });
  }
}

// keepAwake holds a screen wake lock where the browser has one, and takes
// it again whenever the page becomes visible (the lock lapses when hidden).
export function keepAwake() {
  if (!("wakeLock" in navigator)) return;
  const take = () => navigator.wakeLock.request("screen").catch(() => {});
  take();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") take();
  });
}

// startSession opens the camera (showing it in the video element with id
// preview), and prepares the session with its state, error and bye
// handling. The caller adds its own listeners, then calls connect().
export async function startSession(page, { width, height, layers, preview, render }) {
  const { token, conference } = readToken();
  let stream = null;
  try {
    stream = await openCamera(width, height);
    el(preview).srcObject = stream;
  } catch (e) {
    el("notice").textContent = t("camera_error", { msg: e.message });
  }
  const s = new Session({ token, conference, stream, layers });
  page.session = s;
  keepAwake();
  // The overlay's clock ticks while the connection is lost.
  setInterval(() => {
    if (page.state === "reconnecting") renderState(page);
  }, 1000);
  page.inbound = () => s.inbound();
  page.outbound = () => s.outbound();
  s.addEventListener("state", (e) => {
    page.state = e.detail.state;
    page.reconnectingSince = page.state === "reconnecting" ? page.reconnectingSince || Date.now() : 0;
    if (page.state === "connected" && el("notice").dataset.transient) {
      el("notice").textContent = "";
      delete el("notice").dataset.transient;
    }
    render();
  });
  s.addEventListener("error", (e) => {
    page.errors.push(e.detail);
    el("notice").textContent = errorText(e.detail.code, e.detail.message);
    // A node cut from its cluster: the session tries the next node by itself.
    if (e.detail.code === "cluster_unavailable") el("notice").dataset.transient = "1";
  });
  s.addEventListener("layer", (e) => {
    page.layers[e.detail.publisher] = e.detail;
    render();
  });
  s.addEventListener("bye", (e) => {
    page.bye = e.detail.reason;
    el("notice").textContent = t("bye_" + e.detail.reason);
    // A server restarting is only a pause: the session comes back by itself.
    if (e.detail.reason === "server_shutdown" || e.detail.reason === "moved") el("notice").dataset.transient = "1";
  });
  return s;
}

// qualityText says what a video is received at and why: "360p · reduced
// for the link". height comes from the decoder (getStats), info from the
// server's layer message.
export function qualityText(height, info) {
  if (!info) return height ? `${height}p` : "";
  if (info.reason === "paused") return t("layer_paused");
  const res = height ? `${height}p` : info.layer;
  return t("quality", { res, why: t("layer_" + info.reason) });
}

// videoHeights returns the decoded height of each publisher's video.
export async function videoHeights(s) {
  const out = {};
  for (const v of await s.inbound()) {
    if (v.kind === "video" && v.stream) out[v.stream] = v.frameHeight;
  }
  return out;
}
