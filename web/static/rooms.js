// The technicians' list of bridge points: presence, and a link that opens
// (provisions) a room terminal for any bridge.
import { apply, mountSwitch, t, errorText } from "/static/i18n.js";
import { readToken } from "/static/client.js";

const el = (id) => document.getElementById(id);
const { token, conference } = readToken();
const page = { conference: null, bridges: [] };
window.citybridge = page;

async function api(method, path) {
  const r = await fetch(path, { method, headers: { Authorization: "Bearer " + token } });
  const body = await r.json();
  if (!r.ok) throw Object.assign(new Error(body.message), { code: body.code });
  return body;
}

function render() {
  const tbody = el("bridges");
  tbody.replaceChildren();
  for (const b of page.bridges) {
    const tr = document.createElement("tr");
    const cells = [b.name, t("kind_" + b.kind), b.area || ""].map((text) => {
      const td = document.createElement("td");
      td.textContent = text;
      return td;
    });
    const state = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = "badge " + b.state;
    badge.textContent = t("state_" + b.state);
    state.append(badge);
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.textContent = t("open_terminal");
    button.addEventListener("click", () => openTerminal(b));
    action.append(button);
    tr.append(...cells, state, action);
    tbody.append(tr);
  }
}

async function openTerminal(b) {
  // Open the tab first: browsers allow pop-ups only during the click.
  const tab = window.open("about:blank", "_blank");
  try {
    const link = await api("POST", `/api/bridges/${encodeURIComponent(b.id)}/terminal-links`);
    const url = link.path + "&c=" + encodeURIComponent(page.conference.id);
    if (tab) tab.location = url;
    else location.href = url;
  } catch (e) {
    tab?.close();
    el("notice").textContent = t("link_failed", { msg: errorText(e.code, e.message) });
  }
}

async function refresh() {
  try {
    if (!page.conference) {
      const list = await api("GET", "/api/conferences");
      page.conference = list.find((c) => c.id === conference) || list[0];
      if (!page.conference) return;
      el("conference-title").textContent = page.conference.title;
    }
    page.bridges = await api("GET", `/api/conferences/${encodeURIComponent(page.conference.id)}/bridges`);
    el("notice").textContent = "";
    render();
  } catch (e) {
    el("notice").textContent = errorText(e.code, e.message);
  }
}

apply();
mountSwitch(el("lang"), render);
await refresh();
setInterval(refresh, 5000);
