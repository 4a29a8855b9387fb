// Portcullis dashboard: polls /ui/api/state every 2 s and renders it.
// No framework, nothing fetched from elsewhere; every value from the server
// is inserted as text (never as HTML).
"use strict";

const POLL_MS = 2000;
let token = null;
let previous = null; // the last state, for rates

function readToken() {
  const m = /(?:^|[#&])token=([^&]*)/.exec(location.hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    sessionStorage.setItem("portcullis-token", token);
    history.replaceState(null, "", location.pathname); // do not leave it in the address bar
  } else {
    token = sessionStorage.getItem("portcullis-token");
  }
}

async function get(url) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  let r = await fetch(url, { headers, cache: "no-store" });
  if (r.status === 401) {
    const t = prompt("The admin API needs its bearer token (--admin-token-file):");
    if (t) {
      token = t.trim();
      sessionStorage.setItem("portcullis-token", token);
      r = await fetch(url, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    }
  }
  return r;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function conditionList(conds) {
  const box = el("div");
  for (const c of conds || []) {
    const d = el("div", { class: "cond " + (c.ok ? "ok" : "bad") },
      el("span", { class: "tag" }, (c.ok ? "✓ " : "✗ ") + c.type + "=" + c.status),
      " (" + c.reason + ")");
    if (!c.ok) {
      if (c.meaning) d.append(el("div", {}, "What is wrong: " + c.meaning + "."));
      if (c.message) d.append(el("div", { class: "mono" }, c.message));
      if (c.fix) d.append(el("div", { class: "fix" }, "How to fix: " + c.fix + "."));
    }
    box.append(d);
  }
  return box;
}

function allOk(conds) { return (conds || []).every(c => c.ok); }

function renderProblems(s) {
  const ul = document.getElementById("problems");
  ul.replaceChildren();
  if (s.mode === "kubernetes") {
    document.getElementById("problems-note").textContent =
      "Kubernetes mode: the API server validated the objects; what is wrong with them is in their conditions below.";
  }
  if (!s.problems.length) ul.append(el("li", { class: "none" }, "✓ No problems."));
  for (const p of s.problems) ul.append(el("li", { class: "mono" }, p.text));
}

function fmtRate(x) { return x === null ? "–" : x.toFixed(x < 10 ? 2 : 1); }
function fmtPct(x) { return x === null ? "–" : (100 * x).toFixed(1) + " %"; }
function fmtMs(x) { return x === null ? "–" : (1000 * x).toFixed(x < 0.01 ? 2 : 1) + " ms"; }

function renderTraffic(s) {
  const body = document.querySelector("#traffic tbody");
  body.replaceChildren();
  const prev = new Map();
  if (previous) for (const p of previous.stats) prev.set(p.gateway + "|" + p.listener + "|" + p.route, p);
  const dt = previous ? (s.time_ms - previous.time_ms) / 1000 : 0;
  for (const r of s.stats) {
    const p = prev.get(r.gateway + "|" + r.listener + "|" + r.route);
    const dReq = p ? r.requests - p.requests : null;
    const d5 = p ? r.server_errors - p.server_errors : null;
    const rate = p && dt > 0 ? dReq / dt : null;
    const errRate = dReq ? d5 / dReq : (r.requests ? r.server_errors / r.requests : null);
    const dCount = p ? r.duration_count - p.duration_count : 0;
    const lat = dCount > 0 ? (r.duration_sum - p.duration_sum) / dCount
      : (r.duration_count ? r.duration_sum / r.duration_count : null);
    body.append(el("tr", { "data-route": r.route },
      el("td", {}, r.gateway || "(none)"), el("td", {}, r.listener || "(none)"),
      el("td", {}, r.route || "(no route matched)"),
      el("td", { class: "num requests" }, r.requests), el("td", { class: "num rate" }, fmtRate(rate)),
      el("td", { class: "num" }, r.server_errors), el("td", { class: "num" }, fmtPct(errRate)),
      el("td", { class: "num" }, r.client_errors), el("td", { class: "num" }, fmtMs(lat))));
  }
  if (!s.stats.length) body.append(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "No request yet.")));
}

function renderGateways(s) {
  const box = document.getElementById("gateways");
  box.replaceChildren();
  for (const g of s.gateways) {
    const ok = allOk(g.conditions) && g.listeners.every(l => allOk(l.conditions));
    const card = el("div", { class: "card " + (ok ? "ok" : "bad") },
      el("h3", {}, "Gateway " + g.name),
      el("div", { class: "kv" }, "Addresses: " + ((g.addresses || []).join(", ") || "none")),
      conditionList(g.conditions));
    const t = el("table", {}, el("thead", {}, el("tr", {},
      el("th", {}, "Listener"), el("th", {}, "Port"), el("th", {}, "Protocol"),
      el("th", {}, "Hostname"), el("th", {}, "Routes"), el("th", {}, "Conditions"))));
    const tb = el("tbody");
    for (const l of g.listeners) {
      tb.append(el("tr", {}, el("td", {}, l.name), el("td", { class: "num" }, l.port),
        el("td", {}, l.protocol), el("td", {}, l.hostname || "(any)"),
        el("td", { class: "num" }, l.attachedRoutes ?? "–"), el("td", {}, conditionList(l.conditions))));
    }
    t.append(tb);
    card.append(t);
    box.append(card);
  }
  if (!s.gateways.length) box.append(el("p", { class: "muted" }, "No Gateway."));
}

