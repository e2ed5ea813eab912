// ste view: the whole view lives in the URL's #hash (deep links); data comes from /api, a page
// at a time. Plain JS, no dependencies, nothing fetched from outside this server.
"use strict";

const DEFAULTS = { view: "overview", run: "0", set: "", iter: "", cmp: "", filter: "",
  subset: "", q: "", offset: "0", pair: "" };
const PAGE = 50;
const summaries = new Map(); // run id -> {at, data}
let runs = [];

function state() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const s = { ...DEFAULTS };
  for (const k of Object.keys(DEFAULTS)) if (params.has(k)) s[k] = params.get(k);
  return s;
}

function go(changes) {
  const s = { ...state(), ...changes };
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(s)) if (v !== "" && v !== DEFAULTS[k]) params.set(k, v);
  location.hash = params.toString();
}

async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== "" && v != null) url.searchParams.set(k, v);
  const res = await fetch(url);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null) node.append(c instanceof Node ? c : String(c));
  return node;
}

const pct = (x, d = 1) => (x == null ? "–" : (100 * x).toFixed(d));
const money = (x) => (x == null ? "–" : "$" + Number(x).toFixed(x >= 100 ? 0 : 4));
const num = (x) => (x == null ? "–" : Number(x).toLocaleString("en-US"));
// A score's accuracy, or why it has none; and its error count, shown beside every accuracy.
const acc = (e) => (!e ? "–" : e.accuracy == null ? "none (too many errors)" : `${pct(e.accuracy)}%`);
const errors = (e) => (e ? `${num(e.error_count)} of ${num(e.n_items)}` : "–");

async function summary(run) {
  const hit = summaries.get(run);
  if (hit && Date.now() - hit.at < 5000) return hit.data;
  const data = await api(`/api/runs/${run}/summary`);
  summaries.set(run, { at: Date.now(), data });
  return data;
}

function showError(err) {
  const box = document.getElementById("error");
  box.textContent = String(err.message || err);
  box.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------------

function table(head, rows, attrs = {}) {
  return el("table", { class: "grid", ...attrs },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}

function ciChart(iters) {
  // Accuracy with its 95% interval per judge, on a 0-100 axis.
  const scored = iters.filter((it) => it.eval && it.eval.accuracy != null);
  if (!scored.length) return el("p", { class: "muted" }, "No judge evaluated yet.");
  const w = 460, rowH = 26, left = 70, right = 20, h = scored.length * rowH + 30;
  const x = (v) => left + (w - left - right) * v;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("style", `max-width:${w}px`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "accuracy per judge with 95% intervals");
  const add = (tag, a, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(a)) n.setAttribute(k, v);
    if (text != null) n.textContent = text;
    svg.append(n);
  };
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    add("line", { x1: x(t), x2: x(t), y1: 4, y2: h - 22, stroke: t === 0.5 ? "#999" : "#e3e6ea" });
    add("text", { x: x(t), y: h - 6, "text-anchor": "middle" }, `${t * 100}%`);
  }
  scored.forEach((it, i) => {
    const y = 16 + i * rowH, e = it.eval;
    add("text", { x: 4, y: y + 4 }, `M${it.index}`);
    add("line", { x1: x(e.ci_low), x2: x(e.ci_high), y1: y, y2: y, stroke: "#1f5fa8", "stroke-width": 3 });
    add("circle", { cx: x(e.accuracy), cy: y, r: 5, fill: "#1f5fa8" });
  });
  return svg;
}

function accuracyCard(s) {
  const rows = s.iterations.map((it) => {
    const e = it.eval, prev = it.paired.vs_previous;
    return [
      it.index === 0 ? "M0 (seed)" : `M${it.index}`,
      it.judge_model || "–",
      acc(e),
      e && e.accuracy != null ? `[${pct(e.ci_low)}, ${pct(e.ci_high)}]` : "–",
      e ? num(e.n_scored ?? e.n_items) : "–",
      errors(e),
      e && e.position_consistency != null ? `${pct(e.position_consistency)}%` : "–",
      e ? `${pct(e.no_verdict_rate)}%` : "–",
      prev ? `${(100 * prev.difference).toFixed(1)} pts (p=${prev.p_value.toPrecision(3)})` : "–",
    ];
  });
  return el("div", { class: "card wide", id: "accuracy" },
    el("h2", {}, "Judge accuracy on the frozen eval pairs"),
    el("div", { class: "side" },
      table(["judge", "model", "accuracy", "95% CI", "n", "errors", "position consistency", "no verdict", "vs previous"], rows),
      el("div", { class: "chart" }, ciChart(s.iterations))),
    el("p", { class: "muted" }, "A missing verdict counts 0.5. Errors (failed requests) are left out of the accuracy; above evaluation.max_error_rate of the items there is none. Intervals: 95% Wilson."));
}

