// The administration page: log in (administrators, hosts, technicians);
// then, by role, the conferences (open the console, change their state),
// the bridge registry (CSV import with its per-row report, export) and
// the logins. Every action is a call to the JSON API, which decides.
import { apply, mountSwitch, t } from "/static/i18n.js";
import { mountNodes } from "/static/nodes.js";

const el = (id) => document.getElementById(id);
const page = { me: null, conferences: [], users: [], bridges: 0, report: null, recordings: {} };
window.citybridge = page;

async function api(method, path, body, type = "application/json") {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = type === "application/json" ? JSON.stringify(body) : body;
    init.headers["Content-Type"] = type;
  }
  const r = await fetch(path, init);
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok && r.status !== 422) throw Object.assign(new Error(data?.message || r.statusText), { code: data?.code, status: r.status });
  return data;
}

function notice(msg) {
  el("notice").textContent = msg || "";
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function button(label, onClick, cls = "") {
  const b = document.createElement("button");
  b.textContent = label;
  b.className = cls;
  b.type = "button";
  b.addEventListener("click", () => onClick().catch((e) => notice(e.message)));
  return b;
}

const nextStates = { scheduled: ["open", "ended"], open: ["live", "ended"], live: ["ended"], ended: [] };

function render() {
  const me = page.me;
  el("login").hidden = !!me;
  el("logout").hidden = !me;
  el("who").textContent = me ? `${me.user} · ${t("role_" + me.role)}` : "";
  const admin = me?.role === "admin";
  el("conferences").hidden = !me;
  el("new-conference").hidden = !(admin || me?.role === "host");
  el("bridges").hidden = !(admin || me?.role === "technician");
  el("import").hidden = !admin;
  el("users").hidden = !admin;
  el("nodes").hidden = !(admin || me?.role === "technician");
  el("bridge-count").textContent = page.bridges ? t("bridge_count", { n: page.bridges }) : "";
  el("conference-rows").replaceChildren(
    ...page.conferences.map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.conference = c.id;
      const actions = document.createElement("td");
      if (me?.role === "host") {
        const a = document.createElement("a");
        a.href = `/host#c=${encodeURIComponent(c.id)}`;
        a.textContent = t("open_console");
        actions.append(a, " ");
      }
      if (me?.role === "technician" || admin) {
        const a = document.createElement("a");
        a.href = `/rooms#c=${encodeURIComponent(c.id)}`;
        a.textContent = t("title_rooms");
        actions.append(a, " ");
      }
      if ((admin || me?.role === "host") && c.state !== "ended") {
        // Recorded automatically when it goes live: a checkbox that
        // changes the conference (its whole record, as PUT wants it).
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.className = "auto-record";
        box.checked = !!c.auto_record;
        box.addEventListener("change", async () => {
          try {
            const conf = await api("GET", `/api/conferences/${encodeURIComponent(c.id)}`);
            await api("PUT", `/api/conferences/${encodeURIComponent(c.id)}`, {
              title: conf.title, start: conf.start, end: conf.end,
              all_bridges: conf.all_bridges, bridges: conf.bridges, auto_record: box.checked,
            });
            await load();
          } catch (e) {
            box.checked = !box.checked;
            notice(e.message);
          }
        });
        label.append(box, " ", t("auto_record"));
        actions.append(label, " ");
      }
      if (admin || me?.role === "host") {
        for (const st of nextStates[c.state] || []) {
          actions.append(button(t("to_state_" + st), async () => {
            await api("POST", `/api/conferences/${c.id}/state`, { state: st });
            await load();
          }, st === "ended" ? "danger" : ""));
        }
      }
      tr.append(cell(c.title), cell(t("conf_state_" + c.state)), cell(String(c.invited)), actions);
      return tr;
    }),
  );
  renderRecordings(admin);
  el("user-rows").replaceChildren(
    ...page.users.map((u) => {
      const tr = document.createElement("tr");
      tr.dataset.user = u.name;
      const actions = document.createElement("td");
      if (u.name !== me?.user) {
        actions.append(button(t("remove"), async () => {
          await api("DELETE", `/api/users/${encodeURIComponent(u.name)}`);
          await load();
        }, "quiet"));
      }
      tr.append(cell(u.name), cell(t("role_" + u.role)), cell(u.display || ""), actions);
      return tr;
    }),
  );
  const rep = el("import-report");
  rep.hidden = !page.report;
  if (page.report) {
    const r = page.report;
    const lines = [t("import_result", { added: r.added, updated: r.updated, unchanged: r.unchanged, bad: r.errors.length })];
    for (const e of r.errors) lines.push(t("import_row", { line: e.line, error: e.error }));
    if (r.errors.length && !r.imported) lines.push(t("import_nothing"));
    rep.textContent = lines.join("\n");
  }
}

