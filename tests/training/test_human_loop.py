"""The human-feedback loop on the shapes world: ``reasongen.shapes.write_prompts`` (the study's
training prompts) and ``training/human_loop.sh`` end to end at the smallest scale that runs
every step (prompts, study, simulated panel, reward pre-training and training, GRPO on the learned
reward with the shapes monitor, benchmark and validation)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from reasongen.shapes import write_prompts as wp
from reasongen.shapes.compose import FULL_LANGUAGE
from reasongen.shapes.pools import benchmark_texts, prompt_pool

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "training" / "human_loop.sh"
ROUND = ROOT / "training" / "human_loop_round.sh"


def _write(tmp_path: Path, *args: str, name: str = "p.txt") -> tuple[int, list[str]]:
    out = tmp_path / name
    rc = wp.main(["--out", str(out), *args])
    lines = out.read_text(encoding="utf-8").splitlines() if out.is_file() else []
    return rc, lines


# --------------------------------------------------------------------------- write_prompts


@pytest.mark.parametrize("language", ["full", "geneval"])
def test_writes_n_prompts_none_of_them_the_benchmarks(tmp_path: Path, language: str) -> None:
    rc, lines = _write(tmp_path, "--n", "300", "--seed", "11", "--language", language)
    assert rc == 0 and len(lines) == 300 and all(lines)
    suites = ("geneval", "compositional") if language == "full" else ("geneval",)
    assert not set(lines) & benchmark_texts(600, 125, suites)
    assert not set(lines) & benchmark_texts(600, 125, ("geneval",))


def test_the_file_is_the_grpo_pools_draw_in_order_and_prefix_stable(tmp_path: Path) -> None:
    rc, lines = _write(tmp_path, "--n", "50", "--seed", "7")
    assert rc == 0
    pool = [text for text, _ in prompt_pool(200, 7, FULL_LANGUAGE, 125, 600)]
    assert lines == pool[:50]  # repeats kept without --unique
    rc, short = _write(tmp_path, "--n", "20", "--seed", "7", name="short.txt")
    assert rc == 0 and short == lines[:20]


def test_unique_keeps_first_occurrences_until_n_distinct(tmp_path: Path) -> None:
    # GenEval's templates repeat often (about one text in five is new after 10k draws)
    rc, lines = _write(tmp_path, "--n", "400", "--seed", "3", "--language", "geneval", "--unique")
    assert rc == 0 and len(lines) == 400 and len(set(lines)) == 400
    drawn = [text for text, _ in prompt_pool(4000, 3, wp.LANGUAGES["geneval"], 125, 600)]
    assert len(set(drawn[:400])) < 400  # without --unique the first 400 repeat
    assert lines == list(dict.fromkeys(drawn))[:400]
    assert not set(lines) & benchmark_texts(600, 125)


def test_exclude_leaves_out_the_files_texts_and_keeps_the_rest_in_order(tmp_path: Path) -> None:
    rc, full = _write(tmp_path, "--n", "60", "--seed", "11", "--unique", name="full.txt")
    assert rc == 0
    (tmp_path / "a.txt").write_text("".join(f"{t}\n" for t in full[:10]) + "\n", encoding="utf-8")
    # (surrounding spaces and Windows line ends, as an edited file may have, do not hide a text)
    (tmp_path / "b.txt").write_text("".join(f"  {t}\t\r\n" for t in full[30:35]) + "not a drawn text\n")
    rc, lines = _write(
        tmp_path, "--n", "45", "--seed", "11", "--unique",
        "--exclude", str(tmp_path / "a.txt"), "--exclude", str(tmp_path / "b.txt"),
    )  # fmt: skip
    assert rc == 0 and len(lines) == 45
    # the same as drawing more and filtering afterwards: the first 45 of the rest, in order
    kept = [t for t in full if t not in set(full[:10]) | set(full[30:35])]
    assert lines == kept[:45]
    assert not set(lines) & set(full[:10]) and not set(lines) & set(full[30:35])


def test_an_unreadable_exclude_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    rc, lines = _write(tmp_path, "--n", "3", "--seed", "1", "--exclude", str(tmp_path / "missing.txt"))
    assert rc == 2 and not lines and "missing.txt" in capsys.readouterr().err


def test_every_line_parses_back_to_its_metadata(tmp_path: Path) -> None:
    from reasongen.shapes.parse import parse_prompt

    rc, lines = _write(tmp_path, "--n", "100", "--seed", "11", "--unique")
    assert rc == 0 and all(parse_prompt(t) for t in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0", "--seed", "1"], "--n must be >= 1"),
        (["--n", "3", "--seed", "0"], "benchmark's own prompt seed"),
        (["--n", "3", "--seed", "1", "--cell", "7"], "--cell must divide 1000"),
        (["--n", "3", "--seed", "1", "--cell", "-125"], "--cell must divide 1000"),
        (["--n", "3", "--seed", "1", "--holdout", "-1"], "--holdout must be >= 0"),
        (["--n", "3", "--seed", "1", "--language", "klingon"], "--language must be one of geneval, full"),
    ],
)
def test_bad_settings_exit_2_with_a_message(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    rc, lines = _write(tmp_path, *args)
    assert rc == 2 and not lines
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_seed_0_without_holdout_and_free_layouts_are_allowed(tmp_path: Path) -> None:
    assert _write(tmp_path, "--n", "5", "--seed", "0", "--holdout", "0")[0] == 0
    rc, lines = _write(tmp_path, "--n", "5", "--seed", "1", "--cell", "0", name="free.txt")
    assert rc == 0 and len(lines) == 5


def test_refuses_to_overwrite_without_force(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.txt"
    out.write_text("keep me\n")
    assert wp.main(["--n", "3", "--seed", "1", "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "keep me\n"
    assert wp.main(["--n", "3", "--seed", "1", "--out", str(out), "--force"]) == 0
    assert len(out.read_text().splitlines()) == 3
    assert wp.main(["--n", "3", "--seed", "1", "--out", str(tmp_path), "--force"]) == 2  # a folder


def test_too_few_distinct_texts_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    # single objects are nearly all benchmark texts: a few distinct ones remain, never 50
    monkeypatch.setitem(wp.LANGUAGES, "geneval", ("single_object",))
    rc, lines = _write(tmp_path, "--n", "50", "--seed", "3", "--language", "geneval", "--unique")
    err = capsys.readouterr().err
    assert rc == 2 and not lines and not (tmp_path / "p.txt.partial").exists()
    assert "distinct prompt texts" in err and "lower --n (asked 50)" in err


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    out = tmp_path / "p.txt"
    done = subprocess.run(
        [sys.executable, "-m", "reasongen.shapes.write_prompts", "--n", "4", "--seed", "5",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote 4 prompts" in done.stdout and len(out.read_text().splitlines()) == 4


# --------------------------------------------------------------------------- human_loop.sh


def test_the_script_checks_its_arguments(tmp_path: Path) -> None:
    for argv in ([], [str(tmp_path / "o")], [str(tmp_path / "o"), "x"], [str(tmp_path / "o"), "1"]):
        done = subprocess.run(["bash", str(SCRIPT), *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and ("usage:" in done.stderr or "RANKINGS must" in done.stderr)
    assert not (tmp_path / "o").exists()


def test_until_stops_after_the_step_it_names(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    bad = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "o"), "5"], env={**env, "UNTIL": "9"},
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "UNTIL must be a step from 1 to 8" in bad.stderr
    bad = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "o"), "5"],
                         env={**env, "CANDIDATES": "nowhere"}, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "CANDIDATES: no model folder nowhere" in bad.stderr
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "o"), "5"], env={**env, "UNTIL": "1"},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "stopped after step 1 (UNTIL=1)" in done.stderr
    assert len((tmp_path / "o" / "prompts.txt").read_text().splitlines()) == 5
    assert not (tmp_path / "o" / "annotation.db").exists()  # step 2 never ran


def test_a_script_changed_while_it_runs_finishes_as_it_started(tmp_path: Path) -> None:
    """bash reads a plain script as it goes, so a file rewritten in place during a step (an edit, a
    `git pull`) used to make the rest of a run execute shifted bytes ("-seed: command not found").
    The script is one { ... } block, read whole before it runs: here step 1's command rewrites the
    script in place, longer, and the run still ends as the original says."""
    root = tmp_path / "repo"
    (root / "training" / "recipes").mkdir(parents=True)
    (root / "training" / "recipes" / "shapes_full.yaml").write_text("{}\n")
    script = root / "training" / "human_loop.sh"
    script.write_bytes(SCRIPT.read_bytes())
    fake = tmp_path / "fake_python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        "# stands in for python: writes the prompts file, then rewrites the running script in place\n"
        'out="${@: -1}"; printf "a red circle\\n" > "$out"\n'
        f"{sys.executable} - <<'PY'\n"
        f"p = {str(script)!r}\n"
        "text = open(p).read()\n"
        "with open(p, 'r+') as f:\n"
        "    f.write('# ' + 'x' * 500 + '\\n' + text.replace('stopped after', 'echo SHIFTED; after'))\n"
        "PY\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "UNTIL": "1"}
    done = subprocess.run(["bash", str(script), str(tmp_path / "o"), "5"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert "x" * 500 in script.read_text()  # the file did change under the run
    assert done.returncode == 0, done.stderr
    assert "stopped after step 1 (UNTIL=1)" in done.stderr and "command not found" not in done.stderr
    assert "SHIFTED" not in done.stdout + done.stderr


def _past_step_5(tmp_path: Path, *folders: str) -> Path:
    """A loop folder OUT whose prompts, study and simulated rankings are done and whose reward model
    exists (a bare card), with empty sub-folders ``folders``: the loop resumes after step 5."""
    out = tmp_path / "o"
    for d in ("done", "reward_model", *folders):
        (out / d).mkdir(parents=True)
    (out / "prompts.txt").write_text("a red circle\n")
    for marker in ("study", "simulate"):
        (out / "done" / marker).touch()
    (out / "reward_model" / "README.md").write_text("card")
    return out


def test_a_finished_reward_model_is_not_pre_trained_again(tmp_path: Path) -> None:
    """A loop re-run on a folder whose reward model exists skips the (long) pre-training, even when
    it was made from another starting point (RM_PRETRAIN_STEPS=0 RM_INIT=... the first time)."""
    out = _past_step_5(tmp_path, "ceiling")
    (out / "done" / "ceiling").touch()
    env = {**os.environ, "PYTHON": sys.executable, "UNTIL": "4"}
    done = subprocess.run(["bash", str(SCRIPT), str(out), "5"], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "4/8 reward pre-training: " in done.stderr and "reward_model exists, skipped" in done.stderr
    assert not (out / "reward_pretrain").exists() and "$ " not in done.stderr  # nothing ran


def test_rm_ensemble_makes_grpo_optimise_the_mean_of_several_reward_models(tmp_path: Path) -> None:
    """RM_ENSEMBLE: step 6 writes `learned` with the loop's reward model and the named folders
    (absolute paths) as an ensemble (and LEARNED_TEXT_KL_SCALE, LEARNED_PTX as text_kl_scale,
    ptx_coef); a folder that
    does not exist stops the loop before anything."""
    out = _past_step_5(tmp_path, "other")
    env = {**os.environ, "PYTHON": sys.executable, "UNTIL": "6", "CEILING_PROMPTS": "0"}
    missing = subprocess.run(["bash", str(SCRIPT), str(out), "5"], env={**env, "RM_ENSEMBLE": "nowhere"},
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "RM_ENSEMBLE: no folder nowhere" in missing.stderr
    assert not (out / "grpo.yaml").exists()
    knobs = {"RM_ENSEMBLE": "o/other", "LEARNED_TEXT_KL_SCALE": "10", "LEARNED_PTX": "0.5"}
    done = subprocess.run(["bash", str(SCRIPT), str(out), "5"], env={**env, **knobs},
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    cfg = yaml.safe_load((out / "grpo.yaml").read_text())
    assert cfg["rewards"] == ["learned"] and cfg["monitor_rewards"] == ["shapes"]
    assert cfg["text_kl_scale"] == 10.0 and cfg["kl_coef"] == 0.04 and cfg["ptx_coef"] == 0.5
    assert cfg["reward_options"]["learned"]["model"] == [str(out / "reward_model"), str(out / "other")]


def test_a_grpo_config_naming_another_reward_stops_the_loop_and_is_kept(tmp_path: Path) -> None:
    """Step 6 on a folder whose grpo.yaml was written for another reward or learned-reward settings
    (RM_ENSEMBLE, RM_POLISH_STEPS or a LEARNED_* knob changed since): exit 2 naming both, the file
    untouched; moved aside, the config is written for this run's reward."""
    out = _past_step_5(tmp_path, "other")
    env = {**os.environ, "PYTHON": sys.executable, "UNTIL": "6", "CEILING_PROMPTS": "0"}

    def loop(**knobs: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), str(out), "5"], env={**env, **knobs}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    first = loop()
    assert first.returncode == 0, first.stderr
    written = (out / "grpo.yaml").read_text()
    assert yaml.safe_load(written)["reward_options"]["learned"]["model"] == str(out / "reward_model")
    same = loop()
    assert same.returncode == 0 and "grpo.yaml exists, skipped" in same.stderr
    changed = loop(RM_ENSEMBLE="o/other")
    assert changed.returncode == 2
    settings = '"adv_eps": 1.0, "kl_coef": 0.04, "text_kl_scale": 1.0, "ptx_coef": 0.0}'
    rm, other = out / "reward_model", out / "other"
    assert f'written for {{"learned": ["{rm}"], {settings}' in changed.stderr
    assert f'settings are {{"learned": ["{rm}", "{other}"], {settings}' in changed.stderr
    assert (out / "grpo.yaml").read_text() == written
    held = loop(LEARNED_TEXT_KL_SCALE="10")  # a learned-reward setting changed: refused as well
    assert held.returncode == 2 and '"text_kl_scale": 10.0, ' in held.stderr
    mixed = loop(LEARNED_PTX="1")
    assert mixed.returncode == 2 and '"ptx_coef": 1.0}' in mixed.stderr
    bad = loop(LEARNED_KL="lots")
    assert bad.returncode == 2 and "LEARNED_KL must be a non-negative number, got 'lots'" in bad.stderr
    assert (out / "grpo.yaml").read_text() == written
    (out / "grpo.yaml").rename(out / "grpo.old.yaml")
    again = loop(RM_ENSEMBLE="o/other")
    assert again.returncode == 0, again.stderr
    cfg = yaml.safe_load((out / "grpo.yaml").read_text())
    assert cfg["reward_options"]["learned"]["model"] == [str(out / "reward_model"), str(out / "other")]


