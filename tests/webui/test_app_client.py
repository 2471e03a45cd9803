"""End to end through gradio_client against the in-process app on the tiny model."""

from __future__ import annotations

import re
import threading
import time
import zipfile
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

from webui.generate_tab import QUEUE_NOTE_S
from webui.services import MAX_SLOTS

PASSWORDS = {"ann1": "ann1-password", "ann2": "ann2-password", "res1": "res1-password"}
STUDY = "webui-study"
# /generate outputs: status, then per slot (cot, plan, image, scores), then the scores JSON.
COT, PLAN, IMAGE, SCORES = 0, 1, 2, 3
JSON = 1 + 4 * MAX_SLOTS


def _slot(i: int, part: int) -> int:
    return 1 + 4 * i + part


def _is_file(x: object) -> bool:
    """An image output: a file (downloading client) or its FileData dict (download_files=False)."""
    if isinstance(x, dict):
        x = x.get("path") or x.get("url")
    return isinstance(x, str) and x.endswith(".png")


def _client(url: str, download_files: str | bool = False):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=download_files, analytics_enabled=False)


def _generate(client, prompt: str, n: int = 2, seed: int = 0) -> list[tuple]:
    job = client.submit(prompt, "got-r1", n, 5.0, 1.0, seed, api_name="/generate")
    frames = [tuple(o) for o in job]
    err = job.exception(timeout=60)
    if err is not None:
        raise err
    return frames


def _first(frames: list[tuple], pred) -> int:
    return next(i for i, f in enumerate(frames) if pred(f))


def test_stream_order_then_scores(webapp, client):
    example = webapp.services.examples[0]
    frames = _generate(client, example.prompt, n=2)
    for i in range(2):
        cot = _first(frames, lambda f, i=i: isinstance(f[_slot(i, COT)], str) and f[_slot(i, COT)] != "")
        plan = _first(frames, lambda f, i=i: _is_file(f[_slot(i, PLAN)]))
        image = _first(frames, lambda f, i=i: _is_file(f[_slot(i, IMAGE)]))
        assert cot <= plan < image, (cot, plan, image)  # a short CoT may end in the frame it starts
    # the image fills in: several previews arrive before the scores
    assert sum(_is_file(f[_slot(0, IMAGE)]) for f in frames) >= 2
    final = frames[-1]
    assert final[0].startswith("Done")
    table = final[JSON]
    assert table["prompt"] == example.prompt
    rows = table["candidates"]
    assert len(rows) == 2
    for row in rows:
        # the example prompt carries GenEval metadata, so the real shapes reward gives a number
        assert isinstance(row["shapes"], float) and 0.0 <= row["shapes"] <= 1.0
        assert row["gate"] == 0.5
        assert row["combined"] == pytest.approx(row["shapes"] + 0.5)  # weighted sum, weights 1
        assert "broken" not in row
    assert "weights not found" in table["errors"]["broken"]
    html = final[_slot(0, SCORES)]
    assert "rg-bar" in html and f"{rows[0]['combined']:.3f}" in html and "unavailable" in html


def test_free_prompt_has_no_shapes_score_and_bad_input_is_a_message(webapp, client):
    frames = _generate(client, "something that is not an example", n=1)
    row = frames[-1][JSON]["candidates"][0]
    assert row["shapes"] is None and row["combined"] == 0.5  # missing parts are skipped
    # A typed prompt that is not an example but is in the shapes world's language is read and scored.
    typed = "A photo of two green stars and a black cross."
    assert all(ex.prompt != typed for ex in webapp.services.examples)
    row = _generate(client, typed, n=1)[-1][JSON]["candidates"][0]
    assert isinstance(row["shapes"], float) and row["combined"] == pytest.approx(row["shapes"] + 0.5)
    with pytest.raises(AppError, match="limit is 300"):
        _generate(client, "x" * 301, n=1)
    with pytest.raises(AppError, match="empty"):
        _generate(client, "   ", n=1)
    with pytest.raises(AppError, match="maximum value 3"):
        _generate(client, "a circle", n=4)


