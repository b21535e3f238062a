"""The web page of `anygram serve` in a real headless Chromium (Debian's chromium +
chromium-driver, driven by Selenium), every view checked against the Python API: the overview
(count, ∞-gram coloring of every token, documents), count and CNF queries (parsed by the
service as on `POST /`), the next-token distribution's bars, documents of the longest span
that occurs, an index without a tokenizer queried by token ids, errors that clear earlier
results, permalinks, and the API docs (Swagger UI, ReDoc) rendered with no network beyond
loopback. A screenshot of each view is kept in tests/artifacts/.

Skipped only where Chromium is missing and ANYGRAM_REQUIRE_BROWSER is unset; CI sets it,
so there a missing browser is a failure, not a skip."""

from __future__ import annotations

import json
import os
import shutil
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from serving import Server

import anygram
from conftest import brute_longest_span, build_from_tokens

ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")
TEXTS = [
    "def __init__(self, name):\n    self.name = name\n",
    "import os\nimport sys\n\ndef main():\n    return os.getcwd()\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n    print(i)\n",
    "def __init__(self):\n    pass\n",
    "naïve café: def __init__(self, ñ)\n",
] + [f"def f{i}(self):\n    return {i}\n" for i in range(12)]
QUERY = "def __init__(self"
# token ids for the index without a tokenizer (vocabulary 0..9, 9 the document separator)
ID_DOCS = [[1, 2, 3, 4, 5], [2, 3, 4, 1, 2, 3], [5, 6, 7, 1, 2], [8, 1, 2, 3, 4]]
ID_VOCAB, ID_EOS = 10, 9


def _browser_paths():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    if os.environ.get("ANYGRAM_REQUIRE_BROWSER"):
        pytest.fail(
            "ANYGRAM_REQUIRE_BROWSER is set but chromium / chromedriver are not installed "
            "(apt-get install chromium chromium-driver)"
        )
    pytest.skip("chromium and chromium-driver are not installed")


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,1300",
        # No host but loopback resolves: the page and the API docs must work offline.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`anygram serve` with a text index ("code", UTF-8 bytes) and one without a tokenizer ("ids")."""
    tmp = tmp_path_factory.mktemp("page")
    corpus = tmp / "code.jsonl"
    corpus.write_text(
        "".join(json.dumps({"text": t, "file": f"f{i}.py"}) + "\n" for i, t in enumerate(TEXTS))
    )
    path = anygram.build_index(str(corpus), str(tmp / "code"), progress=False).output
    ids_path = build_from_tokens(str(tmp / "ids"), ID_DOCS, width=2, vocab_size=ID_VOCAB, eos_token_id=ID_EOS)
    with Server({"code": path, "ids": ids_path}, log_path=str(tmp / "serve.log")) as server:
        yield SimpleNamespace(
            url=server.url, engine=anygram.Engine.open(path), ids_engine=anygram.Engine.open(ids_path)
        )


