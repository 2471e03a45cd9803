"""A real browser (Debian's Chromium through Playwright, headless) against the in-process app.

Install the browser with ``.ci/browser.sh``; without ``/usr/bin/chromium`` these tests skip.
Screenshots go to ``test-artifacts/`` (gitignored). The README's screenshot is retaken with
``REASONGEN_SCREENSHOTS=1 pytest tests/webui/test_app_browser.py -k readme`` on the embedded model
(or ``REASONGEN_TEST_MODEL=DIR``), with the real rewards only, into ``assets/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "assets" / "screenshots"
TIMEOUT_MS = 40_000  # as the page fixture's default (conftest)

pytestmark = pytest.mark.browser  # the browser and page fixtures (conftest) skip without Chromium

# Records, every 5 ms, when the first CoT text, plan image and generated image appear.
WATCH = """() => {
  window.__rg = {};
  const t0 = performance.now();
  const seen = (k, ok) => {
    if (ok && window.__rg[k] === undefined) window.__rg[k] = performance.now() - t0;
  };
  window.__rgTimer = setInterval(() => {
    const cot = document.querySelector('#rg-cot-0 textarea');
    seen('cot', cot && cot.value.length > 0);
    seen('plan', !!document.querySelector('#rg-plan-0 img'));
    seen('image', !!document.querySelector('#rg-image-0 img'));
    seen('scores', !!document.querySelector('#rg-scores-0 table'));
  }, 5);
}"""


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_browser_streams_cot_then_plan_then_image(webapp, page):
    page.goto(webapp.url)
    page.wait_for_selector("#rg-prompt textarea")
    page.evaluate(WATCH)
    example = webapp.services.examples[0]
    page.fill("#rg-prompt textarea", example.prompt)
    page.click("#rg-generate")
    page.wait_for_function("() => window.__rg.scores !== undefined", timeout=TIMEOUT_MS)
    times = page.evaluate("() => window.__rg")
    assert times["cot"] <= times["plan"] <= times["image"] <= times["scores"], times
    assert page.input_value("#rg-cot-0 textarea") != ""
    scores = page.inner_text("#rg-scores-0")
    assert "shapes" in scores and "combined" in scores
    assert "Done" in page.inner_text("#rg-status")
    _shot(page, "generate.png")


def _assignment_order(store, username: str, task_id: int) -> list[int]:
    from sqlalchemy import select

    from annotation.models import Assignment, User

    with store.session() as s:
        uid = s.scalar(select(User.id).where(User.username == username))
        a = s.scalar(select(Assignment).where(Assignment.annotator_id == uid, Assignment.task_id == task_id))
        return list(a.shown_order)


def test_browser_annotator_ranks_survives_reload_and_row_is_stored(webapp, page, log_in, open_study):
    from annotation.tables import rankings_frame

    page.goto(webapp.url)
    log_in(page, "ann2", "ann2-password")
    open_study(page, "webui-study")
    page.wait_for_selector("#rg-task-prompt :text('Prompt:')")
    page.wait_for_selector("#rg-cand-0 img")
    # mouse for the first image, keyboard for the second (focus a choice, Space selects it), mouse again
    page.check("#rg-rank-0 input[value='1']")
    page.focus("#rg-rank-1 input[value='2']")
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector(\"#rg-rank-1 input[value='2']\").checked")
    page.check("#rg-rank-2 input[value='2']")
    # each choice sends its own draft request; wait for the draft of all three, not just any change
    # (waiting for "a change" let the second choice's late draft pass for the third's and failed in CI)
    page.wait_for_function(
        "(want) => JSON.stringify((JSON.parse(localStorage.getItem('reasongen-draft') || '{}').ranks || [])"
        ".slice(0, 3)) === want",
        arg='["1","2","2"]',
    )
    # a reload logs back in and restores the half-done ranking from the browser
    page.reload()
    page.wait_for_selector("#rg-login-message :text('Welcome back')")
    for i, r in enumerate(["1", "2", "2"]):
        page.wait_for_function(f"() => document.querySelector(\"#rg-rank-{i} input[value='{r}']\").checked")
    _shot(page, "annotate.png")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#rg-annotate-message :text('Saved task')")
    df = rankings_frame(webapp.store, "webui-study")
    mine = df[(df["annotator"] == "ann2") & ~df["skipped"]]
    assert len(mine) == 3
    task_id = int(mine["task_id"].iloc[0])
    order = _assignment_order(webapp.store, "ann2", task_id)
    ranks = dict(zip(mine["candidate_id"].astype(int), mine["rank"].astype(int)))
    assert [ranks[c] for c in order] == [1, 2, 2]
    _shot(page, "annotate-next.png")


def test_browser_researcher_sees_results(webapp, page, log_in):
    page.goto(webapp.url)
    page.get_by_role("tab", name="Results").click()
    page.wait_for_selector(":text('Results are for researchers')")
    log_in(page, "res1", "res1-password")
    page.get_by_role("tab", name="Generate").click()
    page.wait_for_selector("#rg-send", state="visible")  # researchers may send candidates to a study
    page.get_by_role("tab", name="Results").click()
    page.fill("#rg-results-study input", "webui-study")
    page.keyboard.press("Enter")
    page.click("#rg-compute")
    page.wait_for_selector("#rg-bt-plot img")
    page.wait_for_selector("#rg-wr-plot img")
    assert "Krippendorff" in page.inner_text("#rg-results-summary")
    _shot(page, "results.png")


@pytest.mark.skipif(os.environ.get("REASONGEN_SCREENSHOTS") != "1", reason="set REASONGEN_SCREENSHOTS=1")
def test_browser_readme_screenshot(browser, tmp_path):
    """The README's screenshot: the real model and rewards, four candidates of the README's own
    example prompt ("two green stars", the first count-and-colour example)."""
    from reasongen.loading import default_model_path
    from webui import AppConfig, Services, build_demo, launch

    model = os.environ.get("REASONGEN_TEST_MODEL") or default_model_path()
    if model is None:
        pytest.skip("no embedded model and no REASONGEN_TEST_MODEL")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = AppConfig(model=str(model), device="cpu", data_dir=str(tmp_path))
    svc = Services.build(cfg)
    demo = build_demo(svc)
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        prompt = next((e.prompt for e in svc.examples if e.category == "count_color"), svc.examples[1].prompt)
        page.fill("#rg-prompt textarea", prompt)
        page.fill("#rg-n input[type=number]", "4")
        page.keyboard.press("Enter")
        page.wait_for_selector("#rg-cot-3", state="visible")
        page.click("#rg-generate")
        page.wait_for_selector("#rg-scores-3 table", timeout=300_000)
        path = _shot(page, "readme-generate.png")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / "generate.png")
    finally:
        context.close()
        demo.close()
        svc.close()


def test_browser_app_works_under_its_security_headers(webapp, page, log_in):
    """The page loads, generates and logs in under the Content-Security-Policy, with no violation
    reported by the browser, and every security header is on the page's response."""
    from webui.security import SECURITY_HEADERS

    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    response = page.goto(webapp.url)
    headers = response.all_headers()
    for name, value in SECURITY_HEADERS.items():
        assert headers[name.lower()] == value, name
    page.wait_for_selector("#rg-prompt textarea")
    page.fill("#rg-prompt textarea", webapp.services.examples[0].prompt)
    page.click("#rg-generate")
    page.wait_for_selector("#rg-scores-0 table")
    log_in(page, "ann1", "ann1-password")
    assert page.evaluate("() => localStorage.getItem('reasongen-token')")  # the js= mirror ran
    page.keyboard.press("Control+Enter")  # the head script (KEYBOARD_JS) runs without error
    assert violations == []