def _login(client, name: str) -> None:
    client.predict(name, PASSWORDS[name], api_name="/login")


def test_login_rejects_wrong_password(client):
    with pytest.raises(AppError, match="Wrong username or password"):
        client.predict("ann1", "not-the-password", api_name="/login")
    with pytest.raises(AppError, match="log in"):
        client.predict(STUDY, None, api_name="/next_task")


def test_ranking_is_submitted_and_stored(webapp, client):
    from annotation.tables import rankings_frame

    _login(client, "ann1")
    task = client.predict(STUDY, None, api_name="/next_task")
    assert task[0].startswith("### Prompt:")
    ranks = ["2", "1", "2"] + [None] * (MAX_SLOTS - 3)
    with pytest.raises(AppError, match="missing: image 3"):
        client.predict(STUDY, "1", "2", *([None] * (MAX_SLOTS - 2)), api_name="/submit_ranking")
    before = rankings_frame(webapp.store, STUDY)
    assert (before["annotator"] == "ann1").sum() == 0  # the incomplete ranking stored nothing
    out = client.predict(STUDY, *ranks, api_name="/submit_ranking")
    assert "Saved task" in out[3]
    df = rankings_frame(webapp.store, STUDY)
    mine = df[df["annotator"] == "ann1"]
    assert len(mine) == 3 and not mine["skipped"].any()
    # the shown order is shuffled per annotator: map the ranks through the assignment's order
    assert sorted(mine["rank"].tolist()) == [1, 2, 2]  # ties kept, dense ranks
    assert mine["time_taken_s"].iloc[0] >= 0
    # the next task is served; skipping it stores a skipped ranking
    out = client.predict(STUDY, None, "", api_name="/skip_task")  # study, reason, details
    assert "Skipped task" in out[3]
    df = rankings_frame(webapp.store, STUDY)
    assert df[(df["annotator"] == "ann1") & df["skipped"]].shape[0] == 1


def test_results_are_for_researchers_only(webapp, client, tmp_path):

    with pytest.raises(AppError, match="researchers"):
        client.predict(STUDY, api_name="/study_results")
    with pytest.raises(AppError, match="researchers"):
        client.predict(STUDY, "csv", api_name="/export_study")
    _login(client, "ann2")
    with pytest.raises(AppError, match="researchers"):
        client.predict(STUDY, api_name="/study_results")
    res = _client(webapp.url, download_files=str(tmp_path))
    _login(res, "res1")
    summary, bt_plot, wr_plot, ratings, recipes, agreement, _controls, ag_plot, reward_table = res.predict(
        STUDY, api_name="/study_results"
    )
    # the rewards' agreement with the rankings: a plot, and a table (no reward scores stored here)
    assert ag_plot["type"] == "matplotlib" and "headers" in reward_table
    assert f"**{STUDY}**" in summary and "α (ordinal)" in summary
    assert bt_plot["type"] == "matplotlib" and wr_plot["type"] == "matplotlib"
    rows = [dict(zip(ratings["headers"], r)) for r in ratings["data"]]
    assert sorted(r["item"].split(":")[-1] for r in rows) == ["direct", "got-r1"]
    for r in rows:
        assert r["ci_low"] <= r["theta"] <= r["ci_high"] and r["comparisons"] > 0
    pair = dict(zip(recipes["headers"], recipes["data"][0]))
    assert (pair["a"], pair["b"]) == ("direct", "got-r1") and 0 <= pair["win_rate_a"] <= 1
    assert {"seed0", "seed1", "seed2"} <= {row[0] for row in agreement["data"]}
    path = res.predict(STUDY, "csv", api_name="/export_study")
    names = zipfile.ZipFile(path).namelist()
    assert "rankings.csv" in names and "summary.json" in names and "images/metadata.jsonl" in names


