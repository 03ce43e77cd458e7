"""Open an HTML report in a real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium) and check what a user sees. Skips, with the reason, only where no browser is installed
(`make browser` installs it; `make test` runs that first)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1600")


def _browser_paths() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("needs selenium (the dev extra): pip install -e '.[dev]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("needs Chromium and its driver: `make browser` (apt-get install chromium chromium-driver)")
    return chromium, driver


@dataclass
class Page:
    driver: Any

    def console_errors(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def visible_rows(self) -> list[Any]:
        from selenium.webdriver.common.by import By

        return [row for row in self.driver.find_elements(By.CSS_SELECTOR, "#samples .sample") if row.is_displayed()]

    def select(self, element_id: str, value: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        Select(self.driver.find_element(By.ID, element_id)).select_by_value(value)

    def text(self, element_id: str) -> str:
        from selenium.webdriver.common.by import By

        return str(self.driver.find_element(By.ID, element_id).text)

    def loaded_images(self) -> list[int]:
        """naturalWidth of every thumbnail: 0 for one the browser could not decode."""
        from selenium.webdriver.common.by import By

        return [int(img.get_property("naturalWidth")) for img in
                self.driver.find_elements(By.CSS_SELECTOR, ".thumbs img")]


def open_report(path: Path) -> Any:
    """A context manager yielding a Page with `path` loaded."""
    chromium, driver_path = _browser_paths()
    from contextlib import contextmanager

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    @contextmanager
    def session() -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.get(Path(path).resolve().as_uri())
            yield Page(driver)
        finally:
            driver.quit()

    return session()
