"""The web page of `anygram serve` in a real headless Chromium (Debian's chromium +
chromium-driver, driven by Selenium): type a text, check the count, the ∞-gram coloring
of every token and the documents shown. A screenshot is kept in tests/artifacts/.

Skipped only where Chromium is missing and ANYGRAM_REQUIRE_BROWSER is unset; CI sets it,
so there a missing browser is a failure, not a skip."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from serving import Server

import anygram

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
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    corpus = tmp / "code.jsonl"
    corpus.write_text(
        "".join(json.dumps({"text": t, "file": f"f{i}.py"}) + "\n" for i, t in enumerate(TEXTS))
    )
    path = anygram.build_index(str(corpus), str(tmp / "code"), progress=False).output
    with Server({"code": path}, log_path=str(tmp / "serve.log")) as server:
        yield server, anygram.Engine.open(path)


def wait_for(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def look_up(driver, url, text):
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready")
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "run").click()
    wait_for(
        driver,
        lambda d: (
            d.find_element(By.ID, "results").get_attribute("data-query") == text
            and d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done"
        ),
    )


def bucket(suffix_len):
    return sum(suffix_len >= low for low in (1, 2, 4, 8, 16))


def test_page_shows_count_coloring_and_documents(browser, site):
    from selenium.webdriver.common.by import By

    server, engine = site
    look_up(browser, server.url, QUERY)

    assert browser.find_element(By.ID, "index").get_attribute("value") == "code"
    count = engine.count(QUERY)
    assert count == sum(t.count(QUERY) for t in TEXTS) > 0
    assert browser.find_element(By.ID, "count").get_attribute("data-value") == str(count)

    ids = engine.tokenize(QUERY)
    tokens = browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")
    assert len(tokens) == len(ids)
    assert "".join(t.text for t in tokens) == QUERY
    for i, token in enumerate(tokens):
        expected = engine.prob(ids[:i], ids[i])
        suffix_len = int(token.get_attribute("data-suffix-len"))
        assert suffix_len == expected["suffix_len"]
        assert float(token.get_attribute("data-prob")) == pytest.approx(expected["prob"])
        assert f"s{bucket(suffix_len)}" in token.get_attribute("class").split()
        hover = token.get_attribute("title")
        assert f"{expected['prob']:.4f}" in hover and f"{suffix_len} tokens" in hover

    documents = browser.find_elements(By.CSS_SELECTOR, "#documents li.document")
    assert len(documents) == min(count, 5)
    holding = {i for i, t in enumerate(TEXTS) if QUERY in t}
    for doc in documents:
        assert int(doc.get_attribute("data-doc-ix")) in holding
        marks = [m.text for m in doc.find_elements(By.TAG_NAME, "mark")]
        assert marks and all(m == QUERY for m in marks)
    assert f"{count} occurrence(s)" in browser.find_element(By.ID, "docs-summary").text

    os.makedirs(ARTIFACTS, exist_ok=True)
    browser.save_screenshot(os.path.join(ARTIFACTS, "server_page.png"))


def test_page_colors_a_text_with_multibyte_characters(browser, site):
    from selenium.webdriver.common.by import By

    server, engine = site
    text = "café: def x"
    look_up(browser, server.url, text)
    tokens = browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")
    ids = engine.tokenize(text)
    assert len(tokens) == len(ids) == len(text.encode())
    # the two bytes of "é" are two tokens; the character is shown once, on the byte completing it
    assert "".join(t.get_attribute("textContent") for t in tokens) == text
    assert browser.find_element(By.ID, "count").get_attribute("data-value") == str(engine.count(text))


def test_page_shows_the_service_error(browser, site):
    from selenium.webdriver.common.by import By

    server, _ = site
    too_long = "x" * 20_001  # over the default query length limit
    browser.get(server.url + "/")
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready")
    browser.execute_script("document.getElementById('text').value = arguments[0];", too_long)
    browser.find_element(By.ID, "run").click()
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "error")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "the limit is 10,000" in error.text