function pairedCard(s) {
  const rows = [];
  for (const it of s.iterations)
    for (const [name, t] of Object.entries(it.paired))
      rows.push([`M${it.index} vs M${t.against_iteration}`, name.replace(/_/g, " "),
        `${(100 * t.difference).toFixed(1)} pts`, `[${(100 * t.ci_low).toFixed(1)}, ${(100 * t.ci_high).toFixed(1)}]`,
        t.p_value.toPrecision(3), t.method + (t.exact === false ? ` (${t.n_draws} draws)` : ""), num(t.n_common)]);
  return el("div", { class: "card", id: "paired" }, el("h2", {}, "Paired tests"),
    rows.length ? table(["judges", "test", "difference", "95% CI", "p", "method", "n"], rows)
      : el("p", { class: "muted" }, "No paired test yet (it needs two judges)."));
}

function benchCard(s) {
  const names = [...new Set(s.iterations.flatMap((it) => Object.keys(it.benchmarks)))];
  if (!names.length) return null;
  const rows = [];
  for (const it of s.iterations)
    for (const n of names) {
      const b = it.benchmarks[n];
      if (b) rows.push([`M${it.index}`, n, acc(b), b.accuracy != null ? `[${pct(b.ci_low)}, ${pct(b.ci_high)}]` : "–", num(b.n_scored ?? b.n_items), errors(b)]);
    }
  return el("div", { class: "card", id: "benchmarks" }, el("h2", {}, "Benchmarks"),
    table(["judge", "benchmark", "accuracy", "95% CI", "n", "errors"], rows));
}

function funnelCard(s) {
  const iters = s.iterations.filter((it) => it.funnel || Object.keys(it.stage_counts).length);
  const keys = [];
  for (const it of iters)
    for (const k of Object.keys(it.funnel || {})) if (k !== "drops" && !keys.includes(k)) keys.push(k);
  const rows = keys.map((k) => [k.replace(/_/g, " "), ...iters.map((it) => num((it.funnel || {})[k]))]);
  const drops = iters.map((it) => Object.entries((it.funnel || {}).drops || {}).map(([r, n]) => `${r}: ${n}`).join(", ") || "–");
  if (rows.length) rows.push(["dropped", ...drops]);
  return el("div", { class: "card", id: "funnel" }, el("h2", {}, "Funnel"),
    rows.length ? table(["step", ...iters.map((it) => `iteration ${it.index}`)], rows)
      : el("p", { class: "muted" }, "No funnel recorded yet."));
}

function costCard(s) {
  const c = s.cost_usd;
  const stages = Object.entries(s.usage_by_stage).map(([k, u]) => [k, num(u.requests), num(u.cache_hits),
    num(u.prompt_tokens), num(u.completion_tokens), money(u.cost_usd)]);
  return el("div", { class: "card", id: "cost" }, el("h2", {}, "Cost"),
    c ? table(["", "USD"], [["inference", money(c.inference)], ["fine-tuning", money(c.finetune)],
      ["endpoints", money(c.endpoints)], ["total", money(c.total)]]) : el("p", { class: "muted" }, "No manifest yet."),
    stages.length ? table(["stage", "requests", "cache hits", "prompt tokens", "completion tokens", "USD"], stages) : null);
}

async function renderOverview(s) {
  const data = await summary(s.run);
  const box = document.getElementById("overview");
  const m = data.models || {};
  fill(box,
    el("h2", {}, `${data.name}`, el("span", { class: "muted" }, ` · ${data.status || "no status"} · ${data.path}`)),
    el("p", { class: "muted" }, Object.entries(m).map(([k, v]) => `${k}: ${v}`).join(" · ")),
    data.notes.length ? el("p", { class: "muted" }, "Notes: " + data.notes.join("; ")) : null,
    el("div", { class: "cards" }, accuracyCard(data), pairedCard(data), benchCard(data), funnelCard(data), costCard(data)));
}

