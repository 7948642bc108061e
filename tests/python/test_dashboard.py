"""The admin dashboard in a real headless browser (Debian's chromium driven through its
chromedriver by Selenium): after a burst of requests, the page shows the key's usage against
its limit and the 429s, refreshing by itself. A screenshot goes to target/dashboard.png."""

import json
import os
import time
import urllib.request

import openai
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT, free_port, stack

TOKEN = "dashboard-test-token"
KEYS = """
[[keys]]
name = "burst"
key = "sk-burst"
team = "ml-research"
rpm = 3
itpm = 5000

[[keys]]
name = "quiet"
key = "sk-quiet"
team = "ml-research"
rpm = 60
shadow = true

[[teams]]
name = "ml-research"
org = "acme"
rpm = 100
tpd = 2000000
day_reset = "midnight"
utc_offset_minutes = -480

[[orgs]]
name = "acme"
budget_usd = 50
budget_period = "month"

[prices."*"]
input = 2.5
output = 10.0
"""


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1100"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def read(driver, selector, attribute=None):
    """An element's attribute (or its text) read in one script run inside the page. The
    dashboard redraws its rows every second, so a WebElement found in one call can be stale by
    the next; one script call finds and reads the element at the same instant."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "if (!e) return null;"
        "return arguments[1] === null ? e.textContent : e.getAttribute(arguments[1]);",
        selector, attribute)


def get_json(url):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


@pytest.fixture(autouse=True)
def offline_selenium(monkeypatch):
    # Selenium must use the given driver and browser, never try to download its own.
    monkeypatch.setenv("SE_OFFLINE", "true")


def test_the_dashboard_shows_a_burst_live():
    admin_port = free_port()
    node = [{"env": {"LLMRL_ADMIN_TOKEN": TOKEN}}, "--policies", "redis",
            "--admin-listen", f"127.0.0.1:{admin_port}"]
    with stack(KEYS, node, import_policy=True) as (url,):
        admin = f"http://127.0.0.1:{admin_port}"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-burst", max_retries=0)
        answered, limited = 0, 0
        for _ in range(5):
            try:
                client.chat.completions.create(
                    model="gpt-4o-mini", max_tokens=16,
                    messages=[{"role": "user", "content": "Hello there"}])
                answered += 1
            except openai.RateLimitError:
                limited += 1
        assert (answered, limited) == (3, 2)

        driver = browser()
        try:
            driver.get(f"{admin}/admin/#token={TOKEN}")
            selector = '[data-entity="key:burst"] .bar[data-dimension="requests"]'
            WebDriverWait(driver, 15).until(lambda d: read(d, selector, "data-used") == "3")
            assert read(driver, selector, "data-limit") == "3"
            assert "3 / 3" in read(driver, selector)
            # The team's and the organisation's rows count the same requests and spend.
            team = '[data-entity="team:ml-research"] .bar[data-dimension="requests"]'
            assert read(driver, team, "data-used") == "3"
            spend = read(driver, '[data-entity="org:acme"] .bar[data-dimension="spend_usd"]',
                         "data-used")
            assert float(spend) > 0
            # A calendar day reads with its UTC offset; a shadow key says it is one.
            day = '[data-entity="team:ml-research"] .bar[data-window="day:-480"]'
            assert read(driver, day).startswith("tokens · day (UTC-8)"), read(driver, day)
            assert "(shadow" in read(driver, '[data-entity="key:quiet"] h3')
            # The node closes a second of traffic once a second: wait until it has closed the
            # seconds of the burst (a chart line can be drawn before that, from quiet seconds),
            # then they must hold exactly the burst's answers.
            def closed_traffic():
                traffic = get_json(f"{admin}/admin/overview")["traffic"]
                return (sum(s["admitted"] for s in traffic), sum(s["limited"] for s in traffic))

            deadline = time.monotonic() + 10
            while closed_traffic() == (0, 0) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.2)  # a burst that straddled two seconds: the second one closes too
            assert closed_traffic() == (3, 2)
            WebDriverWait(driver, 10).until(
                lambda d: read(d, "#limited-line", "points") not in (None, ""))
            # Live: a new request shows without reloading the page.
            openai.OpenAI(base_url=f"{url}/v1", api_key="sk-quiet", max_retries=0) \
                .chat.completions.create(model="gpt-4o-mini", max_tokens=8,
                                         messages=[{"role": "user", "content": "hi"}])
            WebDriverWait(driver, 10).until(lambda d: read(d, team, "data-used") == "4")
            assert "live" in read(driver, "#status")
            os.makedirs(ROOT / "target", exist_ok=True)
            driver.save_screenshot(str(ROOT / "target" / "dashboard.png"))
            assert (ROOT / "target" / "dashboard.png").stat().st_size > 10_000
        finally:
            driver.quit()


def test_the_dashboard_asks_for_the_token():
    admin_port = free_port()
    node = [{"env": {"LLMRL_ADMIN_TOKEN": TOKEN}}, "--admin-listen", f"127.0.0.1:{admin_port}"]
    with stack(KEYS, node):
        driver = browser()
        try:
            driver.get(f"http://127.0.0.1:{admin_port}/admin/")
            WebDriverWait(driver, 10).until(
                lambda d: "token" in (read(d, "#status") or ""))
            assert driver.find_element(By.ID, "login").is_displayed()
            assert driver.find_elements(By.CSS_SELECTOR, ".bar") == []
        finally:
            driver.quit()
