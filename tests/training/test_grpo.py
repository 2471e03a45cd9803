"""GRPO loop on a tiny Janus model: it learns a toy reward, and a killed run resumes exactly."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from reasongen.config import parse_config
from reasongen.generation import generate
from reasongen.loading import load_model
from reasongen.rewards import Reward, RewardOutput
from reasongen.tiny import save_tiny
from reasongen.types import Sample, SamplingSettings
from training.checkpoints import checkpoint_dirs
from training.grpo import GRPOConfig, train


def low_tokens(samples) -> RewardOutput:
    """Toy reward: the fraction of image tokens in the lower half of the 64-code codebook."""
    scores = [sum(t < 32 for t in s.image_token_ids) / len(s.image_token_ids) for s in samples]
    return RewardOutput("low_tokens", scores, [{} for _ in samples])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo")
    model_dir = save_tiny(root / "tiny", seed=3)
    prompts = root / "prompts.txt"
    prompts.write_text("a red circle\ntwo green triangles\na blue square above a star\n")
    return root, model_dir, prompts


def _cfg(root, model_dir, prompts, name: str, **kw) -> GRPOConfig:
    base = dict(model=str(model_dir), prompts=str(prompts), out_dir=str(root / name), recipe="got-r1",
                group_size=4, prompts_per_step=2, max_cot_tokens=3, guidance=3.0, lr=1e-2,
                max_steps=4, save_every=2, device="cpu", progress=False, tensorboard=False,
                rewards=["low_tokens"], kl_coef=0.0, text_entropy_coef=0.0)  # fmt: skip
    base.update(kw)
    return GRPOConfig(**base)


@torch.no_grad()
def _eval(path) -> float:
    lm = load_model(path, device="cpu")
    s = SamplingSettings(guidance=3.0, max_cot_tokens=3, num_image_tokens=16)
    samples = [x for seed in range(3) for x in generate(lm, "a red circle", "got-r1", 4, seed, s)]
    return sum(low_tokens(samples).scores) / len(samples)


def test_tiny_grpo_run_changes_parameters_and_raises_the_reward(setup) -> None:
    root, model_dir, prompts = setup
    cfg = _cfg(root, model_dir, prompts, "learn", max_steps=6, save_every=0, kl_coef=0.05,
               adaptive_entropy=True, tensorboard=True, sample_images_every=3)  # fmt: skip
    out = train(cfg, reward_fn=low_tokens)
    before = load_model(model_dir, device="cpu").model.state_dict()
    after = load_model(out, device="cpu").model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("generation_head" in k for k in changed) and any("language_model" in k for k in changed)
    assert not any("vqmodel" in k or "vision_model" in k for k in changed)  # frozen by default
    assert _eval(out) > _eval(model_dir) + 0.1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ev = EventAccumulator(str(root / "learn" / "tb"))
    ev.Reload()
    tags = set(ev.Tags()["scalars"])
    for tag in ("reward/mean", "reward/low_tokens", "adv/abs_mean", "image/kl", "text/entropy",
                "image/entropy_coef", "image/clip_frac", "cot/length", "groups/dropped"):  # fmt: skip
        assert f"grpo/{tag}" in tags, tag
    assert len(ev.Scalars("grpo/reward/mean")) == 6
    clamped = [e.value for e in ev.Scalars("grpo/image/kl_clamped_frac")]  # KL on, default clamp 10
    assert len(clamped) == 6 and all(0.0 <= v <= 1.0 for v in clamped)
    assert [e.step for e in ev.Images("samples")] == [3, 6]
    final = root / "learn" / "final"  # the model alone, ready for load_model and the app
    assert (final / "config.json").is_file() and not (final / "trainer_state").exists()
    assert torch.equal(load_model(final).model.state_dict()[changed[0]], after[changed[0]])


class Killer:
    """A reward that dies on its ``after``-th call (simulates a killed run)."""

    def __init__(self, after: int) -> None:
        self.calls, self.after = 0, after

    def __call__(self, samples) -> RewardOutput:
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt("killed")
        return low_tokens(samples)


def test_kill_and_resume_equals_uninterrupted_run(setup) -> None:
    root, model_dir, prompts = setup
    full = train(_cfg(root, model_dir, prompts, "full"), reward_fn=low_tokens)
    cfg = _cfg(root, model_dir, prompts, "killed")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, reward_fn=Killer(after=5))  # 2 groups/step: dies during step 3
    assert [p.name for p in checkpoint_dirs(root / "killed")] == ["checkpoint-2"]
    resumed = train(_cfg(root, model_dir, prompts, "killed", resume="latest"), reward_fn=low_tokens)
    a = load_model(full, device="cpu").model.state_dict()
    b = load_model(resumed, device="cpu").model.state_dict()
    assert resumed.name == "checkpoint-4"
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    start = load_model(model_dir, device="cpu").model.state_dict()
    assert not all(torch.equal(a[k], start[k]) for k in a)


def test_config_yaml_and_cli_overrides(tmp_path) -> None:
    y = tmp_path / "r.yaml"
    y.write_text("group_size: 16\nrewards: [shapes, hps]\nreward_weights: {shapes: 2.0}\nlr: 1.0e-6\n")
    cfg = parse_config(GRPOConfig, ["--config", str(y), "--lr", "3e-6"])
    assert cfg.group_size == 16 and cfg.rewards == ["shapes", "hps"] and cfg.lr == 3e-6
    assert cfg.reward_weights == {"shapes": 2.0}
    scaled = parse_config(GRPOConfig, ["--config", str(y), "--kl_coef", "0.04", "--text_kl_scale", "10"])
    assert scaled.loss_settings().text_kl_scale == 10.0 and scaled.loss_settings().kl_coef == 0.04
    with pytest.raises(ValueError, match="non-negative"):
        GRPOConfig(text_kl_scale=-1.0)
    y.write_text("group_sise: 16\n")
    with pytest.raises(ValueError, match="group_sise"):
        parse_config(GRPOConfig, ["--config", str(y)])
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        GRPOConfig(group_size=1)
    with pytest.raises(ValueError, match="unknown recipe"):
        GRPOConfig(recipe="nope")
    with pytest.raises(ValueError, match="unrecognised arguments: --bogus"):
        parse_config(GRPOConfig, ["--bogus", "1"])


def test_micro_batches_accumulate_to_the_full_batch_update(setup) -> None:
    root, model_dir, prompts = setup
    kw = dict(max_steps=1, save_every=0, optimizer="sgd", lr=0.5, grad_clip=0.0, kl_coef=0.05,
              text_entropy_coef=0.01, image_entropy_coef=0.01, dynamic_sampling=False)  # fmt: skip
    whole = train(_cfg(root, model_dir, prompts, "whole", micro_batch_groups=2, **kw), reward_fn=low_tokens)
    parts = train(_cfg(root, model_dir, prompts, "parts", micro_batch_groups=1, **kw), reward_fn=low_tokens)
    a = load_model(whole, device="cpu").model.state_dict()
    b = load_model(parts, device="cpu").model.state_dict()
    start = load_model(model_dir, device="cpu").model.state_dict()
    moved = max(float((a[k] - start[k]).abs().max()) for k in a)
    assert moved > 1e-3
    assert all(float((a[k] - b[k]).abs().max()) < 1e-4 * moved for k in a)


def test_ppo_epochs_stretch_the_lr_schedule_over_every_optimizer_step(setup) -> None:
    """With E optimizer steps per rollout batch, the schedule spans max_steps × E steps: a
    linear decay is half-way after the first of two batches, not already at zero."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, model_dir, prompts = setup
    cfg = _cfg(root, model_dir, prompts, "epochs", max_steps=2, save_every=0, ppo_epochs=2,
               lr_scheduler="linear", tensorboard=True, dynamic_sampling=False)  # fmt: skip
    assert cfg.optimizer_steps() == 4
    train(cfg, reward_fn=low_tokens)
    ev = EventAccumulator(str(root / "epochs" / "tb"))
    ev.Reload()
    lrs = [e.value for e in ev.Scalars("grpo/lr")]
    assert lrs == pytest.approx([cfg.lr / 2, 0.0])


