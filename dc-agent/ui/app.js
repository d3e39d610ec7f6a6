// Isthmus web UI: Consul's views (services, nodes, key/value, sessions, the agent) per
// datacenter, and a federation view. It talks only to the public /v1 API of the agent that
// serves it; every list stays current with one blocking query (or, for endpoints without
// an index, a poll every 2 s). No framework, no build step, no outside requests.
"use strict";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const dcSelect = document.getElementById("dc");
const tokenInput = document.getElementById("token");
const notice = document.getElementById("notice");
const enc = encodeURIComponent;
const WAIT = "60s";
// Lists wait less: a catalog change that brings no check (rare) shows within this.
const LIST_WAIT = "20s";
let viewAbort = null;
let localDc = null;
let datacenters = [];

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// ---------- helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k === "style") el.style.cssText = v; // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function keyPath(key) { return key.split("/").map(enc).join("/"); }

function query(path, params) {
  const parts = [];
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === false || v === 0 && k === "index") continue;
    parts.push(v === true ? enc(k) : enc(k) + "=" + enc(v));
  }
  return parts.length ? path + (path.includes("?") ? "&" : "?") + parts.join("&") : path;
}

function token() { return localStorage.getItem("isthmus-token") || ""; }

async function api(path, opts) {
  opts = opts || {};
  const headers = {};
  if (token()) headers["X-Consul-Token"] = token();
  const res = await fetch(path, { method: opts.method || "GET", headers, body: opts.body, signal: opts.signal });
  const text = await res.text();
  const index = Number(res.headers.get("X-Consul-Index") || 0);
  if (res.status === 403) {
    throw new ApiError(403, "Permission denied: the ACL token " + (token() ? "given" : "(none given)") +
      " may not do this. " + text.trim());
  }
  if (!res.ok && !(opts.allow404 && res.status === 404)) {
    throw new ApiError(res.status, (text.trim() || res.statusText) + " (" + res.status + ")");
  }
  let body = null;
  if (res.status !== 404 && text) {
    try { body = JSON.parse(text); } catch (_) { body = text; }
  }
  return { status: res.status, index, body };
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

function showNotice(text, ok) {
  notice.textContent = text;
  notice.className = ok ? "ok" : "";
  notice.hidden = false;
}
function clearNotice() { notice.hidden = true; notice.textContent = ""; }

// Loads with blocking queries until the view changes: `load(index, signal)` returns
// `{index, ...}`; `render(result)` draws it. Endpoints with no index are polled.
async function live(signal, load, render, pollMs) {
  let index = 0;
  let backoff = 500;
  while (!signal.aborted) {
    try {
      const result = await load(index, signal);
      if (signal.aborted) return;
      render(result);
      if (notice.dataset.from === "live") { clearNotice(); delete notice.dataset.from; }
      backoff = 500;
      if (!result.index || pollMs) { await sleep(pollMs || 2000, signal); index = 0; continue; }
      index = result.index < index ? 0 : result.index;
    } catch (e) {
      if (signal.aborted || e.name === "AbortError") return;
      showNotice(e.message);
      notice.dataset.from = "live";
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 10000);
    }
  }
}

function statusOf(checks) {
  let worst = "passing";
  for (const c of checks || []) {
    if (c.Status === "critical") return "critical";
    if (c.Status === "warning") worst = "warning";
  }
  return worst;
}

function statusCell(status) { return h("span", { class: "status " + status, text: status }); }
function tags(list) { return (list || []).map((t) => h("span", { class: "tag", text: t })); }
function liveMark() { return h("span", { class: "live", text: " · live" }); }

function decodeValue(b64) {
  if (b64 === null || b64 === undefined) return { text: "", binary: false };
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    // eslint-disable-next-line no-control-regex
    return { text, binary: /[\x00-\x08\x0e-\x1f]/.test(text) };
  } catch (_) {
    return { text: b64, binary: true };
  }
}

function encodeText(text) { return new TextEncoder().encode(text); }

// ---------- routing ----------

function route() {
  const rest = location.pathname.replace(/^\/ui\/?/, "");
  const parts = rest.split("/");
  if (parts[0] === "federation") return { view: "federation" };
  const dc = parts[0] ? decodeURIComponent(parts[0]) : null;
  const section = parts[1] || "services";
  const tail = parts.slice(2).map(decodeURIComponent).join("/");
  return { view: section, dc, tail };
}

