"""``python -m reasongen.rewards score``: folders, prompt files, tables, JSON, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reasongen.rewards.cli import main
from reasongen.shapes import render_scene, sample_scenes, write_cot

HPS_SMALL = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    scenes = sample_scenes(3, seed=5)
    with open(d / "metadata.jsonl", "w") as f:
        for i, s in enumerate(scenes):
            render_scene(s).save(d / f"{i}.png")
            rec = {"file_name": f"{i}.png", "prompt": s.prompt, "metadata": s.metadata,
                   "cot_text": write_cot(s), "recipe": "got-r1"}  # fmt: skip
            f.write(json.dumps(rec) + "\n")
    return d, scenes


def _rows(text):
    return [line.split() for line in text.strip().splitlines()[2:]]


def test_table_per_image_with_metadata_jsonl(folder, capsys):
    d, _ = folder
    assert main(["score", "--rewards", "shapes", "--images", str(d), "--combine", "weighted_sum"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["image", "prompt", "shapes", "combined"]
    rows = _rows(out)
    assert [r[0] for r in rows] == ["0.png", "1.png", "2.png"]
    for r in rows:
        assert float(r[-2]) > 0.95 and r[-1] == r[-2]


def test_json_lines_carry_details(folder, capsys):
    d, scenes = folder
    assert main(["score", "--rewards", "shapes", "--images", str(d), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["prompt"] for x in lines] == [s.prompt for s in scenes]
    assert lines[0]["shapes"]["details"]["parts"]["prompt"] == 1.0


def test_text_prompt_file_and_hps_options(folder, tmp_path, tiny_hps_ckpt, capsys):
    d, scenes = folder
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(s.prompt for s in scenes) + "\n")
    args = ["score", "--rewards", "shapes,hps", "--images", str(d), "--prompts", str(prompts),
            "--set", f"hps.model={tiny_hps_ckpt}",
            "--set", f"hps.arch_config={json.dumps(HPS_SMALL)}"]  # fmt: skip
    assert main(args) == 0
    rows = _rows(capsys.readouterr().out)
    assert all(r[-2] == "-" for r in rows)  # text prompts carry no metadata: shapes n/a
    assert all(-1.0 <= float(r[-1]) <= 1.0 for r in rows)


def test_missing_weights_still_print_the_other_rewards(folder, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d, _ = folder
    rc = main(["score", "--rewards", "shapes,hps", "--images", str(d), "--set", "hps.model=/no/such.pt"])
    out, err = capsys.readouterr()
    assert rc == 3 and "hps: could not load the HPS v2.1 checkpoint from '/no/such.pt'" in err
    assert all(r[-1] == "-" and float(r[-2]) > 0.9 for r in _rows(out))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rewards", "nope"], "unknown reward 'nope'"),
        (["--rewards", "shapes", "--set", "hps.model=x"], "--set given for rewards not requested: hps"),
        (["--rewards", "shapes", "--set", "shapes"], "REWARD.OPTION=VALUE"),
        (["--rewards", "shapes", "--combine", "product", "--weights", "hps"], "NAME=NUMBER"),
        (["--rewards", "shapes", "--prompts", "/no/such.txt"], "does not exist"),
    ],
)
def test_bad_input_is_a_clear_error(folder, capsys, args, message):
    d, _ = folder
    assert main(["score", "--images", str(d), *args]) == 2
    assert message in capsys.readouterr().err


def test_prompt_count_mismatch_and_empty_folder(folder, tmp_path, capsys):
    d, _ = folder
    p = tmp_path / "p.txt"
    p.write_text("only one\n")
    assert main(["score", "--rewards", "shapes", "--images", str(d), "--prompts", str(p)]) == 2
    assert "1 prompts for 3 images" in capsys.readouterr().err
    assert main(["score", "--rewards", "shapes", "--images", str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err


def test_module_entry_point_lists_rewards():
    out = subprocess.run(
        [sys.executable, "-m", "reasongen.rewards", "list"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert {"hps", "gdino", "shapes", "got_judge"} <= set(out.stdout.split())
