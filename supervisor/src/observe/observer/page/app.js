// The observer's page: the tree from the live stream (/api/events), each process's
// figures over the last minutes, and the log of exits and restarts. Text from the
// server (names, exit reasons, panic messages) only ever goes in as text nodes.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const api = (path) => (token ? `${path}?token=${encodeURIComponent(token)}` : path);

const MAX_LOG = 300;
const SVG = "http://www.w3.org/2000/svg";

const state = {
  snapshot: null,
  // key -> { t: [], rss: [], cpu: [] }
  history: new Map(),
  maxSamples: 300,
  collapsed: new Set(),
  restarts: new Map(),
  events: 0,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// --- formatting -------------------------------------------------------------------

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function percent(p) {
  if (p === null || p === undefined) return "–";
  return `${p < 10 ? p.toFixed(1) : Math.round(p)}%`;
}

function clock(t) {
  const d = new Date(t);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

const KIND_LABEL = {
  root: "root", function: "function", actor: "actor", supervisor: "supervisor",
  pool_worker: "pool worker", forkserver: "forkserver", manager: "manager",
  descendant: "descendant",
};

// --- history ----------------------------------------------------------------------

function series(key) {
  let s = state.history.get(key);
  if (!s) {
    s = { t: [], rss: [], cpu: [] };
    state.history.set(key, s);
  }
  return s;
}

function loadHistory(data) {
  state.history.clear();
  for (const [key, s] of Object.entries(data.processes || {})) {
    state.history.set(key, { t: s.t.slice(), rss: s.rss.slice(), cpu: s.cpu.slice() });
  }
}

function addSamples(snap) {
  const seen = new Set();
  for (const p of snap.processes) {
    if (seen.has(p.key)) continue;
    seen.add(p.key);
    const s = series(p.key);
    if (s.t.length && s.t[s.t.length - 1] >= snap.t) continue;
    s.t.push(snap.t);
    s.rss.push(p.rss_bytes);
    s.cpu.push(p.cpu_percent);
    while (s.t.length > state.maxSamples) { s.t.shift(); s.rss.shift(); s.cpu.shift(); }
  }
  // Processes gone for a whole window are forgotten.
  const horizon = snap.t - state.maxSamples * snap.interval_ms;
  for (const [key, s] of state.history) {
    if (!seen.has(key) && (!s.t.length || s.t[s.t.length - 1] < horizon)) state.history.delete(key);
  }
}

function sparkline(values, kind, format) {
  const w = 76, h = 22, pad = 2;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", `spark ${kind}`);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const nums = values.filter((v) => v !== null && v !== undefined);
  if (nums.length < 2) return svg;
  const max = Math.max(...nums, kind === "cpu" ? 5 : 1);
  const min = kind === "cpu" ? 0 : Math.min(...nums) * 0.9;
  const n = Math.max(values.length, 2);
  const x = (i) => (i * (w - 1)) / (n - 1);
  const y = (v) => h - pad - ((v - min) / (max - min || 1)) * (h - 2 * pad);
  let line = "";
  let first = null, last = null;
  values.forEach((v, i) => {
    if (v === null || v === undefined) return;
    line += `${line ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    if (first === null) first = i;
    last = i;
  });
  const area = document.createElementNS(SVG, "path");
  area.setAttribute("class", "area");
  area.setAttribute("d", `${line}L${x(last).toFixed(1)},${h}L${x(first).toFixed(1)},${h}Z`);
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("class", "line");
  path.setAttribute("d", line);
  const title = document.createElementNS(SVG, "title");
  title.textContent = `last ${values.length} samples: min ${format(Math.min(...nums))}, max ${format(Math.max(...nums))}`;
  svg.append(title, area, path);
  return svg;
}

// --- the tree ---------------------------------------------------------------------

function matches(p, filter, onlySupervised) {
  if (onlySupervised && !p.supervised_as) return false;
  if (!filter) return true;
  const hay = [p.name, p.pid, p.kind, p.supervised_as, p.state, p.node, p.identity]
    .filter((v) => v !== null && v !== undefined).join(" ").toLowerCase();
  return filter.split(/\s+/).every((word) => hay.includes(word));
}

function renderTree(snap) {
  const filter = $("filter").value.trim().toLowerCase();
  const onlySupervised = $("only-supervised").checked;
  const hasKids = new Set(snap.processes.map((p) => p.parent_pid).filter((p) => p !== null));
  const rows = [];
  // A collapsed process hides the processes below it, down to the next at its depth.
  let hideBelow = null;
  for (const p of snap.processes) {
    if (hideBelow !== null) {
      if (p.depth > hideBelow) continue;
      hideBelow = null;
    }
    const parent = p.pid !== null && hasKids.has(p.pid);
    const collapsed = parent && state.collapsed.has(p.key);
    if (collapsed) hideBelow = p.depth;
    if (!matches(p, filter, onlySupervised)) continue;
    rows.push(row(p, parent, collapsed));
  }
  // Mailbox depths are shown once some process reports one.
  $("tree").classList.toggle("no-mailbox", !snap.processes.some((p) => p.mailbox_depth !== null));
  const body = $("rows");
  if (!rows.length) {
    rows.push(el("tr", { class: "empty" }, el("td", { colspan: 13, text: "No process matches the filter." })));
  }
  body.replaceChildren(...rows);
}

function row(p, parent, collapsed) {
  const before = state.restarts.get(p.key);
  state.restarts.set(p.key, p.restarts);
  const s = state.history.get(p.key) || { rss: [], cpu: [] };

  const caret = el("span", {
    class: parent ? "caret" : "caret leaf",
    title: parent ? (collapsed ? "expand" : "collapse") : null,
    text: parent ? (collapsed ? "▸" : "▾") : "",
  });
  if (parent) {
    caret.addEventListener("click", () => {
      if (state.collapsed.has(p.key)) state.collapsed.delete(p.key);
      else state.collapsed.add(p.key);
      renderTree(state.snapshot);
    });
  }
  const name = el("span", { class: "name" });
  name.style.paddingLeft = `${p.depth * 18}px`;
  name.append(caret, el("b", { text: p.name }));
  if (p.supervised_as) name.append(el("span", { class: "spec", text: p.supervised_as }));
  if (p.node) name.append(el("span", { class: "node", text: p.node }));

  let exit = "–";
  if (p.last_exit) {
    exit = el("span", {
      class: `exit ${p.last_exit_code === 0 ? "ok" : "bad"}`,
      title: p.last_exit,
      text: p.last_exit,
    });
  }
  const restarts = el("td", { class: `num restarts${p.restarts ? " some" : ""}`, "data-field": "restarts", text: p.restarts });
  if (before !== undefined && p.restarts > before) restarts.classList.add("flash");

  const tr = el(
    "tr",
    {
      "data-key": p.key,
      "data-name": p.name,
      "data-pid": p.pid ?? "",
      "data-kind": p.kind,
      "data-state": p.state,
      "data-spec": p.supervised_as ?? null,
      class: p.kind === "descendant" ? "dim" : null,
    },
    el("td", { "data-field": "name" }, name),
    el("td", {}, el("span", { class: `kind ${p.kind}`, text: KIND_LABEL[p.kind] || p.kind })),
    el("td", { class: "num", "data-field": "pid", text: p.pid ?? "–" }),
    el("td", { "data-field": "state" }, el("span", { class: `state ${p.state}`, text: p.state })),
    restarts,
    el("td", { "data-field": "last-exit" }, exit),
    el("td", { class: "num", "data-field": "served", text: p.calls_served ?? "–" }),
    el("td", { class: "num mailbox", "data-field": "mailbox", text: p.mailbox_depth ?? "–" }),
    el("td", { class: "num", "data-field": "uptime", text: duration(p.uptime_ms) }),
    el("td", { class: "num", "data-field": "rss", text: bytes(p.rss_bytes) }),
    el("td", { class: "spark" }, sparkline(s.rss, "mem", bytes)),
    el("td", { class: "num", "data-field": "cpu", text: percent(p.cpu_percent) }),
    el("td", { class: "spark" }, sparkline(s.cpu, "cpu", percent)),
  );
  return tr;
}

function renderStats(snap) {
  const ps = snap.processes;
  const count = (st) => ps.filter((p) => p.state === st).length;
  const restarts = ps.reduce((a, p) => a + p.restarts, 0);
  const rss = ps.reduce((a, p) => a + (p.rss_bytes || 0), 0);
  const cpu = ps.reduce((a, p) => a + (p.cpu_percent || 0), 0);
  $("stat-processes").textContent = ps.length;
  $("stat-running").textContent = count("running");
  $("stat-restarting").textContent = count("restarting");
  $("stat-restarting").classList.toggle("warn", count("restarting") > 0);
  $("stat-restarts").textContent = restarts;
  $("stat-restarts").classList.toggle("warn", restarts > 0);
  $("stat-rss").textContent = bytes(rss);
  $("stat-cpu").textContent = percent(cpu);
  $("program").textContent = snap.program;
  document.title = `${snap.program} · multiproc observer`;
  $("updated").textContent = `updated ${clock(snap.t).slice(0, 8)}`;
  const window = Math.round((state.maxSamples * snap.interval_ms) / 60000);
  $("window").textContent = `sparklines: last ${window} min, every ${snap.interval_ms / 1000}s`;
}

function onSnapshot(snap) {
  if (snap.history_ms && snap.interval_ms) {
    state.maxSamples = Math.max(2, Math.round(snap.history_ms / snap.interval_ms));
  }
  state.snapshot = snap;
  addSamples(snap);
  renderStats(snap);
  renderTree(snap);
}

// --- the log ----------------------------------------------------------------------

const KIND_TEXT = {
  exit: "exit", started: "started", restarting: "restarting", restarted: "restarted",
  restart_failed: "restart failed", intensity_exceeded: "intensity exceeded",
  supervisor_down: "supervisor ended",
};

function logEntry(e, fresh) {
  const li = el(
    "li",
    {
      class: `${e.level}${fresh ? " new" : ""}`,
      "data-kind": e.kind,
      "data-level": e.level,
      "data-seq": e.seq,
      "data-name": e.name ?? null,
      "data-spec": e.spec ?? null,
      "data-reason": e.reason ?? null,
    },
    el("time", { datetime: new Date(e.t).toISOString(), text: clock(e.t) }),
    el("span", { class: "what", text: KIND_TEXT[e.kind] || e.kind }),
    el("span", { class: "text", text: e.text }),
  );
  if ($("hide-info").checked && e.level === "info") li.hidden = true;
  return li;
}

function addEvents(events, fresh) {
  const log = $("log");
  const placeholder = log.querySelector(".empty");
  if (placeholder && events.length) placeholder.remove();
  for (const e of events) {
    log.prepend(logEntry(e, fresh));
    state.events++;
  }
  while (log.children.length > MAX_LOG) log.lastElementChild.remove();
  $("event-count").textContent = state.events ? `${state.events}` : "";
}

function emptyLog() {
  $("log").replaceChildren(el("li", { class: "empty", text: "No exits or restarts yet." }));
  state.events = 0;
  $("event-count").textContent = "";
}

// --- the stream -------------------------------------------------------------------

function setConn(s, text) {
  $("conn").dataset.state = s;
  $("conn-text").textContent = text;
}

function connect() {
  const source = new EventSource(api("/api/events"));
  source.addEventListener("open", () => setConn("live", "live"));
  source.addEventListener("error", () => {
    setConn(source.readyState === EventSource.CLOSED ? "lost" : "connecting",
      source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
  });
  source.addEventListener("history", (m) => loadHistory(JSON.parse(m.data)));
  source.addEventListener("backlog", (m) => {
    emptyLog();
    addEvents(JSON.parse(m.data), false);
  });
  source.addEventListener("snapshot", (m) => onSnapshot(JSON.parse(m.data)));
  source.addEventListener("event", (m) => addEvents([JSON.parse(m.data)], true));
}

function rerender() {
  if (state.snapshot) renderTree(state.snapshot);
}

$("filter").addEventListener("input", rerender);
$("only-supervised").addEventListener("change", rerender);
$("hide-info").addEventListener("change", () => {
  const hide = $("hide-info").checked;
  for (const li of $("log").children) {
    if (li.dataset.level === "info") li.hidden = hide;
  }
});
emptyLog();
connect();