function go(path) {
  history.pushState({}, "", path);
  render();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (!a || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
  const href = a.getAttribute("href");
  if (href && href.startsWith("/ui/")) { e.preventDefault(); go(href); }
});
window.addEventListener("popstate", render);

dcSelect.addEventListener("change", () => {
  const r = route();
  const section = r.view === "federation" ? "services" : r.view;
  go("/ui/" + enc(dcSelect.value) + "/" + section + "/");
});

tokenInput.value = token();
tokenInput.addEventListener("change", () => {
  if (tokenInput.value) localStorage.setItem("isthmus-token", tokenInput.value);
  else localStorage.removeItem("isthmus-token");
  if (localDc) render(); else start();
});

function drawNav(r) {
  const dc = r.dc || localDc;
  const items = [["services", "Services"], ["nodes", "Nodes"], ["kv", "Key/Value"],
    ["sessions", "Sessions"], ["agent", "Agent"]];
  nav.replaceChildren(
    ...items.map(([s, label]) => h("a", {
      href: "/ui/" + enc(dc) + "/" + s + "/",
      "aria-current": r.view === s ? "page" : null, text: label,
    })),
    h("a", { href: "/ui/federation", "aria-current": r.view === "federation" ? "page" : null, text: "Federation" }),
  );
  dcSelect.replaceChildren(...datacenters.map((d) => h("option", { value: d, selected: d === dc, text: d })));
}

async function render() {
  if (viewAbort) viewAbort.abort();
  viewAbort = new AbortController();
  const signal = viewAbort.signal;
  clearNotice();
  const r = route();
  if (r.view !== "federation" && !r.dc) {
    history.replaceState({}, "", "/ui/" + enc(localDc) + "/services/");
    return render();
  }
  drawNav(r);
  main.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
  const views = { services, nodes, kv, sessions, agent, federation };
  const view = views[r.view];
  if (!view) {
    main.replaceChildren(h("h1", { text: "Not found" }), h("p", { text: "No view at " + location.pathname }));
    return;
  }
  main.focus({ preventScroll: true });
  view(r, signal);
}

// ---------- views ----------

function services(r, signal) {
  if (r.tail) return service(r, signal);
  const filter = h("input", { type: "search", placeholder: "Filter by name or tag", "aria-label": "Filter services" });
  const body = h("tbody");
  const heading = h("h1", {}, "Services", liveMark());
  main.replaceChildren(heading, h("div", { class: "toolbar" }, filter),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      h("th", { text: "Service" }), h("th", { text: "Health" }), h("th", { text: "Instances" }),
      h("th", { class: "hide-narrow", text: "Tags" }))), body)));
  let rows = [];
  const draw = () => {
    const f = filter.value.trim().toLowerCase();
    body.replaceChildren(...rows
      .filter((s) => !f || s.name.toLowerCase().includes(f) || s.tags.some((t) => t.toLowerCase().includes(f)))
      .map((s) => h("tr", { "data-service": s.name },
        h("td", {}, h("a", { href: "/ui/" + enc(r.dc) + "/services/" + enc(s.name), text: s.name })),
        h("td", {}, statusCell(s.status), " ", h("span", { class: "muted", text: s.summary })),
        h("td", { text: String(s.instances) }),
        h("td", { class: "hide-narrow" }, tags(s.tags)))));
  };
  filter.addEventListener("input", draw);
  live(signal, async (index, signal) => {
    // One blocking query on every check's state (it moves with health and with
    // registrations that bring checks); each change reloads the list and each service's health.
    const trigger = await api(query("/v1/health/state/any", { dc: r.dc, index, wait: index ? LIST_WAIT : null }), { signal });
    const list = await api(query("/v1/catalog/services", { dc: r.dc }), { signal });
    const names = Object.keys(list.body || {}).sort();
    const health = await Promise.all(names.map((n) =>
      api(query("/v1/health/service/" + enc(n), { dc: r.dc }), { signal })));
    return {
      index: trigger.index,
      rows: names.map((n, i) => {
        const entries = health[i].body || [];
        const counts = { passing: 0, warning: 0, critical: 0 };
        for (const e of entries) counts[statusOf(e.Checks)]++;
        const status = counts.critical ? "critical" : counts.warning ? "warning" : "passing";
        const summary = Object.entries(counts).filter(([, n]) => n).map(([s, n]) => n + " " + s).join(", ");
        return { name: n, tags: list.body[n] || [], instances: entries.length, status, summary };
      }),
    };
  }, (result) => { rows = result.rows; draw(); });
}