class _Length(Reward):
    name = "length"

    def score(self, samples, metas):
        return RewardOutput(self.name, [float(len(s.cot_text)) for s in samples], [{} for _ in samples])


class _Words(Reward):
    name = "words"

    def score(self, samples, metas):
        return RewardOutput(
            self.name, [float(len(s.cot_text.split())) for s in samples], [{} for _ in samples]
        )


def test_build_reward_is_make_reward_combined_by_reward_mode(monkeypatch) -> None:
    from reasongen.rewards import combine_outputs, registry
    from training.grpo import build_reward

    monkeypatch.setitem(registry._REGISTRY, "length", f"{__name__}:_Length")
    monkeypatch.setitem(registry._REGISTRY, "words", f"{__name__}:_Words")
    cots = ["a red circle", "two green triangles", "a star", "a blue square above a star"]
    samples = [
        Sample(prompt=p, recipe="direct", model_id="t", seed=0, settings=SamplingSettings(), prompt_ids=[1],
               cot_text=c, cot_token_ids=[], cot_logprobs=[], cot_end="none", prefix_ids=[1],
               image_token_ids=[], image_logprobs=[], image=None)
        for p, c in zip(["p", "p", "q", "q"], cots)
    ]  # fmt: skip
    cfg = GRPOConfig(rewards=["length", "words"], reward_mode="group_norm", reward_weights={"words": 2.0})
    scores, families = build_reward(cfg)(samples)
    parts = [_Length()(samples), _Words()(samples)]
    expected = combine_outputs(parts, "group_norm", {"words": 2.0}, [s.prompt for s in samples])
    assert scores == expected.scores and scores[0] < 0 < scores[1]  # standardised per prompt
    assert families == {"length": sum(parts[0].scores) / 4, "words": sum(parts[1].scores) / 4}
    with pytest.raises(ValueError, match="reward_options names rewards not in this run: hps"):
        GRPOConfig(rewards=["length"], reward_options={"hps": {}})  # before any model is loaded


