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
// ({code, message, request}), "bye" ({reason}), "state" ({state}).
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
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${scheme}://${location.host}/signal`);
    this.ws.onopen = () => this.send({ type: "join", token: this.token, conference: this.conference || undefined });
    this.ws.onmessage = (e) => this.onMessage(JSON.parse(e.data)).catch((err) => console.error(err));
    this.ws.onclose = () => {
      if (this.state !== "ended") this.setState("disconnected");
    };
  }

  send(m) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
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
      case "joined":
        this.joined = m;
        this.setState("connecting");
        this.createPeerConnections(m.iceServers || []);
        this.emit("joined", m);
        if (this.stream) await this.publish();
        break;
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
      case "bye":
        if (m.type === "bye") this.state = "ended";
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
      pc.onconnectionstatechange = () => this.updateState();
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
    const states = Object.values(this.pcs).map((pc) => pc.connectionState);
    if (states.includes("failed")) this.setState("failed");
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
    this.state = "ended";
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
