"""report.html in a real browser (headless Chromium, tests/core/browser.py): it fits a 1280 px
window, its three charts load, and the manifest is collapsed. The screenshot is kept as a test
artifact ($STE_TEST_ARTIFACTS, else the test's tmp dir)."""

from __future__ import annotations

from pathlib import Path

from ste_core.evaluation import write_report
from tests.core.browser import artifacts, chrome, needs_chromium, no_horizontal_overflow
from tests.core.rundirs import make_run

pytestmark = needs_chromium


def test_report_html_fits_shows_its_charts_and_collapses_the_manifest(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    runs = [
        make_run(tmp_path, "baseline-run", [0.6, 0.75, 0.85, 0.8]),
        make_run(tmp_path, "other-eval-pairs", [0.55, 0.7], crash_last=False, n_eval_pairs=50),
    ]
    files = write_report(runs, tmp_path / "report")
    with chrome(1280, 1000) as browser:
        browser.get(files.html.resolve().as_uri())
        images = browser.find_elements(By.TAG_NAME, "img")
        assert len(images) == 3
        for img in images:
            loaded = browser.execute_script(
                "return [arguments[0].complete, arguments[0].naturalWidth]", img
            )
            assert loaded[0] and loaded[1] > 0, img.get_attribute("alt")
            assert img.size["width"] > 0
        no_horizontal_overflow(browser)
        manifests = browser.find_elements(By.TAG_NAME, "details")
        assert [d.find_element(By.TAG_NAME, "summary").text for d in manifests] == [
            "Manifest of run baseline-run",
            "Manifest of run other-eval-pairs",
        ]
        for details in manifests:
            assert details.get_attribute("open") is None
            assert not details.find_element(By.TAG_NAME, "table").is_displayed()
        warning = browser.find_element(By.CSS_SELECTOR, "p.warn")
        assert "not evaluated on the same eval pairs" in warning.text
        assert warning.is_displayed()

        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, min(int(height) + 120, 6000))
        shot = artifacts(tmp_path) / "ste-report.png"
        browser.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
