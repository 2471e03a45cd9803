"""The over-optimisation monitor: rewards scored beside the optimised one, logged, recorded, plotted."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from reasongen.eval.shapes_bench import benchmark_prompts
from reasongen.generation import generate
from reasongen.loading import load_model
from reasongen.rewards import RewardOutput, get_reward
from reasongen.tiny import save_tiny
from training.grpo import GRPOConfig, train
from training.monitor import (
    Monitor,
    plot_proxy_gold,
    read_records,
    summarise,
    validation_prompts,
)

SHAPES_MODEL = Path(__file__).resolve().parents[2] / "assets" / "models" / "shapes-janus"


def low_tokens(samples) -> RewardOutput:
    """The optimised (proxy) reward of these tests: the share of image codes below 32."""
    scores = [sum(t < 32 for t in s.image_token_ids) / len(s.image_token_ids) for s in samples]
    return RewardOutput("low_tokens", scores, [{} for _ in samples])


def _cfg(out: Path, **kw) -> GRPOConfig:
    base = dict(model=str(SHAPES_MODEL), prompts="shapes", num_shapes_prompts=12, out_dir=str(out),
                recipe="got-r1", group_size=2, prompts_per_step=2, max_cot_tokens=48, lr=1e-3,
                max_steps=2, save_every=0, device="cpu", progress=False, tensorboard=True,
                torch_threads=1, rewards=["low_tokens"], monitor_rewards=["shapes"])  # fmt: skip
    base.update(kw)
    return GRPOConfig(**base)


def _tags(run: Path) -> dict[str, list[tuple[int, float]]]:
    ev = EventAccumulator(str(run / "tb"))
    ev.Reload()
    return {t: [(e.step, e.value) for e in ev.Scalars(t)] for t in ev.Tags()["scalars"]}


def test_tiny_run_logs_monitor_values_that_match_a_fresh_scoring(tmp_path) -> None:
    run = tmp_path / "run"
    cfg = _cfg(run, monitor_every=1, monitor_n=4)
    path = train(cfg, reward_fn=low_tokens)
    tags = _tags(run)
    for tag in ("monitor/shapes", "monitor/proxy", "monitor/seconds", "monitor/share",
                "monitor_heldout/shapes", "monitor_heldout/proxy", "monitor_heldout/proxy/low_tokens",
                "monitor_heldout/seconds"):  # fmt: skip
        assert tag in tags, tag
    assert [s for s, _ in tags["monitor/shapes"]] == [1, 2]
    assert [s for s, _ in tags["monitor_heldout/shapes"]] == [0, 1, 2]  # start, every step, end
    assert all(0.0 <= v <= 1.0 for _, v in tags["monitor/shapes"] + tags["monitor_heldout/shapes"])
    assert all(v > 0 for _, v in tags["monitor/seconds"] + tags["monitor_heldout/seconds"])
    # The rollouts' proxy is the optimised reward of the same rollouts as grpo/reward/mean.
    assert dict(tags["monitor/proxy"]) == pytest.approx(dict(tags["grpo/reward/mean"]))

    records = read_records(run)
    assert records[0]["kind"] == "setup" and records[0]["prompts"] == 4
    assert records[0]["monitor_rewards"] == ["shapes"] and records[0]["rewards"] == ["low_tokens"]
    assert sum(records[0]["categories"].values()) == 4 and "untagged" not in records[0]["categories"]
    held = [r for r in records if r["kind"] == "heldout"]
    roll = [r for r in records if r["kind"] == "rollouts"]
    assert [r["step"] for r in held] == [0, 1, 2] and [r["step"] for r in roll] == [1, 2]
    assert [r["monitor/shapes"] for r in roll] == pytest.approx([v for _, v in tags["monitor/shapes"]])
    assert all(r["monitor/shapes_missing"] == 0 for r in roll)  # shapes prompts carry metadata

    # The last held-out values are those of the saved step-2 weights on the validation prompts,
    # one sample each, prompt k seeded k, with the rollout settings.
    prompts = validation_prompts(4, cfg.shapes_cell or None, cfg.holdout_benchmark)
    bench = {p.prompt for p in benchmark_prompts(cfg.holdout_benchmark, seed=0, cell=cfg.shapes_cell)}
    assert not {p for p, _ in prompts} & bench  # never the benchmark's own prompts
    lm = load_model(path, device="cpu")
    with torch.no_grad():
        samples = generate(lm, [p for p, _ in prompts], cfg.recipe, n=1, seed=[0, 1, 2, 3],
                           settings=cfg.sampling(lm), metadata=[m for _, m in prompts],
                           max_batch=4)  # fmt: skip
    gold = get_reward("shapes")(samples).scores
    assert held[-1]["monitor_heldout/shapes"] == pytest.approx(sum(gold) / 4, abs=1e-6)
    proxy = low_tokens(samples).scores
    assert held[-1]["monitor_heldout/proxy"] == pytest.approx(sum(proxy) / 4, abs=1e-6)
    with Image.open(run / "monitor.png") as im:  # drawn at the end
        assert im.format == "PNG" and im.size[0] >= 500


def test_prompts_without_metadata_count_as_missing_not_a_crash(tmp_path) -> None:
    model_dir = save_tiny(tmp_path / "tiny", seed=3)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\ntwo green triangles\na blue square above a star\n")
    held = tmp_path / "held.txt"
    held.write_text("a yellow star\nthree red squares\n")
    run = tmp_path / "run"
    cfg = _cfg(run, model=str(model_dir), prompts=str(prompts), max_cot_tokens=3, guidance=3.0,
               monitor_every=2, monitor_n=5, monitor_prompts=str(held), torch_threads=0)  # fmt: skip
    train(cfg, reward_fn=low_tokens)
    records = read_records(run)
    assert "held.txt" in records[0]["source"] and records[0]["prompts"] == 2
    roll = [r for r in records if r["kind"] == "rollouts"]
    assert [r["monitor/shapes_missing"] for r in roll] == [4.0, 4.0]  # 2 groups of 2, no metadata
    assert all(r["monitor/shapes"] is None for r in roll)  # nothing to average: null, not NaN
    held_rows = [r for r in records if r["kind"] == "heldout"]
    assert [r["step"] for r in held_rows] == [0, 2]
    assert all(r["monitor_heldout/shapes_missing"] == 2.0 for r in held_rows)
    assert all(0.0 <= r["monitor_heldout/proxy"] <= 1.0 for r in held_rows)
    tags = _tags(run)
    assert "monitor/shapes" not in tags and [v for _, v in tags["monitor/shapes_missing"]] == [4.0, 4.0]


def test_config_checks_name_the_problem() -> None:
    with pytest.raises(ValueError, match="monitor_rewards shapes also in rewards"):
        GRPOConfig(rewards=["shapes"], monitor_rewards=["shapes"])
    with pytest.raises(ValueError, match="unknown reward nope"):
        GRPOConfig(monitor_rewards=["nope"])
    with pytest.raises(ValueError, match="names a reward twice"):
        GRPOConfig(rewards=["hps"], monitor_rewards=["shapes", "shapes"])
    with pytest.raises(ValueError, match="monitor_options names rewards not in monitor_rewards: hps"):
        GRPOConfig(rewards=["learned"], monitor_rewards=["shapes"], monitor_options={"hps": {}})
    with pytest.raises(ValueError, match="monitor_every scores a held-out set"):
        GRPOConfig(monitor_every=5)
    with pytest.raises(ValueError, match="monitor_n >= 1"):
        GRPOConfig(rewards=["learned"], monitor_rewards=["shapes"], monitor_n=0)
    with pytest.raises(ValueError, match="--monitor_prompts FILE"):
        GRPOConfig(prompts="p.jsonl", rewards=["learned"], monitor_rewards=["shapes"], monitor_every=5)
    cfg = GRPOConfig(rewards=["learned"], monitor_rewards=["shapes"], monitor_every=5)
    assert cfg.monitor_rewards == ["shapes"] and cfg.monitor_prompts == ""


def test_a_resumed_run_drops_the_records_a_killed_run_wrote_after_its_checkpoint(tmp_path) -> None:
    cfg = GRPOConfig(rewards=["learned"], monitor_rewards=["shapes"], out_dir=str(tmp_path))
    lines = [{"kind": "setup"}] + [{"kind": "rollouts", "step": s} for s in range(1, 6)]
    (tmp_path / "monitor.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    acc = SimpleNamespace(is_main_process=True)
    Monitor(cfg, SimpleNamespace(accelerator=acc, start_step=3), None)
    assert [r.get("step") for r in read_records(tmp_path)] == [None, 1, 2, 3]
    Monitor(cfg, SimpleNamespace(accelerator=acc, start_step=0), None)  # a fresh run starts anew
    setup = {"kind": "setup", "rewards": ["learned"], "monitor_rewards": ["shapes"]}
    assert read_records(tmp_path) == [setup]  # no held-out set: no source


def _hacking_records(kl: bool) -> list[dict]:
    """Simulated records: the proxy climbs throughout while the gold peaks at step 20 and falls."""
    out = []
    for step in range(0, 41, 10):
        gold = 0.5 + 0.02 * step if step <= 20 else 0.9 - 0.03 * (step - 20)
        out.append({"kind": "heldout", "step": step, "monitor_heldout/shapes": gold,
                    "monitor_heldout/shapes_se": 0.01, "monitor_heldout/proxy": 1.0 + 0.1 * step,
                    "monitor_heldout/seconds": 2.0})  # fmt: skip
    for step in range(1, 41):
        out.append({"kind": "rollouts", "step": step, "monitor/shapes": 0.5, "monitor/proxy": step / 40,
                    "monitor/seconds": 0.5, "monitor/share": 0.1,
                    "kl/image": 0.01 * step if kl else None})  # fmt: skip
    return out


def test_summary_finds_the_gold_peak_and_its_fall_while_the_proxy_rises() -> None:
    s = summarise(_hacking_records(kl=False), window=5)
    g = s["gold"]["shapes"]
    assert g["heldout"]["first"] == {"step": 0, "gold": 0.5, "proxy": 1.0}
    assert g["heldout"]["best"]["step"] == 20 and g["heldout"]["best"]["gold"] == pytest.approx(0.9)
    assert g["heldout"]["last"]["gold"] == pytest.approx(0.3) and g["heldout"]["last"]["proxy"] == 5.0
    assert g["fell"] is True
    assert g["rollouts"]["proxy"] == pytest.approx((3 / 40, 38 / 40))
    assert s["seconds"] == pytest.approx(40 * 0.5 + 5 * 2.0) and s["share"] == 0.1
    rising = [r for r in _hacking_records(kl=False) if r.get("step", 0) <= 20]
    assert summarise(rising)["gold"]["shapes"]["fell"] is False


def test_plot_draws_a_png_with_a_kl_panel_only_when_kl_was_measured(tmp_path) -> None:
    steps = plot_proxy_gold(_hacking_records(kl=False), tmp_path / "a.png")
    both = plot_proxy_gold(_hacking_records(kl=True), tmp_path / "b.png")
    with Image.open(steps) as a, Image.open(both) as b:
        assert a.format == b.format == "PNG"
        assert b.size[0] == 2 * a.size[0] and b.size[1] == a.size[1]
    assert plot_proxy_gold([{"kind": "setup"}], tmp_path / "c.png") is None
    assert not (tmp_path / "c.png").exists()
    assert math.isnan(summarise([])["share"])


def _fresh_accelerate_state() -> None:
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def _run(cfg_json: str) -> None:
    """Entry of each process (also called in-process for the single-process baseline)."""
    _fresh_accelerate_state()
    train(GRPOConfig(**json.loads(cfg_json)), reward_fn=low_tokens)
    _fresh_accelerate_state()


def test_two_processes_log_the_global_means_once(tmp_path: Path) -> None:
    """Each process scores its own groups; the logged means are over both (the global batch is the
    same for any number of processes, so they equal one process's), written once."""
    from accelerate import debug_launcher

    base = json.loads(json.dumps(_cfg(tmp_path, monitor_every=2, monitor_n=3, tensorboard=False,
                                      dynamic_sampling=False).__dict__))  # fmt: skip
    one = {**base, "out_dir": str(tmp_path / "one")}
    two = {**base, "out_dir": str(tmp_path / "two")}
    _run(json.dumps(one))
    debug_launcher(_run, args=(json.dumps(two),), num_processes=2)
    a, b = read_records(tmp_path / "one"), read_records(tmp_path / "two")
    assert [(r["kind"], r.get("step")) for r in a] == [(r["kind"], r.get("step")) for r in b]
    assert [(r["kind"], r.get("step")) for r in b] == [("setup", None), ("heldout", 0), ("rollouts", 1),
                                                       ("rollouts", 2), ("heldout", 2)]  # fmt: skip
    for key in ("monitor/shapes", "monitor/proxy", "monitor/shapes_missing"):  # step 1: same weights
        assert b[2][key] == pytest.approx(a[2][key], abs=1e-9), key
    assert b[1]["monitor_heldout/shapes"] == pytest.approx(a[1]["monitor_heldout/shapes"], abs=1e-9)