def test_browser_logout_in_one_tab_ends_the_login_in_the_other(webapp, page, log_in):
    page.goto(webapp.url)
    log_in(page, "ann1", "ann1-password")
    other = page.context.new_page()  # a second tab: logged in from the shared localStorage
    other.goto(webapp.url)
    other.wait_for_selector("#rg-login-message :text('Welcome back')")
    page.click("#rg-logout")
    page.wait_for_selector("#rg-login-message :text('Logged out')")
    other.fill("#rg-study input", "webui-study")
    other.keyboard.press("Enter")
    other.click("#rg-start")
    other.wait_for_selector(":text('Please log in first')")
    other.reload()  # and a reload does not log back in
    other.get_by_role("tab", name="Annotate").click()
    other.wait_for_selector("#rg-username textarea")
    assert "Welcome back" not in other.inner_text("#rg-login-message")


def _run_ahead_threads() -> int:
    import threading

    return sum(t.name == "reasongen-run-ahead" and t.is_alive() for t in threading.enumerate())


def test_browser_counter_refusal_enter_and_shift_enter(webapp, page):
    """The counter counts, a prompt over the limit is kept whole and refused with a message (the
    candidates get no error badge), Shift+Enter makes a new line and Enter generates."""
    limit = webapp.services.config.max_prompt_chars
    page.goto(webapp.url)
    box = page.locator("#rg-prompt textarea")
    box.fill("a red circle")
    page.wait_for_selector(f"#rg-prompt-count :text('12 / {limit} characters')")
    box.fill("x" * (limit + 5))
    page.wait_for_selector("#rg-prompt-count .rg-over")
    assert len(box.input_value()) == limit + 5  # never cut by the browser
    box.press("Enter")
    page.wait_for_selector(f":text('the limit is {limit}')")  # the refusal is shown
    for part in ("cot", "plan", "image"):
        assert "Error" not in page.inner_text(f"#rg-{part}-0")  # only the status line says so
    box.fill("a red circle")
    box.press("Shift+Enter")
    box.type("left of a blue square")
    assert box.input_value() == "a red circle\nleft of a blue square"
    box.press("Enter")
    page.wait_for_selector("#rg-scores-0 table")
    assert "Done in" in page.inner_text("#rg-status")
    assert box.input_value() == "a red circle\nleft of a blue square"  # Enter did not add a line


