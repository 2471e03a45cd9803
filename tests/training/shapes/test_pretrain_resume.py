"""Pre-training across sessions: stage checkpoints, exact resumes of the LM and the VQ decoder,
session and budget stops, and a whole tiny run paused, killed and resumed to the same weights."""

from __future__ import annotations

import json
import shlex
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import JanusForConditionalGeneration, JanusVQVAE

from reasongen.shapes import sample_scenes
from reasongen.shapes.codes import CELL, EMBED_DIM, NUM_CODES
from training.shapes.data import build_tokenizer, encode_texts, lm_codes
from training.shapes.lm import shapes_config, train_lm
from training.shapes.pretrain import (
    CHECKPOINTS,
    PAUSED_EXIT,
    PretrainShapesConfig,
    command_line,
    fingerprint,
    main,
    parse_args,
    run,
)
from training.shapes.stage_state import STOP_BUDGET, STOP_SESSION, STOP_STEPS, StageCheckpoints
from training.shapes.vq import train_decoder

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def lm_data():
    scenes = sample_scenes(30, seed=2, cell=CELL)
    tok = build_tokenizer(scenes, vocab_size=320)
    return tok, encode_texts(scenes, tok, 0.3, seed=0), lm_codes(scenes)


def _model(tok) -> JanusForConditionalGeneration:
    torch.manual_seed(0)
    return JanusForConditionalGeneration(shapes_config(len(tok), 32, 1, 2, 64, 3, NUM_CODES, EMBED_DIM, 32))


def _train(lm_data, folder: Path, steps: int = 6, resume: bool = False, stop_at: float | None = None,
           max_seconds: float | None = None):  # fmt: skip
    tok, texts, codes = lm_data
    model = _model(tok)
    ckpt = StageCheckpoints(folder, every=2, fingerprint={"seed": 0}, keep=10)
    done = train_lm(model, texts, codes, tok.pad_token_id, steps, 4, 3e-3, 0.1, CPU, seed=6,
                    max_seconds=max_seconds, checkpoints=ckpt, resume=resume, stop_at=stop_at)  # fmt: skip
    return model, done


def _names(folder: Path) -> list[str]:
    return [p.name for p in StageCheckpoints(folder, 2, {}).existing()]


def test_stage_checkpoints_keep_the_newest_complete_ones_and_refuse_other_settings(tmp_path):
    ckpt = StageCheckpoints(tmp_path, every=2, fingerprint={"seed": 0, "lm_steps": 6}, keep=2)
    assert ckpt.latest() is None and [ckpt.due(k) for k in (1, 2, 3, 4)] == [False, True, False, True]
    for step in (2, 4, 6):
        ckpt.save(step, None, float(step), {"model": {"w": torch.full((2,), float(step))}, "record": [step]})
    assert _names(tmp_path) == ["checkpoint-4", "checkpoint-6"]
    # A process killed while saving leaves a folder without extra.pt: it is not a checkpoint.
    (tmp_path / "checkpoint-8" / "trainer_state").mkdir(parents=True)
    torch.save({"model": {}}, tmp_path / "checkpoint-8" / "trainer_state" / "state.pt")
    got = ckpt.latest()
    assert got["step"] == 6 and got["seconds"] == 6.0 and got["stop"] is None and got["record"] == [6]
    assert torch.equal(got["model"]["w"], torch.full((2,), 6.0))
    other = StageCheckpoints(tmp_path, every=2, fingerprint={"seed": 1, "lm_steps": 6})
    with pytest.raises(ValueError, match=r"other settings \(seed: 0 there, 1 now\)"):
        other.latest()
    with pytest.raises(ValueError, match="NaN or inf"):
        ckpt.save(10, None, 1.0, {"model": {"w": torch.tensor([float("nan")])}})
    assert _names(tmp_path) == ["checkpoint-4", "checkpoint-6"]
    with pytest.raises(ValueError, match="save_every"):
        StageCheckpoints(tmp_path, every=-1, fingerprint={})


def test_lm_resumed_from_a_checkpoint_trains_the_same_weights_and_curve(lm_data, tmp_path):
    whole, ran = _train(lm_data, tmp_path / "a")
    assert ran.steps == 6 and ran.stop == STOP_STEPS and ran.resumed_from == 0 and len(ran.record) == 6
    assert _names(tmp_path / "a") == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    # What a run killed after step 5 leaves: checkpoint-4 and a half-written checkpoint-6.
    shutil.copytree(tmp_path / "a" / "checkpoint-4", tmp_path / "b" / "checkpoint-4")
    (tmp_path / "b" / "checkpoint-6" / "trainer_state").mkdir(parents=True)
    resumed, again = _train(lm_data, tmp_path / "b", resume=True)
    assert again.resumed_from == 4 and again.steps == 6 and again.stop == STOP_STEPS
    assert again.record == ran.record
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    # A stage whose checkpoint says it is done trains no further step.
    done, noop = _train(lm_data, tmp_path / "a", resume=True)
    assert noop.resumed_from == 6 and noop.record == ran.record
    assert torch.equal(done.lm_head.weight, whole.lm_head.weight)