def test_researcher_sends_candidates_to_a_new_study(webapp, client):
    from annotation.tables import candidates_frame
    from annotation.workflow import progress

    with pytest.raises(AppError, match="researchers"):
        client.predict(None, "visitor-study", api_name="/send_to_study")
    _login(client, "res1")
    example = webapp.services.examples[1]
    _generate(client, example.prompt, n=2, seed=3)
    msg, _, name = client.predict(None, "sent-study", api_name="/send_to_study")
    assert "Stored 2 candidates" in msg and name == ""  # the new study's name field is cleared
    # sending the same run again (to the new study, now by its name) stores nothing
    msg, study, _ = client.predict("sent-study", "", api_name="/send_to_study")
    assert "already task" in msg and "nothing stored" in msg and study == "sent-study"
    cands = candidates_frame(webapp.store, "sent-study")
    assert len(cands) == 2 and set(cands["prompt"]) == {example.prompt}
    assert all("shapes" in r and "gate" in r for r in cands["rewards"])
    assert progress(webapp.store, "sent-study")["tasks"] == 1  # once, though sent twice
    assert len(candidates_frame(webapp.store, "sent-study")) == 2
    assert client.predict("sent-study", api_name="/study_results")[0] == "No rankings yet."
    with pytest.raises(AppError, match="does not exist"):
        client.predict("no-such-study", api_name="/study_results")


def test_update_count_does_not_grow_with_the_number_of_tokens(webapp, client):
    """Frames are coalesced: a CoT eight times longer reaches the page in about as many updates,
    and an image is sent only in the frame where it changes."""
    cfg = webapp.services.config
    counts, cots = {}, {}
    try:
        for cap in (12, 96):
            cfg.max_cot_tokens = cap
            t0 = time.monotonic()
            frames = _generate(client, "a red circle", n=2)
            elapsed = time.monotonic() - t0
            counts[cap] = len(frames)
            texts = [f[_slot(0, COT)] for f in frames if isinstance(f[_slot(0, COT)], str)]
            cots[cap] = texts
            # start, at most one per 0.1 s, previews (4), scoring, done: never one per token
            assert len(frames) <= 8 + elapsed / 0.1, (cap, len(frames), elapsed)
    finally:
        cfg.max_cot_tokens = 12
    assert counts[96] < 2 * 96 / 4  # the old handler sent one update per token of either row
    # the last CoT sent is the whole CoT: deltas were merged, none lost
    assert len(cots[96][-1]) > len(cots[12][-1])
    # an image is sent only when it changes: the plan once, then skipped
    assert sum(_is_file(f[_slot(0, PLAN)]) for f in frames) == 1


def test_a_prompt_over_the_limit_is_refused_not_cut(webapp, client):
    limit = webapp.services.config.max_prompt_chars
    with pytest.raises(AppError, match=f"{limit + 1} characters long; the limit is {limit}"):
        _generate(client, "a red circle " + "x" * (limit - 12), n=1)
    frames = _generate(client, "a red circle" + " " * (limit - 12), n=1)  # exactly at the limit
    assert frames[-1][0].startswith("Done")


