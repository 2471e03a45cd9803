"""Preference reward model: ranking losses against hand-computed values, reading rankings from a
store and an export, the split by prompt, the accuracy statistics, and a tiny run that learns."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from PIL import Image

from annotation.export import export_study
from annotation.store import Store
from annotation.workflow import next_task, submit_ranking
from reasongen.rewards import get_reward
from reasongen.types import Sample, SamplingSettings
from training.reward_model.cli import main
from training.reward_model.data import Ranking, pool, read_export, read_studies, read_study, split_by_prompt
from training.reward_model.loss import bradley_terry_loss, plackett_luce_loss, ranking_loss
from training.reward_model.metrics import human_ceiling, pairwise_accuracy
from training.reward_model.train import RewardModelConfig, train_reward_model

INF = float("inf")
COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}
NOUNS = ["square", "circle", "star", "box", "ball", "kite"]


# --- losses -------------------------------------------------------------------------------------


def test_plackett_luce_ties_match_hand_computed_values() -> None:
    s = torch.tensor([[1.0, 0.0, 0.0]])
    # best alone, then the other two tied: Breslow places the tie group at once from {1, 2}
    want = (-1 + math.log(math.e + 2)) + 2 * math.log(2)
    assert plackett_luce_loss(s, torch.tensor([[1.0, 2.0, 2.0]])).item() == pytest.approx(want, abs=1e-6)
    # a strict order is plain Plackett–Luce (the last place adds nothing)
    s2 = torch.tensor([[2.0, 1.0, 0.0]])
    strict = (-2 + math.log(math.exp(2) + math.e + 1)) + (-1 + math.log(math.e + 1))
    assert plackett_luce_loss(s2, torch.tensor([[1.0, 2.0, 3.0]])).item() == pytest.approx(strict, abs=1e-6)
    # a tie at the top: both members drawn from all three
    top = 2 * math.log(math.exp(2) + math.e + 1) - 3
    assert plackett_luce_loss(s2, torch.tensor([[1.0, 1.0, 2.0]])).item() == pytest.approx(top, abs=1e-6)


def test_plackett_luce_padding_and_batch_mean() -> None:
    s = torch.tensor([[1.0, 0.0, 5.0], [2.0, 1.0, 0.0]], requires_grad=True)
    ranks = torch.tensor([[1.0, 2.0, INF], [1.0, 2.0, 3.0]])
    one = -1 + math.log(math.e + 1)
    two = (-2 + math.log(math.exp(2) + math.e + 1)) + (-1 + math.log(math.e + 1))
    loss = plackett_luce_loss(s, ranks)
    assert loss.item() == pytest.approx((one + two) / 2, abs=1e-6)
    loss.backward()
    assert s.grad[0, 2].item() == 0.0 and torch.isfinite(s.grad).all()  # the padding slot gets nothing


def test_bradley_terry_tie_is_half_a_win_each_way() -> None:
    s = torch.tensor([[1.0, 0.0, 0.0]])
    ranks = torch.tensor([[1.0, 2.0, 2.0]])
    lsig = lambda x: math.log(1 / (1 + math.exp(-x)))  # noqa: E731
    want = (-lsig(1) - lsig(1) + math.log(2)) / 3  # two wins by 1, one tie at 0 difference
    assert bradley_terry_loss(s, ranks).item() == pytest.approx(want, abs=1e-6)
    # a tie pulls the two scores together: the gradient on the tied pair is zero only when equal
    s2 = torch.tensor([[0.0, 3.0]], requires_grad=True)
    bradley_terry_loss(s2, torch.tensor([[1.0, 1.0]])).backward()
    assert s2.grad[0, 0] > 0 > s2.grad[0, 1] or s2.grad[0, 0] < 0 < s2.grad[0, 1]
    assert s2.grad[0, 0].item() == pytest.approx(-s2.grad[0, 1].item())
    assert s2.grad[0, 1] > 0  # gradient descent lowers the higher score


def test_losses_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="two or more"):
        plackett_luce_loss(torch.zeros(1, 2), torch.tensor([[1.0, INF]]))
    with pytest.raises(ValueError, match=r"\[R, N\]"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="unknown loss"):
        ranking_loss("hinge", torch.zeros(1, 2), torch.ones(1, 2))


# --- statistics ---------------------------------------------------------------------------------


def _r(rid, task, annotator, cands, ranks, prompt="p") -> Ranking:
    return Ranking(rid, task, prompt, annotator, False, tuple(cands), tuple(ranks))


def test_pairwise_accuracy_and_ceiling() -> None:
    rankings = [
        _r(1, 1, "a", [1, 2, 3], [1, 2, 2]),
        _r(2, 1, "b", [1, 2, 3], [2, 1, 3]),
        _r(3, 2, "a", [4, 5], [1, 2]),
    ]
    scores = {1: 3.0, 2: 2.0, 3: 1.0, 4: 0.0, 5: 0.0}
    acc = pairwise_accuracy(rankings, scores, n_boot=200)
    # ranking 1: (1>2 ok, 1>3 ok), ranking 2: (2>1 wrong, 1>3 ok, 2>3 ok), ranking 3: equal scores ½
    assert acc["value"] == pytest.approx(4.5 / 6) and acc["pairs"] == 6 and acc["tasks"] == 2
    assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
    ceil = human_ceiling(rankings, n_boot=50)
    # task 1: a orders (1,2), (1,3); b agrees on (1,3) and disagrees on (1,2); task 2 has one annotator
    assert ceil["value"] == pytest.approx(0.5) and ceil["tasks"] == 1


# --- data built in a real annotation store ------------------------------------------------------


def _image(color: str, shade: int) -> Image.Image:
    r, g, b = COLORS[color]
    return Image.new("RGB", (32, 32), (max(0, r - shade), max(0, g - shade), max(0, b - shade)))


def _sample(prompt: str, image: Image.Image, seed: int) -> Sample:
    return Sample(
        prompt=prompt,
        recipe="direct",
        model_id="painter",
        seed=seed,
        settings=SamplingSettings(),
        prompt_ids=[1],
        cot_text="",
        cot_token_ids=[],
        cot_logprobs=[],
        cot_end="none",
        prefix_ids=[1],
        image_token_ids=[],
        image_logprobs=[],
        image=image,
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """24 prompts 'a <colour> <noun>', each a task of 3 solid images (its colour and two others);
    two people rank the matching colour first and tie the rest, a simulated annotator does too,
    and 'spam' fails the controls and ranks backwards."""
    root = tmp_path_factory.mktemp("rm")
    url = f"sqlite:///{root / 'db.sqlite'}"
    names = list(COLORS)
    prompts = [f"a {c} {n}" for c in names for n in NOUNS]
    with Store(url, root / "data", password_cost=16) as st:
        s = st.create_study("colours", group_size=3, rankings_per_task=3, control_rate=0.2)
        pids = st.add_prompts(s.id, prompts)
        for k, (pid, text) in enumerate(zip(pids, prompts, strict=True)):
            c = text.split()[1]
            others = [names[(names.index(c) + j) % 4] for j in (1, 2)]
            imgs = [_image(x, 10 * (k % 5) + 3 * j) for j, x in enumerate([c, *others])]
            st.add_candidates(pid, [_sample(text, im, k * 10 + j) for j, im in enumerate(imgs)])
        st.build_tasks(s.id, layout="per_system")
        controls = set(st.add_control_tasks(s.id, 3, seed=1))
        users = {n: st.create_user(n, "password123").id for n in ("ann", "bob", "spam")}
        users["sim"] = st.create_user("sim", "password123", simulated=True).id
        for name, uid in users.items():
            while (view := next_task(st, uid, s.id)) is not None:
                best = _best(st, view, controls)
                rest = [c.id for c in view.candidates if c.id != best]
                ranking = [[best], rest] if name != "spam" else [[c] for c in rest] + [[best]]
                submit_ranking(st, uid, s.id, view.task_id, ranking)
    return root, url


def _best(st: Store, view, controls: set[int]) -> int:
    from annotation.models import Task

    if view.task_id in controls:
        with st.session() as s:
            return s.get(Task, view.task_id).control_best_id
    for c in view.candidates:
        sample = st.load_sample(c.id)
        r, g, b = sample.image.getpixel((0, 0))
        want = sample.prompt.split()[1]
        if max(COLORS, key=lambda k: -sum(abs(x - y) for x, y in zip(COLORS[k], (r, g, b)))) == want:
            return c.id
    raise AssertionError("no candidate of the prompt's colour")


def test_read_study_filters_and_counts(study) -> None:
    root, url = study
    data = read_study("colours", url, str(root / "data"))
    counts = data.counts()
    assert counts["excluded_annotators"] == ["spam"]  # failed the controls
    assert counts["annotators_people"] == ["ann", "bob"] and counts["annotators_simulated"] == ["sim"]
    assert counts["tasks"] == 24 and counts["prompts"] == 24 and counts["candidates"] == 72
    assert counts["rankings_simulated"] == sum(r.annotator == "sim" for r in data.rankings) > 0
    assert all(r.ranks == (1, 2, 2) for r in data.rankings)  # controls left out; ties kept
    people = read_study("colours", url, str(root / "data"), people_only=True)
    assert {r.annotator for r in people.rankings} == {"ann", "bob"}
    assert people.dropped_simulated == counts["rankings_simulated"]
    train, test = split_by_prompt(data, 0.25, seed=3)
    assert not {r.prompt for r in train.rankings} & {r.prompt for r in test.rankings}
    assert len({r.prompt for r in test.rankings}) == 6
    assert split_by_prompt(data, 0.25, seed=3)[1].rankings == test.rankings  # seeded


def test_read_export_gives_the_same_rankings(study, tmp_path) -> None:
    root, url = study
    with Store(url, root / "data", migrate=False) as st:
        export_study(st, "colours", tmp_path / "exp", fmt="csv", n_boot=10)
    a = read_study("colours", url, str(root / "data"))
    b = read_export(tmp_path / "exp")
    assert sorted(b.rankings, key=lambda r: r.ranking_id) == sorted(a.rankings, key=lambda r: r.ranking_id)
    assert all(b.images[c].is_file() for c in b.images)


def test_several_studies_pool_their_rankings(study, tmp_path) -> None:
    """`--study A,B` (a second round's study beside the first): both studies' rankings, images and
    prompts, each study filtered by its own controls; a study named twice, an empty name between
    commas, and one source pooled twice are refused."""
    import shutil

    root, _ = study
    shutil.copytree(root, tmp_path / "copy")
    url = f"sqlite:///{tmp_path / 'copy' / 'db.sqlite'}"
    data_dir = str(tmp_path / "copy" / "data")
    prompts = ["a red hat", "a blue cup", "a green fish"]  # prompts the first study lacks
    with Store(url, data_dir, password_cost=16) as st:
        s = st.create_study("round-2", group_size=2, rankings_per_task=1)
        for k, (pid, text) in enumerate(zip(st.add_prompts(s.id, prompts), prompts, strict=True)):
            c = text.split()[1]
            other = "yellow" if c != "yellow" else "red"
            st.add_candidates(
                pid, [_sample(text, _image(x, 7 + k), 900 + 2 * k + j) for j, x in enumerate([c, other])]
            )
        st.build_tasks(s.id, layout="per_system")
        uid = st.create_user("carol", "password123").id
        while (view := next_task(st, uid, s.id)) is not None:
            best = _best(st, view, set())
            submit_ranking(
                st, uid, s.id, view.task_id, [[best], [c.id for c in view.candidates if c.id != best]]
            )
    first = read_study("colours", url, data_dir)
    second = read_study("round-2", url, data_dir)
    assert len(second.rankings) == 3
    both = read_studies("colours, name:round-2", url, data_dir)
    assert len(both.rankings) == len(first.rankings) + 3
    assert {r.ranking_id for r in both.rankings} == {r.ranking_id for r in first.rankings + second.rankings}
    assert set(both.images) == set(first.images) | set(second.images)
    assert all(both.images[c].is_file() for c in both.images)
    assert both.prompts[second.rankings[0].candidates[0]] == second.rankings[0].prompt
    assert both.counts()["excluded_annotators"] == ["spam"] and both.counts()["prompts"] == 24 + 3
    assert " + " in both.source
    assert read_studies("colours", url, data_dir).rankings == first.rankings  # one study: as before
    with pytest.raises(ValueError, match="names a study twice"):
        read_studies("colours,colours", url, data_dir)
    with pytest.raises(ValueError, match=r"names a study twice \(study 'colours'"):
        read_studies("colours,name:colours", url, data_dir)  # one study by two references
    with pytest.raises(ValueError, match="empty name"):
        read_studies("colours,", url, data_dir)
    with pytest.raises(ValueError, match="repeats rankings"):
        pool([first, first])


def test_bad_sources_are_clear_errors(study, tmp_path, capsys) -> None:
    root, url = study
    with pytest.raises(ValueError, match="no annotation database"):
        read_study("colours", f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(ValueError, match="no rankings"):
        read_export(tmp_path)
    with pytest.raises(ValueError, match="exactly one of --study"):
        RewardModelConfig(out="x")
    assert (
        main(["--study", "nope", "--db", url, "--data_dir", str(root / "data"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "error:" in capsys.readouterr().err


def test_tiny_run_learns_and_writes_a_usable_reward(study, tmp_path) -> None:
    root, url = study
    out = tmp_path / "rm"
    cfg = RewardModelConfig(
        study="colours",
        db=url,
        data_dir=str(root / "data"),
        out=str(out),
        init="tiny",
        steps=80,
        batch_rankings=16,
        lr=3e-3,
        warmup_steps=5,
        held_out=0.25,
        n_boot=200,
        log_every=0,
        device="cpu",
    )
    res = train_reward_model(cfg)
    m = res.metrics
    assert sum(res.losses[-10:]) / 10 < 0.8 * sum(res.losses[:10]) / 10  # the loss falls
    acc = m["held_out_accuracy"]
    assert acc["value"] > 0.75 and acc["ci_low"] > 0.5  # unseen prompts, beyond chance
    assert m["held_out"]["prompts"] == 6 and m["data"]["rankings_simulated"] > 0
    assert m["human_ceiling_held_out"]["value"] == pytest.approx(1.0)  # everyone kept agrees
    card = (out / "README.md").read_text()
    assert "PARTLY SIMULATED" in card and "sim" in card and f"{acc['value']:.3f}" in card
    assert json.loads((out / "metrics.json").read_text())["held_out_accuracy"] == acc
    # the folder is the `learned` reward: same scores as the trained model, prompt-sensitive
    reward = get_reward("learned", model=str(out), device="cpu")
    red = _image("red", 0)
    got = reward([_sample("a red kite", red, 0), _sample("a blue kite", red, 1)])
    assert got.scores[0] > got.scores[1]
    assert "--init tiny --steps 80" in card and f"--out {out}" in card  # the command, from the settings
    # and GRPO builds it from its reward options like any other reward
    from training.grpo import GRPOConfig, build_reward

    grpo = GRPOConfig(rewards=["learned"], reward_options={"learned": {"model": str(out), "device": "cpu"}})
    scores, families = build_reward(grpo)([_sample("a red kite", red, 0), _sample("a blue kite", red, 1)])
    assert scores == pytest.approx(got.scores, abs=1e-6) and set(families) == {"learned"}


def test_validation_keeps_the_best_step_and_says_so(study, tmp_path, monkeypatch) -> None:
    """Validation rankings are scored at the start and every eval_every steps; the weights kept are
    those of the best score (the earliest on ties), and metrics and card say which step that was."""
    from safetensors.torch import load_file

    import training.reward_model.train as train_mod

    root, url = study
    scripted = iter([0.50, 0.70, 0.60, 0.70, 0.65])  # steps 0, 10, 20, 30, 40
    snapshots: list[dict[str, torch.Tensor]] = []
    real = train_mod.evaluate

    def fake_evaluate(scorer, images, texts, rankings, device, n_boot, seed):
        if n_boot:  # the held-out and training measurements
            return real(scorer, images, texts, rankings, device, n_boot, seed)
        snapshots.append({k: v.clone() for k, v in scorer.model.state_dict().items()})
        return {"value": next(scripted)}

    monkeypatch.setattr(train_mod, "evaluate", fake_evaluate)
    cfg = RewardModelConfig(study="colours", db=url, data_dir=str(root / "data"), out=str(tmp_path / "rm"),
                            init="tiny", steps=40, batch_rankings=8, lr=3e-3, warmup_steps=0, held_out=0.25,
                            validation=0.3, eval_every=10, n_boot=20, log_every=0, device="cpu")  # fmt: skip
    res = train_reward_model(cfg)
    val = res.metrics["validation"]
    assert val["selected_step"] == 10 and val["accuracy"] == 0.70
    assert val["curve"] == {"0": 0.5, "10": 0.7, "20": 0.6, "30": 0.7, "40": 0.65}
    assert val["prompts"] >= 1 and res.metrics["train"]["prompts"] + val["prompts"] + res.metrics[
        "held_out"]["prompts"] == res.metrics["data"]["prompts"]  # fmt: skip
    kept = load_file(str(tmp_path / "rm" / "open_clip_model.safetensors"))
    assert all(torch.equal(kept[k], snapshots[1][k]) for k in kept)  # step 10's weights, saved
    assert not all(torch.equal(kept[k], snapshots[-1][k]) for k in kept)
    assert "chose step 10 of 40" in (tmp_path / "rm" / "README.md").read_text()
    with pytest.raises(ValueError, match="validation"):
        RewardModelConfig(study="colours", out="x", validation=1.0)
    # validation rankings that order no pair choose nothing: the last step is kept, and said so
    scripted = iter([float("nan")] * 10)
    said: list[str] = []
    res = train_reward_model(cfg, log=said.append)
    assert res.metrics["validation"] is None and any("keeping the last step" in m for m in said)


# --- contrastive pre-training on the shapes world -----------------------------------------------


def test_pretraining_resumes_exactly_and_keeps_the_benchmark_out(tmp_path) -> None:
    from safetensors.torch import load_file

    from training.reward_model.pretrain import PretrainConfig, caption_batch, pretrain

    base = dict(arch="tiny", steps=4, batch=4, lr=1e-3, warmup_steps=1, save_every=2, holdout_benchmark=0,
                device="cpu", log_every=1)  # fmt: skip
    pretrain(PretrainConfig(out=str(tmp_path / "full"), **base), log=lambda m: None)

    class Killed(RuntimeError):
        pass

    def killed_after_step_2(msg: str) -> None:
        if msg.startswith("step 2/"):
            raise Killed

    with pytest.raises(Killed):
        pretrain(PretrainConfig(out=str(tmp_path / "cut"), **base), log=killed_after_step_2)
    assert json.loads((tmp_path / "cut" / "pretrain.json").read_text())["step"] == 2
    pretrain(PretrainConfig(out=str(tmp_path / "cut"), resume=True, **base), log=lambda m: None)
    a = load_file(str(tmp_path / "full" / "open_clip_model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "open_clip_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert get_reward("learned", model=str(tmp_path / "full"), device="cpu").bundle is not None  # loads
    # a step's scenes are a function of (seed, step); held-out prompt texts are never drawn
    cfg = PretrainConfig(out="x", **{**base, "batch": 8})
    _, prompts, _ = caption_batch(3, cfg, set())
    assert caption_batch(3, cfg, set())[1] == prompts and len(set(prompts)) == 8
    assert not set(prompts[:4]) & set(caption_batch(3, cfg, set(prompts[:4]))[1])


# --- starting points ----------------------------------------------------------------------------


def test_init_from_a_checkpoint_file_or_an_open_clip_folder(tmp_path) -> None:
    """HPS v2.1's layout (a .pt dict with 'state_dict', DDP 'module.' prefixes) with --arch, and a
    folder in open_clip's local-dir layout: both start from exactly the saved weights."""
    from training.reward_model.model import TINY_CONFIG, initial_scorer, save_scorer, scorer_from_config

    src = scorer_from_config(TINY_CONFIG, seed=5)
    state = {f"module.{k}": v for k, v in src.model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "hps_like.pt")
    (tmp_path / "arch.json").write_text(json.dumps(TINY_CONFIG))
    im = _image("green", 0)
    want = src.score([im], ["a green star"])[0]
    from_file, cfg, how = initial_scorer(str(tmp_path / "hps_like.pt"), str(tmp_path / "arch.json"), seed=0)
    assert cfg == TINY_CONFIG and "hps_like.pt" in how
    from_file.model.eval()
    assert from_file.score([im], ["a green star"])[0] == pytest.approx(want, abs=1e-5)
    save_scorer(src, TINY_CONFIG, tmp_path / "folder")
    from_dir, cfg2, _ = initial_scorer(str(tmp_path / "folder"), "", seed=0)
    assert from_dir.model.training and cfg2 == TINY_CONFIG  # ready to train, same config kept
    from_dir.model.eval()
    assert from_dir.score([im], ["a green star"])[0] == pytest.approx(want, abs=1e-5)


def test_bad_starting_points_are_clear_errors(tmp_path) -> None:
    from training.reward_model.model import initial_scorer

    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="--arch"):
        initial_scorer(str(tmp_path / "w.pt"), "", seed=0)
    with pytest.raises(ValueError, match="no architecture 'ViT-Nope'"):
        initial_scorer(str(tmp_path / "w.pt"), "ViT-Nope", seed=0)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="transformers CLIPModel folder"):
        initial_scorer(str(tmp_path / "hf"), "", seed=0)
    with pytest.raises(ValueError, match="neither a folder"):
        initial_scorer("no-such-thing", "", seed=0)