// ---------------------------------------------------------------------------------------------
// Runs side by side
// ---------------------------------------------------------------------------------------------

function judgeCell(j) {
  return j ? `M${j.iteration}: ${pct(j.accuracy)}% [${pct(j.ci_low)}, ${pct(j.ci_high)}]` : "–";
}

async function renderRuns() {
  const data = await api("/api/compare");
  const rows = data.runs.map((r) => {
    const t = r.last_vs_seed;
    return [
      el("span", {}, el("a", { href: `#run=${r.id}` }, r.name), el("div", { class: "muted path" }, r.directory)),
      r.status || "–",
      r.eval_pairs || "–",
      judgeCell(r.seed),
      judgeCell(r.last),
      t ? `${(100 * t.difference).toFixed(1)} pts (p=${t.p_value.toPrecision(3)})` : "–",
      judgeCell(r.highest),
      money(r.cost_usd),
    ];
  });
  fill(document.getElementById("runs"),
    el("h2", {}, "Runs side by side"),
    data.warning ? el("p", { class: "warn", id: "runs-warning" }, data.warning) : null,
    el("div", { class: "card" },
      table(["run", "status", "eval pairs", "seed judge", "last judge", "last vs seed", "highest on eval", "cost"], rows, { id: "runs-table" }),
      el("p", { class: "muted" }, "Accuracy on each run's frozen eval pairs with 95% intervals. " +
        "\"Highest on eval\" is chosen on the same items it is scored on, so it is optimistic; " +
        "the last judge and its paired test against the seed are the unbiased comparison.")));
}

// ---------------------------------------------------------------------------------------------
// Pairs
// ---------------------------------------------------------------------------------------------

function judgeLabel(set, j) {
  if (set === "train") return `iteration ${j} (judged by M${j - 1})`;
  return j === 0 ? "M0 (seed)" : `M${j}`;
}

function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c != null));
}

function options(select, items, value) {
  select.replaceChildren(...items.map(([v, label, title]) => el("option", { value: v, title }, label)));
  select.value = value;
}

function verdictBadges(verdicts) {
  return verdicts.map((v) => {
    const cls = v.pick === "chosen" ? "ok" : v.pick === "rejected" ? "no" : "na";
    const shown = v.failed ? "fail" : v.verdict || "none";
    return el("span", { class: `badge ${cls}`, title: `order ${v.order}, sample ${v.sample_index}` }, `${v.order}:${shown}`);
  });
}