def test_submissions_do_not_wait_behind_generation(webapp):
    """Generation is held inside its (concurrency 1) queue: a second generation waits, while a
    login and a task request on the annotation queue still complete."""

    gen, gen2, ann = _client(webapp.url), _client(webapp.url), _client(webapp.url)
    webapp.gate.gate.clear()
    webapp.gate.entered.clear()
    webapp.gate.block.set()
    try:
        job = gen.submit("a red circle", "got-r1", 1, 5.0, 1.0, 0, api_name="/generate")
        assert webapp.gate.entered.wait(60), "generation never reached scoring"
        job2 = gen2.submit("a blue square", "got-r1", 1, 5.0, 1.0, 0, api_name="/generate")
        t0 = time.monotonic()
        done = threading.Event()

        def annotate() -> None:
            _login(ann, "res1")
            ann.predict(STUDY, None, api_name="/next_task")
            done.set()

        worker = threading.Thread(target=annotate)
        worker.start()
        assert done.wait(30), "annotation waited behind the running generation"
        assert time.monotonic() - t0 < 30 and not job.done()
        assert job2.outputs() == [] and not job2.done()  # queued behind the first generation
        time.sleep(QUEUE_NOTE_S + 0.5)  # long enough a wait for the status to state it
    finally:
        webapp.gate.block.clear()
        webapp.gate.gate.set()
    worker.join(30)
    list(job)
    frames = list(job2)
    assert job.status().success and job2.status().success
    # the second run's status separates its wait in the queue from its generation time
    assert re.fullmatch(r"Done in \d+\.\d s \(after \d+\.\d s in the queue\)\.", frames[-1][0]), frames[-1][0]


@pytest.fixture
def limits(webapp):
    """Lets a test swap the app's limiters; the originals come back afterwards."""
    svc = webapp.services
    names = ("limiter", "login_limiter", "user_backoff", "address_backoff")
    saved = {n: getattr(svc, n) for n in names}
    yield svc
    for n, v in saved.items():
        setattr(svc, n, v)


def test_login_and_generation_limits_hold_across_fresh_clients(webapp, limits):
    from webui.ratelimit import FailureBackoff, RateLimiter

    limits.user_backoff = FailureBackoff(2, 60.0)
    limits.address_backoff = FailureBackoff(4, 60.0)
    limits.login_limiter = RateLimiter(1000, 60.0)
    for _ in range(2):  # a fresh client (a new session) per guess
        with pytest.raises(AppError, match="Wrong username or password"):
            _client(webapp.url).predict("ann1", "guess", api_name="/login")
    with pytest.raises(AppError, match=r"Too many failed logins for this account; try again in \d+ s"):
        _login(_client(webapp.url), "ann1")  # locked: even the right password is not checked
    for name in ("ghost1", "ghost2"):  # spraying other names from the same address
        with pytest.raises(AppError, match="Wrong username or password"):
            _client(webapp.url).predict(name, "guess", api_name="/login")
    with pytest.raises(AppError, match="Too many failed logins from your address"):
        _login(_client(webapp.url), "ann2")
    limits.address_backoff = FailureBackoff(4, 60.0)
    limits.login_limiter = RateLimiter(2, 60.0)  # attempts per address, failed or not
    _login(_client(webapp.url), "ann2")
    _login(_client(webapp.url), "ann2")
    with pytest.raises(AppError, match="Too many login attempts from your address"):
        _login(_client(webapp.url), "ann2")
    limits.limiter = RateLimiter(1, 60.0)  # generations per address
    _generate(_client(webapp.url), "a red circle", n=1)
    with pytest.raises(AppError, match="Too many generations"):
        _generate(_client(webapp.url), "a red circle", n=1)


def _login_token(client, name: str) -> str:
    out = client.predict(name, PASSWORDS[name], api_name="/login")
    return next(o for o in out if isinstance(o, str) and o.count(".") == 3)


def test_logout_revokes_the_token_on_the_server(webapp, client):
    from webui.annotate_tab import restore_user
    from webui.auth import REVOKED_FILE

    token = _login_token(client, "ann2")
    assert restore_user(webapp.services, token)["username"] == "ann2"  # a reload would log back in
    assert client.predict(STUDY, None, api_name="/next_task")[0].startswith("### ")
    client.predict(api_name="/logout")
    assert restore_user(webapp.services, token) is None  # the stored token no longer logs in
    assert token.split(".")[2] in (Path(webapp.data_dir) / REVOKED_FILE).read_text()
    with pytest.raises(AppError, match="log in"):
        client.predict(STUDY, None, api_name="/next_task")


