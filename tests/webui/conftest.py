"""One app per test session: the tiny random Janus model (loaded through ``--model``), a fresh
SQLite database with users and a study, the real ``shapes`` reward plus two test rewards, served
in-process on a free port."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PASSWORDS = {"ann1": "ann1-password", "ann2": "ann2-password", "res1": "res1-password"}
STUDY = "webui-study"


class GateReward:
    """Scores 0.5; while ``block`` is set it waits for ``gate`` (keeps a generation running)."""

    def __init__(self) -> None:
        self.block = threading.Event()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, samples: list[Any]) -> Any:
        from reasongen.rewards import RewardOutput

        if self.block.is_set():
            self.entered.set()
            self.gate.wait(timeout=60)
        return RewardOutput("gate", [0.5] * len(samples), [{} for _ in samples])


def broken_reward(samples: list[Any]) -> Any:
    raise RuntimeError("weights not found (test)")


@dataclass
class WebApp:
    url: str
    port: int
    services: Any
    store: Any
    demo: Any
    gate: GateReward
    study_id: int
    data_dir: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_study(store: Any, loaded: Any) -> int:
    """Two prompts, each one task of 2 ``got-r1`` + 1 ``direct`` candidates, and rankings by three
    seeded annotators (so the Results tab has two systems to rate)."""
    from annotation.workflow import next_task, submit_ranking
    from reasongen.generation import generate
    from reasongen.types import SamplingSettings

    study = store.create_study(STUDY, group_size=3, rankings_per_task=10, guidelines="Rank by prompt match.")
    settings = SamplingSettings(max_cot_tokens=8, num_image_tokens=loaded.num_image_tokens)
    recipe_of: dict[int, str] = {}
    for i, text in enumerate(["a photo of a red circle", "a photo of two blue squares"]):
        pid = store.add_prompts(study.id, [text])[0]
        cids = []
        for recipe, n in (("got-r1", 2), ("direct", 1)):
            ids = store.add_candidates(pid, generate(loaded, text, recipe, n=n, seed=i, settings=settings))
            recipe_of.update(dict.fromkeys(ids, recipe))
            cids += ids
        store.create_task(study.id, cids)
    for k in range(3):
        user = store.create_user(f"seed{k}", f"seed{k}-password")
        while (view := next_task(store, user.id, study.id)) is not None:
            ids = [c.id for c in view.candidates]
            ranks = {c: (1 if recipe_of[c] == "got-r1" else 2) for c in ids}
            if k == 2:  # one annotator disagrees
                ranks = {c: 3 - r for c, r in ranks.items()}
            submit_ranking(store, user.id, study.id, view.task_id, ranks)
    return study.id


@pytest.fixture(scope="session")
def webapp(tiny_model_dir, tmp_path_factory):
    import torch

    from webui import AppConfig, Services, build_demo, build_rewards, launch

    torch.set_num_threads(1)
    data_dir = tmp_path_factory.mktemp("webui-data")
    # REASONGEN_TEST_MODEL (e.g. assets/models/shapes-janus) runs the same tests on another model,
    # e.g. to take the README's screenshot with the shipped model; by default the tiny random one.
    model = os.environ.get("REASONGEN_TEST_MODEL") or str(tiny_model_dir)
    cot_cap = 128 if os.environ.get("REASONGEN_TEST_MODEL") else 12  # a trained model ends its CoT
    cfg = AppConfig(model=model, device="cpu", data_dir=str(data_dir), max_cot_tokens=cot_cap,
                    rewards=("shapes",), rate_limit=1000, max_candidates=3)  # fmt: skip
    gate = GateReward()
    rewards = {**build_rewards(cfg.rewards), "gate": gate, "broken": broken_reward}
    services = Services.build(cfg, rewards=rewards)
    store = services.store
    store.password_cost = 16  # fast hashes for test users
    for name, pw in PASSWORDS.items():
        store.create_user(name, pw, "researcher" if name.startswith("res") else "annotator")
    study_id = _make_study(store, services.loaded)
    port = _free_port()
    demo = build_demo(services)
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield WebApp(f"http://127.0.0.1:{port}/", port, services, store, demo, gate, study_id, str(data_dir))
    gate.gate.set()
    demo.close()
    services.close()


@pytest.fixture
def client(webapp):
    """A fresh gradio_client session (nobody logged in)."""
    from gradio_client import Client

    return Client(webapp.url, verbose=False, download_files=False, analytics_enabled=False)


# --------------------------------------------------------------------------- the browser
# Debian's Chromium through Playwright, headless (install with .ci/browser.sh); the browser tests
# skip without it. The flags keep Chromium off this machine's closed network.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
BROWSER_TIMEOUT_MS = 40_000


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (skips the test without Chromium or Playwright)."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run .ci/browser.sh")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context's page, 1400×1000, with the tests' default timeout."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(BROWSER_TIMEOUT_MS)
    yield pg
    context.close()


@pytest.fixture
def log_in():
    """``log_in(page, username, password)``: sign in on the Annotate tab, as a user would."""

    def _log_in(page, username: str, password: str) -> None:
        page.get_by_role("tab", name="Annotate").click()
        page.fill("#rg-username textarea", username)
        page.fill("#rg-password input", password)
        page.click("#rg-login")
        page.wait_for_selector("#rg-login-message :text('Logged in as')")

    return _log_in


@pytest.fixture
def open_study():
    """``open_study(page, study)``: pick a study on the Annotate tab and press Start."""

    def _open_study(page, study: str) -> None:
        page.fill("#rg-study input", study)
        page.keyboard.press("Enter")
        page.click("#rg-start")

    return _open_study