def test_session_stop_saves_and_leaves_the_schedule_as_it_was(lm_data, tmp_path):
    whole, ran = _train(lm_data, tmp_path / "a")
    _, first = _train(lm_data, tmp_path / "b", stop_at=time.time() - 1.0)  # the session is over at once
    assert first.steps == 1 and first.stop == STOP_SESSION
    assert _names(tmp_path / "b") == ["checkpoint-1"]
    saved = StageCheckpoints(tmp_path / "b", 2, {"seed": 0}).latest()
    assert saved["stop"] == STOP_SESSION and saved["step"] == 1
    resumed, rest = _train(lm_data, tmp_path / "b", resume=True)
    assert rest.resumed_from == 1 and rest.record == ran.record
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_budget_counts_earlier_sessions(lm_data, tmp_path):
    _train(lm_data, tmp_path, stop_at=time.time() - 1.0)
    ckpt = StageCheckpoints(tmp_path, 2, {"seed": 0})
    spent = ckpt.latest()["seconds"]
    assert spent > 0
    # A budget below the seconds already trained stops the resumed stage before any step.
    _, second = _train(lm_data, tmp_path, resume=True, max_seconds=spent / 2)
    assert second.stop == STOP_BUDGET and second.steps == 1 and second.resumed_from == 1


def test_vq_decoder_resumed_from_a_checkpoint_trains_the_same_weights(tmp_path):
    vq_config = shapes_config(300, 32, 1, 2, 64, 3, NUM_CODES, EMBED_DIM, 32).vq_config

    def decoder(folder: Path, resume: bool):
        torch.manual_seed(10)
        vq = JanusVQVAE(vq_config)
        ckpt = StageCheckpoints(folder, every=2, fingerprint={"seed": 0}, keep=10)
        return vq, train_decoder(vq, 64, 4, 2, 2e-3, 11, CPU, None, ckpt, resume)

    whole, ran = decoder(tmp_path / "a", False)
    assert ran.steps == 4 and len(ran.record) == 4
    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")
    resumed, again = decoder(tmp_path / "b", True)
    assert again.resumed_from == 2 and again.record == ran.record
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_command_line_round_trips_through_the_flags():
    cats = ["count_color", "count_color", "position"]
    cfg = PretrainShapesConfig(out="runs/x y", lm_steps=12, max_minutes=0.0, session_minutes=170.5,
                               categories=cats, resume=True)  # fmt: skip
    line = command_line(cfg)
    assert line.startswith("python -m training.shapes.pretrain --out 'runs/x y' ")
    assert "--resume" in line and "--max-minutes 0" in line and "--seed" not in line
    assert parse_args(shlex.split(line)[3:]) == cfg
    assert "--resume" not in command_line(cfg, resume=False)
    with pytest.raises(ValueError, match="save_every must be >= 0"):
        PretrainShapesConfig(save_every=-1)
    # Where and how long a session runs may change on resume; what shapes the weights may not.
    assert fingerprint(cfg) == fingerprint(PretrainShapesConfig(lm_steps=12, max_minutes=40,
                                                                categories=cfg.categories))  # fmt: skip
    assert fingerprint(cfg) != fingerprint(PretrainShapesConfig(lm_steps=13, categories=cfg.categories))


TINY = ["--vq-steps", "4", "--vq-batch", "2", "--text-scenes", "40", "--hidden", "32", "--layers", "1",
        "--heads", "2", "--lm-scenes", "30", "--lm-steps", "6", "--lm-batch", "4", "--eval-images", "4",
        "--vocab-size", "320", "--save-every", "2", "--max-minutes", "0"]  # fmt: skip
FILES = ("model.safetensors", "config.json", "generation_config.json", "processor_config.json",
         "tokenizer.json", "tokenizer_config.json")  # fmt: skip


