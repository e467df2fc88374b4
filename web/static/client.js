// The signaling client shared by the pages: one WebSocket, two peer
// connections ("pub": we offer and send our camera and microphone; "sub":
// the server offers and sends us media). See signaling/PROTOCOL.md.

// Simulcast layers, lowest first; the RIDs the server knows.
export const HUB_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", maxBitrate: 2_500_000 },
];
export const ROOM_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 2, maxBitrate: 150_000 },
  { rid: "h", maxBitrate: 500_000 },
];

// readToken takes the access token from the URL fragment (#t=...), which
// browsers never send to a server or put in a Referer.
export function readToken() {
  const h = new URLSearchParams(location.hash.slice(1));
  return { token: h.get("t") || "", conference: h.get("c") || "" };
}

// Session emits: "joined", "track" ({stream, track}), "roster", "presence",
// "layer" ({track, publisher, layer, reason, estimate}), "floor" ({state,
// holder, unmuted, locked, hands, screen}), "speaker" ({bridge}), "error"
// ({code, message, request}), "bye" ({reason}), "state" ({state}),
// "reset" (the media connections were rebuilt: drop every remote track).
//
// The session never gives up (see docs/ARCHITECTURE.md, reconnection): a
// lost WebSocket is reopened with capped, jittered backoff and the join
// carries the resume token, so the server gives back the same media
// session; media stalled ("disconnected") for 2 s restarts ICE; media
// "failed", or a resume the server no longer knows, rebuilds everything
// from a fresh join. Only the host ending the meeting, another terminal
// taking this bridge's place, or an invalid link stop it.
// The ceiling is low on purpose: a commune's picture must be back within
// seconds of its line, and 168 terminals retrying every 1.5 s are nothing
// to the server. A connection attempt that hangs (a cut link swallows the
// TCP handshake) is abandoned after CONNECT_TIMEOUT_MS.
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 1500;
const CONNECT_TIMEOUT_MS = 2500;
const STALL_MS = 2000;
const FINAL_BYES = new Set(["ended", "replaced", "left", "kicked", "revoked"]);
const FINAL_ERRORS = new Set(["token_required", "token_invalid", "wrong_conference", "not_invited", "role_cannot_join"]);

// How often the terminal reports its side of the link to the server: the
// media path from getStats (it changes after an ICE restart or a fallback
// to TCP or the relay), the hub's decoded frame rate, freezes and
// resolution, and whether it has a camera and a microphone.
const REPORT_MS = 2000;

