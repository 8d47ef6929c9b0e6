// edge-agent status page: polls /api/status (2 s), /api/series (5 s) and /api/models (when a model
// changes), draws with the DOM and plain SVG. No library, no network beyond the agent itself.
// Every value from the agent goes in through textContent or an SVG attribute, never as HTML.
"use strict";

const L = {
  en: {
    alerts: "Alerts", open_alerts: "Open alerts", recent_alerts: "Recent alerts", no_alerts: "No alerts.",
    pipelines: "Pipelines", sources: "Sources", outbox: "Delivery", tags: "Tags", models: "Model card",
    name: "Name", type: "Type", state: "State", since: "Since", last_error: "Last error", value: "Value",
    unit: "Unit", quality: "Quality", age: "Age", source: "Source", depth: "Queued", bytes: "Size",
    drops: "Dropped", hours_left: "Outage it can absorb", raised: "RAISED", cleared: "cleared",
    score: "score", threshold: "threshold", clear_threshold: "clear below", coverage: "coverage",
    windows: "windows", scored: "scored", skipped: "skipped windows", model: "model", no_model: "no model",
    normal: "normal", trained: "trained on", n_train: "training windows", rule: "threshold rule",
    false_alarms: "expected false alarms", feature: "feature", center: "center", scale: "scale",
    band: "normal band", not_recorded: "not recorded", hours: "h", unlimited: "unlimited",
    bus: "Bus", readings: "readings", ok: "Running", attention: "Needs attention", alarm: "Alert open",
    updated: "updated", uptime: "up", filter: "Filter tags", token_prompt:
    "This agent needs its health token to show its data.", token_button: "Show", never: "never",
    up: "up", down: "down", starting: "starting", stopped: "stopped", good: "good", bad: "bad",
    uncertain: "uncertain", offline: "Agent not answering", last_hour: "last hour",
  },
  ko: {
    alerts: "경보", open_alerts: "진행 중인 경보", recent_alerts: "최근 경보", no_alerts: "경보 없음.",
    pipelines: "파이프라인", sources: "데이터 소스", outbox: "전송", tags: "태그", models: "모델 카드",
    name: "이름", type: "종류", state: "상태", since: "이후", last_error: "마지막 오류", value: "값",
    unit: "단위", quality: "품질", age: "경과", source: "소스", depth: "대기", bytes: "크기",
    drops: "버림", hours_left: "견딜 수 있는 단절 시간", raised: "발생", cleared: "해제",
    score: "점수", threshold: "임계값", clear_threshold: "해제 기준", coverage: "데이터 충족률",
    windows: "윈도우", scored: "채점", skipped: "건너뛴 윈도우", model: "모델", no_model: "모델 없음",
    normal: "정상", trained: "학습 기간", n_train: "학습 윈도우 수", rule: "임계값 규칙",
    false_alarms: "예상 오경보율", feature: "특징", center: "중앙값", scale: "척도",
    band: "정상 범위", not_recorded: "기록 없음", hours: "시간", unlimited: "제한 없음",
    bus: "버스", readings: "측정값", ok: "정상 동작", attention: "점검 필요", alarm: "경보 발생",
    updated: "갱신", uptime: "가동", filter: "태그 검색", token_prompt:
    "데이터를 보려면 이 에이전트의 헬스 토큰이 필요합니다.", token_button: "보기", never: "없음",
    up: "연결됨", down: "끊김", starting: "시작 중", stopped: "중지", good: "양호", bad: "불량",
    uncertain: "불확실", offline: "에이전트 응답 없음", last_hour: "최근 1시간",
  },
};

let lang = "en";
let token = sessionStorage.getItem("edge-agent-token") || "";
let lastModels = "";
const series = {}; // pipeline -> {threshold, clear_threshold, points: [[t, score, coverage, skipped]]}
let since = -Infinity;
let latest = null;

const t = (key) => (L[lang] && L[lang][key]) || L.en[key] || key;
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function num(x, digits = 4) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  return Math.abs(x) >= 1e5 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(2) : String(+x.toPrecision(digits));
}

const locale = () => (lang === "ko" ? "ko-KR" : "en-GB");

function when(ts) {
  return ts ? new Date(ts * 1000).toLocaleString(locale()) : "–";
}

function clock(ts) {
  return new Date(ts * 1000).toLocaleTimeString(locale());
}