function size(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (bytes >= 1000 && i < units.length - 1) {
    bytes /= 1000;
    i++;
  }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// renderRecordings lists each conference's recordings (administrators and
// hosts: the API answers a conference's chair and the administrators):
// how many files and how large, each file's download link (the segments,
// then the minutes video, named as such), and for an
// administrator a delete button (refused by the server while recording).
function renderRecordings(admin) {
  const me = page.me;
  el("recordings").hidden = !(admin || me?.role === "host");
  el("recording-rows").replaceChildren(
    ...page.conferences.filter((c) => page.recordings[c.id]).map((c) => {
      const rec = page.recordings[c.id];
      const tr = document.createElement("tr");
      tr.dataset.conference = c.id;
      const files = document.createElement("td");
      if (!rec.files) {
        files.textContent = t("rec_none");
      } else {
        const details = document.createElement("details");
        const summary = document.createElement("summary");
        summary.textContent = t("rec_files", { n: rec.files, size: size(rec.bytes) }) + (rec.recording ? ` · ${t("rec_recording")}` : "");
        const list = document.createElement("ul");
        for (const s of [...rec.segments, ...rec.minutes]) {
          const li = document.createElement("li");
          const a = document.createElement("a");
          a.href = s.url;
          a.download = s.file;
          a.textContent = s.file;
          const what = s.kind === "minutes" ? ` · ${t("rec_minutes", { min: Math.round(s.duration_ms / 60000) })}` : "";
          li.append(a, ` · ${size(s.bytes)}` + what + (s.by ? ` · ${t("rec_by", { by: s.by })}` : ""));
          li.title = `SHA-256 ${s.sha256}`;
          list.append(li);
        }
        details.append(summary, list);
        files.append(details);
      }
      const actions = document.createElement("td");
      if (admin && rec.files) {
        actions.append(button(t("rec_delete"), async () => {
          if (!confirm(t("rec_confirm_delete", { title: c.title }))) return;
          await api("DELETE", `/api/conferences/${encodeURIComponent(c.id)}/recordings`);
          await load();
        }, "danger"));
      }
      tr.append(cell(c.title), files, actions);
      return tr;
    }),
  );
}

async function load() {
  try {
    page.me = await api("GET", "/api/me");
  } catch {
    page.me = null;
    render();
    return;
  }
  page.conferences = await api("GET", "/api/conferences").catch(() => []);
  if (page.me.role === "admin") page.users = await api("GET", "/api/users");
  if (page.me.role !== "room") page.bridges = (await api("GET", "/api/bridges").catch(() => [])).length;
  page.recordings = {};
  if (page.me.role === "admin" || page.me.role === "host") {
    await Promise.all(page.conferences.map(async (c) => {
      page.recordings[c.id] = await api("GET", `/api/conferences/${encodeURIComponent(c.id)}/recordings`).catch(() => null);
    }));
  }
  render();
  if ((page.me.role === "admin" || page.me.role === "technician") && !renderNodes) {
    renderNodes = mountNodes(el("nodes"), (path) => api("GET", path), page);
  }
}

// renderNodes redraws the Nodes panel, once it is mounted (for the roles
// that may see it).
let renderNodes = null;

el("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await api("POST", "/api/login", { name: el("login-name").value.trim(), password: el("login-password").value });
    el("login-password").value = "";
    notice("");
    await load();
  } catch (err) {
    notice(err.status === 429 ? t("too_many_logins") : t("bad_login"));
  }
});
el("logout").addEventListener("click", async () => {
  await api("POST", "/api/logout").catch(() => {});
  page.me = null;
  render();
});
el("new-conference").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await api("POST", "/api/conferences", {
      title: el("conference-title-input").value.trim(),
      all_bridges: true,
      auto_record: el("conference-auto-record").checked,
    });
    el("conference-title-input").value = "";
    el("conference-auto-record").checked = false;
    await load();
  } catch (err) {
    notice(err.message);
  }
});
el("import").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = el("import-file").files[0];
  if (!file) return;
  const partial = el("import-partial").checked ? "?partial=1" : "";
  try {
    const res = await api("POST", "/api/bridges/import" + partial, await file.text(), "text/csv");
    res.imported = !(res.errors.length && !partial);
    page.report = res;
    await load();
  } catch (err) {
    notice(err.message);
  }
});
el("new-user").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await api("POST", "/api/users", {
      name: el("user-name").value.trim(),
      role: el("user-role").value,
      display: el("user-display").value.trim(),
      password: el("user-password").value,
    });
    for (const id of ["user-name", "user-display", "user-password"]) el(id).value = "";
    notice("");
    await load();
  } catch (err) {
    notice(err.message);
  }
});

apply();
mountSwitch(el("lang"), () => {
  render();
  renderNodes?.();
});
load();