def test_prompt_plan_text_mode(study, tmp_path) -> None:
    """--text prompt_plan: candidates' stored plans become part of the text, the folder records
    the mode (the reward reads it back), and the context length is set for a config from scratch."""
    import dataclasses

    from reasongen.types import Box
    from training.reward_model.data import plans_of
    from training.reward_model.model import initial_scorer
    from training.reward_model.train import candidate_texts

    root, url = study
    frame = pd.DataFrame(
        {"candidate_id": [1, 2], "sample_json": [json.dumps({"plan": {"boxes": [
            {"label": "red kite", "x1": 0, "y1": 0, "x2": 500, "y2": 500}]}}), json.dumps({"plan": None})]}
    )  # fmt: skip
    assert plans_of(frame) == {1: (Box("red kite", 0, 0, 500, 500),)}
    data = read_study("colours", url, str(root / "data"))
    assert data.plans == {}  # these candidates have no plan
    c = next(iter(data.prompts))
    with_plan = dataclasses.replace(data, plans={c: (Box("red kite", 0, 0, 500, 500),)})
    texts = candidate_texts(with_plan, "prompt_plan")
    assert texts[c] == f"{data.prompts[c]}. plan: red kite 0 0 500 500"
    assert all(t.endswith("plan: none") for k, t in texts.items() if k != c)
    assert candidate_texts(data, "prompt") == data.prompts
    out = tmp_path / "pp"
    cfg = RewardModelConfig(study="colours", db=url, data_dir=str(root / "data"), out=str(out), init="tiny",
                            text="prompt_plan", context_length=24, steps=3, batch_rankings=8, n_boot=10,
                            log_every=0, device="cpu")  # fmt: skip
    train_reward_model(cfg, data=with_plan, log=lambda m: None)
    saved = json.loads((out / "open_clip_config.json").read_text())
    assert (
        saved["reasongen"] == {"text": "prompt_plan", "image": "image"}
        and saved["model_cfg"]["text_cfg"]["context_length"] == 24
    )
    assert get_reward("learned", model=str(out), device="cpu").bundle[0].text_mode == "prompt_plan"
    with pytest.raises(ValueError, match="text context of 24 tokens"):
        initial_scorer(str(out), "", seed=0, context_length=64)
    with pytest.raises(ValueError, match="--text must be one of"):
        RewardModelConfig(study="colours", out="x", text="cot")