async function renderPairs(s) {
  const sum = await summary(s.run);
  const sets = sum.sets;
  if (!sets.length) {
    document.getElementById("list-info").textContent = "Nothing judged yet in this run.";
    return;
  }
  const set = sets.find((x) => x.key === s.set) || sets[0];
  const iter = set.iterations.includes(Number(s.iter)) && s.iter !== "" ? Number(s.iter) : set.iterations[set.iterations.length - 1];
  options(document.getElementById("set-select"), sets.map((x) => [x.key, x.label]), set.key);
  options(document.getElementById("iter-select"), set.iterations.map((j) => [String(j), judgeLabel(set.key, j)]), String(iter));
  const cmpSel = document.getElementById("cmp-select");
  options(cmpSel, [["", "nobody"], ...(set.comparable ? set.iterations.filter((j) => j !== iter).map((j) => [String(j), judgeLabel(set.key, j)]) : [])], s.cmp);
  cmpSel.disabled = !set.comparable;
  const filters = Object.entries(sum.filters).filter(([k]) => (k !== "kept" || set.key === "train") && (k !== "changed" || s.cmp));
  options(document.getElementById("filter-select"), [["", "all pairs"], ...filters.map(([k, d]) => [k, k.replace("_", " "), d])], s.filter);
  const search = document.getElementById("search");
  if (document.activeElement !== search) search.value = s.q;

  const page = await api(`/api/runs/${s.run}/items`, { set: set.key, iter, compare: s.cmp, filter: s.filter,
    subset: s.subset, q: s.q, offset: s.offset, limit: PAGE, pair: s.pair });
  options(document.getElementById("subset-select"), [["", "all"], ...page.subsets.map((x) => [x, x])], s.subset);
  document.getElementById("subset-select").disabled = !page.subsets.length;
  const models = page.judge_models.length ? ` (${page.judge_models.join(", ")})` : "";
  document.getElementById("list-info").textContent =
    `${num(page.total)} of ${num(page.pairs_total)} pairs · judge ${page.judge}${models}` +
    (page.bad_lines ? ` · ${page.bad_lines} unreadable lines skipped` : "");
  const offset = Number(s.offset);
  document.getElementById("page-info").textContent = page.total
    ? `${offset + 1}–${Math.min(offset + PAGE, page.total)} of ${num(page.total)}` : "no pair matches";
  document.getElementById("prev").disabled = offset <= 0;
  document.getElementById("next").disabled = offset + PAGE >= page.total;
  document.querySelector("#items tbody").replaceChildren(...page.items.map((it) =>
    el("tr", { "data-pair": it.id, class: it.id === s.pair ? "selected" : null, onclick: () => go({ pair: it.id }) },
      el("td", { class: "id" }, it.id, it.subset ? el("div", { class: "muted" }, it.subset) : null),
      el("td", {}, el("div", { class: "instr", title: it.instruction }, it.instruction),
        el("div", {}, verdictBadges(it.verdicts))),
      el("td", { class: "marks" }, `score ${it.score == null ? "–" : it.score.toFixed(2)}`,
        it.compare ? el("div", { class: "muted" }, `vs ${it.compare.score == null ? "–" : it.compare.score.toFixed(2)}`) : null,
        it.kept && it.kept.length ? el("div", { class: "badge ok" }, `kept ${it.kept.join(",")}`) : null))));
  if (s.pair) await renderDetail(s, set.key, iter, page);
  else document.getElementById("detail").replaceChildren(el("p", { class: "muted" }, "Choose a pair on the left."));
}

function judgementView(j) {
  const cls = j.pick === "chosen" ? "ok" : j.pick === "rejected" ? "no" : "na";
  const what = j.failed ? `no judgement (${j.reason}${j.error_type ? ": " + j.error_type : ""})`
    : j.verdict == null ? "no verdict" : j.verdict === "tie" ? "tie"
    : `${j.verdict} = the ${j.pick === "chosen" ? "better" : "worse"} response`;
  const body = j.failed ? (j.message || j.text || "") : j.text;
  return el("div", { class: "judgement", "data-order": j.order, "data-sample": j.sample_index },
    el("div", { class: "head" },
      el("strong", {}, `Order ${j.order}`),
      el("span", { class: "muted" }, `sample ${j.sample_index} · A = ${j.shown.A === "chosen" ? "better" : "worse"}, B = ${j.shown.B === "chosen" ? "better" : "worse"}`),
      el("span", { class: `badge ${cls}` }, "verdict: ", el("span", { class: "verdict-value" }, j.failed ? "failed" : j.verdict || "none")),
      el("span", { class: "muted" }, what),
      j.parse_reason ? el("span", { class: "muted" }, `(${j.parse_reason})`) : null),
    el("pre", { class: "text reasoning" }, body));
}

function positionNote(page, pairId) {
  // The open pair may come from a deep link or an earlier filter: say where it stands.
  const at = page.pair_position;
  if (at == null) return el("p", { class: "warn", id: "not-listed" },
    `Pair ${pairId} is not in the list as filtered now; it stays open until you choose another.`);
  const offset = page.offset;
  if (at < offset || at >= offset + page.limit)
    return el("p", { class: "muted", id: "listed-elsewhere" }, `Pair ${at + 1} of ${num(page.total)} in the list (on another page).`);
  return null;
}

