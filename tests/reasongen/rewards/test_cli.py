"""``python -m reasongen.rewards score``: folders, prompt files, tables, JSON, errors."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import pytest
from PIL import Image

from reasongen.rewards import Reward, RewardOutput, registry
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


# --------------------------------------------------------------------------- hostile input


def _good_folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    render_scene(sample_scenes(1, seed=3)[0]).save(d / "good.png")
    return d


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "a.png (an empty file)"),
        (lambda p: p.write_bytes(_png_bytes()[:60]), "a.png ("),
        (lambda p: p.write_bytes(b"GIF89a not really" * 20), "a.png (cannot identify image file"),
        (lambda p: p.mkdir(), "a.png (a folder)"),
    ],
    ids=["zero-byte", "truncated", "corrupt", "folder"],
)
def test_unreadable_image_is_a_one_line_error(tmp_path, capsys, make, message):
    d = _good_folder(tmp_path)
    make(d / "a.png")
    assert main(["score", "--rewards", "shapes", "--images", str(d)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("error: cannot read 1 image(s)") and message in err


def test_unreadable_image_through_the_module_has_no_traceback(tmp_path):
    d = _good_folder(tmp_path)
    (d / "a.png").write_bytes(_png_bytes()[: len(_png_bytes()) // 2])
    res = subprocess.run(
        [sys.executable, "-m", "reasongen.rewards", "score", "--rewards", "shapes", "--images", str(d)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "a.png (image file is truncated)" in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rewards", "shapes", "--weights", "shapes=2"], "--weights only weighs a combination"),
        (["--rewards", "shapes", "--combine", "weighted_sum", "--weights", "hps=2"], "not requested: hps"),
        (["--rewards", "shapes", "--combine", "weighted_sum", "--weights", "shapes=nan"], "finite"),
        (["--rewards", "shapes,shapes"], "--rewards names shapes more than once"),
        (
            ["--rewards", "shapes", "--set", "shapes.graded=maybe"],
            "ShapesConfig.graded expects bool, got 'maybe'",
        ),
        (["--rewards", "shapes", "--set", "shapes.position_threshold=true"], "expects float, got True"),
    ],
)
def test_bad_options_are_one_line_errors(folder, capsys, args, message):
    d, _ = folder
    assert main(["score", "--images", str(d), *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message in err


def test_jsonl_line_that_is_not_an_object(tmp_path, capsys):
    d = _good_folder(tmp_path)
    (d / "metadata.jsonl").write_text(json.dumps({"file_name": "good.png", "prompt": "x"}) + "\n[1, 2]\n")
    assert main(["score", "--rewards", "shapes", "--images", str(d)]) == 2
    assert "metadata.jsonl:2: a record is a JSON object, got a list" in capsys.readouterr().err


class NanReward(Reward):
    """Scores NaN and infinity, with NaN in its details too."""

    name = "nanny"

    def score(self, samples, metas):
        vals = [math.nan, math.inf][: len(samples)] + [1.0] * max(0, len(samples) - 2)
        return RewardOutput(self.name, vals, [{"raw": v, "parts": [v, 0.5]} for v in vals])


def test_json_output_writes_null_for_non_finite_scores(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, "nanny", f"{__name__}:NanReward")
    d = _good_folder(tmp_path)
    render_scene(sample_scenes(1, seed=4)[0]).save(d / "other.png")
    assert main(["score", "--rewards", "nanny", "--images", str(d), "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c}")) for line in out.splitlines()]
    assert [r["nanny"]["score"] for r in rows] == [None, None]
    assert rows[0]["nanny"]["details"] == {"raw": None, "parts": [None, 0.5]}


def test_t2i_r1_data_fields_in_a_prompts_file_are_read_as_metadata(tmp_path):
    from reasongen.rewards.cli import _records

    Image.new("RGB", (32, 32), "white").save(tmp_path / "a.png")
    rec = {"file_name": "a.png", "prompt": "a photo of two cats", "nouns": ["cat"],
           "numeracy_info": [{"obj_name": "cat", "num": 2}], "task_type": "numeracy"}  # fmt: skip
    (tmp_path / "p.jsonl").write_text(json.dumps(rec) + "\n")
    meta = _records(tmp_path, tmp_path / "p.jsonl", [tmp_path / "a.png"])["a.png"]["metadata"]
    assert meta["tag"] == "counting" and meta["include"] == [{"class": "cat", "count": 2}]
    assert meta["t2i_r1"]["task_type"] == "numeracy"
