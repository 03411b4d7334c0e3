// The page `kvrag serve` shows at "/": one self-contained HTML document (inline style and script,
// no external resources), so the binary needs no install folder and serves no files from disk.
//
// Evidence text and answers are data: they reach the page only through textContent and text
// nodes (never innerHTML), so markup in a corpus is shown, not run. The answer is highlighted in
// each evidence segment with <mark>, matched case-insensitively.
//
// "/?q=QUESTION&mode=MODE&top_k=K" fills the form and asks at once (links, the browser test);
// <body data-state> is idle | loading | done | error; data-mode is the mode last asked with.
// The form starts at the server's defaults from /v1/health (its first mode, limits.default_top_k:
// the workspace's, see qa/answer_defaults.h); until then, or without them, a request leaves mode
// and top_k out and the server applies the same defaults.

#include "serve/server.h"

namespace kvrag {

const std::string& web_page_html() {
  static const std::string page = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kvrag</title>
<style>
  :root { --fg: #1d2327; --muted: #5f6b73; --line: #d9dee2; --accent: #2557a7; --bg: #f6f7f8; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
         background: var(--bg); }
  main { max-width: 52rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
  h1 { font-size: 1.4rem; margin: 0 0 .2rem; }
  #models { color: var(--muted); font-size: .85rem; margin: 0 0 1.2rem; word-break: break-all; }
  form { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1rem; }
  #question { width: 100%; font: inherit; padding: .55rem .7rem; border: 1px solid var(--line);
              border-radius: 6px; }
  .controls { display: flex; flex-wrap: wrap; gap: .8rem 1.4rem; align-items: center; margin-top: .8rem; }
  fieldset { border: 0; padding: 0; margin: 0; display: flex; gap: .9rem; flex-wrap: wrap; }
  legend { float: left; margin-right: .6rem; color: var(--muted); }
  label.disabled { color: #a4adb3; }
  #top-k { width: 4.2rem; font: inherit; padding: .2rem .3rem; }
  button { font: inherit; background: var(--accent); color: #fff; border: 0; border-radius: 6px;
           padding: .45rem 1.2rem; cursor: pointer; margin-left: auto; }
  button:disabled { opacity: .6; cursor: default; }
  #status { min-height: 1.5rem; margin: .8rem 0; color: var(--muted); }
  #status.error { color: #b3261e; }
  #result[hidden] { display: none; }
  .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1rem; margin-bottom: 1rem; }
  #answer { font-size: 1.35rem; font-weight: 600; margin: 0 0 .4rem; }
  .meta { color: var(--muted); font-size: .85rem; }
  .meta span + span::before { content: " · "; }
  h2 { font-size: 1rem; margin: 1.2rem 0 .5rem; }
  #evidence { list-style: none; padding: 0; margin: 0; }
  #evidence li { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .7rem 1rem;
                 margin-bottom: .6rem; }
  .ev-head { display: flex; gap: .6rem; align-items: baseline; }
  .ev-title { font-weight: 600; }
  .ev-score, .ev-id { color: var(--muted); font-size: .8rem; }
  .ev-score { margin-left: auto; }
  .ev-text { margin: .3rem 0 0; white-space: pre-wrap; }
  #evidence li.cited { border: 2px solid #1a73e8; }
  .ev-attention { color: #1a73e8; font-size: .8rem; }
  .ev-bar { height: 4px; background: #1a73e8; border-radius: 2px; margin-top: .3rem; }
  mark { background: #ffe58a; padding: 0 .1em; border-radius: 2px; }
</style>
</head>
<body data-state="idle">
<main>
  <h1>kvrag</h1>
  <p id="models">retrieval-augmented answers from a frozen LLM with a dynamic key/value prefix</p>
  <form id="ask-form" autocomplete="off">
    <input id="question" name="q" type="text" maxlength="2048" placeholder="Ask a question…" required>
    <div class="controls">
      <fieldset id="modes">
        <legend>mode</legend>
        <label><input type="radio" name="mode" value="none"> none</label>
        <label><input type="radio" name="mode" value="context"> context</label>
        <label><input type="radio" name="mode" value="prefix"> prefix</label>
        <label><input type="radio" name="mode" value="context+prefix"> context+prefix</label>
        <label><input type="radio" name="mode" value="auto"> auto</label>
      </fieldset>
      <label>top-k <input id="top-k" name="top_k" type="number" min="1" max="20" placeholder="default"></label>
      <button id="ask-button" type="submit">Ask</button>
    </div>
  </form>
  <div id="status" role="status" aria-live="polite"></div>
  <section id="result" hidden>
    <div class="card">
      <p id="answer"></p>
      <div class="meta" id="groundedness"></div>
      <div class="meta" id="timings"></div>
    </div>
    <h2 id="evidence-heading">Evidence</h2>
    <ol id="evidence"></ol>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setState(state, message) {
  document.body.dataset.state = state;
  $("status").textContent = message || "";
  $("status").className = state === "error" ? "error" : "";
  $("ask-button").disabled = state === "loading";
}

function selectedMode() {
  const checked = document.querySelector('input[name="mode"]:checked');
  return checked ? checked.value : null;  // null: the server's default
}

// Checks `mode` even where the server does not offer it, so asking says why it cannot.
function selectMode(mode) {
  for (const input of document.querySelectorAll('input[name="mode"]')) {
    if (input.value === mode) input.checked = true;
  }
}

// Appends `text` to `parent` as text nodes, with every case-insensitive occurrence of one of
// the `needles` wrapped in <mark>.
function appendHighlighted(parent, text, needles) {
  const escaped = needles.filter((n) => n.length > 0)
                         .map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  if (escaped.length === 0) { parent.appendChild(document.createTextNode(text)); return; }
  escaped.sort((a, b) => b.length - a.length);  // the longest alternative wins at a position
  const re = new RegExp(escaped.join("|"), "giu");
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m[0].length === 0) continue;
    parent.appendChild(document.createTextNode(text.slice(last, m.index)));
    parent.appendChild(el("mark", "", m[0]));
    last = m.index + m[0].length;
  }
  parent.appendChild(document.createTextNode(text.slice(last)));
}

// The forms of the answer to look for: as generated, and without surrounding punctuation or a
// leading article (answers are compared SQuAD-style).
function answerNeedles(answer) {
  const forms = new Set();
  const base = answer.trim().replace(/^[\s"'“‘(]+|[\s"'”’).,;:!?]+$/gu, "");
  forms.add(base);
  forms.add(base.replace(/^(the|a|an)\s+/iu, ""));
  return [...forms].filter((f) => f.length > 0);
}

function formatNumber(v) {
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 1 ? 1 : 3);
}

function fillMeta(node, entries, unit) {
  node.replaceChildren();
  for (const [key, value] of entries) {
    const text = key.replace(/_ms$/, "").replace(/_/g, " ") + " " +
                 (typeof value === "boolean" ? (value ? "yes" : "no")
                  : unit && typeof value === "number" && !Number.isInteger(value) ? value.toFixed(1) + unit
                  : formatNumber(value) + (unit || ""));
    node.appendChild(el("span", "", text));
  }
}

function showAnswer(data) {
  const answer = typeof data.answer === "string" ? data.answer : "";
  $("answer").textContent = answer.trim() === "" ? "(empty answer)" : answer;
  const g = data.groundedness && typeof data.groundedness === "object" ? data.groundedness : {};
  fillMeta($("groundedness"), Object.entries(g).map(([k, v]) => [k === "answer_in_evidence" ? "answer in evidence" : k, v]));
  const t = data.timings_ms && typeof data.timings_ms === "object" ? data.timings_ms : {};
  fillMeta($("timings"), Object.entries(t), " ms");
  const list = $("evidence");
  list.replaceChildren();
  const evidence = Array.isArray(data.evidence) ? data.evidence : [];
  const needles = answerNeedles(answer);
  // Citations from attention (prefix modes): each segment's share of the answer's attention; the
  // most attended one is framed as the answer's source.
  const attention = evidence.map((e) => (typeof e.attention === "number" && isFinite(e.attention) ? e.attention : null));
  const most = Math.max(0, ...attention.filter((a) => a !== null));
  evidence.forEach((e, i) => {
    const item = el("li", Number.isInteger(data.cited) && data.cited === i ? "evidence cited" : "evidence");
    const head = el("div", "ev-head");
    head.appendChild(el("span", "ev-title", String(e.title ?? "")));
    head.appendChild(el("span", "ev-id", "#" + String(e.segment_id ?? "")));
    if (attention[i] !== null) {
      head.appendChild(el("span", "ev-attention", "attention " + (100 * attention[i]).toFixed(1) + "%" +
                                                   (data.cited === i ? " (cited)" : "")));
    }
    head.appendChild(el("span", "ev-score", "score " + formatNumber(e.score)));
    item.appendChild(head);
    if (attention[i] !== null && most > 0) {
      const bar = el("div", "ev-bar");
      bar.style.width = Math.round(100 * attention[i] / most) + "%";
      item.appendChild(bar);
    }
    const body = el("p", "ev-text");
    appendHighlighted(body, String(e.text ?? ""), needles);
    item.appendChild(body);
    list.appendChild(item);
  });
  $("evidence-heading").textContent = evidence.length ? "Evidence (" + evidence.length + ")" : "No evidence (closed-book)";
  $("result").hidden = false;
}

// A server started with --api-key wants "Authorization: Bearer KEY": the page takes the key from
// its URL's fragment (URL#key=KEY), which the browser never sends to a server.
function apiHeaders(extra) {
  const key = new URLSearchParams(window.location.hash.slice(1)).get("key");
  return key ? Object.assign({ "Authorization": "Bearer " + key }, extra) : extra;
}
function statusMessage(response, data) {
  if (response.status === 401) return "this server needs an API key: open the page as " +
      window.location.origin + "/#key=KEY";
  return data && data.error ? data.error : response.status + " " + response.statusText;
}

let pending = null;
async function ask() {
  const question = $("question").value.trim();
  if (question === "") { setState("error", "Type a question first."); return; }
  const mode = selectedMode();
  const topK = parseInt($("top-k").value, 10);
  const request = { question: question };  // what is not chosen, the server defaults
  if (mode) request.mode = mode;
  if (Number.isInteger(topK)) request.top_k = topK;
  const url = new URL(window.location.href);
  const params = new URLSearchParams({ q: question });
  if (mode) params.set("mode", mode);
  if (Number.isInteger(topK)) params.set("top_k", String(topK));
  url.search = params.toString();
  window.history.replaceState(null, "", url);
  if (pending) pending.abort();
  const controller = new AbortController();
  pending = controller;
  document.body.dataset.mode = mode || "";
  setState("loading", "Answering…");
  try {
    const response = await fetch("/v1/ask", {
      method: "POST",
      headers: apiHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(request),
      signal: controller.signal,
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) throw new Error(statusMessage(response, data));
    if (typeof data.mode === "string") document.body.dataset.mode = data.mode;
    showAnswer(data);
    setState("done", "");
  } catch (err) {
    if (err.name === "AbortError") return;
    setState("error", "Error: " + err.message);
  } finally {
    if (pending === controller) pending = null;
  }
}

async function loadHealth() {
  try {
    const response = await fetch("/v1/health", { headers: apiHeaders({}) });
    if (response.status === 401) { setState("error", statusMessage(response, null)); return; }
    const health = await response.json();
    const offered = new Set(health.modes || []);
    for (const input of document.querySelectorAll('input[name="mode"]')) {
      input.disabled = !offered.has(input.value);
      input.parentElement.classList.toggle("disabled", input.disabled);
    }
    // The server's defaults: its first mode, limits.default_top_k (as the form's defaults, so
    // that a value the user already typed stays).
    if (health.modes && health.modes.length) {
      for (const input of document.querySelectorAll('input[name="mode"]')) {
        input.defaultChecked = input.value === health.modes[0];
      }
      if (!offered.has(selectedMode())) selectMode(health.modes[0]);
    }
    const limits = health.limits && typeof health.limits === "object" ? health.limits : {};
    if (Number.isInteger(limits.max_top_k)) $("top-k").max = String(limits.max_top_k);
    if (Number.isInteger(limits.default_top_k)) $("top-k").defaultValue = String(limits.default_top_k);
    const models = health.models && typeof health.models === "object" ? health.models : {};
    const parts = Object.entries(models).filter(([, v]) => v !== "" && v !== null)
                        .map(([k, v]) => k.replace(/_/g, " ") + ": " + (typeof v === "string" ? v : JSON.stringify(v)));
    if (parts.length) $("models").textContent = parts.join(" · ");
  } catch (_) {
    // The page still works without it; errors show when asking.
  }
}

$("ask-form").addEventListener("submit", (event) => { event.preventDefault(); ask(); });

(async () => {
  const params = new URLSearchParams(window.location.search);
  await loadHealth();
  if (params.has("mode")) selectMode(params.get("mode"));
  if (params.has("top_k")) $("top-k").value = params.get("top_k");
  if (params.get("q")) { $("question").value = params.get("q"); await ask(); }
  else $("question").focus();
})();
</script>
</body>
</html>
)HTML";
  return page;
}

}  // namespace kvrag
