"""The partner dashboard at /ui in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium) against `recsys serve` as a uvicorn subprocess on 127.0.0.1 with a keys
file and the fixture bundle. It logs in with kol-1's key, checks that each panel shows what its endpoint answers,
that guide-0's data is refused ("not allowed"), that an endpoint's error is shown (not a blank), that a wrong key is refused, that the page logs no script error or blocked load, and saves a
screenshot. ``$RECSYS_DASHBOARD_SCREENSHOT`` (a path) gets a copy of the screenshot and
``$RECSYS_DASHBOARD_MODEL`` (a bundle) replaces the fixture: that is how docs/dashboard.png is made (README)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")

import httpx  # noqa: E402

from tests.test_service_support import ADMIN, GUIDE0, V1, Server, auth  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium is not installed (needs Debian's chromium and chromium-driver: `make browser` "
           "installs them when run as root with apt-get)")

PANELS = ("panel-feed", "panel-insight", "panel-funnel", "panel-carry")
# kol-1 of the fixture: 13 audience users (the insight's minimum group is 10), items outside its pool to carry
KOL1 = "kol1-key-0123456789abcdef"
KEYS_YAML = f"admin: {ADMIN}\npartners:\n  kol-1: {KOL1}\n  guide-0: {GUIDE0}\n"
WAIT_S = 60  # the feed panel asks for several feeds; a loaded 2-core machine may take a while


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("dashboard")
    (root / "keys.yaml").write_text(KEYS_YAML)
    model = str(Path(os.environ["RECSYS_DASHBOARD_MODEL"]).resolve()) if os.environ.get("RECSYS_DASHBOARD_MODEL") \
        else str(V1)  # resolved here: the server runs in a temporary directory
    srv = Server(["--model", model, "--keys", "keys.yaml", "--poll-seconds", "0"], root)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def panel_states(driver) -> dict[str, str]:
    return {p: driver.find_element("css selector", f"#{p} .body").get_attribute("data-state") for p in PANELS}


def wait_loaded(driver) -> dict[str, str]:
    """Wait until no panel is empty or loading; the panels' final states."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(
        lambda d: all(s not in ("empty", "loading") for s in panel_states(d).values()))
    return panel_states(driver)


def panel_text(driver, panel: str) -> str:
    return driver.find_element("css selector", f"#{panel} .body").text


