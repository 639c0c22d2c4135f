"""The /ui dashboard in a real browser: Debian's Chromium driven headless through its own
chromedriver (scripts/test installs both; nothing is downloaded), against a real server with
API keys on. The key arrives once in the URL fragment, as `dmr serve` prints it.

Checked: no console errors, `ai/smollm2` listed, a playground message streams an answer (with
thinking shown apart, and the stop button), a request made with the OpenAI SDK appears in the
live list and opens its rebuilt answer, delete asks for confirmation. Screenshots go to
pytest's tmp dir; their paths are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import openai
import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from server.store.bundled import bundled_gguf
from tests.conftest import MODEL, ServerProcess
from tests.server.dmr_fixtures import RegistryProcess, push_dmr_gguf

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1700"]
KEY = "sk-ui-" + secrets.token_hex(12)



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("ui")
    s = ServerProcess(base / "models", base / "server.log",
                      env={"DMR_THREADS": "1", "DMR_API_KEYS": KEY})
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: scripts/test installs Debian's chromium and "
                        "chromium-driver (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never fetches anything
    profile = tempfile.mkdtemp(prefix="dmr-ui-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def screenshot(driver, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def wait(driver, condition, timeout: float = 30):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def page(server, browser):
    """The dashboard opened once with the key in the fragment, as `dmr serve` prints it."""
    browser.get(f"{server.url}/ui#key={KEY}")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#models tbody tr[data-tag]"))
    return browser


def test_loads_with_the_key_from_the_fragment(page, server, shots):
    assert page.title == "litellm-dmr"
    assert "#" not in page.current_url  # the key left the address bar
    assert page.execute_script("return localStorage.getItem('dmr-api-key')") == KEY
    tags = [r.get_attribute("data-tag")
            for r in page.find_elements(By.CSS_SELECTOR, "#models tbody tr[data-tag]")]
    assert MODEL + ":latest" in tags
    assert MODEL + ":latest" in page.find_element(By.ID, "chat-model").text
    wait(page, lambda d: "llama.cpp: Running" in d.find_element(By.ID, "engines").text)
    wait(page, lambda d: "following" in d.find_element(By.ID, "live").text)
    screenshot(page, shots, "loaded")
    assert console_errors(page) == []


def test_the_page_itself_needs_no_key_but_its_data_does(server):
    r = requests.get(server.url + "/ui")
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert requests.get(server.url + "/ui/app.js").status_code == 200
    assert requests.get(server.url + "/ui/nothing.js").status_code == 404
    assert requests.get(server.url + "/models").status_code == 401
    assert requests.get(server.url + "/ui", headers={"Host": "evil.example"}).status_code == 403
    browser_like = requests.get(server.url + "/", allow_redirects=False,
                                headers={"Accept": "text/html,*/*;q=0.8", **_auth()})
    assert browser_like.status_code == 302 and browser_like.headers["Location"].endswith("/ui")
    assert requests.get(server.url + "/", headers=_auth()).text == \
        "Docker Model Runner is running"


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def _last_answer(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#chat-log .msg.assistant")[-1]


def test_playground_streams_an_answer_with_thinking_apart(page, shots):
    page.find_element(By.ID, "chat-think").click()
    max_tokens = page.find_element(By.ID, "chat-max")
    max_tokens.clear()
    max_tokens.send_keys("48")
    page.find_element(By.ID, "chat-input").send_keys("Why is the sky blue?")
    page.find_element(By.ID, "chat-send").click()
    # while it streams: thinking grows in its own box and Stop is enabled
    wait(page, lambda d: d.find_element(By.CSS_SELECTOR, ".msg.assistant details.thinking")
         .is_displayed())
    wait(page, lambda d: _last_answer(d).get_attribute("data-done") == "true", 90)
    answer = _last_answer(page)
    thinking = answer.find_element(By.CSS_SELECTOR, "details.thinking").text
    content = answer.find_element(By.CSS_SELECTOR, ".content").text
    assert thinking.startswith("Thinking") and len(thinking) > len("Thinking") + 5
    assert content.strip() and content not in thinking
    assert "tokens in" in answer.find_element(By.CSS_SELECTOR, ".meta").text
    assert page.find_element(By.ID, "chat-send").is_enabled()
    screenshot(page, shots, "playground")
    page.find_element(By.ID, "chat-think").click()


def test_stop_button_stops_the_stream(page):
    max_tokens = page.find_element(By.ID, "chat-max")
    max_tokens.clear()
    max_tokens.send_keys("2000")
    page.find_element(By.ID, "chat-input").send_keys("Write a very long story about a ship.")
    page.find_element(By.ID, "chat-send").click()
    wait(page, lambda d: len(_last_answer(d).find_element(By.CSS_SELECTOR, ".content").text) > 20)
    assert _last_answer(page).get_attribute("data-done") is None  # still streaming
    page.find_element(By.ID, "chat-stop").click()
    wait(page, lambda d: _last_answer(d).get_attribute("data-done") == "stopped")
    assert _last_answer(page).find_element(By.CSS_SELECTOR, ".meta").text == "stopped"
    assert page.find_element(By.ID, "chat-send").is_enabled()
    assert not page.find_element(By.ID, "chat-stop").is_enabled()


def test_sdk_request_appears_live(page, server, shots):
    mark = "from-the-sdk-" + secrets.token_hex(3)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    client.chat.completions.create(model=MODEL, max_tokens=4,
                                   messages=[{"role": "user", "content": f"Hello {mark}"}])
    row = wait(page, lambda d: next((r for r in d.find_elements(By.CSS_SELECTOR,
                                                                "#requests tbody tr")
                                     if mark in r.text), None))
    assert "openai" in row.text and "POST /v1/chat/completions" in row.text and "200" in row.text
    row.click()
    wait(page, EC.visibility_of_element_located((By.ID, "request-detail")))
    assert mark in page.find_element(By.ID, "detail-request").text
    assert '"chat.completion"' in page.find_element(By.ID, "detail-response").text
    assert KEY not in page.find_element(By.TAG_NAME, "body").text
    screenshot(page, shots, "live-requests")


def test_charts_and_runners_follow_the_server(page):
    wait(page, lambda d: MODEL in d.find_element(By.ID, "runners").text)
    wait(page, lambda d: float(d.find_element(By.ID, "kv-now").text or 0) > 0)
    # the canvas really has pixels drawn on it
    drawn = page.execute_script("""
        const c = document.getElementById('chart-tps');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) n++; return n;""")
    assert drawn > 100


def test_delete_asks_for_confirmation(page, server, shots):
    copy = "ui/copy:t"
    r = requests.post(f"{server.url}/models/{MODEL}/tag", params={"repo": "ui/copy", "tag": "t"},
                      headers=_auth())
    assert r.status_code == 201
    selector = f'#models tbody tr[data-tag="{copy}"] button'
    button = wait(page, EC.element_to_be_clickable((By.CSS_SELECTOR, selector)), 15)
    button.click()
    alert = wait(page, EC.alert_is_present(), 5)
    assert "Remove the tag ui/copy:t" in alert.text
    alert.dismiss()  # "Cancel": nothing happens
    time.sleep(0.5)
    assert requests.get(f"{server.url}/models/{copy}", headers=_auth()).status_code == 200
    page.find_element(By.CSS_SELECTOR, selector).click()
    wait(page, EC.alert_is_present(), 5).accept()
    wait(page, lambda d: not d.find_elements(By.CSS_SELECTOR, selector), 15)
    assert requests.get(f"{server.url}/models/{copy}", headers=_auth()).status_code == 404
    assert requests.get(f"{server.url}/models/{MODEL}", headers=_auth()).status_code == 200
    screenshot(page, shots, "after-delete")


def test_pull_shows_progress(page, server, tmp_path, shots):
    registry = RegistryProcess(tmp_path)
    try:
        push_dmr_gguf(registry.url, "ui/pulled", "v1", bundled_gguf().read_bytes())
        ref = f"{registry.host}/ui/pulled:v1"
        page.find_element(By.ID, "pull-name").send_keys(ref)
        page.find_element(By.CSS_SELECTOR, "#pull-form button").click()
        wait(page, lambda d: d.find_element(By.ID, "pull-progress").is_displayed())
        wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, f'#models tr[data-tag="{ref}"]'),
             90)
        assert float(page.find_element(By.ID, "pull-bar").get_attribute("value")) == 1.0
        assert "successfully" in page.find_element(By.ID, "pull-text").text
        assert requests.get(f"{server.url}/models/{ref}", headers=_auth()).status_code == 200
        screenshot(page, shots, "pulled")
    finally:
        registry.stop()


def test_no_console_errors_after_everything(page):
    assert console_errors(page) == []