def test_full_language_captions_compose_and_resuming_other_captions_is_refused(tmp_path) -> None:
    from reasongen.shapes.parse import parse_prompt
    from training.reward_model.pretrain import PretrainConfig, benchmark_texts, caption_batch, pretrain

    base = dict(arch="tiny", steps=2, batch=4, warmup_steps=0, save_every=1, holdout_benchmark=0,
                device="cpu", log_every=0)  # fmt: skip
    full = PretrainConfig(out="x", **{**base, "batch": 64, "language": "full"})
    _, prompts, _ = caption_batch(0, full, set())
    # the whole language: some captions have three or more objects, which GenEval's templates never do
    groups = [parse_prompt(p)["include"] for p in prompts]
    assert any(len(g) >= 2 and sum(o["count"] for o in g) >= 3 for g in groups)
    _, geneval, _ = caption_batch(0, PretrainConfig(out="x", **{**base, "batch": 64}), set())
    assert all(len(parse_prompt(p)["include"]) <= 2 for p in geneval)
    held = benchmark_texts(50, full.suites)
    assert held > benchmark_texts(50) and not set(caption_batch(1, full, held)[1]) & held
    with pytest.raises(ValueError, match="--language must be one of"):
        PretrainConfig(out="x", language="klingon")
    pretrain(PretrainConfig(out=str(tmp_path / "p"), **base), log=lambda m: None)
    with pytest.raises(ValueError, match="language='geneval'"):
        pretrain(PretrainConfig(out=str(tmp_path / "p"), resume=True, **{**base, "language": "full"}))
    # --relation_weight: relation captions drawn that many times as often; resuming otherwise refused
    weighted = PretrainConfig(out="x", **{**base, "batch": 64, "language": "full", "relation_weight": 5})
    assert weighted.categories.count("relation_attr") == 10 and weighted.categories.count("position") == 5
    assert len(weighted.categories) == 19 + 12 and weighted.suites == full.suites

    def relation_share(cfg: PretrainConfig) -> float:
        from training.reward_model.near_miss import swap_relation

        captions = [c for step in range(4) for c in caption_batch(step, cfg, set())[1]]
        return sum(swap_relation(c) is not None for c in captions) / len(captions)

    assert relation_share(full) < 0.3 < 0.45 < relation_share(weighted)  # 3/19 and 15/31 expected
    with pytest.raises(ValueError, match="relation_weight must be at least 1"):
        PretrainConfig(out="x", relation_weight=0)
    with pytest.raises(ValueError, match="relation_weight=1, not 5"):
        pretrain(PretrainConfig(out=str(tmp_path / "p"), resume=True, **{**base, "relation_weight": 5}))