async function renderDetail(s, setKey, iter, page) {
  const box = document.getElementById("detail");
  let data;
  try {
    data = await api(`/api/runs/${s.run}/pair`, { set: setKey, id: s.pair, iter, compare: s.cmp });
  } catch (err) {
    box.replaceChildren(el("p", { class: "error" }, err.message));
    return;
  }
  const p = data.pair;
  fill(box,
    positionNote(page, s.pair),
    el("h2", {}, `Pair ${p.id}`, p.subset ? el("span", { class: "muted" }, ` · ${p.subset}`) : null),
    el("h3", {}, "Instruction"), el("pre", { class: "text", id: "instruction" }, p.instruction),
    p.modified_instruction ? [el("h3", {}, "Modified instruction (the worse response answers it)"),
      el("pre", { class: "text", id: "modified" }, p.modified_instruction)] : null,
    el("div", { class: "responses" },
      el("div", {}, el("h3", {}, "Better response (chosen)"), el("pre", { class: "text", id: "chosen" }, p.chosen)),
      el("div", {}, el("h3", {}, "Worse response (rejected)"), el("pre", { class: "text", id: "rejected" }, p.rejected))),
    el("h3", {}, data.judges.length > 1 ? "Judgements, side by side" : "Judgements"),
    el("div", { class: "judges" }, data.judges.map((jd) =>
      el("div", { class: "judge", "data-iteration": jd.iteration },
        el("strong", {}, `Judge ${jd.judge}`),
        el("span", { class: "muted" }, ` · iteration ${jd.iteration} · score ${jd.score == null ? "–" : jd.score.toFixed(2)} · ${jd.file}`),
        jd.kept && jd.kept.length ? el("div", { class: "badge ok" }, `kept for training: ${jd.kept.join(", ")}`) : null,
        jd.judgements.length ? jd.judgements.map(judgementView) : el("p", { class: "muted" }, "Not judged.")))));
}

// ---------------------------------------------------------------------------------------------
// Wiring
// ---------------------------------------------------------------------------------------------

async function render() {
  document.getElementById("error").hidden = true;
  const s = state();
  const runSel = document.getElementById("run-select");
  options(runSel, runs.map((r) => [String(r.id), r.name]), s.run);
  runSel.disabled = runs.length < 2;
  const several = runs.length > 1;
  const view = s.view === "runs" && !several ? "overview" : s.view;
  for (const v of ["overview", "pairs", "runs"]) {
    document.getElementById(v).hidden = view !== v;
    document.getElementById(`tab-${v}`).classList.toggle("active", view === v);
  }
  document.getElementById("tab-runs").hidden = !several;
  document.getElementById("tab-overview").href = `#run=${s.run}`;
  document.getElementById("tab-pairs").href = `#view=pairs&run=${s.run}`;
  const status = document.getElementById("status");
  status.textContent = "loading…";
  try {
    if (view === "pairs") await renderPairs(s);
    else if (view === "runs") await renderRuns();
    else await renderOverview(s);
    status.textContent = "";
  } catch (err) {
    status.textContent = "";
    showError(err);
  }
  document.body.dataset.ready = location.hash; // tests wait for this
}

function wire() {
  const on = (id, ev, f) => document.getElementById(id).addEventListener(ev, f);
  on("run-select", "change", (e) => go({ run: e.target.value, set: "", iter: "", cmp: "", subset: "", offset: "0", pair: "" }));
  on("set-select", "change", (e) => go({ set: e.target.value, iter: "", cmp: "", subset: "", filter: "", offset: "0", pair: "" }));
  on("iter-select", "change", (e) => go({ iter: e.target.value, cmp: state().cmp === e.target.value ? "" : state().cmp, offset: "0" }));
  on("cmp-select", "change", (e) => go({ cmp: e.target.value, filter: !e.target.value && state().filter === "changed" ? "" : state().filter, offset: "0" }));
  on("filter-select", "change", (e) => go({ filter: e.target.value, offset: "0" }));
  on("subset-select", "change", (e) => go({ subset: e.target.value, offset: "0" }));
  let timer;
  on("search", "input", (e) => { clearTimeout(timer); timer = setTimeout(() => go({ q: e.target.value.trim(), offset: "0" }), 350); });
  on("prev", "click", () => go({ offset: String(Math.max(0, Number(state().offset) - PAGE)) }));
  on("next", "click", () => go({ offset: String(Number(state().offset) + PAGE) }));
  window.addEventListener("hashchange", render);
}

(async () => {
  wire();
  try {
    runs = await api("/api/runs");
  } catch (err) {
    showError(err);
    return;
  }
  render();
})();