def test_browser_stop_cancels_the_run_and_frees_the_model(webapp, page, monkeypatch):
    import time

    import reasongen.generation as generation

    real = generation.generate_stream

    def slow_stream(*args, **kwargs):  # the tiny model may finish in a blink: pace its events
        for event in real(*args, **kwargs):
            time.sleep(0.05)
            yield event

    monkeypatch.setattr(generation, "generate_stream", slow_stream)  # the handler imports it per call
    cfg = webapp.services.config
    cfg.max_cot_tokens = 1800  # a CoT long enough to still be running when Stop is clicked
    try:
        page.goto(webapp.url)
        page.fill("#rg-prompt textarea", "a red circle")
        page.click("#rg-generate")
        page.wait_for_function("() => document.querySelector('#rg-cot-0 textarea').value.length > 0")
        status = page.inner_text("#rg-status")
        assert "Done" not in status and "Stopped" not in status, status  # still running
        page.click("#rg-stop")
        page.wait_for_function("() => document.querySelector('#rg-status').innerText.includes('Stopped.')")
        t0 = time.monotonic()
        while _run_ahead_threads() and time.monotonic() - t0 < 20:
            time.sleep(0.1)
        assert _run_ahead_threads() == 0, "the model kept generating after Stop"
        cot = page.input_value("#rg-cot-0 textarea")
        time.sleep(0.5)
        assert page.input_value("#rg-cot-0 textarea") == cot and "Done" not in page.inner_text("#rg-status")
    finally:
        cfg.max_cot_tokens = 12
        monkeypatch.setattr(generation, "generate_stream", real)
    page.click("#rg-generate")  # the page is usable after Stop
    page.wait_for_selector("#rg-status :text('Done in')")


def test_browser_compare_mode_shows_both_sides_with_scores(webapp, page):
    page.goto(webapp.url)
    page.get_by_role("tab", name="Compare").click()
    page.fill("#rg-cmp-prompt textarea", "a red circle")
    page.click("#rg-cmp-run")
    page.wait_for_selector("#rg-cmp-scores-a table")
    page.wait_for_selector("#rg-cmp-scores-b table")
    assert page.locator("#rg-cmp-a img").count() >= 2 and page.locator("#rg-cmp-b img").count() >= 2
    assert "direct" in page.inner_text("#rg-cmp-scores-a") and "got-r1" in page.inner_text("#rg-cmp-scores-b")
    assert "Done" in page.inner_text("#rg-cmp-status")
    _shot(page, "compare.png")