function age(s) {
  if (s === null || s === undefined) return t("never");
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} ${t("hours")}`;
}

async function api(path) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const resp = await fetch(path, { headers, cache: "no-store" });
  if (resp.status === 401) {
    $("login").hidden = false;
    throw new Error("token");
  }
  if (!resp.ok) throw new Error(`${path}: ${resp.status}`);
  return resp.json();
}

function table(id, head, rows) {
  const tbl = $(id);
  const thead = el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, t(h)))));
  const body = el("tbody");
  for (const r of rows) body.append(el("tr", r.attrs || {}, ...r.cells.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", {}, c)))));
  tbl.replaceChildren(thead, body);
}

function stateBadge(state) {
  return el("span", { class: `state ${state}` }, t(state));
}

function renderHeader(s) {
  lang = s.agent.language in L ? s.agent.language : "en";
  document.documentElement.lang = lang;
  for (const node of document.querySelectorAll("[data-l]")) node.textContent = t(node.dataset.l);
  $("filter").placeholder = t("filter");
  $("title").textContent = `edge-agent · ${s.agent.id}`;
  $("meta").textContent = `v${s.agent.version} · ${t("uptime")} ${age(s.agent.uptime_s)}`;
  $("updated").textContent = `${t("updated")} ${clock(s.generated_at)}`;
  const open = s.pipelines.some((p) => p.alert_open);
  const bad = [...s.sources, ...s.sinks].some((c) => c.state !== "up");
  const overall = $("overall");
  overall.className = `badge ${open ? "alarm" : bad ? "attention" : "ok"}`;
  overall.textContent = t(open ? "alarm" : bad ? "attention" : "ok");
}

function renderSources(s) {
  table("sources", ["name", "type", "state", "since", "last_error"], s.sources.map((c) => ({
    cells: [c.name, c.type, stateBadge(c.state), when(c.since), c.last_error || ""],
  })));
}

function renderSinks(s) {
  table("sinks", ["name", "state", "depth", "bytes", "drops", "hours_left"], s.sinks.map((k) => {
    const o = k.outbox;
    const drops = Object.entries(o.dropped).map(([kind, n]) => `${kind} ${n}`).join(", ") || "0";
    const hours = o.outage_hours_left === null ? t("unlimited") : `${num(o.outage_hours_left, 3)} ${t("hours")}`;
    const size = `${(o.depth_bytes / 1048576).toFixed(1)} / ${(o.max_bytes / 1048576).toFixed(0)} MiB`;
    return { cells: [k.name, stateBadge(k.state), o.depth, size, drops, hours] };
  }));
  $("bus").textContent = `${t("bus")}: ${s.bus.depth} · ${t("drops")} ${s.bus.dropped_readings} ${t("readings")}`;
}

function renderTags(s) {
  const filter = $("filter").value.trim().toLowerCase();
  const rows = s.tags.filter((g) => !filter || g.name.toLowerCase().includes(filter));
  table("tags", ["name", "value", "unit", "quality", "age", "source"], rows.map((g) => ({
    attrs: { class: `q-${g.quality || "none"}`, "data-tag": g.name },
    cells: [g.name, num(g.value, 5), g.unit || "", g.quality ? t(g.quality) + (g.reason ? ` (${g.reason})` : "") : "–", age(g.age_s), g.source || ""],
  })));
}

function band(feature) {
  // One feature against its normal band: the band in green, the value as a dot (red when outside).
  // Without a learned band the model's center and scale still say where normal is: +-2 sigma.
  let [lo, hi] = feature.normal || [null, null];
  let v = feature.value;
  if ((lo === null || hi === null) && feature.z !== null && feature.z !== undefined) [lo, hi, v] = [-2, 2, feature.z];
  const box = svg("svg", { viewBox: "0 0 300 24", class: "band", role: "img" });
  if (v === null || v === undefined || lo === null || hi === null) return box;
  const min = Math.min(lo, hi, v), max = Math.max(lo, hi, v);
  const pad = (max - min) * 0.15 || 1;
  const x = (u) => 10 + ((u - (min - pad)) / (max - min + 2 * pad)) * 280;
  box.append(svg("line", { x1: 10, x2: 290, y1: 12, y2: 12, class: "axis" }));
  box.append(svg("rect", { x: x(lo), y: 4, width: Math.max(1, x(hi) - x(lo)), height: 16, class: "normal" }));
  const outside = v < lo || v > hi;
  box.append(svg("circle", { cx: x(v), cy: 12, r: 6, class: outside ? "value outside" : "value" }));
  return box;
}

function alertCard(a) {
  const head = el("div", { class: "alert-head" },
    el("span", { class: `state ${a.state === "raised" ? "down" : "up"}` }, t(a.state)),
    ` ${a.pipeline} · ${when(a.window && a.window.end_ms / 1000)} · ${t("score")} ${num(a.score)} (${t("threshold")} ${num(a.threshold)})`);
  const feats = el("table", { class: "features" });
  for (const f of a.top || []) {
    const z = f.z === null || f.z === undefined ? "" : ` (${f.z > 0 ? "+" : ""}${num(f.z, 2)} σ)`;
    const normal = f.normal ? `${t("normal")} ${num(f.normal[0])} – ${num(f.normal[1])}` : "";
    feats.append(el("tr", {}, el("td", {}, f.feature), el("td", {}, `${num(f.value)}${z}`), el("td", {}, band(f)), el("td", { class: "muted" }, normal)));
  }
  return el("div", { class: `alert ${a.state}` }, head, el("p", { class: "summary" }, a.summary || ""), feats);
}

function renderAlerts(s) {
  const box = $("alerts");
  const open = s.pipelines.filter((p) => p.alert_open)
    .map((p) => s.alerts.find((a) => a.pipeline === p.name && a.state === "raised")).filter(Boolean);
  const parts = [];
  if (open.length) parts.push(el("h3", {}, t("open_alerts")), ...open.map(alertCard));
  const recent = s.alerts.filter((a) => !open.includes(a)).slice(0, 10);
  if (recent.length) parts.push(el("h3", {}, t("recent_alerts")), ...recent.map(alertCard));
  if (!parts.length) parts.push(el("p", { class: "muted" }, t("no_alerts")));
  box.replaceChildren(...parts);
}

function chart(name, p) {
  // Score against threshold and clear threshold over the last hour; skipped windows as grey ticks.
  const s = series[name] || { points: [] };
  const W = 600, H = 170, left = 44, right = 8, top = 8, bottom = 22;
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": `${t("score")} ${name}` });
  const pts = s.points;
  const tmax = pts.length ? pts[pts.length - 1][0] : Date.now() / 1000;
  const tmin = Math.max(pts.length ? pts[0][0] : tmax - 3600, tmax - 3600);
  const thr = p.threshold, clr = p.clear_threshold;
  // Scores far over the threshold are drawn at the top edge: the lines near the threshold stay readable.
  const highest = Math.max(0, ...pts.map((q) => q[1] || 0));
  const ymax = (thr ? Math.max(thr * 1.5, Math.min(highest, thr * 3)) : highest) * 1.1 || 1;
  const x = (u) => left + ((u - tmin) / Math.max(1, tmax - tmin)) * (W - left - right);
  const y = (v) => top + (1 - Math.min(v, ymax) / ymax) * (H - top - bottom);
  box.append(svg("rect", { x: left, y: top, width: W - left - right, height: H - top - bottom, class: "plot" }));
  const lines = [[thr, "threshold"], [clr, "clear"]];
  for (const [v, cls] of lines) {
    if (v === null || v === undefined) continue;
    box.append(svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: `limit ${cls}` }));
    const label = svg("text", { x: left - 4, y: y(v) + (cls === "clear" ? 12 : -2), class: `tick ${cls}`, "text-anchor": "end" });
    label.textContent = num(v, 3);
    box.append(label);
  }
  let d = "";
  let pen = false;
  for (const [tt, score, , skipped] of pts) {
    if (skipped) box.append(svg("rect", { x: x(tt) - 1, y: H - bottom - 6, width: 2, height: 6, class: "skipped" }));
    if (score === null) { pen = false; continue; }
    d += `${pen ? "L" : "M"}${x(tt).toFixed(1)},${y(score).toFixed(1)}`;
    pen = true;
  }
  box.append(svg("path", { d, class: "score" }));
  for (const [u, anchor] of [[tmin, "start"], [tmax, "end"]]) {
    const label = svg("text", { x: x(u), y: H - 6, class: "tick", "text-anchor": anchor });
    label.textContent = clock(u);
    box.append(label);
  }
  return box;
}

function renderPipelines(s) {
  $("pipelines").replaceChildren(...s.pipelines.map((p) => el("div", { class: `card ${p.alert_open ? "alarm" : ""}` },
    el("h3", {}, p.name, p.alert_open ? el("span", { class: "state down" }, t("raised")) : ""),
    chart(p.name, p),
    el("p", { class: "legend" },
      el("span", { class: "key score" }, t("score")), el("span", { class: "key threshold" }, `${t("threshold")} ${num(p.threshold, 3)}`),
      el("span", { class: "key clear" }, `${t("clear_threshold")} ${num(p.clear_threshold, 3)}`), el("span", { class: "key skipped" }, t("skipped"))),
    el("p", {}, `${t("score")} ${num(p.last_score)} · ${t("coverage")} ${p.last_coverage === null ? "–" : Math.round(p.last_coverage * 100) + " %"}`
      + ` · ${t("windows")} ${p.windows} · ${t("scored")} ${p.scored} · ${t("skipped")} ${p.skipped}`),
    el("p", { class: "muted" }, `${t("model")}: ${p.model || t("no_model")} · ${t("last_hour")}`))));
}

// A share of windows as a percent with two significant digits: 1e-4 is "0.01 %", not "0.00 %".
function share(x) {
  return `${Number((x * 100).toPrecision(2))} %`;
}

function renderModels(m) {
  $("models").replaceChildren(...m.models.map((c) => {
    const trained = c.trained ? `${when(c.trained.start)} – ${when(c.trained.end)}` : t("not_recorded");
    const facts = el("table", { class: "facts" },
      ...[["model", `${c.file} (${c.model})`], ["trained", trained], ["n_train", c.n_train ?? t("not_recorded")],
        ["threshold", num(c.threshold)], ["clear_threshold", num(c.clear_threshold)],
        ["false_alarms", c.false_alarm_rate === null ? t("not_recorded") : share(c.false_alarm_rate)],
        ["rule", c.threshold_rule || t("not_recorded")]].map(([k, v]) => el("tr", {}, el("th", {}, t(k)), el("td", {}, v))));
    const feats = el("table", { class: "bands" }, el("tr", {}, ...["feature", "center", "scale", "band"].map((h) => el("th", {}, t(h)))),
      ...c.features.map((f) => el("tr", {}, el("td", {}, f.name), el("td", {}, num(f.center)), el("td", {}, num(f.scale)),
        el("td", {}, f.low === null ? "–" : `${num(f.low)} – ${num(f.high)}`))));
    return el("div", { class: "card model" }, el("h3", {}, c.pipeline), facts, feats);
  }));
}

async function pollStatus() {
  try {
    const s = await api("/api/status");
    latest = s;
    $("login").hidden = true;
    renderHeader(s); renderAlerts(s); renderPipelines(s); renderSources(s); renderSinks(s); renderTags(s);
    const ids = s.pipelines.map((p) => p.model).join(",");
    if (ids !== lastModels) { lastModels = ids; renderModels(await api("/api/models")); }
  } catch (err) {
    if (err.message !== "token") { $("overall").className = "badge alarm"; $("overall").textContent = t("offline"); }
  }
}

async function pollSeries() {
  try {
    const got = await api(`/api/series?since=${since === -Infinity ? "-inf" : since}`);
    for (const p of got.pipelines) {
      const s = series[p.name] || (series[p.name] = { points: [] });
      s.points.push(...p.points);
      const newest = s.points.length ? s.points[s.points.length - 1][0] : null;
      if (newest !== null) {
        s.points = s.points.filter((q) => q[0] > newest - got.horizon_s);
        since = Math.max(since, newest);
      }
    }
    if (latest) renderPipelines(latest);
  } catch (err) { /* shown by pollStatus */ }
}

function start() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    token = hash.get("token");
    sessionStorage.setItem("edge-agent-token", token);
    history.replaceState(null, "", location.pathname); // the token leaves the address bar
  }
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("edge-agent-token", token);
    pollStatus(); pollSeries();
  });
  $("filter").addEventListener("input", () => latest && renderTags(latest));
  pollSeries().then(pollStatus);
  setInterval(pollStatus, 2000);
  setInterval(pollSeries, 5000);
}

start();