def wait_for(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def by_id(driver, element_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def all_of(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def state(driver):
    return driver.execute_script("return document.body.dataset.state || ''")


def open_page(driver, url):
    driver.get(url + "/")
    wait_for(driver, lambda d: state(d) == "ready")


def wait_done(driver, text, query_type):
    wait_for(
        driver,
        lambda d: state(d) == "done"
        and by_id(d, "results").get_attribute("data-query") == text
        and by_id(d, "results").get_attribute("data-type") == query_type,
    )


def look_up(driver, url, text, query_type="overview", index="code"):
    """Loads the page, picks the index and the query type, runs ``text``."""
    from selenium.webdriver.support.ui import Select

    open_page(driver, url)
    Select(by_id(driver, "index")).select_by_value(index)
    driver.find_element("css selector", f'input[name="type"][value="{query_type}"]').find_element(
        "xpath", ".."
    ).click()
    driver.execute_script("document.getElementById('text').value = arguments[0];", text)
    by_id(driver, "run").click()
    wait_done(driver, text, query_type)


def screenshot(driver, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    driver.save_screenshot(os.path.join(ARTIFACTS, f"server_page_{name}.png"))


def visible_sections(driver):
    return [s.get_attribute("id") for s in all_of(driver, "#results section") if s.is_displayed()]


def bucket(suffix_len):
    return sum(suffix_len >= low for low in (1, 2, 4, 8, 16))


def test_overview_shows_count_coloring_and_documents(browser, site):
    engine = site.engine
    look_up(browser, site.url, QUERY)
    assert visible_sections(browser) == ["count-view", "infgram-view", "documents-view"]

    count = engine.count(QUERY)
    assert count == sum(t.count(QUERY) for t in TEXTS) > 0
    assert by_id(browser, "count").get_attribute("data-value") == str(count)

    ids = engine.tokenize(QUERY)
    tokens = all_of(browser, "#tokens .tok")
    assert len(tokens) == len(ids)
    assert "".join(t.text for t in tokens) == QUERY
    for i, token in enumerate(tokens):
        expected = engine.prob(ids[:i], ids[i])
        suffix_len = int(token.get_attribute("data-suffix-len"))
        assert suffix_len == expected["suffix_len"]
        assert float(token.get_attribute("data-prob")) == pytest.approx(expected["prob"])
        assert f"s{bucket(suffix_len)}" in token.get_attribute("class").split()
        hover = token.get_attribute("title")
        assert f"{expected['prob']:.4f}" in hover
        assert (f"{suffix_len} tokens" if suffix_len else "no context") in hover
    # the first token has no context: labelled so, not "unseen"
    legend = by_id(browser, "legend").text
    assert "0: no context" in legend and "unseen" not in legend

    documents = all_of(browser, "#documents li.document")
    assert len(documents) == min(count, 5)
    holding = {i for i, t in enumerate(TEXTS) if QUERY in t}
    for doc in documents:
        assert int(doc.get_attribute("data-doc-ix")) in holding
        marks = [m.text for m in doc.find_elements("tag name", "mark")]
        assert marks and all(m == QUERY for m in marks)
    assert f"occurs {count} times" in by_id(browser, "docs-summary").text
    screenshot(browser, "overview")


def test_overview_colors_a_text_with_multibyte_characters(browser, site):
    text = "café: def x"
    look_up(browser, site.url, text)
    tokens = all_of(browser, "#tokens .tok")
    ids = site.engine.tokenize(text)
    assert len(tokens) == len(ids) == len(text.encode())
    # the two bytes of "é" are two tokens; the character is shown once, on the byte completing it
    assert "".join(t.get_attribute("textContent") for t in tokens) == text
    assert by_id(browser, "count").get_attribute("data-value") == str(site.engine.count(text))


def test_an_error_clears_the_earlier_results(browser, site):
    look_up(browser, site.url, QUERY)
    assert all_of(browser, "#tokens .tok")
    too_long = "x" * 20_001  # over the default query length limit
    browser.execute_script("document.getElementById('text').value = arguments[0];", too_long)
    by_id(browser, "run").click()
    wait_for(browser, lambda d: state(d) == "error")
    error = by_id(browser, "error")
    assert error.is_displayed() and "the limit is 10,000" in error.text
    assert not by_id(browser, "results").is_displayed()
    for stale in ("#tokens .tok", "#documents li", "#count"):
        assert all_of(browser, stale) == [], stale
    screenshot(browser, "error")


def test_count_view_parses_and_or_as_post_root(browser, site):
    text = "import os AND import sys"
    look_up(browser, site.url, text, "count")
    assert visible_sections(browser) == ["count-view"]
    body = {"index": "code", "query_type": "count", "query": text}
    over_http = httpx.post(site.url + "/", json=body).json()
    expected = site.engine.count_cnf(text)["count"]
    assert over_http["count"] == expected > 0
    assert by_id(browser, "count").get_attribute("data-value") == str(expected)
    assert "CNF query of 2 clauses" in by_id(browser, "count-sentence").text
    screenshot(browser, "count_cnf")


def test_cnf_view_shows_clauses_count_and_documents(browser, site):
    text = "import os AND import sys OR def main"
    look_up(browser, site.url, text, "cnf")
    assert visible_sections(browser) == ["count-view", "cnf-view", "documents-view"]
    clauses = all_of(browser, "#clauses li")
    assert [[m.text for m in c.find_elements("tag name", "mark")] for c in clauses] == [
        ["import os"],
        ["import sys", "def main"],
    ]
    expected = site.engine.search_docs_cnf(text, maxnum=5)
    assert by_id(browser, "count").get_attribute("data-value") == str(site.engine.count_cnf(text)["count"])
    documents = all_of(browser, "#documents li.document")
    assert len(documents) == min(expected["cnt"], 5) > 0
    for doc in documents:
        marks = {(m.get_attribute("data-clause"), m.text) for m in doc.find_elements("tag name", "mark")}
        assert marks <= {("0", "import os"), ("1", "import sys"), ("1", "def main")}
        assert {clause for clause, _ in marks} == {"0", "1"}  # every clause is matched in it
    screenshot(browser, "cnf")


def test_ntd_view_draws_the_next_token_distribution(browser, site):
    engine = site.engine
    look_up(browser, site.url, "def ", "ntd")
    expected = engine.infgram_ntd(engine.tokenize("def "))
    entries = sorted(expected["result_by_token_id"].items(), key=lambda kv: (-kv[1]["cont_cnt"], kv[0]))
    bars = all_of(browser, "#ntd-bars .bar-row")
    assert len(bars) == min(len(entries), 25) > 1
    widths = []
    for bar, (token_id, entry) in zip(bars, entries):
        assert int(bar.get_attribute("data-token-id")) == token_id
        assert float(bar.get_attribute("data-prob")) == pytest.approx(entry["prob"])
        assert int(bar.get_attribute("data-count")) == entry["cont_cnt"]
        widths.append(bar.find_element("css selector", ".bar-fill").size["width"])
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1] > 0
    assert [bar.find_element("css selector", ".bar-label").text for bar in bars] == [
        engine.decode([token_id]) for token_id, _ in entries[: len(bars)]
    ]
    summary = by_id(browser, "ntd-summary").text
    assert f"({expected['suffix_len']} tokens, {expected['prompt_cnt']} times)" in summary
    screenshot(browser, "ntd")


def test_documents_view_shows_the_longest_span_when_the_text_is_absent(browser, site):
    engine = site.engine
    text = "def __init__(self, zebra):\n    self.x = x"
    assert engine.count(text) == 0
    look_up(browser, site.url, text, "documents")
    ids = engine.tokenize(text)
    start, end = brute_longest_span(engine, ids)
    summary = by_id(browser, "docs-summary")
    assert (summary.get_attribute("data-start"), summary.get_attribute("data-end")) == (str(start), str(end))
    span = engine.decode(ids[start:end])
    assert "No document contains the whole text" in summary.text
    documents = all_of(browser, "#documents li.document")
    assert len(documents) == min(engine.count(ids[start:end]), 5) > 0
    for doc in documents:
        assert span in TEXTS[int(doc.get_attribute("data-doc-ix"))]
        marks = [m.get_attribute("textContent") for m in doc.find_elements("tag name", "mark")]
        assert marks and all(m == span for m in marks)
    screenshot(browser, "documents_longest_span")


def test_an_index_without_tokenizer_is_queried_by_token_ids(browser, site):
    ids_engine = site.ids_engine
    look_up(browser, site.url, "1 2 3", index="ids")
    assert by_id(browser, "as-ids").is_selected() and not by_id(browser, "as-ids").is_enabled()
    assert "no tokenizer" in by_id(browser, "index-info").text
    assert by_id(browser, "count").get_attribute("data-value") == str(ids_engine.count([1, 2, 3])) != "0"
    tokens = all_of(browser, "#tokens .tok")
    assert [t.text for t in tokens] == ["1", "2", "3"]
    for i, token in enumerate(tokens):
        expected = ids_engine.prob([1, 2, 3][:i], [1, 2, 3][i])["suffix_len"]
        assert int(token.get_attribute("data-suffix-len")) == expected
    holding = {i for i, d in enumerate(ID_DOCS) if any(d[j : j + 3] == [1, 2, 3] for j in range(len(d)))}
    assert {int(d.get_attribute("data-doc-ix")) for d in all_of(browser, "#documents li.document")} == holding
    screenshot(browser, "token_ids")

    browser.execute_script("document.getElementById('text').value = '1 x';")
    by_id(browser, "run").click()
    wait_for(browser, lambda d: state(d) == "error")
    assert "query[1]: 'x' is not a token id" in by_id(browser, "error").text


def test_permalinks_hold_the_query_and_run_it(browser, site):
    text = "self AND name"
    look_up(browser, site.url, text, "count")
    link = by_id(browser, "permalink").get_attribute("href")
    assert link == browser.current_url
    assert parse_qs(urlsplit(link).query) == {"index": ["code"], "type": ["count"], "q": [text]}
    expected = str(site.engine.count_cnf(text)["count"])
    browser.get("about:blank")
    browser.get(link)  # loading the link runs the query
    wait_done(browser, text, "count")
    assert by_id(browser, "count").get_attribute("data-value") == expected
    # a link to the index without tokenizer and another view
    browser.get(site.url + "/?index=ids&type=ntd&q=1%202")
    wait_done(browser, "1 2", "ntd")
    bars = all_of(browser, "#ntd-bars .bar-row")
    distribution = site.ids_engine.infgram_ntd([1, 2])["result_by_token_id"]
    assert {int(b.get_attribute("data-token-id")) for b in bars} == set(distribution)


@pytest.mark.parametrize("path, title_css", [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")])
def test_api_docs_render_offline(browser, site, path, title_css):
    browser.get(site.url + path)
    wait_for(browser, lambda d: any("anygram" in e.text for e in all_of(d, title_css)))
    # the operations are listed (rendered from /openapi.json by the locally served script)
    wait_for(browser, lambda d: "/v1/indexes/{name}/longest-match" in d.find_element("tag name", "body").text)
    screenshot(browser, path.strip("/"))