def test_fine_tuning_an_image_plan_model_shows_each_candidate_beside_its_plan(study, tmp_path) -> None:
    """A starting model pre-trained with --image image_plan keeps its image mode: the candidates'
    stored plans are drawn beside them (an empty canvas where none is stored), the folder records
    the mode, and the reward built from it scores as the trained model does."""
    import dataclasses

    from reasongen.rewards.learned import beside_plan
    from reasongen.types import Box
    from training.reward_model.model import TINY_CONFIG, for_image_mode, save_scorer, scorer_from_config
    from training.reward_model.train import Images

    root, url = study
    wide = for_image_mode(TINY_CONFIG, "image_plan")
    assert wide["model_cfg"]["vision_cfg"]["image_size"] == wide["preprocess_cfg"]["size"] == [32, 64]
    assert TINY_CONFIG["model_cfg"]["vision_cfg"]["image_size"] == 32  # a copy, the original untouched
    save_scorer(scorer_from_config(wide, seed=1), wide, tmp_path / "start")
    data = read_study("colours", url, str(root / "data"))
    c = next(iter(data.prompts))
    plan = (Box("red square", 0, 0, 500, 500),)
    with_plan = dataclasses.replace(data, plans={c: plan})
    out = tmp_path / "ip"
    cfg = RewardModelConfig(study="colours", db=url, data_dir=str(root / "data"), out=str(out),
                            init=str(tmp_path / "start"), steps=3, batch_rankings=8, n_boot=10, log_every=0,
                            device="cpu")  # fmt: skip
    train_reward_model(cfg, data=with_plan, log=lambda m: None)
    saved = json.loads((out / "open_clip_config.json").read_text())
    assert saved["reasongen"] == {"text": "prompt", "image": "image_plan"}
    assert "image side: `image_plan`" in (out / "README.md").read_text()
    reward = get_reward("learned", model=str(out), device="cpu")
    (scorer,) = reward.bundle
    assert scorer.image_mode == "image_plan"
    images = Images(scorer, with_plan.images, 64, with_plan.plans)
    from PIL import Image

    with Image.open(with_plan.images[c]) as im:
        want = scorer.preprocess(beside_plan(im.convert("RGB"), plan))
        other = next(k for k in with_plan.images if k != c)
    with Image.open(with_plan.images[other]) as im:
        want_empty = scorer.preprocess(beside_plan(im.convert("RGB"), ()))
    got = images.batch([c, other])  # from the float16 cache
    assert torch.allclose(got, torch.stack([want, want_empty]), atol=2e-3)


