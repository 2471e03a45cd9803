"""Human-ranking GRPO: groups from a seeded annotation database, and a run that follows them."""

from __future__ import annotations

import re

import pytest
import torch

from annotation.store import Store
from annotation.workflow import next_task, submit_ranking
from reasongen.generation import generate
from reasongen.loading import load_model
from reasongen.tiny import save_tiny
from reasongen.types import SamplingSettings
from training.human import HumanGRPOConfig, human_groups, train
from training.logprobs import policy_logprobs

PROMPTS = ["a red circle", "two green triangles", "a blue star"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """3 prompts x one group of 4 tiny-model samples, 2 control tasks, 3 annotators:
    a and b rank by candidate id (and tie everything on the last prompt); c fails the controls
    and ranks backwards."""
    root = tmp_path_factory.mktemp("human")
    model_dir = save_tiny(root / "tiny", seed=4)
    lm = load_model(model_dir, device="cpu")
    settings = SamplingSettings(guidance=3.0, max_cot_tokens=3, num_image_tokens=16)
    url = f"sqlite:///{root / 'db.sqlite'}"
    with Store(url, root / "data", password_cost=16) as st:
        study = st.create_study("s", group_size=4, rankings_per_task=3, control_rate=0.9)
        pids = st.add_prompts(study.id, PROMPTS)
        for k, (pid, text) in enumerate(zip(pids, PROMPTS)):
            st.add_candidates(pid, generate(lm, text, "got-r1", n=4, seed=k, settings=settings))
        regular = st.build_tasks(study.id, layout="per_system")
        controls = st.add_control_tasks(study.id, 2, seed=1)
        users = {n: st.create_user(n, "password123").id for n in ("a", "b", "c")}
        tied_task = regular[-1]
        for name, uid in users.items():
            while (view := next_task(st, uid, study.id)) is not None:
                ids = sorted(c.id for c in view.candidates)
                if view.task_id in controls:
                    best = [c for c in ids if c in _control_best(st, view.task_id)]
                    rest = [[c] for c in ids if c not in best]
                    ranking = [best, *rest] if name != "c" else [*rest, best]
                elif view.task_id == tied_task and name != "c":
                    ranking = [ids]
                else:
                    ranking = [[c] for c in (ids if name != "c" else ids[::-1])]
                submit_ranking(st, uid, study.id, view.task_id, ranking)
    return root, model_dir, url, regular, controls


def _control_best(st: Store, task_id: int) -> set[int]:
    from annotation.models import Task

    with st.session() as s:
        return {s.get(Task, task_id).control_best_id}


def _cfg(root, model_dir, url, **kw) -> HumanGRPOConfig:
    base = dict(model=str(model_dir), study="s", db_url=url, data_dir=str(root / "data"),
                out_dir=str(root / "run"), prompts_per_step=2, lr=1e-2, max_steps=3,
                save_every=0, device="cpu", progress=False, tensorboard=False)  # fmt: skip
    base.update(kw)
    return HumanGRPOConfig(**base)


def test_groups_from_rankings(seeded) -> None:
    root, model_dir, url, regular, _ = seeded
    groups = human_groups(_cfg(root, model_dir, url))
    assert sorted(g.slot for g in groups) == sorted(regular)  # control tasks left out
    by_task = {g.slot: g for g in groups}
    tied = by_task[regular[-1]]
    assert tied.dropped and tied.rewards == [0.5] * 4  # everyone tied: equal rewards, no spread
    for t in regular[:-1]:
        g = by_task[t]
        # c (excluded by the controls) ranked backwards; with c counted these would be ~0.5.
        assert g.rewards == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
        assert not g.dropped and all(g.valid)
        assert g.advantages == sorted(g.advantages, reverse=True) and abs(sum(g.advantages)) < 1e-6
        assert len(g.samples) == 4 and all(s.image_logprobs for s in g.samples)


def test_training_raises_the_preferred_candidates(seeded) -> None:
    root, model_dir, url, _, _ = seeded
    cfg = _cfg(root, model_dir, url)
    groups = [g for g in human_groups(cfg) if not g.dropped]
    out = train(cfg)
    before, after = load_model(model_dir, device="cpu"), load_model(out, device="cpu")

    def total(model, s) -> float:
        lp = policy_logprobs(model, [s], before.ids.bos, before.ids.pad)
        return float(lp.cot.sum() + lp.image.sum())

    with torch.no_grad():
        for g in groups:
            best, worst = g.samples[0], g.samples[-1]
            gain_best = total(after.model, best) - total(before.model, best)
            gain_worst = total(after.model, worst) - total(before.model, worst)
            assert gain_best > gain_worst + 0.1


def test_study_without_usable_groups_is_a_clear_error(seeded) -> None:
    root, model_dir, url, _, _ = seeded
    with pytest.raises(ValueError, match="no ranked task"):
        train(_cfg(root, model_dir, url, min_rankings=5))
    with pytest.raises(ValueError, match="--study is required"):
        HumanGRPOConfig(study="")


def _main_args(root, url, model, **kw) -> list[str]:
    args = {"model": str(model), "study": "s", "db_url": url, "data_dir": str(root / "data"),
            "out_dir": str(root / "run-main"), "prompts_per_step": "2", "max_steps": "1",
            "save_every": "0", "device": "cpu", "progress": "false", "tensorboard": "false",
            "torch_threads": "1", **kw}  # fmt: skip
    return [x for k, v in args.items() for x in (f"--{k}", v)]


def test_candidates_of_another_model_are_refused_unless_allowed(seeded, tmp_path, capsys) -> None:
    from training import human

    root, model_dir, url, _, _ = seeded
    other = save_tiny(tmp_path / "other", seed=5)
    out = tmp_path / "run"
    capsys.readouterr()
    assert human.main(_main_args(root, url, other, out_dir=str(out))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: study 's': 8 of the 8 candidates were sampled by another model")
    assert "--allow_other_policy" in err and str(model_dir) in err and "\n" not in err
    assert not out.exists()  # refused before loading or writing anything

    assert human.main([*_main_args(root, url, other, out_dir=str(out)), "--allow_other_policy"]) == 0
    captured = capsys.readouterr()
    assert "training on them anyway" in captured.err
    fracs = re.search(r"step 1: clip fraction .*: text ([\d.]+), image ([\d.]+)", captured.out)
    assert fracs and float(fracs.group(1)) > 0.1  # another random model: off-policy CoT tokens

    # The model that sampled the candidates trains without the flag; its ratio starts at 1.
    assert human.main(_main_args(root, url, model_dir, out_dir=str(tmp_path / "own"))) == 0
    fracs = re.search(r"step 1: clip fraction .*: text ([\d.]+), image ([\d.]+)", capsys.readouterr().out)
    assert fracs and float(fracs.group(1)) == 0.0 and float(fracs.group(2)) == 0.0


def test_errors_are_one_line_and_a_missing_database_is_not_created(seeded, tmp_path, capsys) -> None:
    from training import human

    root, model_dir, url, _, _ = seeded
    empty = tmp_path / "empty"
    assert human.main(_main_args(root, "", model_dir, data_dir=str(empty))) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: no annotation database at {empty / 'reasongen.db'}") and err.count("\n") == 1
    )
    assert not empty.exists()  # neither the folder nor an empty database file
    missing_file = tmp_path / "x.db"
    assert human.main(_main_args(root, f"sqlite:///{missing_file}", model_dir)) == 2
    assert "no annotation database" in capsys.readouterr().err and not missing_file.exists()
    no_model = [*_main_args(root, url, tmp_path / "no-model"), "--allow_other_policy"]
    for bad, message in ((_main_args(root, url, model_dir, study="nope"), "nope"),
                         (_main_args(root, url, model_dir, min_rankings="0"), "min_rankings must be >= 1"),
                         (no_model, "does not exist")):  # fmt: skip
        assert human.main(bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