function service(r, signal) {
  const name = r.tail.replace(/\/$/, "");
  const body = h("tbody");
  const count = h("span", { class: "muted" });
  main.replaceChildren(h("p", {}, h("a", { href: "/ui/" + enc(r.dc) + "/services/", text: "← Services" })),
    h("h1", {}, name, " ", count, liveMark()),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      h("th", { text: "Instance" }), h("th", { text: "Node" }), h("th", { text: "Address" }),
      h("th", { text: "Health" }), h("th", { text: "Checks" }))), body)));
  live(signal, (index, signal) =>
    api(query("/v1/health/service/" + enc(name), { dc: r.dc, index, wait: index ? WAIT : null }), { signal }),
  (result) => {
    const entries = result.body || [];
    count.textContent = "(" + entries.length + " instance" + (entries.length === 1 ? "" : "s") + ")";
    body.replaceChildren(...entries.map((e) => {
      const address = (e.Service.Address || e.Node.Address) + (e.Service.Port ? ":" + e.Service.Port : "");
      return h("tr", { "data-instance": e.Service.ID },
        h("td", {}, e.Service.ID, h("div", {}, tags(e.Service.Tags))),
        h("td", {}, h("a", { href: "/ui/" + enc(r.dc) + "/nodes/" + enc(e.Node.Node), text: e.Node.Node })),
        h("td", { text: address }),
        h("td", {}, statusCell(statusOf(e.Checks))),
        h("td", {}, (e.Checks || []).map((c) => h("div", { class: "check" },
          statusCell(c.Status), " ", c.Name || c.CheckID,
          c.Output ? h("pre", { text: c.Output }) : null))));
    }));
  });
}

function vivaldiMs(a, b) {
  if (!a || !b) return null;
  let sum = 0;
  for (let i = 0; i < a.Vec.length; i++) sum += (a.Vec[i] - b.Vec[i]) ** 2;
  let rtt = Math.sqrt(sum) + a.Height + b.Height;
  const adjusted = rtt + a.Adjustment + b.Adjustment;
  if (adjusted > 0) rtt = adjusted;
  return rtt * 1000;
}

function nodes(r, signal) {
  if (r.tail) return node(r, signal);
  const body = h("tbody");
  main.replaceChildren(h("h1", {}, "Nodes", liveMark()),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      h("th", { text: "Node" }), h("th", { text: "Address" }), h("th", { text: "Health" }),
      h("th", { text: "Round trip from this agent" }), h("th", { class: "hide-narrow", text: "Meta" }))), body)));
  live(signal, async (index, signal) => {
    // One blocking query on every check's state (node health moves it, and so does a node
    // joining with its serfHealth check); the node list comes with each change.
    const checks = await api(query("/v1/health/state/any", { dc: r.dc, index, wait: index ? LIST_WAIT : null }), { signal });
    const [list, coords, self] = await Promise.all([
      api(query("/v1/catalog/nodes", { dc: r.dc }), { signal }),
      r.dc === localDc ? api("/v1/coordinate/nodes", { signal }) : Promise.resolve({ body: [] }),
      api("/v1/agent/self", { signal }),
    ]);
    return { index: checks.index, nodes: list.body || [], checks: checks.body || [], coords: coords.body || [], self: self.body };
  }, (res) => {
    const mine = res.coords.find((c) => c.Node === res.self.Config.NodeName);
    body.replaceChildren(...res.nodes.map((n) => {
      const nodeChecks = res.checks.filter((c) => c.Node === n.Node && !c.ServiceID);
      const coord = res.coords.find((c) => c.Node === n.Node);
      const rtt = mine && coord ? vivaldiMs(mine.Coord, coord.Coord) : null;
      return h("tr", { "data-node": n.Node },
        h("td", {}, h("a", { href: "/ui/" + enc(r.dc) + "/nodes/" + enc(n.Node), text: n.Node })),
        h("td", { text: n.Address }),
        h("td", {}, statusCell(statusOf(nodeChecks))),
        h("td", { text: rtt === null ? "—" : rtt.toFixed(2) + " ms" }),
        h("td", { class: "hide-narrow" }, tags(Object.entries(n.Meta || {}).map(([k, v]) => k + "=" + v))));
    }));
  });
}

