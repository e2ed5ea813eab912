"""`ste view` in a real browser: Debian's headless Chromium driven by Selenium through the system
chromedriver (Selenium never downloads a browser here). Skipped, saying why, only where
chromium or chromedriver is not installed (.ci/run installs both).

The screenshots go to $STE_TEST_ARTIFACTS when set (CI keeps that folder), else to the test's
tmp dir; their paths are printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ste_core.records import Judgement
from ste_core.stages.judge import read_judgements
from ste_core.view.server import ViewServer, make_server
from tests.core.browser import artifacts, chrome, needs_chromium, no_horizontal_overflow

pytestmark = needs_chromium


@pytest.fixture
def browser() -> Iterator[Any]:
    with chrome() as driver:
        yield driver


@pytest.fixture
def server(built_run: Path) -> Iterator[ViewServer]:
    srv = make_server([built_run])
    srv.start_in_thread()
    yield srv
    srv.shutdown()
    srv.server_close()


def settled(driver: Any) -> None:
    """Wait until the app has drawn the view its URL names."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script(
            "return document.body.dataset.ready !== undefined && "
            "document.body.dataset.ready === location.hash"
        )
    )


def choose(driver: Any, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_value(value)
    settled(driver)


def file_judgements(run: Path, iteration: int, pair_id: str) -> dict[str, tuple[str, str]]:
    """order -> (verdict, reasoning) of the pair's judgements in iter_N/eval.jsonl."""
    out = {}
    for rec in read_judgements(run / f"iter_{iteration}" / "eval.jsonl"):
        if rec.sample[0] == pair_id and isinstance(rec, Judgement):
            out[rec.order.value] = (rec.verdict or "none", rec.text)
    return out


def shown_judgements(driver: Any, iteration: int) -> dict[str, tuple[str, str]]:
    from selenium.webdriver.common.by import By

    judge = driver.find_element(By.CSS_SELECTOR, f'#detail .judge[data-iteration="{iteration}"]')
    out = {}
    for j in judge.find_elements(By.CSS_SELECTOR, ".judgement"):
        verdict = j.find_element(By.CSS_SELECTOR, ".verdict-value").get_property("textContent")
        text = j.find_element(By.CSS_SELECTOR, ".reasoning").get_property("textContent")
        out[j.get_attribute("data-order")] = (verdict, text)
    return out


def test_browse_filter_open_switch_and_compare(
    browser: Any, server: ViewServer, built_run: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    out = artifacts(tmp_path)
    browser.get(server.url)
    settled(browser)
    # The overview: accuracy per judge with intervals, paired tests, funnel, cost.
    for card in ("accuracy", "paired", "funnel", "cost"):
        assert browser.find_element(By.ID, card).is_displayed()
    assert "M2" in browser.find_element(By.ID, "accuracy").text
    assert browser.find_elements(By.CSS_SELECTOR, "#accuracy svg circle")
    no_horizontal_overflow(browser)
    browser.save_screenshot(str(out / "ste-view-overview.png"))

    browser.find_element(By.ID, "tab-pairs").click()
    settled(browser)
    choose(browser, "iter-select", "0")
    choose(browser, "filter-select", "wrong")
    rows = browser.find_elements(By.CSS_SELECTOR, "#items tbody tr")
    assert rows, "the seed judge gets some eval pairs wrong"
    listed = [r.get_attribute("data-pair") for r in rows]
    for pid in listed:  # every pair listed has a judgement that picked the worse response
        judged = file_judgements(built_run, 0, pid)
        assert any(v == ("B" if o == "AB" else "A") for o, (v, _) in judged.items()), pid

    pair = listed[0]
    rows[0].click()
    settled(browser)
    assert browser.find_element(By.ID, "instruction").get_property("textContent")
    assert shown_judgements(browser, 0) == file_judgements(built_run, 0, pair)
    assert set(shown_judgements(browser, 0)) == {"AB", "BA"}

    # Another judge on the same pair (the pair stays open), then the two side by side.
    choose(browser, "iter-select", "2")
    assert shown_judgements(browser, 2) == file_judgements(built_run, 2, pair)
    choose(browser, "cmp-select", "0")
    judges = browser.find_elements(By.CSS_SELECTOR, "#detail .judge")
    assert [j.get_attribute("data-iteration") for j in judges] == ["2", "0"]
    assert shown_judgements(browser, 2) == file_judgements(built_run, 2, pair)
    assert shown_judgements(browser, 0) == file_judgements(built_run, 0, pair)
    no_horizontal_overflow(browser)
    shot = out / "ste-view-compare.png"
    browser.set_window_size(1280, 1600)
    browser.save_screenshot(str(shot))
    print(f"screenshots: {out / 'ste-view-overview.png'} {shot}")

    # A deep link opens the same view in a fresh page.
    link = browser.current_url
    assert f"pair={pair}" in link and "cmp=0" in link
    browser.get("about:blank")
    browser.get(link)
    settled(browser)
    assert [
        j.get_attribute("data-iteration")
        for j in browser.find_elements(By.CSS_SELECTOR, "#detail .judge")
    ] == ["2", "0"]