@pytest.mark.slow
def test_a_paused_then_killed_run_resumes_to_the_uninterrupted_folder(tmp_path, capsys):
    """Session 1 ends by --session-minutes (no model, exit 75, the command to continue); session
    2 is killed after the LM's step 4 (modelled by its checkpoints on disk); session 3 resumes
    and writes byte for byte the folder of a run never stopped, then removes the checkpoints."""
    whole = tmp_path / "whole"  # never stopped; its checkpoints stand in for session 2's
    assert main(["--out", str(whole), *TINY, "--keep-checkpoints"]) == 0
    out = tmp_path / "paused"
    assert main(["--out", str(out), *TINY, "--session-minutes", "0.0001"]) == PAUSED_EXIT
    said = capsys.readouterr().out
    assert "--session-minutes 0.0001 ended this session" in said and not (out / "model.safetensors").exists()
    command = said.split("Continue with:\n")[1].splitlines()[0].strip()
    assert command == command_line(parse_args(["--out", str(out), *TINY, "--session-minutes", "0.0001"]),
                                   resume=True)  # fmt: skip
    assert _names(out / CHECKPOINTS / "lm") == ["checkpoint-1"]
    with pytest.raises(ValueError, match="pass --resume to continue it"):
        run(parse_args(["--out", str(out), *TINY]))
    # Session 2 did the LM's steps 2-4 and the decoder's step 2 before it was killed.
    lm_dir, vq_dir = out / CHECKPOINTS / "lm", out / CHECKPOINTS / "vq"
    shutil.rmtree(lm_dir), shutil.rmtree(vq_dir)
    shutil.copytree(whole / CHECKPOINTS / "lm" / "checkpoint-4", lm_dir / "checkpoint-4")
    shutil.copytree(whole / CHECKPOINTS / "vq" / "checkpoint-2", vq_dir / "checkpoint-2")
    stats = run(parse_args(["--out", str(out), *TINY, "--resume"]))
    assert stats["resumed"] == {"lm_from_step": 4, "vq_from_step": 2}
    assert stats["lm"]["steps"] == 6 and stats["vq"]["steps"] == 4
    for name in FILES:
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name
    first = json.loads((whole / "training_stats.json").read_text())
    assert stats["lm"]["final_text_loss"] == first["lm"]["final_text_loss"]
    assert stats["vq"]["final_loss"] == first["vq"]["final_loss"]
    assert not (out / CHECKPOINTS).exists()


@pytest.mark.slow
def test_a_run_stopped_by_max_minutes_writes_its_model_and_says_how_to_continue(tmp_path, capsys):
    args = ["--out", str(tmp_path / "m"), *TINY[:-2], "--max-minutes", "0.00001"]
    stats = run(parse_args(args))
    assert stats["lm"]["stop"] == STOP_BUDGET and stats["lm"]["steps"] == 1
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert _names(tmp_path / "m" / CHECKPOINTS / "lm") == ["checkpoint-1"]
    said = capsys.readouterr().out
    assert "--max-minutes 1e-05 stopped the LM at step 1 of 6" in said
    assert command_line(parse_args(args), resume=True, max_minutes=0.0) in said


def test_model_card_gives_the_full_command_and_says_when_a_run_was_resumed(tmp_path):
    from training.shapes.card import card

    shipped = Path(__file__).resolve().parents[3] / "assets" / "models" / "shapes-janus"
    if not (shipped / "training_stats.json").is_file():
        pytest.skip("shapes-janus is not shipped")
    stats = json.loads((shipped / "training_stats.json").read_text())
    text = card(shipped, {})
    # The shipped model's command reads as before (its stats predate the resume settings).
    assert ("`python -m training.shapes.pretrain --out assets/models/shapes-janus --seed 0 --vq-steps 1200 "
            "--lm-steps 3600 --max-minutes 40`") in text  # fmt: skip
    assert "`--resume`" in text and "This model was resumed" not in text
    shutil.copy(shipped / "config.json", tmp_path / "config.json")
    stats["config"].update(out="runs/full", language="full", resume=True, save_every=100)
    stats["resumed"] = {"lm_from_step": 400, "vq_from_step": 1200}
    (tmp_path / "training_stats.json").write_text(json.dumps(stats))
    text = card(tmp_path, {})
    # --out names the card's own folder under assets/models, not where the run wrote (runs/full)
    want = (f"`python -m training.shapes.pretrain --out assets/models/{tmp_path.name} --seed 0 "
            "--vq-steps 1200 --lm-steps 3600 --language full --max-minutes 40 --save-every 100`")  # fmt: skip
    assert want in text
    assert "runs/full" not in text
    assert "This model was resumed (LM from step 400, VQ decoder from step 1200)" in text
    assert "whole shapes language (`--language full`" in text and "GenEval's six categories in" not in text
    assert text.startswith(f"# {tmp_path.name}: an embedded model, supervised only")


def test_model_card_gives_each_suite_its_own_table(tmp_path):
    from training.shapes.card import _bench_table

    geneval = {"categories": {"counting": 0.7, "position": 0.8}, "overall": 0.75}
    comp = {"categories": {"two_counts": 0.3}, "overall": 0.3, "plan": {"images": 40, "faithfulness": 0.5,
                                                                        "iou": 0.6}}  # fmt: skip
    text = _bench_table({"got-r1": geneval, "direct": geneval, "compositional": comp})
    assert "| category | got-r1 | direct |" in text and "| category | compositional |" in text
    assert "| counting | 0.700 | 0.700 |" in text and "| two_counts | 0.300 |" in text
    assert "- `compositional`: plan faithfulness 0.500, plan–image IoU 0.600" in text