function node(r, signal) {
  const name = r.tail.replace(/\/$/, "");
  const services = h("tbody");
  const checks = h("tbody");
  const info = h("p", { class: "muted" });
  main.replaceChildren(h("p", {}, h("a", { href: "/ui/" + enc(r.dc) + "/nodes/", text: "← Nodes" })),
    h("h1", {}, name, liveMark()), info,
    h("h2", { text: "Services" }), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      h("th", { text: "Service" }), h("th", { text: "ID" }), h("th", { text: "Port" }), h("th", { text: "Tags" }))), services)),
    h("h2", { text: "Checks" }), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      h("th", { text: "Check" }), h("th", { text: "Status" }), h("th", { text: "Service" }), h("th", { text: "Output" }))), checks)));
  live(signal, async (index, signal) => {
    const n = await api(query("/v1/catalog/node/" + enc(name), { dc: r.dc, index, wait: index ? WAIT : null }), { signal });
    const c = await api(query("/v1/health/node/" + enc(name), { dc: r.dc }), { signal });
    return { index: n.index, node: n.body, checks: c.body || [] };
  }, (res) => {
    if (!res.node) { info.textContent = "No such node in " + r.dc + "."; services.replaceChildren(); checks.replaceChildren(); return; }
    const meta = Object.entries(res.node.Node.Meta || {}).map(([k, v]) => k + "=" + v).join(", ");
    info.textContent = res.node.Node.Address + (meta ? " · " + meta : "");
    services.replaceChildren(...Object.values(res.node.Services || {}).map((s) => h("tr", {},
      h("td", {}, h("a", { href: "/ui/" + enc(r.dc) + "/services/" + enc(s.Service), text: s.Service })),
      h("td", { text: s.ID }), h("td", { text: String(s.Port || "") }), h("td", {}, tags(s.Tags)))));
    checks.replaceChildren(...res.checks.map((c) => h("tr", {},
      h("td", { text: c.Name || c.CheckID }), h("td", {}, statusCell(c.Status)),
      h("td", { text: c.ServiceName || "" }), h("td", {}, c.Output ? h("pre", { text: c.Output }) : ""))));
  });
}

