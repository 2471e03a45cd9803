"""The supervised mix of online GRPO (``training.ptx``): its scenes, their layout, its gradient."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import pytest
import torch

from reasongen.loading import load_model
from reasongen.rewards import RewardOutput
from reasongen.shapes.pools import benchmark_texts, held_out_suites
from reasongen.tiny import save_tiny
from training.grpo import GRPOConfig, train
from training.ptx import dump, ptx_scenes, scene_sample
from training.sft import load_sft_jsonl, sft_loss

ROOT = Path(__file__).resolve().parents[2]
SFT_MODEL = ROOT / "assets" / "models" / "shapes-janus-full"
CATS = ["position", "counting", "count_color", "relation_attr"]


def _cfg_ns(**kw) -> types.SimpleNamespace:
    base = dict(seed=3, ptx_batch=6, shapes_cell=125, shapes_categories=CATS, recipe="got-r1",
                holdout_benchmark=600, max_steps=2, ppo_epochs=2, mini_batches=1)  # fmt: skip
    return types.SimpleNamespace(**{**base, **kw})


@pytest.fixture(scope="module")
def sft():
    return load_model(SFT_MODEL, device="cpu", dtype="float32")


def test_scenes_are_a_function_of_seed_step_and_optimizer_step_and_never_a_benchmark_text() -> None:
    cfg = _cfg_ns(ptx_batch=40)
    held = benchmark_texts(600, 125, held_out_suites(CATS))
    a = ptx_scenes(cfg, 5, 1, held)
    assert [s.prompt for s in a] == [s.prompt for s in ptx_scenes(cfg, 5, 1, held)]  # resume-exact
    assert len(a) == 40 and len({s.prompt for s in a}) == 40
    assert {s.category for s in a} <= set(CATS) and len({s.category for s in a}) > 1
    assert not {s.prompt for s in a} & held
    other_seed = _cfg_ns(seed=4, ptx_batch=40)
    for b in (ptx_scenes(cfg, 5, 2, held), ptx_scenes(cfg, 6, 1, held), ptx_scenes(other_seed, 5, 1, held)):
        assert [s.prompt for s in b] != [s.prompt for s in a]
    # the held set is honoured: hold out this batch's own texts and none of them comes back
    again = ptx_scenes(cfg, 5, 1, {s.prompt for s in a})
    assert not {s.prompt for s in again} & {s.prompt for s in a}


def test_scene_samples_are_laid_out_as_the_sft_model_learned_them(sft) -> None:
    scenes = ptx_scenes(_cfg_ns(ptx_batch=16), 0, 0, set())
    samples = [scene_sample(s, sft, "got-r1") for s in scenes]
    assert all(len(s.image_token_ids) == sft.num_image_tokens for s in samples)
    assert all(s.cot_token_ids[-1] == sft.ids.boi for s in samples)  # the CoT ends as sampled
    with torch.no_grad():
        _, right = sft_loss(sft.model, samples, sft.ids.bos, sft.ids.pad, 1.0, 1.0)
        # the same CoTs with the images rotated by one: each plan now has another scene's image
        wrong = [scene_sample(s, sft, "got-r1") for s in scenes]
        for w, other in zip(wrong, samples[1:] + samples[:1]):
            w.image_token_ids = list(other.image_token_ids)
        _, moved = sft_loss(sft.model, wrong, sft.ids.bos, sft.ids.pad, 1.0, 1.0)
    # the model's own training losses were 0.24 (text) and 0.32 (image, all formats): its data
    assert right["text_nll"] < 0.5 and right["image_nll"] < 0.1
    assert moved["image_nll"] > 10 * right["image_nll"] + 0.5


def test_dump_writes_the_run_s_whole_stream_as_sft_data(tmp_path, sft) -> None:
    cfg = _cfg_ns(ptx_batch=3, max_steps=2, ppo_epochs=2, mini_batches=2)
    path = tmp_path / "scenes.jsonl"
    assert dump(cfg, path) == 2 * 2 * 2 * 3
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    held = benchmark_texts(600, 125, held_out_suites(CATS))
    want = [s.prompt for step in range(2) for k in range(4) for s in ptx_scenes(cfg, step, k, held)]
    assert [r["prompt"] for r in rows] == want
    examples = load_sft_jsonl(path, sft, "got-r1")  # training.sft reads it as it is
    assert len(examples) == 24 and examples[0].cot == rows[0]["cot"] and "<|box_start|>" in rows[0]["cot"]


def test_the_dump_command_writes_a_config_s_stream_and_refuses_bad_input(tmp_path, capsys) -> None:
    from training.ptx_dump import main

    cfg = tmp_path / "g.yaml"
    cfg.write_text(
        "prompts: shapes\nptx_batch: 2\nmax_steps: 3\nppo_epochs: 2\nshapes_categories: [count_color]\n"
    )
    out = tmp_path / "s.jsonl"
    assert main(["--config", str(cfg), "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3 * 2 * 2 and "wrote 12 scenes" in capsys.readouterr().out
    assert main(["--config", str(cfg)]) == 2 and "--out FILE.jsonl is required" in capsys.readouterr().err
    other = tmp_path / "p.txt"
    other.write_text("a red circle\n")
    assert main(["--config", str(cfg), "--prompts", str(other), "--out", str(out)]) == 2
    assert "prompts: shapes" in capsys.readouterr().err


def test_settings_are_checked(tmp_path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n")
    for bad, msg in ((dict(ptx_coef=-1.0), "ptx_coef"), (dict(ptx_coef=math.nan), "ptx_coef"),
                     (dict(ptx_batch=0), "ptx_batch"),
                     (dict(ptx_coef=1.0, prompts=str(prompts)), "prompts shapes")):  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            GRPOConfig(**{"prompts": "shapes", **bad})
    tiny = save_tiny(tmp_path / "tiny", seed=1)
    cfg = GRPOConfig(model=str(tiny), ptx_coef=1.0, device="cpu", progress=False, tensorboard=False,
                     out_dir=str(tmp_path / "run"), max_steps=1, num_shapes_prompts=50)  # fmt: skip
    with pytest.raises(ValueError, match="shapes-world model"):
        train(cfg, reward_fn=_spread)


def _spread(samples) -> RewardOutput:
    """A reward that spreads whenever a group's samples differ: the image codes' sum and the CoT's length."""
    scores = [sum(s.image_token_ids) / 1e4 + len(s.cot_token_ids) / 100 for s in samples]
    return RewardOutput("background", scores, [{} for _ in samples])


