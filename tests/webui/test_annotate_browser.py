"""The annotator's keyboard flow and zoom in a real browser (Chromium through Playwright, headless;
skipped without ``/usr/bin/chromium``, see ``tests/webui/test_app_browser.py``)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser  # the browser and page fixtures (conftest) skip without Chromium


def _stored(store, username: str) -> list[tuple[int, list[int]]]:
    """(task id, ranks in the order the annotator was shown the candidates) of each ranking."""
    from sqlalchemy import select

    from annotation.models import Assignment, Ranking, User

    with store.session() as s:
        uid = s.scalar(select(User.id).where(User.username == username))
        out = []
        for r in s.scalars(select(Ranking).where(Ranking.annotator_id == uid).order_by(Ranking.id)):
            order = s.scalar(select(Assignment.shown_order).where(Assignment.id == r.assignment_id))
            ranks = {e.candidate_id: e.rank for e in r.entries}
            out.append((r.task_id, [ranks[c] for c in order]))
        return out


def _focused(page) -> str:
    return page.evaluate("() => document.activeElement ? document.activeElement.id : ''")


def test_browser_ranks_and_submits_with_the_keyboard_only(webapp, page, log_in, open_study):
    webapp.store.create_user("kbd1", "kbd1-password")
    page.goto(webapp.url)
    log_in(page, "kbd1", "kbd1-password")
    open_study(page, "webui-study")
    page.wait_for_selector("#rg-cand-2 img")
    assert "Task 1 of 2" in page.inner_text("#rg-progress")
    # a new task focuses its first image; each image is one Tab stop, its rank choices none
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'rg-slot-0'")
    assert page.evaluate("() => [...document.querySelectorAll('#rg-rank-0 input')].map(i => i.tabIndex)") == [
        -1, -1, -1,
    ]  # fmt: skip
    # number keys rank the focused image, arrows move (and wrap), Enter submits
    for key in ["1", "ArrowRight", "3", "ArrowRight", "2", "ArrowRight"]:
        page.keyboard.press(key)
    assert _focused(page) == "rg-slot-0"
    page.keyboard.press("ArrowLeft")
    assert _focused(page) == "rg-slot-2"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("2")  # a second key press changes the rank
    for i, r in enumerate(["1", "2", "2"]):
        page.wait_for_function(f"() => document.querySelector(\"#rg-rank-{i} input[value='{r}']\").checked")
    page.keyboard.press("Enter")
    page.wait_for_selector("#rg-annotate-message :text('Saved task')")
    stored = _stored(webapp.store, "kbd1")
    assert [ranks for _, ranks in stored] == [[1, 2, 2]]
    # the next task is served and focused, ready for the next keys
    page.wait_for_selector("#rg-progress :text('Task 2 of 2')")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'rg-slot-0'")
    assert page.evaluate("() => document.querySelector(\"#rg-rank-0 input[value='1']\").checked") is False


def test_browser_click_an_image_to_compare_them_large(webapp, page, log_in, open_study):
    webapp.store.create_user("zoom1", "zoom1-password")
    page.goto(webapp.url)
    log_in(page, "zoom1", "zoom1-password")
    open_study(page, "webui-study")
    page.wait_for_selector("#rg-cand-2 img")
    page.click("#rg-cand-1 img")
    page.wait_for_selector("#rg-zoom")
    sizes = page.evaluate("() => [...document.querySelectorAll('#rg-zoom img')].map(i => i.width)")
    small = page.evaluate("() => document.querySelector('#rg-cand-1 img').width")
    assert len(sizes) == 3 and min(sizes) > small, (sizes, small)
    outlined = page.evaluate(
        "() => [...document.querySelectorAll('#rg-zoom img')].map(i => !!i.style.outline)"
    )
    assert outlined == [False, True, False]
    page.keyboard.press("Escape")
    page.wait_for_selector("#rg-zoom", state="detached")
