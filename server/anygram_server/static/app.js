// The anygram web page: one query, read by the service (`/parse`, the same reading as
// `POST /`: text or token ids, ` AND ` / ` OR ` for CNF), then the views of the chosen query
// type, each from the API: count, ∞-gram coloring, next-token distribution, documents, CNF.
// The query, its type and the index are kept in the URL, so a link re-runs it.
"use strict";

const $ = (id) => document.getElementById(id);

// Suffix-length buckets for the coloring: [lowest length, label]. Length 0 is no context:
// the token's probability is its frequency in the whole corpus.
const BUCKETS = [[0, "0: no context"], [1, "1"], [2, "2–3"], [4, "4–7"], [8, "8–15"], [16, "16+"]];
const MAX_DOCUMENTS = 5;
const DISPLAY_TOKENS = 120;
const NTD_BARS = 25;
const VIEWS = ["overview", "count", "infgram", "ntd", "documents", "cnf"];

let apiKey = localStorage.getItem("anygram-api-key") || "";
let latestRun = 0; // answers to an older run are dropped
let latestKey = ""; // the index, type and text of the latest run: the same again is not re-run
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

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  Object.entries(attributes).forEach(([k, v]) => node.setAttribute(k, v));
  if (text) node.textContent = text;
  return node;
}

function bucket(suffixLen) {
  let b = 0;
  BUCKETS.forEach(([low], i) => { if (suffixLen >= low) b = i; });
  return b;
}

const plural = (n, one, many) => `${n.toLocaleString()} ${n === 1 ? one : many}`;

// --- the form ---------------------------------------------------------------------------------

function selectedType() {
  return document.querySelector('input[name="type"]:checked').value;
}

function indexTakesText() {
  const option = $("index").selectedOptions[0];
  return !!option && option.dataset.acceptsText === "true";
}

function queryIsIds() {
  return $("as-ids").checked || !indexTakesText();
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
    option.dataset.vocabSize = String(index.vocab_size);
    select.append(option);
  }
  describeIndex();
}

// An index without a tokenizer is queried by token ids: the box takes numbers only.
function describeIndex() {
  const option = $("index").selectedOptions[0];
  if (!option) return;
  const takesText = indexTakesText();
  $("as-ids").disabled = !takesText;
  if (!takesText) $("as-ids").checked = true;
  $("index-info").textContent = takesText
    ? `tokenizer: ${option.dataset.tokenizer}`
    : `no tokenizer: type token ids (0 to ${Number(option.dataset.vocabSize) - 1})`;
  describeQueryBox();
}

function describeQueryBox() {
  const ids = queryIsIds();
  $("text").placeholder = ids
    ? "Token ids separated by spaces, e.g. 464 3290 11, or 464 AND 11 OR 12"
    : "Type some text, e.g. def __init__(self  (or: import os AND import sys)";
  $("text").inputMode = ids ? "numeric" : "text";
}

// --- permalinks -------------------------------------------------------------------------------

function permalink(query) {
  const params = new URLSearchParams({ index: query.index, type: query.type, q: query.text });
  if (query.ids && indexTakesText()) params.set("ids", "1");
  return `/?${params}`;
}

// The query of the URL into the form; true when it has one to run.
function applyUrl() {
  const params = new URLSearchParams(location.search);
  const index = params.get("index");
  if (index !== null && [...$("index").options].some((o) => o.value === index)) $("index").value = index;
  const type = params.get("type");
  if (VIEWS.includes(type)) document.querySelector(`input[name="type"][value="${type}"]`).checked = true;
  $("as-ids").checked = params.get("ids") === "1";
  describeIndex();
  if (params.has("q")) $("text").value = params.get("q");
  return params.has("q");
}

// --- rendering --------------------------------------------------------------------------------

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// Hides and empties every view, so that nothing of an earlier query stays on screen.
function clearResults() {
  $("results").hidden = true;
  delete $("results").dataset.query;
  for (const section of $("results").querySelectorAll("section")) section.hidden = true;
  for (const id of ["count-sentence", "clauses", "tokens", "ntd-summary", "ntd-bars", "docs-summary", "documents"]) {
    $(id).replaceChildren();
  }
  $("infgram-note").hidden = true;
}

function showSection(id) {
  $(id).hidden = false;
}

function renderLegend() {
  const items = BUCKETS.map(([, label], i) => element("span", { class: `s${i}` }, label));
  items.push(element("span", { class: "s0 zero", title: "the token never follows that context" }, "P∞ = 0"));
  $("legend").replaceChildren(element("span", { class: "legend-title" }, "context length (tokens):"), ...items);
}

function renderCount(count, query) {
  const strong = element("strong", { id: "count" }, count.count.toLocaleString());
  strong.dataset.value = String(count.count);
  strong.dataset.approx = String(!!count.approx);
  const sentence = $("count-sentence");
  if (query.cnf) {
    sentence.append(
      `The CNF query of ${plural(query.cnf.length, "clause", "clauses")} is matched `,
      strong,
      count.count === 1 ? " time" : " times",
      count.approx ? " (approximately: a clause was over max_clause_freq and was sampled)." : ".",
    );
  } else {
    sentence.append(
      `The text, as an n-gram of ${plural(query.ids.length, "token", "tokens")}, occurs `, strong,
      count.count === 1 ? " time." : " times.");
  }
  showSection("count-view");
}

