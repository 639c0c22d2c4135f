"""Refresh docs/dashboard.png: the dashboard of a running server after a little real traffic.

    python scripts/ui_screenshot.py http://127.0.0.1:12434 docs/dashboard.png [--key KEY]

Drives Debian's Chromium headless through its chromedriver (as tests/ui does): one playground
message with thinking, a few SDK requests in three dialects, one of them opened.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time

import anthropic
import ollama
import openai
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1320", "--hide-scrollbars"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--key", default="")
    args = parser.parse_args(argv)
    profile = tempfile.mkdtemp(prefix="dmr-shot-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"),
                              options=options)
    key = args.key or "unused"
    try:
        driver.get(f"{args.url}/ui" + (f"#key={args.key}" if args.key else ""))
        wait = WebDriverWait(driver, 90, poll_frequency=0.2)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#models tbody tr[data-tag]"))
        hello = [{"role": "user", "content": "Name three colors."}]
        openai.OpenAI(base_url=args.url + "/v1", api_key=key).chat.completions.create(
            model="ai/smollm2", messages=hello, max_tokens=24)
        anthropic.Anthropic(base_url=args.url, api_key=key).messages.create(
            model="ai/smollm2", messages=hello, max_tokens=24)
        ollama.Client(host=args.url, headers={"Authorization": f"Bearer {key}"}).chat(
            model="ai/smollm2", messages=hello, options={"num_predict": 24})
        driver.find_element(By.ID, "chat-think").click()
        driver.find_element(By.ID, "chat-max").clear()
        driver.find_element(By.ID, "chat-max").send_keys("96")
        driver.find_element(By.ID, "chat-input").send_keys("Why is the sky blue?")
        driver.find_element(By.ID, "chat-send").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '.msg.assistant[data-done="true"]'))
        time.sleep(4)  # two more chart samples
        rows = driver.find_elements(By.CSS_SELECTOR, "#requests tbody tr")
        next(r for r in rows if "/v1/messages" in r.text).click()
        time.sleep(0.5)
        driver.save_screenshot(args.out)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