def test_batched_rollouts_equal_one_slot_at_a_time_and_redraw_flat_groups(setup) -> None:
    from training.grpo import load_prompts, rollout_slots, wrap_reward_fn

    root, model_dir, prompts = setup
    cfg = _cfg(root, model_dir, prompts, "rollouts", prompts_per_step=3, max_resample=2)
    lm = load_model(model_dir, device="cpu")
    pool = load_prompts(cfg)
    calls: list[int] = []

    def flat_first(samples):  # slot 1's first attempt has no spread and must be redrawn
        calls.append(len(samples))
        out = low_tokens(samples)
        if len(calls) == 2:
            return RewardOutput(out.name, [0.5] * len(samples), out.details)
        return out

    together = rollout_slots(cfg, lm, pool, wrap_reward_fn(flat_first), step=4, slots=[0, 1, 2])
    assert [g.slot for g in together] == [0, 1, 2] and [g.attempts for g in together] == [1, 2, 1]
    assert calls == [4, 4, 4, 4] and not any(g.dropped for g in together)
    for g in (together[0], together[2]):  # the same groups as each slot sampled alone
        alone = rollout_slots(cfg, lm, pool, wrap_reward_fn(low_tokens), step=4, slots=[g.slot])[0]
        assert [s.image_token_ids for s in alone.samples] == [s.image_token_ids for s in g.samples]
        assert alone.rewards == g.rewards and alone.advantages == pytest.approx(g.advantages)
    # A group with no spread on every attempt is dropped after max_resample redraws.
    flat = wrap_reward_fn(lambda ss: RewardOutput("flat", [1.0] * len(ss), [{} for _ in ss]))
    (dropped,) = rollout_slots(cfg, lm, pool, flat, step=0, slots=[2])
    assert dropped.dropped and dropped.attempts == 3 and dropped.advantages == [0.0] * 4


