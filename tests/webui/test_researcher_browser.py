"""The researcher's pages in Chromium: the Manage tab creates a study, the Results tab shows the
annotator dashboard. Same Playwright setup as ``test_app_browser.py``."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser  # the browser and page fixtures (conftest) skip without Chromium


def _wait_text(page, selector: str, text: str) -> None:
    """Wait until the element's visible text contains ``text``."""
    page.wait_for_function(
        "([sel, t]) => (document.querySelector(sel)?.innerText || '').includes(t)", arg=[selector, text]
    )


def test_browser_researcher_creates_a_study_and_sees_the_annotators(webapp, page, log_in):
    page.goto(webapp.url)
    page.get_by_role("tab", name="Manage").click()
    page.wait_for_selector(":text('Study and user management is for researchers')")
    log_in(page, "res1", "res1-password")
    page.get_by_role("tab", name="Manage").click()
    _wait_text(page, "#rg-manage-users", "ann1")
    page.fill("#rg-new-study textarea", "browser-study")
    page.click("#rg-create-study")
    page.wait_for_selector("#rg-manage-message :text('Created study')")
    _wait_text(page, "#rg-manage-studies", "browser-study")
    assert webapp.store.get_study("browser-study").group_size == 3
    page.get_by_role("tab", name="Results").click()
    page.fill("#rg-results-study input", "webui-study")
    page.keyboard.press("Enter")
    page.click("#rg-compute")
    _wait_text(page, "#rg-annotators", "seed2")
    assert "Excluded by the controls" in page.inner_text("#rg-results-summary")
