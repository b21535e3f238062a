// The anygram web page: one text, three lookups on the chosen index (/v1 API):
// the count of the text as an n-gram, the ∞-gram score of every token, and documents.
"use strict";

const $ = (id) => document.getElementById(id);

// Suffix-length buckets for the coloring: [lowest length, label].
const BUCKETS = [[0, "unseen"], [1, "1"], [2, "2–3"], [4, "4–7"], [8, "8–15"], [16, "16+"]];
const MAX_DOCUMENTS = 5;
const DISPLAY_TOKENS = 120;

let apiKey = localStorage.getItem("anygram-api-key") || "";
let latestRun = 0; // answers to an older run are dropped
let latestKey = ""; // the index and text of the latest run: the same again is not re-run
let debounce = null;

async function api(path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data;
  try {
    data = await response.json();
  } catch {
    data = { error: `HTTP ${response.status}` };
  }
  if (!response.ok) {
    if (response.status === 401) $("api-key-row").hidden = false;
    throw new Error(data.error || `HTTP ${response.status}`);
  }
  return data;
}

function bucket(suffixLen) {
  let b = 0;
  BUCKETS.forEach(([low], i) => { if (suffixLen >= low) b = i; });
  return b;
}

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  Object.entries(attributes).forEach(([k, v]) => node.setAttribute(k, v));
  if (text) node.textContent = text;
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadIndexes() {
  const { indexes } = await api("/v1/indexes");
  const select = $("index");
  select.replaceChildren();
  for (const index of indexes) {
    const label = `${index.name} (${index.num_tokens.toLocaleString()} tokens)`;
    const option = element("option", { value: index.name }, label);
    option.dataset.acceptsText = String(index.accepts_text);
    option.dataset.tokenizer = index.tokenizer || "none";
    select.append(option);
  }
  describeIndex();
}

function describeIndex() {
  const option = $("index").selectedOptions[0];
  if (!option) return;
  $("index-info").textContent = option.dataset.acceptsText === "true"
    ? `tokenizer: ${option.dataset.tokenizer}`
    : "no tokenizer: this index takes token ids only (use the API)";
}

function renderLegend() {
  $("legend").replaceChildren(...BUCKETS.map(([, label], i) =>
    element("span", { class: `s${i}` }, `suffix ${label}`)));
}

function renderTokens(result) {
  const container = $("tokens");
  container.replaceChildren();
  result.pieces.forEach((piece, i) => {
    const suffixLen = result.suffix_len[i];
    const prob = result.prob[i];
    const span = element("span", { class: `tok s${bucket(suffixLen)}` }, piece);
    span.dataset.suffixLen = String(suffixLen);
    span.dataset.prob = String(prob);
    span.dataset.tokenId = String(result.token_ids[i]);
    const p = prob < 0 ? "undefined" : prob.toFixed(4);
    span.title = `token ${JSON.stringify(result.tokens ? result.tokens[i] : piece)} (id ${result.token_ids[i]})\n` +
      `P∞ = ${p} (${result.cont_cnt[i].toLocaleString()} / ${result.prompt_cnt[i].toLocaleString()})\n` +
      `longest occurring suffix before it: ${suffixLen} tokens`;
    container.append(span);
  });
}

function renderDocuments(search) {
  const list = $("documents");
  list.replaceChildren();
  const shown = search.documents.length;
  $("docs-summary").textContent = search.cnt === 0
    ? "No document contains the text."
    : `${search.cnt.toLocaleString()} occurrence(s); showing ${shown}` +
      (search.cnt > shown ? " drawn at random." : ".");
  for (const doc of search.documents) {
    const item = element("li", { class: "document" });
    item.dataset.docIx = String(doc.doc_ix);
    let about = "";
    try {
      const meta = JSON.parse(doc.metadata || "null");
      const inner = meta && meta.metadata !== undefined ? meta.metadata : meta;
      if (inner && Object.keys(inner).length) about = ` · ${JSON.stringify(inner)}`;
    } catch { /* metadata is free text */ }
    item.append(element("div", { class: "doc-head" },
      `Document #${doc.doc_ix} · ${doc.doc_len.toLocaleString()} tokens${about}`));
    const text = element("pre", { class: "doc-text" });
    for (const [piece, label] of doc.spans) {
      text.append(label === null ? document.createTextNode(piece) : element("mark", { "data-clause": label }, piece));
    }
    item.append(text);
    list.append(item);
  }
}

async function run() {
  const text = $("text").value;
  const name = $("index").value;
  if (!text || !name) return;
  const key = `${name}\u0000${text}`;
  if (key === latestKey && document.body.dataset.state !== "error") return;
  latestKey = key;
  const runId = ++latestRun;
  document.body.dataset.state = "loading";
  $("status").textContent = "…";
  showError("");
  const base = `/v1/indexes/${encodeURIComponent(name)}`;
  const started = performance.now();
  try {
    const [count, score, search] = await Promise.all([
      api(`${base}/count`, { queries: [text] }),
      api(`${base}/score`, { texts: [text] }),
      api(`${base}/search`, { query: text, maxnum: MAX_DOCUMENTS, max_disp_len: DISPLAY_TOKENS }),
    ]);
    if (runId !== latestRun) return;
    $("count").textContent = count.counts[0].toLocaleString();
    $("count").dataset.value = String(count.counts[0]);
    $("num-tokens").textContent = String(score.results[0].token_ids.length);
    renderTokens(score.results[0]);
    renderDocuments(search);
    $("results").hidden = false;
    $("results").dataset.query = text;
    $("status").textContent = `answered in ${Math.round(performance.now() - started)} ms`;
    document.body.dataset.state = "done";
  } catch (error) {
    if (runId !== latestRun) return;
    showError(error.message);
    $("status").textContent = "";
    document.body.dataset.state = "error";
  }
}

function init() {
  renderLegend();
  $("api-key").value = apiKey;
  $("api-key").addEventListener("change", () => {
    apiKey = $("api-key").value.trim();
    localStorage.setItem("anygram-api-key", apiKey);
    loadIndexes().catch((e) => showError(e.message));
  });
  $("index").addEventListener("change", () => { describeIndex(); run(); });
  $("query-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(debounce);
    run();
  });
  $("text").addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(run, 400);
  });
  loadIndexes()
    .then(() => { document.body.dataset.state = "ready"; })
    .catch((e) => showError(e.message));
}

init();