def test_pooled_redraws_give_a_busy_process_s_redraw_to_an_idle_one_and_draw_the_same_group(setup) -> None:
    """Two processes (threads with their own model copies, exchanging through a barrier): process
    0's two slots both need a redraw, process 1's none; pooled, each redraws one, and the group
    process 1 draws for process 0's slot is the one process 0 would have drawn."""
    import random
    import threading

    from training.grpo import pooled_redraws, rollout_slots, wrap_reward_fn

    root, model_dir, prompts = setup
    cfg = _cfg(root, model_dir, prompts, "pooled", prompts_per_step=4, max_resample=1)
    # a pool where slots 0 and 2 draw a "flat" prompt (no reward spread) at attempt 0 only
    n = 8
    for seed in range(1000):
        pick = {(k, a): random.Random(f"{seed}:0:{k}:{a}").randrange(n) for k in range(4) for a in (0, 1)}
        flat = {pick[0, 0], pick[2, 0]}
        if not flat & {i for (k, a), i in pick.items() if (k, a) not in ((0, 0), (2, 0))}:
            break
    cfg = replace(cfg, seed=seed)
    pool = [(f"a {'flat ' if i in flat else ''}red circle {i}", None) for i in range(n)]

    def score(samples):
        out = low_tokens(samples)
        return RewardOutput(out.name, [0.5 if "flat" in s.prompt else v for s, v in zip(samples, out.scores)],
                            out.details)  # fmt: skip

    barrier, box = threading.Barrier(2), [[], []]

    def gather_for(rank):
        def gather(local):
            box[rank] = local
            barrier.wait()
            everyone = box[0] + box[1]
            barrier.wait()  # both have read before the next round writes
            return everyone

        return gather

    results: list = [None, None]
    errors: list[BaseException] = []

    models = [load_model(model_dir, device="cpu") for _ in range(2)]  # each its own decoder cache

    def process(rank):
        try:
            lm = models[rank]
            share = pooled_redraws(rank, 2, gather_for(rank))
            results[rank] = rollout_slots(cfg, lm, pool, wrap_reward_fn(score), 0, [rank, rank + 2], share)
        except BaseException as e:  # surfaced below (a thread's exception is otherwise lost)
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=process, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    assert [(g.slot, g.attempts) for g in results[0]] == [(0, 2)]
    assert [(g.slot, g.attempts) for g in results[1]] == [(1, 1), (2, 2), (3, 1)]
    alone = rollout_slots(cfg, load_model(model_dir, device="cpu"), pool, wrap_reward_fn(score), 0, [0, 2])
    assert [(g.slot, g.attempts) for g in alone] == [(0, 2), (2, 2)]
    moved = results[1][1]
    assert [s.image_token_ids for s in moved.samples] == [s.image_token_ids for s in alone[1].samples]
    assert moved.rewards == alone[1].rewards and not moved.dropped


def test_kl_reference_holds_the_policy_to_another_model_of_the_same_architecture(setup) -> None:
    """A second stage's KL can hold to another folder (its SFT parent): the reference is that
    model's weights, not the starting policy's; a model of other shapes is refused."""
    from types import SimpleNamespace

    from training.grpo import reference_model

    root, model_dir, prompts = setup
    other = save_tiny(root / "kl-other", seed=11)
    loaded = load_model(model_dir, device="cpu")
    run = SimpleNamespace(
        start_step=0, loaded=loaded, accelerator=SimpleNamespace(device=torch.device("cpu"))
    )
    own = reference_model(_cfg(root, model_dir, prompts, "klref", kl_coef=0.1), run, loaded)
    held = reference_model(
        _cfg(root, model_dir, prompts, "klref", kl_coef=0.1, kl_reference=str(other)), run, loaded
    )
    want = load_model(other, device="cpu").model.state_dict()
    start = loaded.model.state_dict()
    for k, v in held.state_dict().items():
        assert torch.equal(v, want[k]), k
    assert any(not torch.equal(v, start[k]) for k, v in held.state_dict().items())
    assert all(torch.equal(v, start[k]) for k, v in own.state_dict().items())
    assert not any(p.requires_grad for p in held.parameters()) and not held.training
    wide = save_tiny(root / "kl-wide", seed=11, vocab_size=loaded.model.config.text_config.vocab_size + 8)
    with pytest.raises(ValueError, match="not the policy's architecture"):
        reference_model(
            _cfg(root, model_dir, prompts, "klref", kl_coef=0.1, kl_reference=str(wide)), run, loaded
        )


def _groups(cfg: GRPOConfig, loaded) -> list:
    from training.grpo import rollout_slots, wrap_reward_fn

    prompts = [("a red circle", None), ("two green triangles", None)]
    return rollout_slots(cfg, loaded, prompts, wrap_reward_fn(low_tokens), 0, [0, 1])