function kv(r, signal) {
  const path = r.tail;
  if (path && !path.endsWith("/")) return kvKey(r, path, signal);
  const crumbs = [h("a", { href: "/ui/" + enc(r.dc) + "/kv/", text: "Key/Value" })];
  let acc = "";
  for (const part of path.split("/").filter(Boolean)) {
    acc += part + "/";
    crumbs.push(" / ", h("a", { href: "/ui/" + enc(r.dc) + "/kv/" + keyPath(acc), text: part }));
  }
  const list = h("tbody");
  const name = h("input", { id: "new-key", "aria-label": "New key name", placeholder: "name (end with / for a folder)", required: true });
  const value = h("textarea", { id: "new-value", "aria-label": "New key value" });
  const form = h("form", { class: "create" },
    h("h2", { text: "Create" }),
    h("div", { class: "row" }, h("label", {}, path || "(root)", " ", name)),
    h("div", { class: "row" }, value),
    h("button", { type: "submit", text: "Create" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const full = path + name.value.trim();
    try {
      const res = await api(query("/v1/kv/" + keyPath(full), { dc: r.dc, cas: 0 }),
        { method: "PUT", body: full.endsWith("/") ? "" : encodeText(value.value) });
      if (res.body === false) { showNotice(full + " already exists."); return; }
      go("/ui/" + enc(r.dc) + "/kv/" + keyPath(full));
    } catch (err) { showNotice(err.message); }
  });
  main.replaceChildren(h("h1", {}, ...crumbs, liveMark()),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", { text: "Key" }))), list)), form);
  live(signal, (index, signal) =>
    api(query("/v1/kv/" + keyPath(path), { dc: r.dc, keys: true, separator: "/", index, wait: index ? WAIT : null }),
      { signal, allow404: true }),
  (res) => {
    const keys = (res.body || []).filter((k) => k !== path);
    list.replaceChildren(...(keys.length ? keys.map((k) => h("tr", { "data-key": k }, h("td", {},
      h("a", { href: "/ui/" + enc(r.dc) + "/kv/" + keyPath(k), text: k.slice(path.length) })))) :
      [h("tr", {}, h("td", { class: "muted", text: "Nothing here yet." }))]));
  });
}

function kvKey(r, key, signal) {
  const folder = key.includes("/") ? key.slice(0, key.lastIndexOf("/") + 1) : "";
  const shown = h("pre", { id: "kv-value" });
  const meta = h("p", { class: "muted" });
  const asBase64 = h("input", { type: "checkbox", id: "as-base64" });
  const editor = h("textarea", { id: "kv-editor", "aria-label": "Value" });
  const flags = h("input", { id: "kv-flags", type: "number", min: "0", "aria-label": "Flags", style: "width: 8rem" });
  const changed = h("p", { class: "muted", id: "kv-changed" });
  let editIndex = null;
  let entry = null;
  // The text this page saved, until the key is seen holding it: then the edit goes on from
  // that version (a write by anyone else in between keeps the older one, and is refused).
  let pending = null;
  const adopt = () => {
    if (pending !== null && entry && decodeValue(entry.Value).text === pending && entry.ModifyIndex > editIndex) {
      editIndex = entry.ModifyIndex;
      pending = null;
      changed.textContent = "";
    }
  };
  const save = h("button", { type: "submit", id: "kv-save", text: "Save" });
  const del = h("button", { type: "button", class: "danger", id: "kv-delete", text: "Delete" });
  const form = h("form", {}, h("h2", { text: "Edit" }), editor,
    h("div", { class: "row" }, h("label", {}, "Flags ", flags)), changed,
    h("div", { class: "toolbar" }, save, del));
  const showValue = () => {
    if (!entry) return;
    const v = decodeValue(entry.Value);
    shown.textContent = asBase64.checked || v.binary ? (entry.Value || "") : v.text;
  };
  asBase64.addEventListener("change", showValue);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = editor.value;
    if (entry && decodeValue(entry.Value).binary && text === "") {
      showNotice("This value is binary (shown as base64 above): type a replacement to save one.");
      return;
    }
    save.disabled = true;
    try {
      // Always a check-and-set: against what the edit started from, else what is shown.
      const cas = editIndex !== null ? editIndex : entry ? entry.ModifyIndex : 0;
      pending = null;
      const res = await api(query("/v1/kv/" + keyPath(key), { dc: r.dc, cas, flags: flags.value || 0 }),
        { method: "PUT", body: encodeText(text) });
      if (res.body === true) {
        showNotice("Saved " + key + ".", true);
        pending = text;
        adopt();
      } else {
        showNotice("Not saved: " + key + " was changed by someone else since you opened it. " +
          "The value shown above is the current one; save again to replace it.");
        editIndex = entry ? entry.ModifyIndex : 0;
        changed.textContent = "";
      }
    } catch (err) { showNotice(err.message); }
    save.disabled = false;
  });
  del.addEventListener("click", async () => {
    if (!window.confirm("Delete " + key + "?")) return;
    try {
      const cas = editIndex !== null ? editIndex : entry ? entry.ModifyIndex : 0;
      const res = await api(query("/v1/kv/" + keyPath(key), { dc: r.dc, cas }), { method: "DELETE" });
      if (res.body === false) { showNotice("Not deleted: " + key + " was changed since you opened it."); return; }
      go("/ui/" + enc(r.dc) + "/kv/" + keyPath(folder));
    } catch (err) { showNotice(err.message); }
  });
  main.replaceChildren(
    h("p", {}, h("a", { href: "/ui/" + enc(r.dc) + "/kv/" + keyPath(folder), text: "← " + (folder || "Key/Value") })),
    h("h1", {}, key, liveMark()), meta, shown,
    h("label", {}, asBase64, " Show as base64"), form);
  live(signal, (index, signal) =>
    api(query("/v1/kv/" + keyPath(key), { dc: r.dc, index, wait: index ? WAIT : null }), { signal, allow404: true }),
  (res) => {
    entry = res.body ? res.body[0] : null;
    if (!entry) {
      meta.textContent = "This key does not exist (any more).";
      shown.textContent = "";
      editIndex = 0;
      return;
    }
    meta.textContent = "Flags " + entry.Flags + " · ModifyIndex " + entry.ModifyIndex +
      (entry.Session ? " · locked by session " + entry.Session : "");
    showValue();
    if (pending !== null) {
      adopt();
      // A newer version that is not the one saved here: someone else wrote after us.
      if (pending !== null && entry.ModifyIndex > editIndex) {
        pending = null;
        changed.textContent = "Changed by someone else since you saved (now at " + entry.ModifyIndex + ").";
      }
    } else if (editIndex === null) {
      // The edit starts from what is shown now; a later change by anyone else is refused.
      editIndex = entry.ModifyIndex;
      const v = decodeValue(entry.Value);
      editor.value = v.binary ? "" : v.text;
      editor.placeholder = v.binary ? "binary value (shown as base64 above)" : "";
      flags.value = entry.Flags;
      changed.textContent = "";
    } else if (entry.ModifyIndex !== editIndex) {
      changed.textContent = "Changed by someone else since you started editing (now at " + entry.ModifyIndex + ").";
    }
  });
}

