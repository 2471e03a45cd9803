"""The app's pieces without a server: flags, limits, login tokens, scoring, the generate handler."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gradio as gr
import pytest

from webui.auth import TokenSigner
from webui.common import model_label, scores_html
from webui.services import AppConfig, Services

ROOT = Path(__file__).resolve().parents[2]


def _app_module():
    spec = importlib.util.spec_from_file_location("reasongen_app_main", ROOT / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_flags_and_environment(monkeypatch):
    app = _app_module()
    monkeypatch.setenv("REASONGEN_PORT", "7999")
    monkeypatch.setenv("REASONGEN_REWARDS", "shapes,hps")
    monkeypatch.setenv("REASONGEN_DB", "postgresql+psycopg://u:p@127.0.0.1/rg")
    cfg = app.config_from_args([])
    assert cfg.port == 7999 and cfg.rewards == ("shapes", "hps") and cfg.host == "127.0.0.1"
    assert cfg.db_url() == "postgresql+psycopg://u:p@127.0.0.1/rg"
    cfg = app.config_from_args(
        ["--port", "8001", "--db", "x/app.db", "--recipe", "direct", "--device", "cpu"]
    )
    assert cfg.port == 8001 and cfg.recipe == "direct" and cfg.device == "cpu"
    assert cfg.db_url() == f"sqlite:///{Path('x/app.db').resolve()}"
    monkeypatch.delenv("REASONGEN_PORT")
    monkeypatch.delenv("REASONGEN_DB")
    monkeypatch.setenv("REASONGEN_DB_URL", "sqlite:////tmp/shared.db")  # the annotation CLI's variable
    cfg = app.config_from_args([])
    assert cfg.port == 7860 and cfg.db_url() == "sqlite:////tmp/shared.db"


# A value other than the default for every AppConfig field, as a flag or variable spells it.
APP_VALUES = {"model": "m/dir", "recipe": "direct", "db": "sqlite:////tmp/x.db", "data_dir": "d",
              "rewards": "shapes,hps", "combine": "product", "device": "cpu", "host": "0.0.0.0",
              "port": "8123", "max_prompt_chars": "77", "max_candidates": "3", "max_cot_tokens": "12",
              "concurrency": "2", "rate_limit": "5", "rate_window_s": "2.5", "secret": "k",
              "login_limit": "4", "login_backoff_s": "0.5", "token_ttl_s": "600"}  # fmt: skip


def _check_app_values(cfg: AppConfig) -> None:
    for name, text in APP_VALUES.items():
        default = getattr(AppConfig(), name)
        want = AppConfig(**{name: type(default)(text) if isinstance(default, int | float) else text})
        assert getattr(cfg, name) == getattr(want, name) != default, name


def test_every_app_setting_is_a_flag_and_an_environment_variable(monkeypatch, tmp_path):
    from dataclasses import fields

    app = _app_module()
    assert set(APP_VALUES) == {f.name for f in fields(AppConfig)}  # a new field needs a value here
    argv = [a for name, text in APP_VALUES.items() for a in (f"--{name.replace('_', '-')}", text)]
    _check_app_values(app.config_from_args(argv))
    for name, text in APP_VALUES.items():
        monkeypatch.setenv(f"REASONGEN_{name.upper()}", text)
    _check_app_values(app.config_from_args([]))
    # The YAML file of --config is below the environment, which is below the flags.
    y = tmp_path / "app.yaml"
    y.write_text("port: 9001\nrate_window_s: 30\nhost: 10.0.0.1\n")
    monkeypatch.delenv("REASONGEN_HOST")
    cfg = app.config_from_args(["--config", str(y), "--rate-window-s", "4"])
    assert (cfg.port, cfg.rate_window_s, cfg.host) == (8123, 4.0, "10.0.0.1")


def test_bad_settings_are_clear_errors(capsys):
    with pytest.raises(ValueError, match="port"):
        AppConfig(port=0)
    with pytest.raises(ValueError, match="combine"):
        AppConfig(combine="max")
    with pytest.raises(ValueError, match="max_candidates"):
        AppConfig(max_candidates=99)
    app = _app_module()
    assert app.main(["--model", "/nonexistent/model-dir"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_login_key_persists_in_the_data_dir_so_logins_survive_a_restart(tiny_model_dir, tmp_path):
    data = tmp_path / "data"

    def served_signer(secret: str | None = None) -> TokenSigner:
        cfg = AppConfig(model=str(tiny_model_dir), data_dir=str(data), device="cpu", rewards=(),
                        secret=secret)  # fmt: skip
        svc = Services.build(cfg)
        svc.close()
        return svc.signer

    token = served_signer().sign(7)
    assert served_signer().verify(token) == 7  # a restarted server accepts it
    assert served_signer("explicit").verify(token) is None  # REASONGEN_SECRET wins


def test_scores_html_numbers_and_bars():
    html = scores_html({"shapes": 0.25, "hps": None, "combined": 1.7}, {"gdino": "offline <x>"})
    assert "0.250" in html and "width:25.0%" in html
    assert "n/a" in html and "width:100.0%" in html  # combined above 1 is clipped for the bar
    assert "unavailable" in html and "&lt;x&gt;" in html  # escaped


class _Const:
    def __init__(self, name: str, value: float | None) -> None:
        self.name, self.value = name, value

    def __call__(self, samples):
        from reasongen.rewards import RewardOutput

        return RewardOutput(self.name, [self.value] * len(samples), [{}] * len(samples))


def _boom(samples):
    raise RuntimeError("no weights")


def test_score_combines_and_reports_failures(tiny_loaded):
    from reasongen.generation import generate
    from reasongen.types import SamplingSettings

    samples = generate(
        tiny_loaded, "a red circle", "got-r1", n=2, settings=SamplingSettings(max_cot_tokens=4)
    )
    cfg = AppConfig(combine="product", rewards=())
    svc = Services(cfg, tiny_loaded, None, {"a": _Const("a", 0.5), "b": _Const("b", 0.4), "x": _boom})
    scores = svc.score(samples)
    assert scores.combined == pytest.approx([0.2, 0.2])
    assert set(scores.outputs) == {"a", "b"} and "no weights" in scores.errors["x"]
    assert scores.table()[0] == {"a": 0.5, "b": 0.4, "combined": pytest.approx(0.2)}


def test_generate_handler_rate_limit_and_caps(tiny_loaded):
    from webui.generate_tab import stream_generation

    cfg = AppConfig(rewards=(), rate_limit=1, max_cot_tokens=4, max_prompt_chars=20, max_candidates=2)
    svc = Services(cfg, tiny_loaded, None, {}, examples=[])
    with pytest.raises(gr.Error, match="limit is 20"):
        list(stream_generation(svc, "x" * 21, "got-r1", 1, 5.0, 1.0, 0, "s1"))
    with pytest.raises(ValueError, match="empty"):
        list(stream_generation(svc, "  ", "got-r1", 1, 5.0, 1.0, 0, "s1"))
    with pytest.raises(ValueError, match="unknown recipe"):
        list(stream_generation(svc, "a circle", "nope", 1, 5.0, 1.0, 0, "s1"))
    frames = list(
        stream_generation(svc, "a circle", "direct", 1, 5.0, 1.0, 0, "s1")
    )  # bad input cost nothing
    assert frames[-1][0].startswith("Done")
    with pytest.raises(gr.Error, match="Too many generations"):
        list(stream_generation(svc, "a circle", "direct", 1, 5.0, 1.0, 0, "s1"))
    assert list(stream_generation(svc, "a circle", "direct", 1, 5.0, 1.0, 0, "other"))  # per client


def test_embedded_model_is_what_the_app_serves_by_default(tmp_path):
    """``python app.py`` with no flags: the shipped model, ``<data_dir>/reasongen.db``, shapes reward."""
    from reasongen.loading import default_model_path
    from webui.generate_tab import stream_generation

    if default_model_path() is None:
        pytest.skip("no embedded model under assets/models yet (helper-trained shapes-janus)")
    cfg = AppConfig(data_dir=str(tmp_path), device="cpu", max_cot_tokens=64)
    svc = Services.build(cfg)
    try:
        assert svc.store.url == f"sqlite:///{(tmp_path / 'reasongen.db').resolve()}"
        assert "shapes" in svc.rewards
        example = svc.examples[0]
        frames = list(stream_generation(svc, example.prompt, "got-r1", 1, 5.0, 1.0, 0, "t"))
        table = frames[-1][-2]
        assert isinstance(table["candidates"][0]["shapes"], float)
    finally:
        svc.close()


def test_app_makes_no_network_calls_beyond_loopback(tiny_loaded, tmp_path, monkeypatch):
    """Launching the app and generating once looks up and connects to nothing but 127.0.0.1."""
    import socket
    import threading

    from annotation.store import Store
    from webui import build_demo, launch

    seen: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        seen.append(f"lookup {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        seen.append(f"connect {address[0] if isinstance(address, tuple) else address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = AppConfig(rewards=(), max_cot_tokens=4, data_dir=str(tmp_path))
    svc = Services(cfg, tiny_loaded, Store(None, tmp_path), {})
    demo = build_demo(svc)
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        from gradio_client import Client

        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        list(client.submit("a red circle", "direct", 1, 5.0, 1.0, 0, api_name="/generate"))
        for t in threading.enumerate():  # let background threads (telemetry, if any) start
            if t.name.startswith("analytics"):
                t.join(5)
    finally:
        demo.close()
        svc.close()
    local = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
    outside = [x for x in seen if x.split(" ", 1)[1] not in local and not x.endswith(".sock")]
    assert seen and not outside, outside


def test_model_label_hides_absolute_server_paths(tmp_path):
    assert model_label("deepseek-ai/Janus-Pro-7B") == "deepseek-ai/Janus-Pro-7B"
    assert model_label("assets/models/shapes-janus-r1") == "assets/models/shapes-janus-r1"
    inside = tmp_path / "assets" / "models" / "shapes-janus-r1"
    assert model_label(str(inside), cwd=tmp_path) == "assets/models/shapes-janus-r1"
    assert model_label("/srv/weights/janus-pro-7b", cwd=tmp_path) == "janus-pro-7b"


def test_progress_header_counts_the_same_work_for_study_and_annotator(tmp_path):
    """The header's study figure and "You: N ranked" count the same thing (regular tasks);
    control tasks and skips are shown apart (it read "7/16" beside "You: 9 ranked")."""
    from types import SimpleNamespace

    from annotation.models import Task
    from annotation.store import Store
    from annotation.workflow import next_task, submit_ranking
    from reasongen.types import Sample, SamplingSettings
    from webui.annotate_tab import _progress_text

    def sample(prompt: str, k: int) -> Sample:
        return Sample(prompt=prompt, recipe="direct", model_id="m", seed=k, index=k,
                      settings=SamplingSettings(num_image_tokens=1), prompt_ids=[1], cot_text="",
                      cot_token_ids=[], cot_logprobs=[], cot_end="boi", prefix_ids=[1],
                      image_token_ids=[3], image_logprobs=[-1.0])  # fmt: skip

    with Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, password_cost=16) as store:
        st = store.create_study("s", group_size=2, rankings_per_task=2, control_rate=0.6)
        prompts = [f"prompt {i}" for i in range(4)]
        for pid, text in zip(store.add_prompts(st.id, prompts), prompts, strict=True):
            store.add_candidates(pid, [sample(text, 0), sample(text, 1)])
        store.build_tasks(st.id)
        controls = set(store.add_control_tasks(st.id, 4))
        uid = store.create_user("ann", "password123").id
        n_regular = n_checks = 0
        while (view := next_task(store, uid, st.id)) is not None:
            with store.session() as s:
                best = s.get(Task, view.task_id).control_best_id
            ids = [c.id for c in view.candidates]
            ranking = [[best], [c for c in ids if c != best]] if best else [[ids[0]], [ids[1]]]
            submit_ranking(store, uid, st.id, view.task_id, ranking)
            n_checks += view.task_id in controls
            n_regular += view.task_id not in controls
        assert n_checks >= 1 and n_regular == 4
        text = _progress_text(SimpleNamespace(store=store), "s", "ann")
    assert text == f"Study progress: 4/8 rankings (50%). You: 4 ranked, {n_checks} checks, 0 skipped."


def test_login_and_token_settings_are_checked():
    for name in ("login_limit", "login_backoff_s", "token_ttl_s"):
        with pytest.raises(ValueError, match=name):
            AppConfig(**{name: 0})
    with pytest.raises(ValueError, match="token_ttl_s"):
        AppConfig(token_ttl_s=float("inf"))
    svc = Services(AppConfig(token_ttl_s=60, rewards=()), None, None, {}, examples=[])
    assert svc.signer.max_age_s == 60


def test_the_database_pool_is_sized_from_the_app_concurrency():
    from annotation.db import make_engine
    from webui.common import ANNOTATE_LIMIT
    from webui.services import DB_SPARE_CONNECTIONS, store_pool_kwargs

    pg = "postgresql+psycopg://u:p@127.0.0.1:1/rg"
    for concurrency in (1, 8):
        kwargs = store_pool_kwargs(AppConfig(db=pg, concurrency=concurrency))
        want = ANNOTATE_LIMIT + concurrency + DB_SPARE_CONNECTIONS
        assert kwargs == {"pool_size": want}
        engine = make_engine(pg, **kwargs)  # no connection is made
        assert engine.pool.size() == want >= 16 + concurrency
        assert engine.pool._max_overflow == 2 * want  # bursts of unqueued events on top
        engine.dispose()
    assert store_pool_kwargs(AppConfig(db="x/app.db", concurrency=8)) == {}  # SQLite: unchanged
    assert store_pool_kwargs(AppConfig(concurrency=8)) == {}


def test_security_headers_on_every_response_streamed_ones_too():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse, StreamingResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from webui.security import CSP, SecurityHeaders

    def stream(request):
        return StreamingResponse(iter(["a", "b"]), media_type="text/event-stream")

    def framed(request):
        return PlainTextResponse("x", headers={"X-Frame-Options": "SAMEORIGIN"})

    app = Starlette(
        routes=[Route("/s", stream), Route("/f", framed)], middleware=[Middleware(SecurityHeaders)]
    )
    with TestClient(app) as http:
        r = http.get("/s")
        assert r.text == "ab"
        assert r.headers["content-security-policy"] == CSP and "frame-ancestors 'none'" in CSP
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert http.get("/f").headers.get_list("x-frame-options") == ["SAMEORIGIN"]  # kept, not doubled
        assert http.get("/missing").headers["x-content-type-options"] == "nosniff"


def test_a_refusal_is_one_log_line_and_no_traceback(caplog):
    from webui.common import ui_errors

    @ui_errors
    def handler(kind: str) -> None:
        if kind == "gr":
            raise gr.Error("Pick a study first.")
        raise ValueError("bad seed")

    for kind, text in (("gr", "Pick a study first."), ("value", "bad seed")):
        caplog.clear()
        with caplog.at_level("INFO", logger="reasongen.app"), pytest.raises(gr.Error) as info:
            handler(kind)
        assert info.value.message == text and info.value.print_exception is False
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("INFO", f"refused handler: {text}")
        ]
        assert caplog.records[0].exc_info is None