def test_an_expired_login_is_refused(webapp, client):
    from webui.annotate_tab import restore_user

    token = _login_token(client, "ann2")
    signer = webapp.services.signer
    ttl = signer.max_age_s
    signer.max_age_s = -1  # every token is past its lifetime
    try:
        with pytest.raises(AppError, match="log in"):  # the open session ends too
            client.predict(STUDY, None, api_name="/next_task")
        assert restore_user(webapp.services, token) is None
    finally:
        signer.max_age_s = ttl
    assert client.predict(STUDY, None, api_name="/next_task")[0].startswith("### ")


def test_refusals_are_one_log_line_without_traceback(webapp, client, caplog, capfd):
    caplog.set_level("INFO", logger="reasongen.app")
    capfd.readouterr()
    with pytest.raises(AppError, match="Wrong username or password"):
        client.predict("ann1", "not-the-password", api_name="/login")
    with pytest.raises(AppError, match="log in"):
        client.predict(STUDY, None, api_name="/next_task")
    with pytest.raises(AppError, match="limit is 300"):
        _generate(client, "x" * 301, n=1)
    with pytest.raises(AppError, match="maximum value 3"):  # Gradio's own check of the slider
        _generate(client, "a circle", n=4)
    lines = [r.getMessage() for r in caplog.records if r.name == "reasongen.app"]
    assert lines == [
        "login failed for 'ann1' from 127.0.0.1",
        "refused on_start: Please log in first (Annotate tab).",
        "refused on_generate: The prompt is 301 characters long; the limit is 300.",
        "refused input: Value 4 is greater than maximum value 3.",
    ]
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_served_pages_carry_security_headers(webapp):
    import httpx

    from webui.security import CSP

    for path in ("", "config", "gradio_api/info"):
        r = httpx.get(webapp.url + path, timeout=30)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"


def test_compare_two_recipes_and_two_models_side_by_side(webapp, client):
    own = webapp.services.loaded.model_id
    from webui.common import model_label

    me = model_label(own)
    status, gal_a, html_a, gal_b, html_b = client.predict(
        "a red circle", me, "direct", me, "got-r1", 2, 4, api_name="/compare"
    )
    assert status.startswith("Done") and "seed 4" in status
    assert len(gal_a) == 2 and len(gal_b) == 2
    assert "A: " in html_a and "direct" in html_a and "B: " in html_b and "got-r1" in html_b
    assert "mean" in html_a and "gate" in html_a and "0.500" in html_b  # both sides scored
    with pytest.raises(AppError, match="two different systems"):
        client.predict("a red circle", me, "direct", me, "direct", 1, 0, api_name="/compare")
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict("a red circle", me, "direct", "/etc", "direct", 1, 0, api_name="/compare")
    # model against model: the app's model against a shipped one, same recipe
    status, gal_a, _, gal_b, html_b = client.predict(
        "a red circle", me, "got-r1", "shapes-janus", "got-r1", 1, 0, api_name="/compare"
    )
    assert status.startswith("Done") and len(gal_a) == 1 and len(gal_b) == 1 and "shapes-janus" in html_b


def test_researcher_sends_a_compared_pair_to_a_study_once(webapp, client):
    from annotation.tables import candidates_frame
    from annotation.workflow import progress
    from webui.common import model_label

    me = model_label(webapp.services.loaded.model_id)
    _login(client, "res1")
    client.predict("a blue square", me, "direct", me, "got-r1", 2, 1, api_name="/compare")
    msg, _, name = client.predict(None, "pair-study", api_name="/send_pair_to_study")
    assert "Stored 4 candidates" in msg and name == ""
    msg, _, _ = client.predict("pair-study", "", api_name="/send_pair_to_study")
    assert "already task" in msg
    cands = candidates_frame(webapp.store, "pair-study")
    assert sorted(cands["recipe"]) == ["direct", "direct", "got-r1", "got-r1"]
    assert progress(webapp.store, "pair-study")["tasks"] == 1