export class Session extends EventTarget {
  constructor({ token, conference, stream, layers }) {
    super();
    this.token = token;
    this.conference = conference;
    this.stream = stream; // our camera+microphone, or null
    this.layers = layers;
    this.pcs = {};
    this.pending = { pub: [], sub: [] };
    this.streamOfTrack = new Map(); // remote track id -> stream (bridge) id
    this.state = "starting";
    this.resume = ""; // from the last "joined"
    this.pass = ""; // in a cluster, a login's pass for the other nodes (memory only)
    this.attempt = 0; // reconnection attempts since the last join
    this.lostAt = 0; // when the connection was lost (ms), 0 while fine
    this.stallTimer = 0;
    this.final = false; // stop reconnecting: ended, replaced, bad link
    this.reconnects = 0; // completed reconnections, for tests and diagnostics
    this.path = ""; // how our media reaches the server, last reported
    this.freezesReported = 0; // the hub video's freezeCount at the last report
    this.inbox = Promise.resolve(); // the signaling messages being handled, in order
    // The node of a cluster that serves the conference (a "redirect" names
    // it); the page's own host until then, and again when it fails.
    this.node = location.host;
    this.redirects = 0; // in a row, since the last join
    setInterval(() => this.report().catch(() => {}), REPORT_MS);
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${this.node}/signal`);
    this.ws = ws;
    const hung = setTimeout(() => {
      if (ws.readyState === WebSocket.CONNECTING) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(hung);
      // A console logged in with a cookie: at another node of a cluster
      // (the cookie is not sent there) the pass of its last join stands
      // for the login.
      const pass = this.token ? undefined : this.pass || undefined;
      this.send({ type: "join", token: this.token, conference: this.conference || undefined, resume: this.resume || undefined, pass });
    };
    // One message at a time, in order: handlers await the peer
    // connections, and an offer handled while the one before it is still
    // being answered would answer the wrong offer.
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      this.inbox = this.inbox.then(() => this.onMessage(m)).catch((err) => console.error(m.type, err));
    };
    ws.onclose = () => {
      if (this.ws !== ws) return; // an old socket we already gave up on
      this.ws = null;
      if (this.final || this.state === "ended") return;
      if (this.redirected) {
        this.redirected = false;
        // Straight to the node named, but not round and round: nodes
        // that disagree for a moment are asked again after a pause.
        if (this.redirects++ < 3) {
          this.connect();
          return;
        }
      }
      // A node that stops answering may be gone: each further try goes
      // to the next address, the page's own and every node the cluster
      // named at the last join; any of them sends us on to the right one.
      if (this.attempt > 0) this.node = this.nextNode();
      this.lost();
      this.scheduleReconnect();
    };
  }

  // nextNode is the address after the current one among the page's own
  // and the cluster's nodes (just the page's own on one machine).
  nextNode() {
    const hosts = [location.host];
    for (const u of this.joined?.nodes || []) {
      const h = new URL(u).host;
      if (!hosts.includes(h)) hosts.push(h);
    }
    return hosts[(hosts.indexOf(this.node) + 1) % hosts.length];
  }

  // lost marks the moment the connection went away (once per outage).
  lost() {
    if (!this.lostAt) this.lostAt = Date.now();
    this.setState("reconnecting");
  }

  scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt++;
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  // reconnect drops the WebSocket (perhaps dead without knowing it: a cut
  // link) and opens a new one; fresh forgets the resume token, so the
  // server starts the media over.
  reconnect(fresh) {
    if (this.final) return;
    if (fresh) this.resume = "";
    this.lost();
    const ws = this.ws;
    this.ws = null;
    ws?.close();
    this.attempt = 0;
    this.scheduleReconnect();
  }

  // restartIce renews both media connections' ICE: we offer again on
  // "pub"; the server offers again on "sub".
  async restartIce() {
    const pub = this.pcs.pub;
    if (pub && pub.signalingState === "stable" && pub.remoteDescription) {
      await pub.setLocalDescription(await pub.createOffer({ iceRestart: true }));
      this.send({ type: "offer", pc: "pub", sdp: pub.localDescription.sdp });
    }
    this.send({ type: "restart", pc: "sub" });
  }

  // watchMedia follows a media connection's state: stalled for 2 s means
  // the link is down (the WebSocket may be dead without knowing it), so
  // reconnect and, once resumed, restart ICE; failed means start over.
  watchMedia() {
    const states = Object.values(this.pcs).map((pc) => pc.connectionState);
    // A connection under way while reconnecting (its join may be held a
    // few seconds by a node waiting for a dead one's lease) must not be
    // dropped because the old media fail; between two tries, starting
    // over at once is what brings the picture back soonest.
    const underWay = this.lostAt && this.ws;
    if (states.includes("failed")) {
      if (underWay) this.resume = ""; // its join starts the media over
      else this.reconnect(true);
      return;
    }
    if (states.includes("disconnected") && !underWay) {
      if (!this.stallTimer) {
        this.stallTimer = setTimeout(() => {
          this.stallTimer = 0;
          const now = Object.values(this.pcs).map((pc) => pc.connectionState);
          if (this.lostAt && this.ws) return; // a connection under way: let it finish
          if (now.includes("disconnected") || now.includes("failed")) this.reconnect(now.includes("failed"));
        }, STALL_MS);
      }
    } else {
      clearTimeout(this.stallTimer);
      this.stallTimer = 0;
    }
    this.updateState();
  }

  // rebuild closes the media connections and makes new ones (a fresh join).
  rebuild(iceServers) {
    for (const pc of Object.values(this.pcs)) pc.close();
    this.pcs = {};
    this.pending = { pub: [], sub: [] };
    this.streamOfTrack.clear();
    this.emit("reset", {});
    this.createPeerConnections(iceServers);
  }

  send(m) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  // wall tells the server which tiles of the host console's wall are on
  // screen ([{bridge, width, height}], device pixels; [] for none): it
  // sends the video of those rooms only (signaling/PROTOCOL.md, "wall").
  // It reports whether the message went out.
  wall(tiles) {
    if (this.ws?.readyState !== WebSocket.OPEN || !this.joined) return false;
    this.send({ type: "wall", tiles });
    return true;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", { state });
  }

  async onMessage(m) {
    switch (m.type) {
      case "joined": {
        const again = !!this.joined;
        this.path = ""; // say it again on this connection
        this.joined = m;
        this.resume = m.resume || "";
        if (m.pass) this.pass = m.pass;
        this.attempt = 0;
        this.redirects = 0;
        if (again) this.reconnects++;
        this.lostAt = 0;
        if (m.resumed && this.pcs.pub) {
          // Our place, media and all, is still there: restart ICE only if
          // the media stalled meanwhile.
          this.emit("joined", m);
          const states = Object.values(this.pcs).map((pc) => pc.connectionState);
          if (states.some((st) => st !== "connected")) await this.restartIce();
          this.updateState();
          break;
        }
        this.setState("connecting");
        if (again) this.rebuild(m.iceServers || []);
        else this.createPeerConnections(m.iceServers || []);
        this.emit("joined", m);
        if (this.stream) await this.publish();
        break;
      }
      case "answer":
        await this.pcs.pub.setRemoteDescription({ type: "answer", sdp: m.sdp });
        await this.flushCandidates("pub");
        break;
      case "offer": {
        const sub = this.pcs.sub;
        await sub.setRemoteDescription({ type: "offer", sdp: m.sdp });
        await this.flushCandidates("sub");
        await sub.setLocalDescription(await sub.createAnswer());
        this.send({ type: "answer", pc: "sub", sdp: sub.localDescription.sdp });
        break;
      }
      case "candidate": {
        const pc = this.pcs[m.pc];
        if (!pc) return;
        if (!pc.remoteDescription) this.pending[m.pc].push(m.candidate);
        else await pc.addIceCandidate(m.candidate);
        break;
      }
      case "roster":
      case "presence":
      case "layer":
      case "floor":
      case "speaker":
      case "error":
        if (m.request === "join" && FINAL_ERRORS.has(m.code)) this.final = true;
        this.emit(m.type, m);
        break;
      case "action":
        // A technician's request, carried out at once and shown on the page.
        this.emit("action", m);
        if (m.action === "ice_restart") await this.restartIce();
        else if (m.action === "rejoin") this.reconnect(true);
        else if (m.action === "reload") setTimeout(() => location.reload(), 100);
        break;
      case "nodes":
        // The cluster's nodes changed: where to go when ours fails.
        if (this.joined) this.joined.nodes = m.nodes;
        break;
      case "redirect":
        // Another node of the cluster serves the conference: join there.
        this.node = new URL(m.url).host;
        this.redirected = true;
        break;
      case "bye":
        if (FINAL_BYES.has(m.reason)) {
          this.final = true;
          this.setState("ended"); // the page's badge says so, not "connected"
        }
        this.emit(m.type, m);
        break;
    }
  }

  async flushCandidates(name) {
    const list = this.pending[name];
    this.pending[name] = [];
    for (const c of list) await this.pcs[name].addIceCandidate(c);
  }

  createPeerConnections(iceServers) {
    for (const name of ["pub", "sub"]) {
      const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
      pc.onicecandidate = (e) => {
        if (e.candidate) this.send({ type: "candidate", pc: name, candidate: e.candidate.toJSON() });
      };
      pc.onconnectionstatechange = () => {
        if (this.pcs[name] === pc) this.watchMedia();
      };
      this.pcs[name] = pc;
    }
    this.pcs.sub.ontrack = (e) => {
      const stream = e.streams[0];
      if (!stream) return;
      this.streamOfTrack.set(e.track.id, stream.id);
      this.emit("track", { stream, track: e.track });
    };
  }

  updateState() {
    if (this.lostAt || !this.ws) return; // "reconnecting" until we are back
    const states = Object.values(this.pcs).map((pc) => pc.connectionState);
    if (states.includes("failed") || states.includes("disconnected")) this.setState("reconnecting");
    else if (states.includes("connected")) this.setState("connected");
    else this.setState("connecting");
  }

  async publish() {
    const pub = this.pcs.pub;
    const [video] = this.stream.getVideoTracks();
    const [audio] = this.stream.getAudioTracks();
    if (video) {
      const tr = pub.addTransceiver(video, {
        direction: "sendonly",
        streams: [this.stream],
        sendEncodings: this.layers.map((l) => ({ ...l })),
      });
      // A busy machine drops frames rather than resolution: every layer
      // keeps its size, so rooms always know what they get and text on
      // the hub's slides stays legible.
      const params = tr.sender.getParameters();
      params.degradationPreference = "maintain-resolution";
      await tr.sender.setParameters(params).catch(() => {});
    }
    if (audio) pub.addTransceiver(audio, { direction: "sendonly", streams: [this.stream] });
    await pub.setLocalDescription(await pub.createOffer());
    this.send({ type: "offer", pc: "pub", sdp: pub.localDescription.sdp });
  }

  // control asks the server for a floor action (see wire.Control); the
  // answer is the next "floor" event, or an "error" with request "control".
  control(action, bridge = "", track = "") {
    this.send({ type: "control", action, bridge: bridge || undefined, track: track || undefined });
  }

  // shareScreen publishes a screen or window as a second video track and
  // tells the server which track it is. It resolves to a stop function.
  async shareScreen() {
    const display = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    const [track] = display.getVideoTracks();
    const pub = this.pcs.pub;
    const tr = pub.addTransceiver(track, { direction: "sendonly", streams: [this.stream || display] });
    await this.renegotiate();
    this.control("share_screen", "", track.id);
    const stop = async () => {
      if (tr.currentDirection === "stopped") return;
      track.stop();
      tr.sender.replaceTrack(null).catch(() => {});
      tr.direction = "inactive";
      await this.renegotiate();
      this.control("share_screen", "", "");
    };
    track.addEventListener("ended", stop);
    return { track, stop };
  }

  async renegotiate() {
    const pub = this.pcs.pub;
    await pub.setLocalDescription(await pub.createOffer());
    this.send({ type: "offer", pc: "pub", sdp: pub.localDescription.sdp });
  }

  // mediaPath reads how our media reaches the server from the selected
  // ICE candidate pair: "udp" (direct), "tcp" (ICE-TCP), or through the
  // TURN relay: "relay-udp", "relay-tcp", "relay-tls". "" until connected.
  async mediaPath() {
    const pc = this.pcs.sub;
    if (!pc || pc.connectionState !== "connected") return "";
    const report = await pc.getStats();
    let pair;
    report.forEach((st) => {
      if (st.type === "transport" && st.selectedCandidatePairId) pair = report.get(st.selectedCandidatePairId);
    });
    if (!pair) {
      report.forEach((st) => {
        if (!pair && st.type === "candidate-pair" && st.nominated && st.state === "succeeded") pair = st;
      });
    }
    const local = pair && report.get(pair.localCandidateId);
    if (!local) return "";
    if (local.candidateType === "relay") return "relay-" + (local.relayProtocol || "udp");
    return local.protocol === "tcp" ? "tcp" : "udp";
  }

  // report tells the server our side of the link every REPORT_MS: the
  // technicians see which rooms go through TCP or the relay, and what the
  // room actually sees of the hub. The page hears when the path changed.
  async report() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.joined) return;
    const path = await this.mediaPath().catch(() => "");
    const msg = { type: "report", path: path || undefined };
    let best = null;
    for (const s of await this.inbound().catch(() => [])) {
      if (s.kind !== "video") continue;
      if (!best || s.stream === "hub" || (best.stream !== "hub" && s.framesDecoded > best.framesDecoded)) best = s;
    }
    if (best) {
      msg.fps = Math.round(best.framesPerSecond * 10) / 10;
      msg.freezes = Math.max(0, best.freezeCount - this.freezesReported);
      this.freezesReported = best.freezeCount;
      msg.width = best.frameWidth;
      msg.height = best.frameHeight;
    }
    if (this.stream) {
      const live = (kind) => this.stream.getTracks().some((t) => t.kind === kind && t.readyState === "live");
      msg.camera = live("video");
      msg.microphone = live("audio");
    }
    this.send(msg);
    if (path && path !== this.path) {
      this.path = path;
      this.emit("path", { path });
    }
  }

  // inbound summarises what we receive, per remote track: the pages' tests
  // and the link indicator read it.
  async inbound() {
    const out = [];
    if (!this.pcs.sub) return out;
    const report = await this.pcs.sub.getStats();
    report.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      out.push({
        kind: s.kind,
        stream: this.streamOfTrack.get(s.trackIdentifier) || "",
        codec: (s.codecId && report.get(s.codecId) && report.get(s.codecId).mimeType) || "",
        packetsReceived: s.packetsReceived || 0,
        framesDecoded: s.framesDecoded || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
        framesPerSecond: s.framesPerSecond || 0,
        freezeCount: s.freezeCount || 0,
        totalFreezesDuration: s.totalFreezesDuration || 0,
        nackCount: s.nackCount || 0,
        packetsLost: s.packetsLost || 0,
        retransmittedPacketsReceived: s.retransmittedPacketsReceived || 0,
        framesDropped: s.framesDropped || 0,
        keyFramesDecoded: s.keyFramesDecoded || 0,
        pliCount: s.pliCount || 0,
        jitterBufferDelay: s.jitterBufferDelay || 0,
        jitterBufferEmittedCount: s.jitterBufferEmittedCount || 0,
        packetsDiscarded: s.packetsDiscarded || 0,
      });
    });
    return out;
  }

  // outbound summarises what we send, per simulcast layer.
  async outbound() {
    const out = [];
    if (!this.pcs.pub) return out;
    const report = await this.pcs.pub.getStats();
    report.forEach((s) => {
      if (s.type !== "outbound-rtp") return;
      out.push({ kind: s.kind, rid: s.rid || "", packetsSent: s.packetsSent || 0, frameWidth: s.frameWidth || 0 });
    });
    return out;
  }

  leave() {
    this.send({ type: "leave" });
    this.final = true;
    this.setState("ended");
    for (const pc of Object.values(this.pcs)) pc.close();
    this.ws?.close();
  }
}

// openCamera asks for the camera and microphone at the given size.
export async function openCamera(width, height) {
  return navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 } },
    audio: { echoCancellation: true, noiseSuppression: true },
  });
}
