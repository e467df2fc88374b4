// The technicians' link dashboard: a tile per bridge coloured by its link
// state, the alerts, and for one bridge its figures, history charts
// (uPlot, vendored in /static/vendor), event log and actions.
//
// Updates come from the live feed /api/links/live (a LinksView a second);
// while it cannot open the page polls GET /api/links, and retries the feed
// with capped, jittered backoff. Credentials: a technician link (#t=…) or
// the login cookie.
import { apply, mountSwitch, t, errorText, currentLang } from "/static/i18n.js";
import { readToken } from "/static/client.js";
import { mountNodes } from "/static/nodes.js";

const el = (id) => document.getElementById(id);
const { token } = readToken();
const STATES = ["good", "fair", "poor", "lost"];
const POLL_MS = 2000;
const FEED_MIN_MS = 1000;
const FEED_MAX_MS = 30000;
const DETAIL_REFRESH_MS = 10000;

// window.citybridge, for tests and diagnostics: the last view, how it came
// ("socket" or "poll"), the open bridge, and the last action's result.
const page = { view: { links: [], alerts: [] }, transport: "", selected: null, lastAction: null, history: [], events: [] };
window.citybridge = page;

class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    Object.assign(this, { status, code });
  }
}

async function api(method, path, body) {
  const headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new APIError(r.status, answer.code || String(r.status), answer.message || r.statusText);
  return answer;
}

const keyOf = (l) => l.conference + "/" + l.bridge;
const time = (s) => (s ? new Date(s).toLocaleTimeString(currentLang()) : "");
const kbps = (bps) => (bps ? Math.round(bps / 1000) + " kbit/s" : "–");
const pct = (f) => (100 * (f || 0)).toFixed(1) + "%";
const layerName = (l) => ({ "-1": "–", 0: "320×180", 1: "640×360", 2: "1280×720" })[l] ?? String(l);
const reasonText = (r) => (r === "paused" ? t("link_paused") : t("layer_" + r));
const stateColor = (s) => getComputedStyle(document.documentElement).getPropertyValue("--" + (s === "lost" ? "poor" : s)).trim() || "#888";

// --- tiles ---

const tiles = new Map(); // key -> tile element

function sorted(links) {
  const by = el("sort").value;
  const name = (a, b) => a.name.localeCompare(b.name, currentLang());
  const rank = (l) => STATES.indexOf(l.state);
  const cmp = {
    name,
    score: (a, b) => a.score - b.score || name(a, b),
    state: (a, b) => rank(b) - rank(a) || a.score - b.score || name(a, b),
  }[by];
  return [...links].sort(cmp);
}

function renderTiles() {
  const links = page.view.links;
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const l of links) counts[l.state] = (counts[l.state] || 0) + 1;
  el("counts").replaceChildren(
    ...STATES.map((s) => {
      const c = document.createElement("span");
      c.className = "badge q-" + s;
      c.dataset.state = s;
      c.textContent = `${t("q_" + s)} ${counts[s]}`;
      return c;
    }),
  );
  renderAreas(links);
  const state = el("filter-state").value;
  const area = el("filter-area").value;
  const shown = sorted(links.filter((l) => (!state || l.state === state) && (!area || l.area === area)));
  const keep = new Set(links.map(keyOf));
  for (const [k, tile] of tiles) {
    if (!keep.has(k)) {
      tile.remove();
      tiles.delete(k);
    }
  }
  const box = el("tiles");
  const visible = new Set();
  for (const l of shown) {
    const k = keyOf(l);
    let tile = tiles.get(k);
    if (!tile) {
      tile = newTile(l);
      tiles.set(k, tile);
    }
    updateTile(tile, l);
    visible.add(tile);
    box.append(tile); // in sorted order
  }
  for (const tile of tiles.values()) tile.hidden = !visible.has(tile);
  el("empty").hidden = links.length > 0;
}

function newTile(l) {
  const tile = document.createElement("button");
  tile.className = "link-tile";
  tile.dataset.bridge = l.bridge;
  tile.dataset.conference = l.conference;
  tile.innerHTML = '<span class="name"></span><span class="score"></span><span class="state badge"></span>' +
    '<span class="layer"></span><canvas class="spark" width="120" height="28"></canvas>';
  tile.addEventListener("click", () => openDetail(l.conference, l.bridge));
  return tile;
}