def test_conditional_logprobs_of_guided_rollouts_take_their_behaviour_from_the_policy(setup) -> None:
    """T2I-R1's choice: rollouts at w = 3, trained on conditional log-probs. The stored (guided)
    log-probs are not of that distribution, so the behaviour log-probs are the conditional ones of
    the policy that drew the step: from a no-grad forward, or free from the first pass's own."""
    from training.grpo_update import behaviour_logprobs, needs_behaviour, update
    from training.logprobs import policy_logprobs, stored_logprobs
    from training.run_setup import setup_run

    root, model_dir, prompts = setup
    cfg = _cfg(root, model_dir, prompts, "cond", logprob_distribution="conditional", dynamic_sampling=False)
    run = setup_run(cfg)
    groups = _groups(cfg, run.loaded)
    samples = [s for g in groups for s in g.samples]
    assert needs_behaviour(cfg, groups)
    assert not needs_behaviour(_cfg(root, model_dir, prompts, "g"), groups)  # guided: stored ones
    ids = run.loaded.ids
    with torch.no_grad():
        cond = policy_logprobs(run.loaded.model, samples, ids.bos, ids.pad, mode="conditional").image
    _, stored = stored_logprobs(samples)
    assert not torch.allclose(cond, stored, atol=1e-2)  # guided ≠ conditional
    behaviour_logprobs(run, cfg, groups)
    explicit = torch.stack([r for g in groups for r in g.behaviour])  # [B, N]
    assert torch.allclose(explicit, cond, atol=1e-6)
    for g in groups:
        g.behaviour = None
    sums = update(run, cfg, groups, None, {"text": 0.0, "image": 0.0})
    free = torch.stack([r for g in groups for r in g.behaviour])
    assert torch.allclose(free, cond, atol=1e-6)
    # Against its own behaviour the first pass has ratio 1 everywhere: nothing clipped.
    assert sums["image/clipped_tokens"] == 0.0
    assert sums["image/ratio_mean"] == pytest.approx(2.0)  # two micro-batches, each ratio 1
    guided = update(run, _cfg(root, model_dir, prompts, "g2"), groups, None, {"text": 0.0, "image": 0.0})
    assert guided["image/ratio_mean"] == pytest.approx(2.0, abs=1e-3)  # stored = guided policy
    # Human rankings keep only the sampler's guided log-probs: conditional training is refused.
    from training.human import HumanGRPOConfig
    from training.human import train as train_human

    hcfg = HumanGRPOConfig(study="s", logprob_distribution="conditional", out_dir=str(root / "h"))
    with pytest.raises(ValueError, match="logprob_distribution guided"):
        train_human(hcfg, loaded=run.loaded, groups=groups)


def test_paper_objective_trains_and_resumes_exactly(setup) -> None:
    """Joint token mean, conditional log-probs of guided rollouts, two mini-batches per step and
    the entropy controllers moved after every micro-batch: the run learns, moves each controller
    once per micro-batch, and a killed run resumes to the same parameters."""
    root, model_dir, prompts = setup
    kw = dict(loss_aggregation="joint", logprob_distribution="conditional", mini_batches=2,
              ppo_epochs=2, adaptive_entropy=True, entropy_update="micro_batch", entropy_lr=5e-5,
              entropy_coef_max=5e-3, micro_batch_groups=1)  # fmt: skip
    cfg = _cfg(root, model_dir, prompts, "paper", **kw)
    assert cfg.optimizer_steps() == 4 * 2 * 2
    full = train(cfg, reward_fn=low_tokens)
    extra = torch.load(full / "trainer_state" / "extra.pt", weights_only=False)
    for name in ("text", "image"):
        steps = extra["controllers"][name]["optimizer"]["state"][0]["step"]
        # 4 steps × 2 passes × 2 mini-batches × 1 micro-batch (one group each), less the
        # micro-batches whose groups were all dropped (no tokens: no move).
        assert 0 < float(steps) <= 16
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(root, model_dir, prompts, "paper_killed", **kw), reward_fn=Killer(after=5))
    resumed = train(
        _cfg(root, model_dir, prompts, "paper_killed", resume="latest", **kw), reward_fn=low_tokens
    )
    a = load_model(full, device="cpu").model.state_dict()
    b = load_model(resumed, device="cpu").model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    start = load_model(model_dir, device="cpu").model.state_dict()
    assert not all(torch.equal(a[k], start[k]) for k in a)


