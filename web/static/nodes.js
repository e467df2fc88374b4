// The Nodes panel of the technicians' and administrators' pages: every
// node of a cluster with its health, load and the conferences it serves,
// from GET /api/nodes every few seconds. On one machine it shows this
// server alone, so the panel always has something true to say.
import { t, currentLang, errorText } from "/static/i18n.js";

const REFRESH_MS = 5000;

// mountNodes fills the panel root (holding .nodes-rows, .nodes-status and
// perhaps .nodes-summary) from get("/api/nodes"), the page's own API call
// with its credential, now and every few seconds. The last answer is kept
// in state.nodes (window.citybridge, for tests and diagnostics). A hidden
// panel asks nothing. It returns render, for a change of language.
export function mountNodes(root, get, state) {
  const q = (cls) => root.querySelector("." + cls);
  let error = "";

  function cell(text, cls = "") {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function render() {
    const v = state.nodes;
    const status = q("nodes-status");
    status.textContent = error || (v?.error ? t("nodes_error", { msg: v.error }) : "");
    if (!v) return;
    const nodes = v.nodes || [];
    const ok = nodes.filter((n) => n.health === "ok").length;
    const summary = q("nodes-summary");
    if (summary) summary.textContent = v.mode === "single" ? t("nodes_single") : t("nodes_summary", { n: nodes.length, ok });
    root.classList.toggle("unhealthy", ok < nodes.length);
    q("nodes-rows").replaceChildren(
      ...nodes.map((n) => {
        const tr = document.createElement("tr");
        tr.dataset.node = n.name;
        tr.dataset.health = n.health;
        const health = cell("");
        const badge = document.createElement("span");
        badge.className = "badge health-" + n.health;
        badge.textContent = t("node_health_" + n.health);
        health.append(badge);
        const confs = (n.conferences || []).map((id) => (v.titles?.[id] ? `${v.titles[id]} (${id})` : id));
        tr.append(
          cell(n.self ? `${n.name} ${t("node_this")}` : n.name),
          health,
          cell(n.capacity ? `${n.load}/${n.capacity}` : String(n.load)),
          cell(confs.length ? confs.join(", ") : "–"),
          cell(n.advertise || ""),
          cell(`${new Date(n.started).toLocaleString(currentLang())}${n.version ? " · " + n.version : ""}`, "muted"),
        );
        return tr;
      }),
    );
  }

  async function load() {
    if (root.hidden) return; // logged out, or a role that may not see it
    try {
      state.nodes = await get("/api/nodes");
      error = "";
    } catch (e) {
      error = errorText(e.code, e.message);
    }
    render();
  }

  load();
  setInterval(load, REFRESH_MS);
  return render;
}