function updateTile(tile, l) {
  tile.className = `link-tile q-${l.state}` + (l.alert ? " alerting" : "") + (page.selected?.key === keyOf(l) ? " selected" : "");
  tile.dataset.state = l.state;
  tile.dataset.score = l.score;
  tile.title = (l.cause ? `${l.bridge}: ${l.cause}` : l.bridge) + (l.node ? ` · ${l.node}` : "");
  tile.querySelector(".name").textContent = l.name;
  tile.querySelector(".score").textContent = l.state === "lost" ? "–" : String(l.score);
  const badge = tile.querySelector(".state");
  badge.textContent = t("q_" + l.state);
  badge.className = "state badge q-" + l.state;
  const s = l.sample || {};
  tile.querySelector(".layer").textContent = layerName(s.layer) + (s.layer_reason && s.layer_reason !== "best" ? " · " + reasonText(s.layer_reason) : "");
  drawSpark(tile.querySelector("canvas"), l.spark || [], l.state);
}

// drawSpark draws the last scores (0–100, one a second, oldest first) as a
// line, with the good and fair thresholds as faint rules.
function drawSpark(canvas, scores, state) {
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const y = (v) => h - 1 - (v / 100) * (h - 2);
  ctx.strokeStyle = "rgba(255,255,255,.12)";
  ctx.lineWidth = 1;
  for (const v of [60, 80]) {
    ctx.beginPath();
    ctx.moveTo(0, y(v));
    ctx.lineTo(w, y(v));
    ctx.stroke();
  }
  if (scores.length === 0) return;
  const step = w / 59; // 60 points across the tile
  const x0 = w - (scores.length - 1) * step;
  ctx.strokeStyle = stateColor(state);
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  scores.forEach((v, i) => (i ? ctx.lineTo(x0 + i * step, y(v)) : ctx.moveTo(x0, y(v))));
  if (scores.length === 1) ctx.lineTo(w, y(scores[0]));
  ctx.stroke();
}

function renderAreas(links) {
  const select = el("filter-area");
  const areas = [...new Set(links.map((l) => l.area).filter(Boolean))].sort((a, b) => a.localeCompare(b, currentLang()));
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === areas.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(select.options[0], ...areas.map((a) => new Option(a, a)));
  select.value = areas.includes(chosen) ? chosen : "";
}

function renderAlerts() {
  const names = Object.fromEntries(page.view.links.map((l) => [l.bridge, l.name]));
  const alerts = page.view.alerts || [];
  const active = alerts.filter((a) => !a.cleared);
  const recent = alerts.filter((a) => a.cleared).slice(0, 5);
  el("alerts").hidden = alerts.length === 0;
  el("alert-list").replaceChildren(
    ...[...active, ...recent].map((a) => {
      const li = document.createElement("li");
      const name = names[a.bridge] || a.bridge || a.node; // a node alert names the server
      li.className = a.cleared ? "cleared" : "active " + a.kind;
      li.dataset.bridge = a.bridge;
      li.textContent = a.cleared
        ? t("alert_cleared", { name, kind: t("q_" + a.kind), since: time(a.since), cleared: time(a.cleared) })
        : t("alert_" + a.kind, { name, since: time(a.since), detail: a.detail || "" });
      if (!a.cleared && a.bridge) li.addEventListener("click", () => openDetail(a.conference, a.bridge));
      return li;
    }),
  );
}

function render() {
  renderTiles();
  renderAlerts();
  renderFigures();
  const live = el("live");
  live.textContent = page.transport === "socket" ? t("live_socket") : page.transport === "poll" ? t("live_poll") : "";
  live.className = "badge " + (page.transport === "socket" ? "connected" : "connecting");
}

function show(view, transport) {
  page.view = { links: view.links || [], alerts: view.alerts || [], missing: view.missing_nodes || [] };
  page.transport = transport;
  page.updated = Date.now();
  // In a cluster, a node that did not answer leaves its bridges out: say so.
  el("notice").textContent = page.view.missing.length ? t("nodes_missing", { nodes: page.view.missing.join(", ") }) : "";
  render();
}

// --- live feed, polling while it cannot open ---

let feedDelay = FEED_MIN_MS;
let pollTimer = 0;

