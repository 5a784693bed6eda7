"""The HTML report in a real browser: headless Chromium opens the page from disk (file://), every figure
decodes, the claims and accuracy tables render with rows; a screenshot is saved in the test's tmp_path."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["conftest_study"]

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason=f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian packages chromium, chromium-driver; "
        "`make setup` installs them)",
    ),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium driven by the system chromedriver, with a fresh profile and no background traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1600",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chrome-profile", ignore_errors=True)


IMAGES_JS = """
return Array.from(document.images).map(function (im) {
  return {id: im.closest('figure') ? im.closest('figure').id : '', complete: im.complete,
          w: im.naturalWidth, h: im.naturalHeight, shown: im.getBoundingClientRect().width};
});
"""

TABLE_JS = """
var t = document.getElementById(arguments[0]);
if (!t) { return null; }
return {rows: t.tBodies.length ? t.tBodies[0].rows.length : 0,
        cols: t.tHead ? t.tHead.rows[0].cells.length : 0,
        visible: t.getBoundingClientRect().height > 0,
        verdicts: Array.from(t.querySelectorAll('td[class*="verdict-"]')).map(function (c) {
          return [c.textContent, getComputedStyle(c).color]; })};
"""


def test_report_renders_in_chromium(tiny_report: Path, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(tiny_report.resolve().as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert browser.title.startswith("dimcollapse report")

    images = browser.execute_script(IMAGES_JS)
    assert len(images) >= 8
    broken = [im for im in images if not (im["complete"] and im["w"] > 0 and im["h"] > 0)]
    assert not broken, f"figures that did not load: {broken}"
    assert all(im["shown"] > 0 for im in images)  # laid out on the page, not collapsed to zero width

    claims = browser.execute_script(TABLE_JS, "claims")
    assert claims is not None, "no claims table"
    assert claims["rows"] >= 1 and claims["visible"] and claims["cols"] >= 5
    # each verdict is coloured by its class (holds: green, does not hold: red, inconclusive: amber)
    assert len(claims["verdicts"]) == claims["rows"]
    colours = {
        "holds": "rgb(10, 125, 38)",
        "does not hold": "rgb(179, 38, 30)",
        "inconclusive": "rgb(154, 103, 0)",
    }
    for text, colour in claims["verdicts"]:
        assert colours[text] == colour

    # wide tables scroll inside their box: the page itself never needs a horizontal scroll bar
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the window"

    accuracy = browser.execute_script(TABLE_JS, "accuracy")
    assert accuracy is not None, "no accuracy table"
    assert accuracy["rows"] >= 5 and accuracy["visible"]  # 2 baselines + 3 runs

    # the same-page navigation works: the link to the claims section scrolls there
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    browser.find_element("css selector", 'nav a[href="#section-claims"]').click()
    top = browser.execute_script(
        "return document.getElementById('section-claims').getBoundingClientRect().top"
    )
    assert abs(top) < 50

    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "report_screenshot.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"report screenshot: {shot}")