def script_errors(driver) -> list[str]:
    """The browser console's errors other than the HTTP errors the page expects (401, 403, 404 answers)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
            and not re.search(r"status of (401|403|404)", e["message"])]


def log_in(driver, url: str, key: str) -> None:
    driver.get(url + "/ui")
    driver.execute_script("sessionStorage.clear()")
    driver.get(url + "/ui")
    driver.find_element("id", "key").send_keys(key)
    driver.find_element("id", "login-button").click()


def test_wrong_key_is_refused(server: Server, browser) -> None:
    log_in(browser, server.url, "not-a-key-0123456789abcdef")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element("id", "login-error").text)
    assert "unknown API key" in browser.find_element("id", "login-error").text
    assert not browser.find_element("id", "dashboard").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0


def api(server: Server, path: str, key: str = KOL1) -> dict:
    r = httpx.get(server.url + path, headers=auth(key), timeout=WAIT_S)
    assert r.status_code == 200, r.text
    return r.json()


def test_partner_sees_its_panels(server: Server, browser, tmp_path: Path) -> None:
    """kol-1 sees its four panels, each with what its endpoint answers."""
    log_in(browser, server.url, KOL1)
    states = wait_loaded(browser)
    assert set(states.values()) == {"ok"}, {p: panel_text(browser, p) for p in PANELS}
    feeds = browser.find_elements("css selector", "#panel-feed .feed")
    assert len(feeds) == 3  # three sample users of the partner's audience
    for feed in feeds:
        rows = feed.find_elements("css selector", "tbody tr")
        assert len(rows) == 5
        cells = [c.text for c in rows[0].find_elements("tag name", "td")]
        assert cells[0] == "1" and cells[1] and cells[2].startswith("¥") and cells[-1]  # rank, title, price, reason
        heads = [h.text.lower() for h in feed.find_elements("css selector", "thead th")]
        assert any("commission" in h for h in heads) and any("paid" in h for h in heads), heads
    insight = api(server, "/v1/partners/kol-1/insight")
    figures = browser.find_elements("css selector", "#panel-insight .stat-value")
    assert figures[0].text == f"{insight['size']['audience_users']:,}"
    text = panel_text(browser, "panel-insight")
    top = insight["top"]["category"]["rows"]
    assert top and "Top categories" in text and str(top[0]["value"]) in text
    charts = browser.find_elements("css selector", "#panel-insight svg.bars")
    breakdowns = [p for p in [*insight["top"].values(), *insight["profile"].values()] if p and p["rows"]]
    assert len(charts) >= len(breakdowns) > 0  # one chart per breakdown shown, at least
    funnel = api(server, "/v1/partners/kol-1/funnel")
    brands = browser.find_elements("css selector", "#panel-funnel .brand")
    assert [b.get_attribute("data-brand") for b in brands] == [str(b) for b in funnel["brands"]]
    assert len(browser.find_elements("css selector", "#panel-funnel svg.stacked")) == len(funnel["brands"])
    carry = api(server, "/v1/partners/kol-1/carry?n=20")["items"]
    bars = browser.find_elements("css selector", "#panel-carry svg.bars rect.bar")
    assert len(bars) == min(10, len(carry)) > 0
    first = browser.find_elements("css selector", "#panel-carry table")[0].find_elements("css selector", "tbody td")
    assert first[1].text == carry[0]["title"]
    # the key is in this tab's session storage only: not in the address, not in a cookie
    assert browser.execute_script("return sessionStorage.getItem('recsys.dashboard.key')") == KOL1
    assert KOL1 not in browser.current_url and not browser.get_cookies()
    assert "kol-1" in browser.find_element("id", "who-label").text
    assert not script_errors(browser)  # no exception, no load blocked by the page's Content-Security-Policy
    # the whole page: the window's height is the page's plus what the window's frame takes from it
    height, frame = browser.execute_script("return [document.documentElement.scrollHeight, "
                                           "window.outerHeight - window.innerHeight]")
    browser.set_window_size(1280, min(int(height) + int(frame) + 8, 8000))
    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("RECSYS_DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["RECSYS_DASHBOARD_SCREENSHOT"])
    browser.set_window_size(1280, 1000)


def show(browser, partner: str) -> dict[str, str]:
    field = browser.find_element("id", "partner")
    field.clear()
    field.send_keys(partner)
    browser.find_element("id", "show").click()
    return wait_loaded(browser)


def test_other_partners_data_is_refused(server: Server, browser) -> None:
    log_in(browser, server.url, KOL1)
    wait_loaded(browser)
    states = show(browser, "guide-0")
    assert set(states.values()) == {"forbidden"}, {p: panel_text(browser, p) for p in PANELS}
    for panel in PANELS:
        assert "not allowed" in panel_text(browser, panel) and "kol-1" in panel_text(browser, panel)
    assert not browser.find_elements("css selector", "#panel-feed .feed, .panel svg")  # nothing of guide-0's shown
    # the refusal is the service's: the same key gets 403 there, whoever asks
    r = httpx.get(server.url + "/v1/partners/guide-0/audience", headers=auth(KOL1), timeout=WAIT_S)
    assert r.status_code == 403
    assert KOL1 not in server.output() and ADMIN not in server.output()  # keys never logged


def test_endpoint_errors_are_shown(server: Server, browser) -> None:
    """The admin may ask for any partner; for one the model does not know, each panel shows the service's error
    message (422: unknown partner), not a blank."""
    log_in(browser, server.url, ADMIN)
    wait_loaded(browser)
    assert "Admin" in browser.find_element("id", "who-label").text
    states = show(browser, "no-such-partner")
    assert set(states.values()) == {"error"}, {p: panel_text(browser, p) for p in PANELS}
    for panel in PANELS:
        text = panel_text(browser, panel)
        assert text.startswith("error 4") and "no-such-partner" in text, text


def test_reload_keeps_the_session_and_log_out_ends_it(server: Server, browser) -> None:
    log_in(browser, server.url, KOL1)
    wait_loaded(browser)
    browser.refresh()  # the same tab: still logged in (session storage), panels loaded again
    assert set(wait_loaded(browser).values()) == {"ok"}
    assert "kol-1" in browser.find_element("id", "who-label").text
    browser.find_element("id", "logout").click()
    assert browser.find_element("id", "login").is_displayed() and not browser.find_element("id", "dashboard").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0
    assert not browser.find_elements("css selector", ".panel .body *")  # nothing of the partner's left on the page