def test_the_gpu_sized_scorer_trains_a_step_and_scores_through_the_registry(tmp_path) -> None:
    """``--arch shapes-p4`` (4 px patches, wider towers): one pre-training step of it beside the
    plan writes a folder whose ``learned`` reward sees 16 x 32 patches and scores a planned sample."""
    from reasongen.types import Box, Plan
    from training.reward_model.model import CONFIGS, SHAPES_CONFIG
    from training.reward_model.pretrain import PretrainConfig, pretrain

    assert CONFIGS["shapes-p4"]["model_cfg"]["vision_cfg"]["patch_size"] == 4
    assert SHAPES_CONFIG["model_cfg"]["vision_cfg"]["patch_size"] == 8  # built from a copy
    out = tmp_path / "p4"
    pretrain(PretrainConfig(out=str(out), arch="shapes-p4", steps=1, batch=4, warmup_steps=1,
                            image="outlined_plan", hard_negatives=1.0, language="full", device="cpu",
                            log_every=0), log=lambda m: None)  # fmt: skip
    reward = get_reward("learned", model=str(out), device="cpu")
    (scorer,) = reward.bundle
    assert scorer.image_mode == "outlined_plan"
    assert tuple(scorer.model.visual.grid_size) == (16, 32)
    sample = _sample("a red square", _image("red", 0), 0)
    sample.plan = Plan(boxes=(Box("red square", 0, 0, 500, 500),))
    (score,) = reward.score([sample], [None]).scores
    assert math.isfinite(score)