def _grpo(tmp_path: Path, name: str, **kw) -> GRPOConfig:
    base = dict(model=str(SFT_MODEL), prompts="shapes", num_shapes_prompts=40, shapes_categories=CATS,
                recipe="got-r1", group_size=4, prompts_per_step=2, max_cot_tokens=160, lr=1e-3,
                max_steps=2, ppo_epochs=2, save_every=0, device="cpu", progress=False,
                tensorboard=True, kl_coef=0.0, dynamic_sampling=False, out_dir=str(tmp_path / name),
                ptx_batch=4, seed=2)  # fmt: skip
    return GRPOConfig(**{**base, **kw})


def test_the_mix_lowers_the_supervised_loss_and_is_logged(tmp_path, sft) -> None:
    off = train(_grpo(tmp_path, "off"), reward_fn=_spread)
    on = train(_grpo(tmp_path, "on", ptx_coef=20.0), reward_fn=_spread)
    probe = [scene_sample(s, sft, "got-r1") for s in ptx_scenes(_cfg_ns(seed=99, ptx_batch=24), 0, 0, set())]

    def nll(path) -> float:
        m = load_model(path, device="cpu", dtype="float32").model
        with torch.no_grad():
            return sft_loss(m, probe, sft.ids.bos, sft.ids.pad, 1.0, 1.0)[1]["loss"]

    # scenes the run never drew: the mix holds the world's language where GRPO alone drifts
    assert nll(on) < nll(off) - 0.02
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ev = EventAccumulator(str(tmp_path / "on" / "tb"))
    ev.Reload()
    text = {e.step: e.value for e in ev.Scalars("grpo/ptx/text_nll")}
    # a step that keeps no group takes no optimizer step, and draws no scenes
    trained = [e.step for e in ev.Scalars("grpo/groups/kept") if e.value > 0]
    assert trained and sorted(text) == trained and all(0 < v < 2 for v in text.values())
    ev = EventAccumulator(str(tmp_path / "off" / "tb"))
    ev.Reload()
    assert "grpo/ptx/text_nll" not in ev.Tags()["scalars"]


def _run(cfg_json: str) -> None:
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    torch.set_num_threads(1)
    try:
        train(GRPOConfig(**json.loads(cfg_json)), reward_fn=_spread)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_two_processes_add_the_one_process_supervised_gradient(tmp_path) -> None:
    from accelerate import debug_launcher

    base = dict(model=str(SFT_MODEL), prompts="shapes", num_shapes_prompts=40, shapes_categories=CATS,
                recipe="got-r1", group_size=4, prompts_per_step=2, max_cot_tokens=160, lr=0.5,
                optimizer="sgd", grad_clip=0.0, max_steps=1, save_every=0, device="cpu",
                progress=False, tensorboard=False, dynamic_sampling=False, ptx_coef=5.0,
                ptx_batch=4, seed=2)  # fmt: skip
    one = {**base, "out_dir": str(tmp_path / "one")}
    _run(json.dumps(one))
    debug_launcher(_run, args=(json.dumps({**base, "out_dir": str(tmp_path / "two")}),), num_processes=2)
    _run(json.dumps({**one, "ptx_coef": 0.0, "out_dir": str(tmp_path / "none")}))
    a = load_model(tmp_path / "one" / "final", device="cpu").model.state_dict()
    b = load_model(tmp_path / "two" / "final", device="cpu").model.state_dict()
    c = load_model(tmp_path / "none" / "final", device="cpu").model.state_dict()
    # SGD: the update is linear in the gradient, so a term counted twice or halved shows here
    by_mix = max(float((a[k] - c[k]).abs().max()) for k in a if a[k].is_floating_point())
    assert by_mix > 1e-3
    diffs = {k: float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point()}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < 1e-3 * by_mix, f"{worst} differs by {diffs[worst]} (the mix moved {by_mix})"