function renderTokens(result, idsOnly) {
  const container = $("tokens");
  result.pieces.forEach((piece, i) => {
    const suffixLen = result.suffix_len[i];
    const prob = result.prob[i];
    const classes = ["tok", `s${bucket(suffixLen)}`];
    if (prob === 0) classes.push("zero");
    if (idsOnly) classes.push("tok-id");
    const span = element("span", { class: classes.join(" ") }, piece);
    span.dataset.suffixLen = String(suffixLen);
    span.dataset.prob = String(prob);
    span.dataset.tokenId = String(result.token_ids[i]);
    const p = prob < 0 ? "undefined" : prob.toFixed(4);
    const context = suffixLen === 0 ? "no context: its frequency in the corpus" : `${suffixLen} tokens`;
    span.title = `token ${JSON.stringify(result.tokens ? result.tokens[i] : piece)} (id ${result.token_ids[i]})\n` +
      `P∞ = ${p} (${result.cont_cnt[i].toLocaleString()} / ${result.prompt_cnt[i].toLocaleString()})\n` +
      `longest occurring context before it: ${context}`;
    container.append(span);
  });
  showSection("infgram-view");
}

// A token's text with its whitespace made visible: newlines and tabs escaped, spaces as ␣.
function showToken(text) {
  return JSON.stringify(text).slice(1, -1).replaceAll(" ", "\u2423");
}

function renderNtd(result) {
  const entries = Object.entries(result.result_by_token_id)
    .map(([id, entry]) => ({ id: Number(id), ...entry }))
    .sort((a, b) => b.cont_cnt - a.cont_cnt || a.id - b.id);
  const context = result.suffix_len === 0
    ? ["With no context (no suffix of the query occurs)"]
    : ["After ", quoted(result.longest_suffix), ", the longest suffix of the query that occurs " +
      `(${plural(result.suffix_len, "token", "tokens")}, ${plural(result.prompt_cnt, "time", "times")})`];
  const shown = Math.min(entries.length, NTD_BARS);
  $("ntd-summary").replaceChildren(...context, entries.length === 0
    ? ", no token follows."
    : `, ${plural(entries.length, "token follows", "distinct tokens follow")}` +
      (entries.length > shown ? `; the ${shown} most frequent:` : ":") +
      (result.approx ? " (estimated from a sample of its occurrences)" : ""));
  const top = entries.length ? entries[0].prob : 1;
  for (const entry of entries.slice(0, shown)) {
    const row = element("div", { class: "bar-row" });
    row.dataset.tokenId = String(entry.id);
    row.dataset.prob = String(entry.prob);
    row.dataset.count = String(entry.cont_cnt);
    row.append(element("span", { class: "bar-label", title: `id ${entry.id}` }, showToken(entry.token)));
    const track = element("span", { class: "bar-track" });
    const fill = element("span", { class: "bar-fill" });
    fill.style.width = `${(100 * entry.prob / top).toFixed(1)}%`;
    track.append(fill);
    row.append(track, element("span", { class: "bar-value" },
      `${entry.prob.toFixed(4)} (${entry.cont_cnt.toLocaleString()})`));
    $("ntd-bars").append(row);
  }
  showSection("ntd-view");
}

function renderClauses(cnf, texts) {
  cnf.forEach((clause, c) => {
    const item = element("li", { class: "clause" });
    item.dataset.clause = String(c);
    clause.forEach((term, t) => {
      if (t) item.append(element("span", { class: "op" }, " OR "));
      item.append(element("mark", { "data-clause": String(c), class: `c${c % 4}`, title: `token ids ${term.join(" ")}` },
        texts[c][t]));
    });
    $("clauses").append(item);
  });
  showSection("cnf-view");
}

// A piece of the corpus inside a sentence, its whitespace kept.
function quoted(text) {
  return element("code", { class: "quoted" }, text);
}

function renderDocuments(search, summary) {
  const list = $("documents");
  $("docs-summary").replaceChildren(...[].concat(summary));
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
      `Document #${doc.doc_ix} · ${plural(doc.doc_len, "token", "tokens")}${about}`));
    const text = element("pre", { class: "doc-text" });
    for (const [piece, label] of doc.spans) {
      text.append(label === null
        ? document.createTextNode(piece)
        : element("mark", { "data-clause": label, class: `c${Number(label) % 4}` }, piece));
    }
    item.append(text);
    list.append(item);
  }
  showSection("documents-view");
}

function occurrences(search, what) {
  const shown = search.documents.length;
  const approx = search.approx ? "about " : "";
  return `${what} ${approx}${plural(search.cnt, "time", "times")}; showing ${shown}` +
    (search.cnt > shown ? " drawn at random." : ".");
}

// --- the views: each fetches what it shows --------------------------------------------------

function post(query, body) {
  return api("/", { index: query.index, ...body });
}