function sessions(r, signal) {
  const body = h("tbody");
  main.replaceChildren(h("h1", {}, "Sessions", liveMark()),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      h("th", { text: "ID" }), h("th", { text: "Name" }), h("th", { text: "Node" }),
      h("th", { text: "Behavior" }), h("th", { text: "TTL" }), h("th", { text: "Lock delay" }))), body)));
  live(signal, (index, signal) =>
    api(query("/v1/session/list", { dc: r.dc, index, wait: index ? WAIT : null }), { signal }),
  (res) => {
    const list = res.body || [];
    body.replaceChildren(...(list.length ? list.map((s) => h("tr", {},
      h("td", { text: s.ID }), h("td", { text: s.Name || "" }),
      h("td", {}, h("a", { href: "/ui/" + enc(r.dc) + "/nodes/" + enc(s.Node), text: s.Node })),
      h("td", { text: s.Behavior }), h("td", { text: s.TTL || "—" }),
      h("td", { text: (s.LockDelay / 1e9) + "s" }))) :
      [h("tr", {}, h("td", { class: "muted", colspan: "6", text: "No sessions." }))]));
  });
}

function agent(r, signal) {
  const info = h("dl");
  const body = h("tbody");
  main.replaceChildren(h("h1", {}, "This agent", liveMark()), info,
    h("h2", { text: "LAN members" }), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      h("th", { text: "Node" }), h("th", { text: "Address" }), h("th", { text: "Status" }), h("th", { text: "Role" }))), body)));
  const names = { 1: "alive", 2: "leaving", 3: "left", 4: "failed" };
  live(signal, async (index, signal) => {
    const [self, members] = await Promise.all([api("/v1/agent/self", { signal }), api("/v1/agent/members", { signal })]);
    return { index: 0, self: self.body, members: members.body || [] };
  }, (res) => {
    const c = res.self.Config;
    info.replaceChildren(...[["Node", c.NodeName], ["Datacenter", c.Datacenter], ["Server", String(c.Server)],
      ["Version", c.Version]].flatMap(([k, v]) => [h("dt", { class: "muted", text: k }), h("dd", { text: v })]));
    body.replaceChildren(...res.members.map((m) => h("tr", {},
      h("td", { text: m.Name }), h("td", { text: m.Addr + ":" + m.Port }),
      h("td", {}, h("span", { class: m.Status === 1 ? "up" : "down", text: names[m.Status] || String(m.Status) })),
      h("td", { text: (m.Tags || {}).role === "consul" ? "server" : "client" }))));
  }, 3000);
}

// Each datacenter's leader terms seen while this page is open: a new term is an election.
const termsSeen = new Map();

function elections(dc, term) {
  const seen = termsSeen.get(dc) || [];
  if (term !== undefined && (!seen.length || seen[seen.length - 1].term !== term)) {
    seen.push({ term, at: Date.now() });
    termsSeen.set(dc, seen);
  }
  const n = seen.length - 1;
  if (n <= 0) return "no election since this page opened";
  const ago = Math.round((Date.now() - seen[seen.length - 1].at) / 1000);
  return n + " election" + (n === 1 ? "" : "s") + " since this page opened, the last " + ago + " s ago";
}