def test_the_convolutional_scorer_trains_and_scores_plan_pictures_through_the_registry(tmp_path) -> None:
    """``--arch shapes-conv`` (a timm convolutional image tower in open_clip): pre-training steps
    beside the plan change the image tower's weights and write a folder that open_clip reloads
    with the same weights; its ``learned`` reward scores a planned sample, and a picture whose
    object leaves its ring scores differently from the faithful one."""
    from safetensors.torch import load_file

    from reasongen.types import Box, Plan
    from training.reward_model.model import CONFIGS, SHAPES_CONFIG, scorer_from_config
    from training.reward_model.pretrain import PretrainConfig, pretrain

    vision = CONFIGS["shapes-conv"]["model_cfg"]["vision_cfg"]
    assert vision["timm_model_name"] and "patch_size" not in vision
    assert SHAPES_CONFIG["model_cfg"]["vision_cfg"]["patch_size"] == 8  # built from a copy
    out = tmp_path / "conv"
    cfg = PretrainConfig(out=str(out), arch="shapes-conv", steps=2, batch=4, warmup_steps=1, seed=3,
                         image="outlined_plan", hard_negatives=1.0, language="full", device="cpu",
                         log_every=0)  # fmt: skip
    pretrain(cfg, log=lambda m: None)
    saved = json.loads((out / "open_clip_config.json").read_text())
    assert saved["model_cfg"]["vision_cfg"]["image_size"] == [64, 128]
    start = scorer_from_config(saved, seed=3).model.state_dict()  # the same seeded init
    trained = load_file(out / "open_clip_model.safetensors")
    conv = [k for k, w in trained.items() if k.startswith("visual.trunk.") and w.ndim == 4]  # kernels
    assert conv and any(not torch.equal(trained[k], start[k]) for k in conv)

    reward = get_reward("learned", model=str(out), device="cpu")
    (scorer,) = reward.bundle
    assert scorer.image_mode == "outlined_plan"
    assert all(torch.equal(v, trained[k]) for k, v in scorer.model.state_dict().items() if k in trained)
    faithful = _sample("a red square", _image("red", 0), 0)
    faithful.plan = Plan(boxes=(Box("red square", 0, 0, 500, 500),))
    moved = _sample("a red square", _image("red", 0), 1)
    moved.plan = Plan(boxes=(Box("red square", 500, 500, 1000, 1000),))
    scores = reward.score([faithful, moved], [None, None]).scores
    assert all(math.isfinite(s) for s in scores) and scores[0] != scores[1]