def test_rm_polish_steps_polish_every_scorer_and_grpo_scores_with_the_polished(tmp_path: Path) -> None:
    """RM_POLISH_STEPS (step 5a): the reward model and each RM_ENSEMBLE member get more contrastive
    steps with near-miss negatives, each in the modes it reads, and step 6 writes the polished
    folders as the `learned` ensemble; a re-run skips them, and a reward model made again after its
    polish is polished again rather than resumed."""
    from safetensors.torch import load_file

    from training.reward_model.pretrain import PretrainConfig, pretrain

    out = tmp_path / "o"
    for d in ("done", "ceiling"):
        (out / d).mkdir(parents=True)
    (out / "prompts.txt").write_text("a red circle\n")
    for marker in ("study", "simulate"):
        (out / "done" / marker).touch()
    tiny = dict(arch="tiny", steps=1, batch=4, holdout_benchmark=0, device="cpu", log_every=0, warmup_steps=0)
    pretrain(PretrainConfig(out=str(out / "reward_model"), image="outlined_plan", **tiny), log=lambda m: None)
    (out / "reward_model" / "README.md").write_text("card")
    pretrain(PretrainConfig(out=str(tmp_path / "other"), **tiny), log=lambda m: None)
    env = {**os.environ, "PYTHON": sys.executable, "UNTIL": "6", "CEILING_PROMPTS": "0",
           "RM_ENSEMBLE": str(tmp_path / "other"), "RM_POLISH_STEPS": "2",
           "RM_POLISH_FLAGS": "--arch tiny --batch 4 --holdout_benchmark 0 --save_every 0 --log_every 0 "
           "--torch_threads 1"}  # fmt: skip
    bad = subprocess.run(["bash", str(SCRIPT), str(out), "5"], env={**env, "RM_POLISH_STEPS": "x"},
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "RM_POLISH_STEPS must be a whole number" in bad.stderr
    done = subprocess.run(["bash", str(SCRIPT), str(out), "5"], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    polished = [out / "reward_polished", out / "reward_polished_1"]
    cfg = yaml.safe_load((out / "grpo.yaml").read_text())
    assert cfg["reward_options"]["learned"]["model"] == [str(p) for p in polished]
    members = [out / "reward_model", tmp_path / "other"]
    for member, p, mode in zip(members, polished, ["outlined_plan", "image"], strict=True):
        info = json.loads((p / "pretrain.json").read_text())["settings"]
        assert info["init"] == str(member) and info["image"] == mode
        assert info["steps"] == 2 and info["hard_negatives"] == 1.0 and info["relation_mirror"] == 1.0
        before = load_file(member / "open_clip_model.safetensors")
        after = load_file(p / "open_clip_model.safetensors")
        assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    again = subprocess.run(["bash", str(SCRIPT), str(out), "5"], env=env, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert again.returncode == 0 and again.stderr.count("near-miss polish: ") == 2
    assert "reward_polished exists, skipped" in again.stderr and "$ " not in again.stderr
    time.sleep(1.1)  # file times: the reward model made again is newer than its polish
    (out / "reward_model" / "open_clip_config.json").touch()
    (out / "grpo.yaml").unlink()
    third = subprocess.run(["bash", str(SCRIPT), str(out), "5"], env=env, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert third.returncode == 0, third.stderr[-3000:]
    assert (out / "done" / "polish").stat().st_mtime >= (out / "done" / "polish_0").stat().st_mtime
    assert f"{polished[0]} polished an older" in third.stderr
    assert "reward_polished_1 exists, skipped" in third.stderr


def test_the_round_script_checks_its_arguments(tmp_path: Path) -> None:
    """human_loop_round.sh refuses, before writing anything, a PREV that is not a finished loop, a
    bad budget, a POLICY that is no model, OUT equal to PREV, and a later round without its chain
    files (it would be taken for a first round)."""
    prev = tmp_path / "prev"
    env = {**os.environ, "PYTHON": sys.executable}

    def go(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(ROUND), *argv], env=env, capture_output=True, text=True, timeout=60
        )

    assert go().returncode == 2 and "usage:" in go().stderr
    done = go(str(prev), str(tmp_path / "o"), "5")
    assert done.returncode == 2 and "no first round" in done.stderr
    (prev / "data").mkdir(parents=True)
    (prev / "annotation.db").write_text("")
    (prev / "prompts.txt").write_text("a red circle\n")
    done = go(str(prev), str(tmp_path / "o"), "5")
    assert done.returncode == 2 and "has no reward_model/README.md" in done.stderr
    (prev / "reward_model").mkdir()
    (prev / "reward_model" / "README.md").write_text("card")
    done = go(str(prev), str(tmp_path / "o"), "x")
    assert done.returncode == 2 and "RANKINGS must be a whole number" in done.stderr
    done = go(str(prev), str(tmp_path / "o"), "5")  # no PREV/grpo/final to sample from
    assert done.returncode == 2 and "no model at" in done.stderr
    sft = str(ROOT / "assets" / "models" / "shapes-janus-full")
    done = go(str(prev), str(prev), "5", sft)
    assert done.returncode == 2 and "OUT must differ from PREV" in done.stderr
    # a later round without the chain files (made before rounds wrote them) is not taken for a first
    (prev / "annotation.db").unlink()
    with sqlite3.connect(prev / "annotation.db") as con:
        con.execute("CREATE TABLE studies (id INTEGER PRIMARY KEY, name TEXT)")
        con.executemany("INSERT INTO studies (name) VALUES (?)",
                        [("human-loop",), ("human-loop-ceiling",), ("human-loop-r2",)])  # fmt: skip
    done = go(str(prev), str(tmp_path / "o"), "5", sft)
    assert done.returncode == 2 and "looks like a later round" in done.stderr
    assert "(human-loop-r2)" in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def first_round(tmp_path_factory) -> tuple[Path, list[str], dict[str, str], subprocess.CompletedProcess]:
    """The loop at its smallest (see the test below): OUT, argv, env and the finished run."""
    tmp_path = tmp_path_factory.mktemp("hl")
    out = tmp_path / "loop"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "RM_PRETRAIN_STEPS": "2",
        "RM_PRETRAIN_FLAGS": "--batch 8 --warmup_steps 0 --save_every 0 --torch_threads 1 --log_every 0",
        "RM_FLAGS": "--steps 2 --batch_rankings 4 --warmup_steps 0 --n_boot 10 --torch_threads 1 "
        "--log_every 0",
        "MONITOR_N": "4",
        "EVAL_FLAGS": "--suites compositional",
        "CONTROLS": "2",
        "CONTROL_RATE": "0.3",
        "CEILING_PROMPTS": "3",
        "CEILING_RANKS": "2",
        "CEILING_CONTROLS": "0",
    }
    argv = ["bash", str(SCRIPT), str(out), "10", "assets/models/shapes-janus-full", "",
            "--max_steps", "1", "--group_size", "2", "--prompts_per_step", "2", "--max_cot_tokens", "48",
            "--num_shapes_prompts", "10", "--save_every", "1", "--progress", "false"]  # fmt: skip
    t0 = time.time()
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    print(f"human_loop.sh smoke run: {time.time() - t0:.0f} s")
    return out, argv, env, done


@pytest.mark.slow
def test_human_loop_runs_every_step_and_resumes(first_round) -> None:
    """10 rankings (one per annotator of the panel), a 2-step pre-training and a 2-step reward
    model, one GRPO step, the compositional suite's benchmark and validation (~3 min on 2 cores)."""
    out, argv, env, done = first_round
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # 1. prompts: 10 distinct training texts, none of the benchmark's
    prompts = (out / "prompts.txt").read_text().splitlines()
    assert len(set(prompts)) == 10
    assert not set(prompts) & benchmark_texts(600, 125, ("geneval", "compositional"))

    # 2-3. the study in OUT's database: 10 rankings in all (the budget), by simulated annotators,
    # regular tasks ranked once each, two verified control tasks served among them
    from annotation.simulate import control_task_count
    from annotation.stats import control_results
    from annotation.store import Store
    from annotation.tables import rankings_frame

    with Store(f"sqlite:///{out / 'annotation.db'}", out / "data", migrate=False) as st:
        frame = rankings_frame(st, "human-loop")
        assert control_task_count(st, "human-loop") == 2
    assert frame["ranking_id"].nunique() == 10
    regular = frame[~frame["is_control"].astype(bool)]
    assert regular.groupby("task_id")["ranking_id"].nunique().eq(1).all()
    assert frame["annotator_simulated"].astype(bool).all()
    assert frame.groupby("ranking_id")["candidate_id"].count().eq(4).all()
    profiles = {a.split("-")[1] for a in frame["annotator"]}
    assert profiles == {"careful", "noisy", "spammer"}
    excluded = set(control_results(frame).query("excluded")["annotator"])
    assert not any(a.startswith("sim-careful") for a in excluded)  # careful annotators pass controls
    kept = regular[~regular["annotator"].isin(excluded)]

    # 3b. the ceiling study: other prompts, each task ranked twice (by two annotators), no control
    ceiling_prompts = (out / "ceiling_prompts.txt").read_text().splitlines()
    assert len(set(ceiling_prompts)) == 3 and not set(ceiling_prompts) & set(prompts)
    with Store(f"sqlite:///{out / 'annotation.db'}", out / "data", migrate=False) as st:
        cframe = rankings_frame(st, "human-loop-ceiling")
    assert not cframe["is_control"].astype(bool).any()
    per_task = cframe.groupby("task_id")["annotator"].nunique()
    assert len(per_task) == 3 and per_task.eq(2).all()
    assert cframe["annotator_simulated"].astype(bool).all()

    # 4-5. the reward model folder with its card, trained on those simulated rankings
    rm = out / "reward_model"
    assert (rm / "open_clip_config.json").is_file() and (rm / "open_clip_model.safetensors").is_file()
    assert "simulated" in (rm / "README.md").read_text()
    assert "there is no ceiling here" in (rm / "README.md").read_text()  # one ranking per task
    metrics = json.loads((rm / "metrics.json").read_text())
    n_kept = kept["ranking_id"].nunique()
    assert metrics["data"]["rankings"] == n_kept and metrics["data"]["rankings_simulated"] == n_kept
    assert metrics["data"]["excluded_annotators"] == sorted(excluded)
    assert metrics["init"] and (out / "reward_pretrain" / "open_clip_config.json").is_file()

    # 5b. the learned reward beside the panel's ceiling and the exact reward, on the ceiling study
    import pandas as pd

    agreement = pd.read_csv(out / "ceiling" / "agreement.csv")
    assert {"learned", "shapes"} <= set(agreement["predictor"])
    assert agreement["predictor"].str.contains("ceiling").any()
    learned = agreement[agreement["predictor"] == "learned"].iloc[0]
    assert 0.0 <= learned["accuracy"] <= 1.0

    # 6-7. GRPO on the learned reward, the shapes reward monitored
    import yaml

    cfg = yaml.safe_load((out / "grpo.yaml").read_text())
    assert cfg["rewards"] == ["learned"] and cfg["monitor_rewards"] == ["shapes"]
    assert cfg["adv_eps"] == 1.0 and cfg["kl_coef"] == 0.04  # the learned reward's settings
    assert cfg["text_kl_scale"] == 1.0 and cfg["ptx_coef"] == 0.0
    assert cfg["reward_options"] == {"learned": {"model": str(rm)}}
    grpo = out / "grpo"
    assert (grpo / "checkpoint-1" / "trainer_state" / "extra.pt").is_file()
    assert (grpo / "final" / "config.json").is_file()
    records = [json.loads(line) for line in (grpo / "monitor.jsonl").read_text().splitlines()]
    assert records[0]["kind"] == "setup" and records[0]["rewards"] == ["learned"]
    rollouts = [r for r in records if r["kind"] == "rollouts"]
    assert rollouts and all(0.0 <= r["monitor/shapes"] <= 1.0 for r in rollouts)
    assert any(r["kind"] == "heldout" and "monitor_heldout/shapes" in r for r in records)

    # 8. the evaluation of the SFT model and the run
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert summary["chosen"] == "grpo" and summary["suites"] == ["compositional"]
    assert [r["info"]["run"] for r in summary["runs"]] == ["baseline", "grpo"]

    # a second call finds every output and skips every step
    again = subprocess.run(argv, cwd=out.parent, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count(", skipped") == 10 and "$ " not in again.stderr  # nothing ran


@pytest.mark.slow
def test_a_second_round_ranks_the_policys_samples_and_pools_both_rounds(first_round, tmp_path: Path) -> None:
    """human_loop_round.sh on the finished smoke loop, to its reward model (UNTIL=5): new prompts,
    a study of the first round's GRPO policy's candidates in a copy of the database, the reward
    model fine-tuned from the first round's on both studies' rankings, scored on the first round's
    ceiling study; the first round's folder is left as it was."""
    prev, _, env, first = first_round
    assert first.returncode == 0, first.stderr[-3000:]
    from annotation.store import Store
    from annotation.tables import candidates_frame, rankings_frame

    def state(folder: Path) -> tuple[int, int, list[str]]:
        with Store(f"sqlite:///{folder / 'annotation.db'}", folder / "data", migrate=False) as st:
            names = [x.name for x in st.list_studies()]
            return (
                rankings_frame(st, "human-loop")["ranking_id"].nunique(),
                len(list((folder / "data").rglob("*.png"))),
                names,
            )

    before = state(prev)
    out = tmp_path / "r2"
    argv = ["bash", str(ROUND), str(prev), str(out), "6"]
    env = {k: v for k, v in env.items() if not k.startswith("RM_PRETRAIN")}  # the round's default: none
    done = subprocess.run(
        argv, cwd=tmp_path, env={**env, "UNTIL": "5"}, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert state(prev) == before  # the first round is only read

    prompts = (out / "prompts.txt").read_text().splitlines()
    taken = set((prev / "prompts.txt").read_text().splitlines()) | set(
        (prev / "ceiling_prompts.txt").read_text().splitlines()
    )
    assert len(set(prompts)) == 6 and not set(prompts) & taken
    assert not set(prompts) & benchmark_texts(600, 125, ("geneval", "compositional"))
    with Store(f"sqlite:///{out / 'annotation.db'}", out / "data", migrate=False) as st:
        assert [x.name for x in st.list_studies()] == [*before[2], "human-loop-r2"]
        cands = candidates_frame(st, "human-loop-r2")
        r2 = rankings_frame(st, "human-loop-r2")
    assert set(cands["system"]) == {f"{prev / 'grpo' / 'final'}:got-r1"}  # the policy's samples
    assert r2["annotator_simulated"].astype(bool).all() and r2["ranking_id"].nunique() == 6
    assert not (out / "ceiling_prompts.txt").exists()  # the first round's ceiling study is reused

    metrics = json.loads((out / "reward_model" / "metrics.json").read_text())
    assert str(prev / "reward_model") in metrics["init"]  # fine-tuned from the first round's
    assert "'human-loop-r2'" in metrics["source"] and "'human-loop'" in metrics["source"]
    n1 = json.loads((prev / "reward_model" / "metrics.json").read_text())["data"]["rankings"]
    assert n1 < metrics["data"]["rankings"] <= n1 + 6  # both rounds' rankings (less failed controls)
    import pandas as pd

    agreement = pd.read_csv(out / "ceiling" / "agreement.csv")
    assert "learned" in set(agreement["predictor"])
    assert "stopped after step 5 (UNTIL=5)" in done.stderr
    assert (out / "studies.txt").read_text().splitlines() == ["human-loop-r2", "human-loop"]
    assert (out / "ceiling_study.txt").read_text().strip() == "human-loop-ceiling"

    # rounds chain: a third round from the second takes the next study name, pools every earlier
    # study, keeps the first round's ceiling study and draws prompts none of the earlier rounds used
    r3 = tmp_path / "r3"
    third = subprocess.run(
        ["bash", str(ROUND), str(out), str(r3), "5", str(prev / "grpo" / "final")],
        cwd=tmp_path, env={**env, "UNTIL": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr[-3000:]
    assert "study human-loop-r3; reward model pools human-loop-r2 human-loop; ceiling study " \
        "human-loop-ceiling" in third.stderr  # fmt: skip
    assert (r3 / "studies.txt").read_text().splitlines() == ["human-loop-r3", "human-loop-r2", "human-loop"]
    r3_prompts = (r3 / "prompts.txt").read_text().splitlines()
    assert len(set(r3_prompts)) == 5 and not set(r3_prompts) & (taken | set(prompts))
    assert set((r3 / "earlier_prompts.txt").read_text().splitlines()) == taken | set(prompts)
