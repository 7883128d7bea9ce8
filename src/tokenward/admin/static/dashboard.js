// tokenward dashboard (docs/dashboard.md). Vanilla JS, no dependencies.
// Everything from the decision log is attacker-influenced (paths, evidence): it is only
// ever written with textContent or as SVG attribute values we build; never as HTML.
"use strict";
(function () {
  const ACTIONS = ["allow", "degrade", "challenge", "throttle", "block", "invalid"];
  // As often as the server refreshes its answers (dashboard.py cache_ttl).
  const pollMs = () => (state.window <= 3600 ? 5000 : 30000);
  const slowPollMs = () => 3 * pollMs();
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const state = { window: 3600, summary: null, top: null, rank: "refused", lastSlow: 0, busy: false };

  // -- DOM helpers ------------------------------------------------------------------------
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function svg(tag, attrs, parent) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function usd(v) {
    if (v === null || v === undefined) return "–";
    const n = Number(v);
    return "$" + (Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 1 ? n.toFixed(2) : n.toFixed(4));
  }
  function pad(n) { return String(n).padStart(2, "0"); }
  function hhmm(ts) { const d = new Date(ts * 1000); return pad(d.getHours()) + ":" + pad(d.getMinutes()); }
  function clock(ts) { const d = new Date(ts * 1000); return hhmm(ts) + ":" + pad(d.getSeconds()); }
  function stamp(ts) {
    const d = new Date(ts * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + clock(ts);
  }
  function localInput(ts) {
    const d = new Date(ts * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + clock(ts);
  }
  function fmtValue(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }
  function badge(action) { return el("span", "badge b-" + (ACTIONS.includes(action) ? action : "other"), action); }

  function showError(message) {
    const box = $("error");
    if (!message) { box.hidden = true; box.textContent = ""; return; }
    box.hidden = false;
    box.textContent = message;
  }

  async function api(path) {
    const response = await fetch(path, { credentials: "same-origin", headers: { accept: "application/json" } });
    if (response.status === 401) throw new Error("Signed out: reload the page to sign in again.");
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const msg = body && body.error ? body.error.message : "HTTP " + response.status;
      throw new Error(msg);
    }
    return body;
  }

  // -- charts -----------------------------------------------------------------------------
  function frame(container) {
    clear(container);
    const w = Math.max(300, container.clientWidth || 600);
    const h = Math.max(120, container.clientHeight || 190);
    const root = svg("svg", { viewBox: "0 0 " + w + " " + h, role: "img" }, container);
    return { root, w, h, left: 56, right: 8, top: 14, bottom: 18 };
  }
  function xAxis(f, series, bw) {
    svg("line", { x1: f.left, y1: f.h - f.bottom, x2: f.w - f.right, y2: f.h - f.bottom, class: "axis" }, f.root);
    const every = Math.ceil(series.length / 6);
    series.forEach((p, i) => {
      if (i % every) return;
      const t = svg("text", { x: f.left + i * bw, y: f.h - 4 }, f.root);
      t.textContent = hhmm(p.t);
    });
  }
  function yAxis(f, max, fmt) {
    [0, 0.5, 1].forEach((q) => {
      const y = f.h - f.bottom - q * (f.h - f.top - f.bottom);
      svg("line", { x1: f.left, y1: y, x2: f.w - f.right, y2: y, class: "axis", "stroke-opacity": q ? 0.4 : 1 }, f.root);
      const t = svg("text", { x: f.left - 4, y: y + 3, "text-anchor": "end" }, f.root);
      t.textContent = fmt(max * q);
    });
  }
  // Under-attack minutes as bands behind the data; breaker trips as dashed lines with a mark.
  function marks(f, series, bw) {
    series.forEach((p, i) => {
      const x = f.left + i * bw;
      if (p.under_attack) {
        svg("rect", { x, y: f.top, width: bw, height: f.h - f.top - f.bottom, class: "band",
          "data-mark": "under-attack" }, f.root);
        const strip = svg("rect", { x, y: f.top - 8, width: bw, height: 5, class: "band-strip" }, f.root);
        const title = svg("title", {}, strip);
        title.textContent = "under attack: " + (p.attacked_routes || []).join(", ");
      }
    });
    series.forEach((p, i) => {
      if (!p.breaker) return;
      const x = f.left + (i + 0.5) * bw;
      svg("line", { x1: x, y1: f.top, x2: x, y2: f.h - f.bottom, class: "trip", "data-mark": "breaker" }, f.root);
      const m = svg("path", { d: "M" + (x - 5) + " " + (f.top - 10) + " h10 l-5 8 z", class: "trip-mark" }, f.root);
      const title = svg("title", {}, m);
      title.textContent = "breaker open: " + p.breaker + " refused";
    });
  }
  function hoverTargets(f, series, bw, describe) {
    series.forEach((p, i) => {
      const r = svg("rect", { x: f.left + i * bw, y: f.top, width: bw, height: f.h - f.top - f.bottom, class: "hover" }, f.root);
      const title = svg("title", {}, r);
      title.textContent = describe(p);
      r.addEventListener("click", () => explorerAt(p.t, p.t + state.summary.bucket));
    });
  }

  function drawRequests(s) {
    const f = frame($("chart-requests"));
    const series = s.series;
    const bw = (f.w - f.left - f.right) / series.length;
    const totals = series.map((p) => ACTIONS.reduce((a, k) => a + (p.actions[k] || 0), 0));
    const max = Math.max(1, ...totals);
    const scale = (f.h - f.top - f.bottom) / max;
    marks(f, series, bw);
    yAxis(f, max, (v) => String(Math.round(v)));
    series.forEach((p, i) => {
      let y = f.h - f.bottom;
      for (const a of ACTIONS) {
        const n = p.actions[a] || 0;
        if (!n) continue;
        const hgt = n * scale;
        y -= hgt;
        svg("rect", { x: f.left + i * bw + 0.5, y, width: Math.max(1, bw - 1), height: hgt, class: "a-" + a,
          "data-action": a, "data-count": n }, f.root);
      }
    });
    xAxis(f, series, bw);
    hoverTargets(f, series, bw, (p) => {
      const parts = ACTIONS.filter((a) => p.actions[a]).map((a) => a + " " + p.actions[a]);
      return hhmm(p.t) + "  " + (parts.join(", ") || "no requests") + (p.under_attack ? "  (under attack)" : "")
        + (p.breaker ? "  (breaker open)" : "") + "\nclick: open these in the explorer";
    });
    const legend = $("legend-requests");
    clear(legend);
    for (const a of ACTIONS) {
      const li = el("li");
      li.dataset.action = a;
      li.append(el("span", "swatch s-" + a), el("span", "name", a), el("span", "count", s.totals[a] || 0));
      legend.appendChild(li);
    }
    const ua = el("li"); ua.dataset.mark = "under-attack";
    ua.append(el("span", "swatch s-attack"), el("span", "name", "under attack"), el("span", "count", s.under_attack_buckets));
    const br = el("li"); br.dataset.mark = "breaker";
    br.append(el("span", "swatch s-breaker"), el("span", "name", "breaker trips"), el("span", "count", s.breaker_trips));
    legend.append(ua, br);
  }

  function drawSpend(s) {
    const f = frame($("chart-spend"));
    const series = s.series;
    const bw = (f.w - f.left - f.right) / series.length;
    const max = Math.max(1e-6, ...series.map((p) => Math.max(p.spend, p.refused_usd)));
    const scale = (f.h - f.top - f.bottom) / max;
    marks(f, series, bw);
    yAxis(f, max, usd);
    const half = Math.max(1, (bw - 1) / 2);
    series.forEach((p, i) => {
      [["spend", "spend", 0], ["refused_usd", "refused", half]].forEach(([key, cls, dx]) => {
        if (!p[key]) return;
        const hgt = Math.max(1, p[key] * scale);
        svg("rect", { x: f.left + i * bw + 0.5 + dx, y: f.h - f.bottom - hgt, width: half, height: hgt,
          class: "bar-" + cls, "data-series": cls, "data-usd": p[key] }, f.root);
      });
    });
    xAxis(f, series, bw);
    hoverTargets(f, series, bw, (p) => hhmm(p.t) + "  spend " + usd(p.spend) + ", refused " + usd(p.refused_usd));
    const legend = $("legend-spend");
    clear(legend);
    const a = el("li"); a.dataset.series = "spend";
    a.append(el("span", "swatch s-spend"), el("span", "name", "spend"), el("span", "count", usd(s.spend_usd)));
    const b = el("li"); b.dataset.series = "refused";
    b.append(el("span", "swatch s-refused"), el("span", "name", "refused spend (worst case held)"),
      el("span", "count", usd(s.refused_usd)));
    legend.append(a, b);
  }

  // -- panels -----------------------------------------------------------------------------
  function renderSummary(s) {
    state.summary = s;
    const forwarded = (s.totals.allow || 0) + (s.totals.degrade || 0);
    $("kpi-requests").textContent = s.requests;
    $("kpi-forwarded").textContent = forwarded;
    $("kpi-refused").textContent = s.refusals;
    $("kpi-spend").textContent = usd(s.spend_usd);
    $("kpi-refused-usd").textContent = usd(s.refused_usd);
    $("kpi-refused-note").textContent = s.refusals ? "from " + s.refused_estimated + " of " + s.refusals + " refusals" : "";
    $("kpi-attack").textContent = s.under_attack_buckets;
    $("kpi-breaker").textContent = s.breaker_trips;
    $("kpi-shadow").textContent = s.shadow_refusals;
    const name = s.bucket === 60 ? "minute" : s.bucket < 60 ? Math.round(s.bucket) + " s" : Math.round(s.bucket / 60) + " min";
    document.querySelectorAll(".bucket-name").forEach((n) => { n.textContent = name; });
    drawRequests(s);
    drawSpend(s);
    const body = $("reasons").tBodies[0];
    clear(body);
    if (!s.reasons.length) body.appendChild(emptyRow(3, "no refusals"));
    for (const r of s.reasons) {
      const tr = el("tr");
      tr.dataset.reason = r.name;
      tr.append(el("td", "", r.name), el("td", "n", r.count),
        el("td", "n", r.estimated ? usd(r.refused_usd) + (r.estimated < r.count ? " (" + r.estimated + ")" : "") : "–"));
      tr.addEventListener("click", () => { $("f-reason").value = r.name; $("f-action").value = "refused"; loadExplorer(); });
      body.appendChild(tr);
    }
    fillSelect($("f-route"), s.routes);
    const names = $("f-names");
    clear(names);
    for (const n of s.names) { const o = el("option"); o.value = n; names.appendChild(o); }
    $("updated").textContent = "updated " + clock(s.now);
  }
  function fillSelect(select, values) {
    const keep = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const v of values) { const o = el("option", "", v); o.value = v; select.appendChild(o); }
    if (keep && !values.includes(keep)) { const o = el("option", "", keep); o.value = keep; select.appendChild(o); }
    select.value = keep;
  }
  function emptyRow(cols, text) {
    const tr = el("tr", "empty");
    const td = el("td", "", text);
    td.colSpan = cols;
    tr.appendChild(td);
    return tr;
  }

  function renderTop(t) {
    state.top = t;
    const rank = state.rank;
    for (const kind of ["subnets", "devices", "accounts", "templates"]) {
      const table = $("top-" + kind);
      clear(table);
      const head = el("tr");
      head.append(el("th", "", kind === "templates" ? "template" : kind.slice(0, -1)),
        el("th", "n", rank === "refused" ? "refused" : "allowed"), el("th", "n", "$"));
      table.createTHead().appendChild(head);
      const body = table.createTBody();
      const rows = t[kind][rank];
      if (!rows.length) body.appendChild(emptyRow(3, "none in the log"));
      for (const r of rows) {
        const tr = el("tr");
        tr.dataset.key = r.key;
        const key = el("td", "", r.key);
        if (kind === "devices" && !r.verified) key.appendChild(el("span", "muted", " (claimed)"));
        tr.append(key, el("td", "n", rank === "refused" ? r.refusals : r.allowed),
          el("td", "n", usd(rank === "refused" ? r.refused_usd : r.allowed_usd)));
        body.appendChild(tr);
      }
    }
  }

  function renderPeople(p) {
    const body = $("people").tBodies[0];
    clear(body);
    if (!p.people.length) body.appendChild(emptyRow(9, "no blocked or throttled requests with signals in the window"));
    for (const r of p.people) {
      const tr = el("tr");
      tr.tabIndex = 0;
      tr.dataset.requestId = r.request_id;
      const fired = r.fired.map((s) => s.name + " " + s.score).join(", ") || "none";
      tr.append(el("td", "", clock(r.ts)), cellWith(badge(r.action)), el("td", "", r.name), el("td", "", r.route),
        el("td", "", r.client_ip), el("td", r.worked ? "yes" : "no", r.worked ? "fresh" : "none"),
        el("td", r.device ? "yes" : "no", r.device ? "verified" : "no"), el("td", "n", r.automation_weight),
        el("td", "", fired));
      openOn(tr, r.request_id);
      body.appendChild(tr);
    }
  }
  function cellWith(child) { const td = el("td"); td.appendChild(child); return td; }
  function openOn(tr, rid) {
    tr.addEventListener("click", () => openDecision(rid));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") openDecision(rid); });
  }

  // -- explorer ---------------------------------------------------------------------------
  function explorerQuery() {
    const q = new URLSearchParams();
    const route = $("f-route").value, action = $("f-action").value;
    const reason = $("f-reason").value.trim(), client = $("f-client").value.trim();
    if (route) q.set("route", route);
    if (action) q.set("action", action);
    if (reason) q.set("reason", reason);
    if (client) q.set("client", client);
    const from = $("f-from").value, to = $("f-to").value;
    const now = Date.now() / 1000;
    const until = to ? new Date(to).getTime() / 1000 : now + 1;
    const since = from ? new Date(from).getTime() / 1000 : now - state.window;
    q.set("since", String(since));
    q.set("until", String(until));
    q.set("limit", "200");
    return q;
  }
  async function loadExplorer() {
    try {
      const data = await api("api/decisions?" + explorerQuery().toString());
      renderExplorer(data);
      showError(null);
    } catch (e) { showError(e.message); }
  }
  function renderExplorer(data) {
    const body = $("explorer").tBodies[0];
    clear(body);
    $("explorer-count").textContent = data.decisions.length + (data.more ? "+ (the newest " + data.limit + ")" : "") + " decisions";
    if (!data.decisions.length) body.appendChild(emptyRow(10, "no decision matches"));
    for (const d of data.decisions) {
      const tr = el("tr");
      tr.tabIndex = 0;
      tr.dataset.requestId = d.request_id;
      tr.dataset.action = d.action;
      const act = cellWith(badge(d.action));
      if (d.under_attack) act.appendChild(el("span", "attack-flag", "under attack"));
      if (d.shadow_action) act.appendChild(el("span", "muted", " (shadow: " + d.shadow_action + ")"));
      tr.append(el("td", "", stamp(d.ts)), act, el("td", "", d.name), el("td", "", d.code || ""),
        el("td", "", d.route), el("td", "", d.client_ip), el("td", "n", d.status),
        el("td", "n", d.risk === null ? "–" : d.risk), el("td", "n", usd(d.cost_usd)), el("td", "n", usd(d.reserved_usd)));
      openOn(tr, d.request_id);
      body.appendChild(tr);
    }
  }
  function explorerAt(since, until) {
    $("f-from").value = localInput(since);
    $("f-to").value = localInput(until);
    loadExplorer();
    $("explorer-panel").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // -- one decision -----------------------------------------------------------------------
  function facts(dl, pairs) {
    clear(dl);
    for (const [k, v] of pairs) {
      dl.append(el("dt", "", k));
      const dd = el("dd", "", fmtValue(v));
      dd.dataset.field = k;
      dl.append(dd);
    }
    if (!pairs.length) dl.append(el("dt", "", "–"), el("dd", "muted", "none"));
  }
  function evidenceList(ev) {
    const ul = el("ul", "evidence");
    const entries = ev && typeof ev === "object" ? Object.entries(ev) : [];
    if (!entries.length) ul.appendChild(el("li", "muted", "no evidence"));
    for (const [k, v] of entries) {
      const li = el("li");
      li.append(el("span", "k", k + ": "), el("span", "v", fmtValue(v)));
      ul.appendChild(li);
    }
    return ul;
  }
  async function openDecision(rid) {
    let d;
    try { d = await api("api/decision/" + encodeURIComponent(rid)); } catch (e) { showError(e.message); return; }
    $("detail-id").textContent = d.request_id;
    facts($("detail-facts"), [
      ["time", stamp(d.ts)], ["action", d.action + (d.shadow_action ? " (shadow: " + d.shadow_action + ")" : "")],
      ["rule", d.name], ["code", d.code], ["request", d.method + " " + d.path], ["route", d.route],
      ["client", d.client_ip], ["status", d.status], ["upstream status", d.upstream_status],
      ["reasons", (d.reasons || []).join(", ")], ["error", d.error],
      ["decision time", d.decision_ms + " ms"], ["total time", d.total_ms + " ms"],
      ["person-likeness", (d.person.worked ? "did its work" : "no fresh proof") + ", automation weight "
        + d.person.automation_weight + (d.person.device ? ", verified device" : "")],
    ]);
    const body = $("detail-signals").tBodies[0];
    clear(body);
    const signals = Array.isArray(d.signals) ? d.signals : [];
    if (!signals.length) body.appendChild(emptyRow(3, "no signals (not judged on who sent it)"));
    for (const s of signals) {
      const tr = el("tr");
      tr.dataset.signal = String(s.name);
      const ev = el("td");
      ev.appendChild(evidenceList(s.evidence));
      tr.append(el("td", "", s.name), el("td", "n", s.score), ev);
      body.appendChild(tr);
    }
    const risk = d.risk && typeof d.risk === "object" ? d.risk : null;
    facts($("detail-risk"), risk ? [
      ["score", risk.score], ["threshold reached", risk.threshold], ["rule", risk.rule],
      ["under attack", risk.under_attack ? "yes" : "no"],
      ["contributions", (risk.contributions || []).map((c) => c[0] + " " + c[1]).join(", ")],
    ] : []);
    facts($("detail-proof"), d.proof && typeof d.proof === "object" ? Object.entries(d.proof) : []);
    facts($("detail-cost"), [
      ["model", d.model], ["tokens in", d.tokens_in], ["tokens out", d.tokens_out],
      ["usage", d.usage_exact === null ? null : d.usage_exact ? "exact (reported)" : "estimated (counted)"],
      ["cost", usd(d.cost_usd)], ["reserved (worst case)", usd(d.reserved_usd)],
      ["would have held at most (refused)", usd(d.held_usd)],
    ]);
    $("detail").hidden = false;
    $("detail-close").focus();
  }

  // -- polling ----------------------------------------------------------------------------
  async function refresh(force) {
    if (state.busy) return;
    state.busy = true;
    try {
      const w = state.window;
      renderSummary(await api("api/summary?window=" + w));
      const now = Date.now();
      if (force || now - state.lastSlow >= slowPollMs() - 500) {
        state.lastSlow = now;
        const [t, p] = await Promise.all([api("api/top?window=" + w), api("api/people?window=" + w)]);
        renderTop(t);
        renderPeople(p);
      }
      if (force || (!$("f-to").value && !$("f-from").value)) await loadExplorer();
      showError(null);
    } catch (e) {
      showError(e.message);
    } finally {
      state.busy = false;
    }
  }

  function start() {
    $("window").addEventListener("change", () => { state.window = Number($("window").value); refresh(true); });
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadExplorer(); });
    $("f-action").addEventListener("change", loadExplorer);
    $("f-route").addEventListener("change", loadExplorer);
    $("f-reset").addEventListener("click", () => { $("filters").reset(); loadExplorer(); });
    $("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("detail").hidden = true; });
    document.querySelectorAll("input[name=rank]").forEach((r) => r.addEventListener("change", () => {
      state.rank = r.value;
      if (state.top) renderTop(state.top);
    }));
    let resize = null;
    window.addEventListener("resize", () => {
      clearTimeout(resize);
      resize = setTimeout(() => { if (state.summary) { drawRequests(state.summary); drawSpend(state.summary); } }, 150);
    });
    const tick = async () => {
      if ($("live").checked && !document.hidden) await refresh(false);
      setTimeout(tick, pollMs());
    };
    refresh(true).then(() => setTimeout(tick, pollMs()));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