function federation(r, signal) {
  const dcs = h("tbody");
  const matrix = h("table", { class: "matrix", id: "rtt-matrix" });
  const keyring = h("tbody");
  const gateways = h("tbody");
  main.replaceChildren(h("h1", {}, "Federation", liveMark()),
    h("div", { class: "scroll" }, h("table", { id: "federation-dcs" }, h("thead", {}, h("tr", {},
      h("th", { text: "Datacenter" }), h("th", { text: "Leader" }), h("th", { text: "Leader health" }),
      h("th", { text: "Servers" }), h("th", { text: "WAN links" }))), dcs)),
    h("h2", { text: "Gateways" }),
    h("div", { class: "scroll" }, h("table", { id: "federation-gateways" }, h("thead", {}, h("tr", {},
      h("th", { text: "Datacenter" }), h("th", { text: "Gateway" }), h("th", { text: "Link to its servers" }),
      h("th", { text: "WAN links" }))), gateways)),
    h("h2", { text: "Round trips between datacenters (measured by the gateways)" }),
    h("div", { class: "scroll" }, matrix),
    h("h2", { text: "Gossip keyring" }),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      h("th", { text: "Pool" }), h("th", { text: "Key" }), h("th", { text: "Members holding it" }))), keyring)));
  const attempt = (p) => p.then((v) => ({ ok: true, v }), (e) => ({
    ok: false, e: e.name === "TimeoutError" ? new Error("no answer within 2 s") : e,
  }));
  // A datacenter that does not answer within 3 s is shown as unreachable, so one dead
  // datacenter never holds up the rest of the view.
  const quick = (signal) => {
    const c = new AbortController();
    const t = setTimeout(() => c.abort(new DOMException("no answer within 2 s", "TimeoutError")), 2000);
    signal.addEventListener("abort", () => { clearTimeout(t); c.abort(); }, { once: true });
    return c.signal;
  };
  live(signal, async (index, signal) => {
    const list = (await api("/v1/catalog/datacenters", { signal })).body || [];
    const ringAnswer = attempt(api("/v1/operator/keyring", { signal: quick(signal) }));
    const rows = await Promise.all(list.map(async (dc) => {
      const [leader, health, rtts, gws] = await Promise.all([
        attempt(api(query("/v1/status/leader", { dc }), { signal: quick(signal) })),
        attempt(api(query("/v1/operator/autopilot/health", { dc }), { signal: quick(signal) })),
        attempt(api(query("/v1/isthmus/datacenters", { dc }), { signal: quick(signal) })),
        attempt(api(query("/v1/isthmus/gateways", { dc }), { signal: quick(signal) })),
      ]);
      return { dc, leader, health, rtts, gws };
    }));
    const ring = await ringAnswer;
    return { index: 0, list, rows, ring };
  }, (res) => {
    datacenters = res.list;
    dcs.replaceChildren(...res.rows.map((row) => {
      const servers = row.health.ok ? row.health.v.body.Servers || [] : [];
      const leader = servers.find((s) => s.Leader);
      const maxContact = servers.filter((s) => !s.Leader).map((s) => s.LastContact || "0s").join(", ");
      const links = row.rtts.ok ? row.rtts.v.body || [] : [];
      const others = links.filter((l) => l.Datacenter !== row.dc);
      const up = others.filter((l) => l.RTTMicros !== null).length;
      return h("tr", { "data-dc": row.dc },
        h("td", {}, h("a", { href: "/ui/" + enc(row.dc) + "/services/", text: row.dc })),
        h("td", { class: "leader" }, row.leader.ok && row.leader.v.body ? (leader ? leader.Name : row.leader.v.body) :
          h("span", { class: "down", text: row.leader.ok ? "no leader" : "unreachable" })),
        h("td", {}, row.health.ok ? [h("span", { class: row.health.v.body.Healthy ? "up" : "down",
          text: row.health.v.body.Healthy ? "healthy" : "unhealthy" }),
          h("div", { class: "muted", text: "term " + (leader ? leader.LastTerm : "?") +
            " (" + elections(row.dc, leader ? leader.LastTerm : undefined) + ")" +
            ", failure tolerance " + row.health.v.body.FailureTolerance +
            (maxContact ? "; followers' last contact " + maxContact : "") })] :
          h("span", { class: "down", text: row.health.e.message })),
        h("td", { text: servers.length ? servers.filter((s) => s.Healthy).length + "/" + servers.length + " healthy" : "—" }),
        h("td", { class: "links" }, row.rtts.ok ? up + "/" + others.length + " up" : h("span", { class: "down", text: "unreachable" })));
    }));
    gateways.replaceChildren(...res.rows.flatMap((row) => {
      if (!row.gws.ok) {
        return [h("tr", { "data-dc": row.dc }, h("td", { text: row.dc }),
          h("td", { colspan: "3" }, h("span", { class: "down", text: "unreachable" })))];
      }
      return (row.gws.v.body || []).map((g) => h("tr", { "data-dc": row.dc, "data-gateway": g.Name || g.Address },
        h("td", { text: row.dc }),
        h("td", { text: (g.Name || "?") + " (" + g.Address + ")" }),
        h("td", {}, g.Linked ? h("span", { class: "up", text: "up, " + (g.RTTMicros / 1000).toFixed(2) + " ms" })
          : h("span", { class: "down", text: "down" })),
        h("td", {}, (g.Links || []).map((l) => h("div", {}, l.Datacenter + " ",
          l.RTTMicros === null ? h("span", { class: "down", text: "down" })
            : h("span", { class: "up", text: (l.RTTMicros / 1000).toFixed(2) + " ms" }))))));
    }));
    // The matrix: row = from, column = to; green at 1 ms and below to red at 300 ms and
    // above, on a log scale.
    matrix.replaceChildren(h("thead", {}, h("tr", {}, h("th", { text: "from \\ to" }), ...res.list.map((d) => h("th", { text: d })))),
      h("tbody", {}, ...res.rows.map((row) => h("tr", {}, h("th", { text: row.dc }), ...res.list.map((to) => {
        if (to === row.dc) return h("td", { class: "muted", text: "—" });
        if (!row.rtts.ok) return h("td", { class: "down", "data-to": to, text: "?" });
        const link = (row.rtts.v.body || []).find((l) => l.Datacenter === to);
        if (!link || link.RTTMicros === null) return h("td", { class: "down", "data-to": to, "data-link": "down", text: "down" });
        const ms = Math.max(link.RTTMicros / 1000, 1);
        const hue = 120 * (1 - Math.min(Math.log10(ms) / Math.log10(300), 1));
        return h("td", { "data-to": to, "data-link": "up", style: "background: hsl(" + hue.toFixed(0) + ", 70%, 85%)",
          text: (link.RTTMicros / 1000).toFixed(2) + " ms" });
      })))));
    const pools = res.ring.ok ? res.ring.v.body || [] : [];
    keyring.replaceChildren(...pools.flatMap((p) => Object.entries(p.Keys || {}).map(([key, n]) => h("tr", {},
      h("td", { text: (p.WAN ? "WAN" : "LAN " + (p.Datacenter || "")) }),
      h("td", {}, h("code", { text: key.slice(0, 6) + "…" }), p.PrimaryKeys && p.PrimaryKeys[key] ? " (primary)" : ""),
      h("td", { text: n + "/" + p.NumNodes }))) ));
    if (!res.ring.ok) keyring.replaceChildren(h("tr", {}, h("td", { colspan: "3", class: "muted", text: res.ring.e.message })));
  }, 1000);
}

// ---------- start ----------

// The agent's datacenter first (it needs `agent:read` under ACLs: without a token that
// may, the page asks for one and starts again when it is given).
async function start() {
  try {
    const [self, dcs] = await Promise.all([api("/v1/agent/self"), api("/v1/catalog/datacenters")]);
    localDc = self.body.Config.Datacenter;
    datacenters = dcs.body || [localDc];
  } catch (e) {
    main.replaceChildren(h("h1", { text: "Isthmus" }), h("p", {
      text: e.status === 403 ? "ACLs are on: enter a token in the ACL token field to continue."
        : "The agent did not answer.",
    }));
    showNotice(e.message);
    tokenInput.focus();
    return;
  }
  render();
}
start();