function openFeed() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/links/live`);
  let got = false;
  ws.addEventListener("open", () => ws.send(JSON.stringify({ token })));
  ws.addEventListener("message", (e) => {
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch {
      return;
    }
    if (msg.error) {
      el("notice").textContent = msg.error;
      return;
    }
    if (!got) {
      got = true;
      feedDelay = FEED_MIN_MS;
      stopPolling();
    }
    show(msg, "socket");
  });
  ws.addEventListener("close", () => {
    startPolling();
    const wait = feedDelay * (0.5 + Math.random());
    feedDelay = Math.min(feedDelay * 2, FEED_MAX_MS);
    setTimeout(openFeed, wait);
  });
}

async function poll() {
  try {
    show(await api("GET", "/api/links"), "poll");
  } catch (e) {
    el("notice").textContent = errorText(e.code, e.message);
  }
}

function startPolling() {
  if (pollTimer) return;
  poll();
  pollTimer = setInterval(poll, POLL_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = 0;
}

// --- detail panel ---

let charts = [];
let detailTimer = 0;

function selectedLink() {
  return page.view.links.find((l) => keyOf(l) === page.selected?.key);
}

async function openDetail(conference, bridge) {
  page.selected = { conference, bridge, key: conference + "/" + bridge };
  page.history = [];
  page.events = [];
  el("detail").hidden = false;
  el("action-result").textContent = "";
  el("max-layer").value = "f";
  render();
  clearInterval(detailTimer);
  detailTimer = setInterval(loadDetail, DETAIL_REFRESH_MS);
  await loadDetail();
}

function closeDetail() {
  page.selected = null;
  el("detail").hidden = true;
  clearInterval(detailTimer);
  for (const c of charts) c.destroy();
  charts = [];
  render();
}

async function loadDetail() {
  const sel = page.selected;
  if (!sel) return;
  const b = encodeURIComponent(sel.bridge);
  try {
    const [history, events] = await Promise.all([
      api("GET", `/api/bridges/${b}/history`),
      api("GET", `/api/events?bridge=${b}&limit=200`),
    ]);
    if (page.selected !== sel) return;
    page.history = history;
    page.events = events;
    drawCharts();
    renderEvents();
  } catch (e) {
    el("notice").textContent = errorText(e.code, e.message);
  }
}

function renderFigures() {
  const sel = page.selected;
  if (!sel) return;
  const l = selectedLink();
  el("detail-name").textContent = l ? `${l.name} (${l.bridge})` : sel.bridge;
  const badge = el("detail-state");
  badge.textContent = l ? t("q_" + l.state) : "";
  badge.className = "badge q-" + (l?.state || "");
  const s = l?.sample || {};
  const rows = l
    ? [
        ["fig_score", `${l.score}${l.cause ? " (" + l.cause + ")" : ""}`],
        ["fig_since", time(l.since)],
        ["fig_rtt", `${Math.round(s.rtt_ms || 0)} ms`],
        ["fig_loss", `${pct(s.loss_down)} / ${pct(s.loss_up)}`],
        ["fig_jitter", `${(s.jitter_down_ms || 0).toFixed(1)} / ${(s.jitter_up_ms || 0).toFixed(1)} ms`],
        ["fig_bitrate", `${kbps(s.sent_bps)} / ${kbps(s.recv_bps)}`],
        ["fig_estimate", kbps(s.estimate_bps)],
        ["fig_layer", layerName(s.layer) + (s.layer_reason ? " · " + reasonText(s.layer_reason) : "")],
        ["fig_path", s.path ? t("path_" + s.path.replace("-", "_")) : "–"],
        ["fig_video", t("video_figures", { fps: (s.decoded_fps || 0).toFixed(0), freezes: s.freezes || 0, w: s.width || 0, h: s.height || 0 })],
        ["fig_nack", `${s.nacks || 0} / ${s.plis || 0}`],
        ["fig_retrans", `${Math.round((s.retransmitted_b || 0) / 1024)} KiB`],
        ...(l.node ? [["fig_node", l.node]] : []),
      ]
    : [];
  const dl = el("figures");
  dl.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = t(k);
      const dd = document.createElement("dd");
      dd.dataset.fig = k.slice(4);
      dd.textContent = v;
      return [dt, dd];
    }),
  );
}

// drawCharts draws the history as four small uPlot charts sharing the
// time axis: RTT, loss, bitrates and layer.
function drawCharts() {
  for (const c of charts) c.destroy();
  charts = [];
  const box = el("charts");
  box.replaceChildren();
  const h = page.history;
  el("no-history").hidden = h.length > 0;
  if (h.length === 0 || !window.uPlot) return;
  const x = h.map((p) => new Date(p.at).getTime() / 1000);
  const css = (v) => getComputedStyle(document.documentElement).getPropertyValue(v).trim();
  const axis = { stroke: css("--muted"), grid: { stroke: "rgba(255,255,255,.08)" }, ticks: { stroke: "rgba(255,255,255,.15)" } };
  const specs = [
    { title: "chart_rtt", series: [["rtt", h.map((p) => p.rtt_ms), css("--accent")]] },
    { title: "chart_loss", series: [["loss", h.map((p) => 100 * p.loss), css("--poor")]] },
    {
      title: "chart_bitrate",
      series: [
        [t("chart_sent"), h.map((p) => p.sent_bps / 1000), css("--accent")],
        [t("chart_recv"), h.map((p) => p.recv_bps / 1000), css("--good")],
        [t("chart_estimate"), h.map((p) => p.estimate_bps / 1000), css("--fair")],
      ],
    },
    { title: "chart_layer", series: [["layer", h.map((p) => (p.layer < 0 ? null : p.layer)), css("--good")]], layer: true },
  ];
  const width = Math.max(280, box.clientWidth || 480);
  for (const spec of specs) {
    const div = document.createElement("div");
    div.className = "chart";
    div.dataset.chart = spec.title.slice(6);
    box.append(div);
    const opts = {
      title: t(spec.title),
      width,
      height: 140,
      legend: { show: spec.series.length > 1 },
      cursor: { drag: { x: false, y: false } },
      scales: spec.layer ? { y: { range: [-0.2, 2.2] } } : { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [axis, spec.layer ? { ...axis, splits: () => [0, 1, 2], values: (u, v) => v.map((l) => ["q", "h", "f"][l] ?? "") } : axis],
      series: [{}, ...spec.series.map(([label, , color]) => ({ label, stroke: color, width: 1.5, paths: spec.layer ? window.uPlot.paths.stepped({ align: 1 }) : undefined }))],
    };
    charts.push(new window.uPlot(opts, [x, ...spec.series.map(([, data]) => data)], div));
  }
}

function renderEvents() {
  const tbody = el("events");
  const rows = [...page.events].reverse(); // newest first
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 4;
    td.className = "muted";
    td.textContent = t("no_events");
    tr.append(td);
    tbody.replaceChildren(tr);
    return;
  }
  tbody.replaceChildren(
    ...rows.map((e) => {
      const tr = document.createElement("tr");
      tr.className = "event " + e.kind;
      for (const text of [new Date(e.at).toLocaleString(currentLang()), e.kind, e.cause || "", e.detail || ""]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }),
  );
}

// act sends one action for the open bridge and shows its result.
async function act(what, method, path, body) {
  const out = el("action-result");
  out.className = "action-result";
  out.textContent = t("act_sending", { what });
  const result = { what, path, ok: false, status: 0, at: Date.now() };
  page.lastAction = result;
  try {
    result.answer = await api(method, path, body);
    result.ok = true;
    out.textContent = t("act_done", { what });
    out.classList.add("ok");
  } catch (e) {
    Object.assign(result, { status: e.status || 0, code: e.code });
    out.textContent = t("act_failed", { what, msg: errorText(e.code, e.message) });
    out.classList.add("failed");
  }
  result.text = out.textContent;
  loadDetail();
}

function wireActions() {
  for (const button of el("actions").querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => {
      const sel = page.selected;
      if (!sel) return;
      const action = button.dataset.action;
      if (action === "kick" && !confirm(t("kick_confirm", { name: selectedLink()?.name || sel.bridge }))) return;
      const c = encodeURIComponent(sel.conference);
      const b = encodeURIComponent(sel.bridge);
      act(t("act_" + action), "POST", `/api/conferences/${c}/bridges/${b}/actions/${action}`);
    });
  }
  el("max-layer-set").addEventListener("click", () => {
    const sel = page.selected;
    if (!sel) return;
    const layer = el("max-layer").value;
    const c = encodeURIComponent(sel.conference);
    const b = encodeURIComponent(sel.bridge);
    act(`${t("max_layer")}: ${t("layer_" + layer)}`, "PUT", `/api/conferences/${c}/bridges/${b}/max-layer`, { layer });
  });
  el("detail-close").addEventListener("click", closeDetail);
  for (const id of ["sort", "filter-state", "filter-area"]) el(id).addEventListener("change", renderTiles);
}

// --- readiness check ---

// The readiness check of a conference's invited bridges: started here,
// followed until it finishes, its report shown as a table and offered as
// CSV. page.readiness holds the last report seen.
async function loadConferences() {
  const select = el("ready-conf");
  try {
    const confs = await api("GET", "/api/conferences");
    select.replaceChildren(
      ...confs
        .filter((c) => c.state !== "ended")
        .map((c) => {
          const o = document.createElement("option");
          o.value = c.id;
          o.textContent = `${c.title} (${c.id})`;
          return o;
        }),
    );
    if (select.value) followReadiness(select.value, false);
  } catch (e) {
    el("ready-status").textContent = errorText(e.code, e.message);
  }
}

async function followReadiness(conf, started) {
  const status = el("ready-status");
  for (;;) {
    let rep;
    try {
      rep = await api("GET", `/api/conferences/${encodeURIComponent(conf)}/readiness`);
    } catch (e) {
      if (e.status === 404 && !started) status.textContent = t("ready_none");
      else status.textContent = errorText(e.code, e.message);
      return;
    }
    if (el("ready-conf").value !== conf) return; // another conference chosen meanwhile
    page.readiness = rep;
    renderReadiness(rep);
    if (!rep.running) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function renderReadiness(rep) {
  const status = el("ready-status");
  const table = document.querySelector(".ready-table");
  el("ready-run").disabled = rep.running;
  if (rep.running) {
    status.textContent = t("ready_running");
    table.hidden = true;
    el("ready-csv").hidden = true;
    return;
  }
  status.textContent = t("ready_done", { passed: rep.passed, failed: rep.failed, at: time(rep.finished) });
  const yes = (b) => (b === undefined || b === null ? "–" : b ? "✓" : "✗");
  const rows = el("ready-rows");
  rows.replaceChildren(
    ...[...rep.bridges]
      .sort((a, b) => a.pass - b.pass || a.bridge.localeCompare(b.bridge))
      .map((r) => {
        const tr = document.createElement("tr");
        tr.className = "ready-row " + (r.pass ? "pass" : "fail");
        tr.dataset.bridge = r.bridge;
        const cells = [
          r.name || r.bridge,
          r.pass ? t("ready_pass") : t("ready_fail"),
          r.reason || "",
          r.connected ? Math.round(r.rtt_ms) + " ms" : "–",
          r.connected ? pct(r.loss) : "–",
          r.connected ? kbps(r.estimate_bps) : "–",
          r.connected ? kbps(r.headroom_bps) : "–",
          yes(r.camera),
          yes(r.microphone),
        ];
        for (const c of cells) {
          const td = document.createElement("td");
          td.textContent = c;
          tr.append(td);
        }
        return tr;
      }),
  );
  table.hidden = false;
  el("ready-csv").hidden = false;
}

async function downloadReadinessCSV() {
  const conf = el("ready-conf").value;
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(`/api/conferences/${encodeURIComponent(conf)}/readiness?format=csv`, { headers });
  if (!r.ok) return;
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await r.blob());
  a.download = `citybridge-readiness-${conf}.csv`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function wireReadiness() {
  el("ready-run").addEventListener("click", async () => {
    const conf = el("ready-conf").value;
    if (!conf) return;
    try {
      renderReadiness(await api("POST", `/api/conferences/${encodeURIComponent(conf)}/readiness`));
      followReadiness(conf, true);
    } catch (e) {
      el("ready-status").textContent = errorText(e.code, e.message);
    }
  });
  el("ready-conf").addEventListener("change", () => followReadiness(el("ready-conf").value, false));
  el("ready-csv").addEventListener("click", downloadReadinessCSV);
}

apply();
const renderNodes = mountNodes(el("nodes"), (path) => api("GET", path), page);
mountSwitch(el("lang"), () => {
  render();
  renderNodes();
  drawCharts();
  renderEvents();
  if (page.readiness) renderReadiness(page.readiness);
});
wireActions();
wireReadiness();
loadConferences();
startPolling();
openFeed();