function renderRoutes(s) {
  const box = document.getElementById("routes");
  box.replaceChildren();
  for (const r of s.routes) {
    const ok = r.parents.every(p => allOk(p.conditions));
    const card = el("div", { class: "card route " + (ok ? "ok" : "bad"), "data-route": r.name },
      el("h3", {}, r.kind + " " + r.name));
    if (r.hostnames.length) card.append(el("div", { class: "kv" }, "Hostnames: " + r.hostnames.join(", ")));
    if (r.listeners.length) card.append(el("div", { class: "kv" }, "Served on: " + r.listeners.join(", ")));
    else card.append(el("div", { class: "kv" }, "Not served on any listener."));
    for (const p of r.parents) {
      card.append(el("div", {}, el("strong", {}, "Parent " + p.parent)), conditionList(p.conditions));
    }
    if (r.policies.length) card.append(el("div", {}, "Policies: " + r.policies.join(", ")));
    for (const b of r.backends) {
      if (b.invalid) {
        card.append(el("div", { class: "mono" }, "→ invalid backend: " + b.invalid));
        continue;
      }
      // Each endpoint with its state in this process's data plane (health
      // checks, outlier detection, slow start), when known.
      const eps = [];
      for (const e of b.endpoints) {
        if (eps.length) eps.push(", ");
        const words = e.address + (e.terminating ? " (terminating)" : "")
          + (e.health ? " (" + e.health.split("_").join(" ") + ")" : "");
        eps.push(el("span", { class: "endpoint" + (e.health ? " ep-" + e.health : ""),
          "data-endpoint": e.address, "data-health": e.health || "" }, words));
      }
      card.append(el("div", { class: "mono" }, "→ " + b.name + ": ",
        ...(eps.length ? eps : ["no ready endpoint (503)"]), b.tls ? " [TLS " + b.tls + "]" : null));
    }
    box.append(card);
  }
  if (!s.routes.length) box.append(el("p", { class: "muted" }, "No route."));
}

function renderPolicies(s) {
  const box = document.getElementById("policies");
  box.replaceChildren();
  for (const p of s.policies) {
    const ok = p.ancestors.every(a => allOk(a.conditions));
    const card = el("div", { class: "card " + (ok ? "ok" : "bad") }, el("h3", {}, p.kind + " " + p.name));
    for (const a of p.ancestors) card.append(el("div", {}, el("strong", {}, "On " + a.ancestor)), conditionList(a.conditions));
    box.append(card);
  }
  if (!s.policies.length) box.append(el("p", { class: "muted" }, "No policy."));
}

// Until the user types, the form suggests a request to the first HTTP(S) listener.
let suggested = false;
function suggestRequest(s) {
  const input = document.getElementById("ex-request");
  if (suggested || input.dataset.touched) return;
  for (const g of s.gateways) for (const l of g.listeners) {
    if (l.protocol !== "HTTP" && l.protocol !== "HTTPS") continue;
    const host = (l.hostname || "localhost").replace(/^\*\./, "www.");
    input.value = "GET " + l.protocol.toLowerCase() + "://" + host + ":" + l.port + "/";
    suggested = true;
    return;
  }
}

async function poll() {
  const conn = document.getElementById("conn");
  try {
    const r = await get("/ui/api/state");
    if (!r.ok) throw new Error("HTTP " + r.status);
    const s = await r.json();
    suggestRequest(s);
    renderProblems(s); renderTraffic(s); renderGateways(s); renderRoutes(s); renderPolicies(s);
    previous = s;
    conn.textContent = s.ready ? "live" : "waiting for the first configuration";
    conn.className = "pill " + (s.ready ? "ok" : "");
    document.getElementById("updated").textContent = "updated " + new Date(s.time_ms).toLocaleTimeString();
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) {
    conn.textContent = "disconnected: " + e.message;
    conn.className = "pill bad";
  }
  setTimeout(poll, POLL_MS);
}

async function explain(ev) {
  ev.preventDefault();
  const q = new URLSearchParams();
  q.set("request", document.getElementById("ex-request").value);
  for (const h of document.getElementById("ex-headers").value.split("\n")) if (h.trim()) q.append("header", h.trim());
  const g = document.getElementById("ex-gateway").value.trim();
  if (g) q.set("gateway", g);
  q.set("format", "text");
  const out = document.getElementById("explain-out");
  const r = await get("/explain?" + q.toString().replace(/\+/g, "%20"));
  out.textContent = await r.text();
}

readToken();
document.getElementById("explain-form").addEventListener("submit", explain);
document.getElementById("ex-request").addEventListener("input", e => { e.target.dataset.touched = "1"; });
poll();