async function countView(query) {
  const count = await post(query, { query_type: "count", query_ids: query.cnf || query.ids });
  return () => renderCount(count, query);
}

async function infgramView(query) {
  if (query.cnf) {
    return () => {
      $("infgram-note").textContent = "The ∞-gram coloring takes an n-gram; this is a CNF query (AND / OR).";
      $("infgram-note").hidden = false;
      showSection("infgram-view");
    };
  }
  const score = await api(`${query.base}/score`, { texts: [query.ids] });
  return () => renderTokens(score.results[0], !query.tokens);
}

async function ntdView(query) {
  if (query.cnf) throw new Error("The next-token distribution takes an n-gram, not a CNF query (AND / OR).");
  const ntd = await post(query, { query_type: "infgram_ntd", query_ids: query.ids });
  return () => renderNtd(ntd);
}

// Documents of the n-gram or, when it does not occur whole, of its longest span that does.
async function documentsView(query) {
  if (query.cnf) return cnfDocuments(query, query.cnf);
  const found = await api(`${query.base}/longest-match`,
    { query: query.ids, maxnum: MAX_DOCUMENTS, max_disp_len: DISPLAY_TOKENS });
  return () => {
    let summary;
    if (found.end - found.start === query.ids.length) {
      summary = occurrences(found, "The text occurs");
    } else if (found.end === found.start) {
      summary = "No document contains the text, nor any token of it.";
    } else {
      summary = ["No document contains the whole text. Its longest span that occurs, ", quoted(found.text),
        ` (tokens ${found.start + 1} to ${found.end} of ${query.ids.length}), ` + occurrences(found, "occurs")];
    }
    renderDocuments(found, summary);
    $("docs-summary").dataset.start = String(found.start);
    $("docs-summary").dataset.end = String(found.end);
  };
}

async function cnfDocuments(query, cnf) {
  const search = await post(query, {
    query_type: "search_docs_cnf", query_ids: cnf, maxnum: MAX_DOCUMENTS, max_disp_len: DISPLAY_TOKENS,
  });
  return () => renderDocuments(search, search.cnt === 0
    ? "No document matches the query."
    : occurrences(search, "The query is matched"));
}

async function cnfView(query) {
  const cnf = query.cnf || [[query.ids]];
  const texts = query.cnf ? query.text : [[query.text]];
  const [count, documents] = await Promise.all([
    post(query, { query_type: "count_cnf", query_ids: cnf }),
    cnfDocuments(query, cnf),
  ]);
  return () => {
    renderClauses(cnf, texts);
    renderCount(count, { ...query, cnf });
    documents();
  };
}

const VIEW_PARTS = {
  overview: [countView, infgramView, documentsView],
  count: [countView],
  infgram: [infgramView],
  ntd: [ntdView],
  documents: [documentsView],
  cnf: [cnfView],
};

// --- running a query --------------------------------------------------------------------------

async function run() {
  const text = $("text").value;
  const index = $("index").value;
  const type = selectedType();
  if (!index) return;
  if (text === "") { // nothing to look up: no results, and no answer of an earlier run
    latestKey = "";
    latestRun++;
    clearResults();
    showError("");
    $("status").textContent = "";
    document.body.dataset.state = "ready";
    return;
  }
  const ids = queryIsIds();
  const key = JSON.stringify([index, type, ids, text]);
  if (key === latestKey && document.body.dataset.state === "done") return;
  latestKey = key;
  const runId = ++latestRun;
  const link = permalink({ index, type, text, ids });
  history.replaceState(null, "", link);
  $("permalink").href = link;
  $("permalink").hidden = false;
  document.body.dataset.state = "loading";
  $("status").textContent = "…";
  showError("");
  clearResults();
  const started = performance.now();
  try {
    const base = `/v1/indexes/${encodeURIComponent(index)}`;
    // The service reads the query, as `POST /` would: the views send ids from here on.
    const parsed = await api(`${base}/parse`, { query: text, ids });
    // text: the n-gram, or each term of the CNF, as the service decodes it
    const query = { index, base, ids: parsed.token_ids, cnf: parsed.cnf, tokens: parsed.tokens, text: parsed.text };
    const renders = await Promise.all(VIEW_PARTS[type].map((view) => view(query)));
    if (runId !== latestRun) return;
    renders.forEach((render) => render());
    $("results").hidden = false;
    $("results").dataset.query = text;
    $("results").dataset.type = type;
    $("status").textContent = `answered in ${Math.round(performance.now() - started)} ms`;
    document.body.dataset.state = "done";
  } catch (error) {
    if (runId !== latestRun) return;
    clearResults();
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
  $("as-ids").addEventListener("change", () => { describeQueryBox(); run(); });
  $("query-type").addEventListener("change", () => run());
  $("query-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(debounce);
    latestKey = ""; // the button always runs the query again
    run();
  });
  $("text").addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(run, 400);
  });
  loadIndexes()
    .then(() => {
      const linked = applyUrl();
      document.body.dataset.state = "ready";
      if (linked) run();
    })
    .catch((e) => showError(e.message));
}

init();