def _rank_reward(samples) -> RewardOutput:
    """A reward that always spreads: a sample's index in its group."""
    return RewardOutput("rank", [float(k) for k in range(len(samples))], [{} for _ in samples])


def test_entropy_update_per_micro_batch_moves_the_controllers_once_per_micro_batch(setup) -> None:
    root, model_dir, prompts = setup
    kw = dict(max_steps=1, save_every=1, adaptive_entropy=True, dynamic_sampling=False,
              micro_batch_groups=1)  # fmt: skip
    counts = {}
    for when in ("step", "micro_batch"):
        cfg = _cfg(root, model_dir, prompts, f"ent_{when}", entropy_update=when, **kw)
        out = train(cfg, reward_fn=_rank_reward)
        extra = torch.load(out / "trainer_state" / "extra.pt", weights_only=False)
        counts[when] = float(extra["controllers"]["image"]["optimizer"]["state"][0]["step"])
    assert counts == {"step": 1.0, "micro_batch": 2.0}  # two groups, one per micro-batch


def test_new_objective_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="logprob_distribution"):
        GRPOConfig(logprob_distribution="cfg")
    with pytest.raises(ValueError, match="aggregation"):
        GRPOConfig(loss_aggregation="sum")
    with pytest.raises(ValueError, match="entropy_update"):
        GRPOConfig(entropy_update="epoch")
    with pytest.raises(ValueError, match="mini_batches"):
        GRPOConfig(mini_batches=0)


def test_zero_spread_groups_can_stay_in_the_loss_as_t2i_r1_keeps_them(setup) -> None:
    from training.grpo import Group
    from training.grpo_update import keep_zero_spread

    flat = Group(samples=[], rewards=[0.5, 0.5, None], families={}, advantages=[0.0] * 3,
                 valid=[False] * 3, slot=0, attempts=1, dropped=True)  # fmt: skip
    kept = keep_zero_spread(flat)
    assert not kept.dropped and kept.valid == [True, True, False] and kept.advantages == [0.0] * 3
    empty = replace(flat, rewards=[None] * 3)
    assert keep_zero_spread(empty) is empty  # no reward at all: still dropped
    # Every group flat: 'drop' trains on nothing, 'keep' still gets the entropy bonus's gradient
    # (with advantage 0 the policy term has none), as upstream's loss would.
    root, model_dir, prompts = setup
    flat_reward = lambda ss: RewardOutput("flat", [1.0] * len(ss), [{} for _ in ss])  # noqa: E731
    kw = dict(max_steps=1, save_every=0, dynamic_sampling=False, image_entropy_coef=0.05, max_empty_steps=0)
    start = load_model(model_dir, device="cpu").model.state_dict()
    moved = {}
    for mode in ("drop", "keep"):
        out = train(
            _cfg(root, model_dir, prompts, f"zs_{mode}", zero_spread_groups=mode, **kw), reward_fn=flat_reward
        )
        after = load_model(out, device="cpu").model.state_dict()
        moved[mode] = max(float((after[k] - start[k]).abs().max()) for k in start)
    assert moved["drop"] == 0.0 and moved["keep"] > 1e-4
    with pytest.raises(ValueError, match="zero_spread_groups"):
        GRPOConfig(zero_spread_groups="dilute")


def _flat_on_star(samples) -> RewardOutput:
    """low_tokens, but every sample of a prompt that mentions a star scores the same."""
    out = low_tokens(samples)
    scores = [0.5 if "star" in s.prompt else r for s, r in zip(samples, out.scores)]
    return RewardOutput(out.name, scores, out.details)


