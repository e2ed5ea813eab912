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


@pytest.fixture
def two_runs(built_run: Path, tmp_path: Path) -> Iterator[ViewServer]:
    """The run and a copy scored on eval pairs that differ in one text (another digest)."""
    import shutil

    other = tmp_path / "other-run"
    shutil.copytree(built_run, other)
    pairs = other / "eval_pairs.jsonl"
    lines = pairs.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('"instruction": "', '"instruction": "Edited. ', 1)
    lines[0] = lines[0].replace('"instruction":"', '"instruction":"Edited. ', 1)
    pairs.write_text("".join(lines))
    srv = make_server([built_run, other])
    srv.start_in_thread()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_runs_side_by_side_warn_when_their_eval_pairs_differ(
    browser: Any, two_runs: ViewServer, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(two_runs.url)
    settled(browser)
    tab = browser.find_element(By.ID, "tab-runs")
    assert tab.is_displayed()
    tab.click()
    settled(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
    # The runs have the same name (one is a copy): each row also names its directory.
    assert [r.find_element(By.CSS_SELECTOR, ".path").text for r in rows] == [
        str(v.root.resolve()) for v in two_runs.runs
    ]
    for row in rows:  # seed judge, last judge M2 and its paired test against the seed
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        assert cells[3].startswith("M0: ") and cells[4].startswith("M2: ")
        assert "pts (p=" in cells[5]
    warning = browser.find_element(By.ID, "runs-warning").text
    assert "not evaluated on the same eval pairs" in warning
    no_horizontal_overflow(browser)
    browser.save_screenshot(str(artifacts(tmp_path) / "ste-view-runs.png"))
    rows[1].find_element(By.TAG_NAME, "a").click()  # a run's name opens its overview
    settled(browser)
    assert str(two_runs.runs[1].root) in browser.find_element(By.ID, "overview").text


def test_an_open_pair_that_the_filter_hides_says_so(browser: Any, server: ViewServer) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server.url + "#view=pairs&iter=0&filter=wrong")
    settled(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "#items tbody tr")
    pair = rows[0].get_attribute("data-pair")
    rows[0].click()
    settled(browser)
    assert not browser.find_elements(By.ID, "not-listed")
    choose(browser, "filter-select", "right")  # a pair judged wrong is never "right"
    listed = [
        r.get_attribute("data-pair")
        for r in browser.find_elements(By.CSS_SELECTOR, "#items tbody tr")
    ]
    assert pair not in listed
    assert pair in browser.find_element(By.ID, "not-listed").text


@pytest.mark.parametrize("width", [420, 768])
def test_narrow_windows_never_scroll_sideways(
    built_run: Path, server: ViewServer, tmp_path: Path, width: int
) -> None:
    from selenium.webdriver.common.by import By

    with chrome(width=width, height=900) as browser:
        browser.get(server.url)
        settled(browser)
        no_horizontal_overflow(browser)
        browser.get(server.url + "#view=pairs&iter=2&cmp=0")
        settled(browser)
        browser.find_elements(By.CSS_SELECTOR, "#items tbody tr")[0].click()
        settled(browser)
        assert browser.find_elements(By.CSS_SELECTOR, "#detail .judge")
        no_horizontal_overflow(browser)
        browser.save_screenshot(str(artifacts(tmp_path) / f"ste-view-{width}px.png"))