def test_batch_dynamic_sampling_generates_batches_until_the_step_is_full(setup) -> None:
    """ReasonGen-R1's filter_groups: whole batches (sized 1 << (left.bit_length() + 1), at least
    one per process, at most a full batch) until prompts_per_step groups have spread, cut to
    that count in slot order; slots keep their own prompt and seed."""
    from training.batch_sampling import next_batch_size, rollout_batches
    from training.grpo import slot_rng, wrap_reward_fn

    assert [next_batch_size(n, 1, 32) for n in (1, 3, 5, 16, 31)] == [4, 8, 16, 32, 32]
    assert next_batch_size(1, 8, 32) == 8 and next_batch_size(3, 1, 4) == 4

    root, model_dir, prompts = setup
    pool = [("a blue star", None), ("a red circle", None), ("two stars", None), ("a green square", None)]
    cfg = _cfg(root, model_dir, prompts, "batches", prompts_per_step=3, dynamic_sampling_mode="batch")
    lm = load_model(model_dir, device="cpu")
    rounds: list[int] = []

    def total(t):
        rounds.append(len(t))
        return t

    got = rollout_batches(cfg, lm, pool, wrap_reward_fn(_flat_on_star), 5, 0, 1, total)
    # The same decisions replayed from the slots' own draws: a slot is flat iff its prompt has a star.
    flat = lambda slot: "star" in pool[slot_rng(cfg.seed, 5, slot, 0).randrange(len(pool))][0]  # noqa: E731
    kept, first, size, sizes = [], 0, 3, []
    while len(kept) < 3:
        sizes.append(size)
        kept += [s for s in range(first, first + size) if not flat(s)]
        first += size
        size = next_batch_size(3 - len(kept), 1, 3)
    assert rounds == sizes and len(sizes) > 1  # at least one batch was regenerated
    assert [g.slot for g in got if not g.dropped] == kept[:3]
    assert [g.slot for g in got if g.dropped] == [s for s in range(first) if flat(s)]
    for g in got:
        assert g.attempts == 1 and all(s.prompt == g.samples[0].prompt for s in g.samples)
        assert ("star" in g.samples[0].prompt) == g.dropped
    # Out of batches: train on what was kept (upstream raises); every batch was a full one here.
    always = lambda ss: RewardOutput("flat", [1.0] * len(ss), [{} for _ in ss])  # noqa: E731
    rounds.clear()
    cfg2 = _cfg(root, model_dir, prompts, "batches2", prompts_per_step=2, dynamic_sampling_mode="batch",
                max_gen_batches=3)  # fmt: skip
    none_kept = rollout_batches(cfg2, lm, pool, wrap_reward_fn(always), 0, 0, 1, total)
    assert rounds == [2, 2, 2] and len(none_kept) == 6 and all(g.dropped for g in none_kept)
    with pytest.raises(ValueError, match="dynamic_sampling_mode"):
        GRPOConfig(dynamic_sampling_mode="group")


def _run_batch_mode(cfg_json: str) -> None:
    """One process of the two-process batch-mode run (and the single-process baseline)."""
    import json

    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    torch.set_num_threads(1)
    train(GRPOConfig(**json.loads(cfg_json)), reward_fn=_flat_on_star)
    AcceleratorState._reset_state(reset_partial_state=True)


def test_batch_dynamic_sampling_gives_two_processes_the_one_process_update(tmp_path) -> None:
    """The kept groups and their cut depend on every process's verdicts (summed each batch), so
    two gloo processes train on exactly the groups one process does."""
    import json

    from accelerate import debug_launcher

    model_dir = save_tiny(tmp_path / "tiny", seed=5)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\ntwo green stars\na blue star\na yellow square\n")
    base = dict(model=str(model_dir), prompts=str(prompts), recipe="got-r1", group_size=3,
                prompts_per_step=2, max_cot_tokens=4, guidance=3.0, lr=0.5, max_steps=2,
                optimizer="sgd", grad_clip=0.0, save_every=0, device="cpu", progress=False,
                tensorboard=False, rewards=["toy"], kl_coef=0.0, dynamic_sampling_mode="batch",
                loss_aggregation="joint")  # fmt: skip
    _run_batch_mode(json.dumps({**base, "out_dir": str(tmp_path / "one")}))
    debug_launcher(_run_batch_mode, args=(json.dumps({**base, "out_dir": str(tmp_path / "two")}),),
                   num_processes=2)  # fmt: skip
    a = load_model(tmp_path / "one" / "final", device="cpu").model.state_dict()
    b = load_model(tmp_path / "two" / "final", device="cpu").model.state_dict()
    start = load_model(model_dir, device="cpu").model.state_dict()
    moved = max(float((a[k] - start[k]).abs().max()) for k in a)
    assert moved > 1e-3
    diffs = {k: float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point()}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < 1e-4 * moved, f"{worst} differs by {diffs[worst]} (moved {moved})"
