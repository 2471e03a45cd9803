"""The shapes benchmark: prompt set, evaluation loop, summary, outputs and the CLI."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from reasongen.eval import (
    BenchPrompt,
    ImageResult,
    benchmark_prompts,
    blank_generator,
    contact_sheet,
    evaluate_shapes,
    format_table,
    oracle_generator,
    summarize,
    write_outputs,
)
from reasongen.eval.cli import main
from reasongen.plans import parse_plan
from reasongen.shapes import render_scene
from reasongen.shapes.cot import write_cot
from reasongen.types import CATEGORIES, Sample, SamplingSettings


def test_prompt_set_is_balanced_and_fixed():
    a = benchmark_prompts(24, seed=0)
    assert [p.category for p in a[:6]] == list(CATEGORIES)
    assert all(sum(p.category == c for p in a) == 4 for c in CATEGORIES)
    assert [p.prompt for p in a] == [p.prompt for p in benchmark_prompts(24, seed=0)]
    assert [p.prompt for p in a] != [p.prompt for p in benchmark_prompts(24, seed=1)]
    assert [p.index for p in a] == list(range(24))
    assert all(p.metadata["tag"] == p.category for p in a)
    with pytest.raises(ValueError, match="at least one prompt"):
        benchmark_prompts(0)


@pytest.mark.parametrize("suite", ["geneval", "compositional"])
def test_validation_set_leaves_out_the_benchmark_texts_and_keeps_the_balance(suite: str) -> None:
    bench = {p.prompt for p in benchmark_prompts(120, seed=0, cell=125, suite=suite)}
    plain = benchmark_prompts(60, seed=1, cell=125, suite=suite)
    val = benchmark_prompts(60, seed=1, cell=125, suite=suite, exclude_benchmark=120)
    assert not bench & {p.prompt for p in val}
    assert [p.category for p in val] == [p.category for p in plain]
    assert [p.index for p in val] == list(range(60))
    for cat in {p.category for p in plain}:  # seed 1's own prompts come first, in their order
        kept = [p.prompt for p in plain if p.category == cat and p.prompt not in bench]
        assert [p.prompt for p in val if p.category == cat][: len(kept)] == kept
    with pytest.raises(ValueError, match="exclude_benchmark"):
        benchmark_prompts(6, seed=1, exclude_benchmark=-1)


def test_cell_aligned_prompt_set_asks_for_no_texture():
    prompts = benchmark_prompts(60, seed=0, cell=125)
    assert all("texture" not in e for p in prompts for e in p.metadata["include"])
    assert all(o.box.x1 % 125 == 0 and o.texture is None for p in prompts for o in p.scene.objects)
    assert [p.prompt for p in prompts] != [p.prompt for p in benchmark_prompts(60, seed=0)]


def test_ground_truth_renders_score_one_and_blank_images_zero():
    prompts = benchmark_prompts(36, seed=5)
    truth = summarize(evaluate_shapes(oracle_generator(), prompts, chunk=5))
    assert truth["overall"] >= 0.97
    assert set(truth["categories"]) == set(CATEGORIES)
    assert all(c["images"] == 6 and c["prompts"] == 6 for c in truth["counts"].values())
    blank_results = evaluate_shapes(blank_generator(), prompts)
    blank = summarize(blank_results)
    assert blank["overall"] == 0.0 and blank["overall_images"] == 0.0
    assert all(r.reasons and r.detections == [] for r in blank_results)


def _result(cat: str, correct: bool, index: int = 0) -> ImageResult:
    return ImageResult(index, 0, cat, "p", {}, correct, [], int(correct), 1, [])


def test_overall_is_the_mean_of_category_accuracies():
    results = [_result("counting", True, i) for i in range(3)]
    results += [_result("position", False, 10)]
    s = summarize(results)
    assert s["categories"] == {"counting": 1.0, "position": 0.0}
    assert s["overall"] == pytest.approx(0.5)
    assert s["overall_images"] == pytest.approx(0.75)
    table = format_table(s)
    assert "counting" in table and "0.500" in table and "0.750" in table
    with pytest.raises(ValueError):
        summarize([])


def _sample(item: BenchPrompt, image: Image.Image, cot: str, recipe: str = "got-r1") -> Sample:
    return Sample(prompt=item.prompt, recipe=recipe, model_id="fake", seed=0,
                  settings=SamplingSettings(), prompt_ids=[1], cot_text=cot, cot_token_ids=[],
                  cot_logprobs=[], cot_end="boi", prefix_ids=[1], image_token_ids=[],
                  image_logprobs=[], plan=parse_plan(cot), image=image)  # fmt: skip


def test_samples_with_plans_get_plan_scores():
    prompts = benchmark_prompts(12, seed=3)

    def faithful(items):
        return [[_sample(it, render_scene(it.scene), write_cot(it.scene))] for it in items]

    results = evaluate_shapes(faithful, prompts)
    assert all(r.plan_faithful and r.plan_iou > 0.8 and r.cot for r in results)
    s = summarize(results)
    assert s["plan"]["faithfulness"] == 1.0 and s["plan"]["images"] == 12

    def planless(items):  # a plan recipe whose CoT has no boxes, over blank images
        blank = Image.new("RGB", (128, 128), "white")
        return [[_sample(it, blank, "I will draw it.")] for it in items]

    bad = summarize(evaluate_shapes(planless, prompts))
    assert bad["plan"]["faithfulness"] == 0.0 and bad["plan"]["iou"] == 0.0
    direct = evaluate_shapes(lambda items: [[_sample(it, render_scene(it.scene), "", "direct")]
                                            for it in items], prompts[:3])  # fmt: skip
    assert all(r.plan_faithful is None for r in direct)
    assert "plan" not in summarize(direct)


def test_layout_mode_share_tells_varied_plans_from_one_collapsed_layout():
    prompts = [p for p in benchmark_prompts(24, seed=3) if p.category == "single_object"]
    assert len(prompts) == 4

    def faithful(items):  # the world's own plans: the object where the scene put it
        return [[_sample(it, render_scene(it.scene), write_cot(it.scene))] for it in items]

    varied = summarize(evaluate_shapes(faithful, prompts))["plan"]
    assert varied["layout_mode_share_categories"] == {"single_object": 0.25}  # four prompts, four boxes

    def corner(items):  # every plan in the same corner box, as a collapsed GRPO model writes
        def plan(it):
            label = it.metadata["include"][0]["class"]
            return f"<|obj_start|>{label}<|obj_end|><|box_start|>(0,750),(250,1000)<|box_end|>"

        return [[_sample(it, render_scene(it.scene), plan(it))] for it in items]

    collapsed = summarize(evaluate_shapes(corner, prompts))["plan"]
    assert collapsed["layout_mode_share"] == 1.0
    assert "most common layout" in format_table(summarize(evaluate_shapes(corner, prompts)))


def test_misbehaving_generators_raise_clear_errors():
    prompts = benchmark_prompts(4)
    with pytest.raises(ValueError, match="one list of images per prompt"):
        evaluate_shapes(lambda items: [], prompts)
    with pytest.raises(ValueError, match="expected a PIL image"):
        evaluate_shapes(lambda items: [["not an image"] for _ in items], prompts)
    with pytest.raises(ValueError, match="no image"):
        evaluate_shapes(lambda items: [[] for _ in items], prompts)


def test_outputs_and_contact_sheet(tmp_path):
    prompts = benchmark_prompts(18, seed=2)
    results = evaluate_shapes(oracle_generator(), prompts[:9]) + evaluate_shapes(
        blank_generator(), prompts[9:]
    )
    sheet = contact_sheet(results, max_images=12, columns=4, cell=96)
    assert sheet.size[0] == 4 * 96 and sheet.size[1] > 3 * 96
    paths = write_outputs(tmp_path / "run", results, {"overall": 0.5})
    report = json.loads(paths["report"].read_text())
    assert report["overall"] == 0.5 and report["files"]["contact_sheet"] == "contact_sheet.png"
    lines = [json.loads(x) for x in paths["results"].read_text().splitlines()]
    assert len(lines) == 18 and {x["correct"] for x in lines} == {True, False}
    assert all((tmp_path / "run" / x["image_file"]).is_file() for x in lines)
    assert Image.open(paths["contact_sheet"]).size[0] > 0


@pytest.mark.parametrize(
    "layout",
    [["--cell", "0"], ["--image-size", "64"]],
    ids=["free", "cell-default"],
)
def test_cli_oracle_run_writes_report(tmp_path, capsys, layout):
    out = tmp_path / "bench"
    assert main(["shapes", "--oracle", "--n", "12", "--out", str(out), *layout]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["layout"] == ("free" if layout[0] == "--cell" else "cell 125")
    side = 128 if report["layout"] == "free" else 64
    assert Image.open(out / "images" / "0000_0.png").size == (side, side)
    assert report["overall"] >= 0.9 and set(report["categories"]) == set(CATEGORIES)
    assert report["n_prompts"] == 12 and report["n_images"] == 12
    assert report["recipe"] == "oracle" and report["prompt_seed"] == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 12
    assert (out / "contact_sheet.png").is_file() and len(list((out / "images").iterdir())) == 12
    printed = capsys.readouterr().out
    assert "overall (mean of categories)" in printed and "color_attr" in printed


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["shapes", "--oracle", "--n", "0", "--out", str(tmp_path)]) == 2
    assert "--n" in capsys.readouterr().err
    assert main(["shapes", "--oracle", "--cell", "7", "--out", str(tmp_path)]) == 2
    assert "--cell" in capsys.readouterr().err
    assert main(["shapes", "--recipe", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown --recipe" in capsys.readouterr().err
    assert main(["shapes", "--n", "2", "--model", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()


def test_cli_with_a_tiny_random_model(tmp_path):
    from reasongen.tiny import save_tiny

    model_dir = save_tiny(tmp_path / "tiny")
    out = tmp_path / "bench"
    argv = ["shapes", "--model", str(model_dir), "--n", "6", "--batch", "2", "--recipe", "got-r1",
            "--cell", "0", "--max-cot-tokens", "6", "--seed", "3", "--threads", "1",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_images"] == 12 and report["samples_per_prompt"] == 2
    assert report["recipe"] == "got-r1" and report["model"] == str(model_dir)
    assert report["settings"]["max_cot_tokens"] == 6 and report["settings"]["num_image_tokens"] == 16
    assert 0.0 <= report["overall"] <= 1.0 and "plan" in report
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["image_index"] for r in rows[:2]] == [0, 1]
    assert all(r["cot"] is not None and r["plan"] is not None for r in rows)


def test_cli_yaml_config_with_flag_overrides(tmp_path, capsys):
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(f"oracle: true\nn: 9\ncell: 0\nprompt_seed: 4\nout: {tmp_path / 'from_yaml'}\n")
    assert main(["shapes", "--config", str(cfg), "--n", "6"]) == 0
    report = json.loads((tmp_path / "from_yaml" / "report.json").read_text())
    assert report["n_prompts"] == 6 and report["prompt_seed"] == 4  # flag wins, YAML fills in
    bad = tmp_path / "bad.yaml"
    bad.write_text("oracle: true\nprompts: 3\n")
    assert main(["shapes", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "unknown setting(s)" in capsys.readouterr().err
    assert main(["shapes", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path)]) == 2


def test_samples_with_a_cot_are_scored_for_description_faithfulness():
    """The world's own CoT names its prompt; one that names another shape does not, and the
    summary and table report the share."""
    prompts = benchmark_prompts(12, seed=2, cell=125)
    truth = oracle_generator()

    def gen(items):
        out = []
        for it, images in zip(items, truth(items)):
            cot = write_cot(it.scene)
            if it.index % 2:  # odd prompts: the description names another shape
                cls = it.metadata["include"][0]["class"]
                other = "diamond" if cls != "diamond" else "circle"
                desc, plan = cot.split("\n", 1)
                cot = desc.replace(cls, other).replace(cls[:-1], other) + "\n" + plan
            out.append([_sample(it, images[0], cot)])
        return out

    results = evaluate_shapes(gen, prompts)
    assert [r.cot_faithful for r in results] == [i % 2 == 0 for i in range(12)]
    summary = summarize(results)
    # another shape's name leaves the places as the plan's
    assert summary["description"] == {"images": 12, "faithfulness": 0.5, "places": 1.0}
    assert "description faithfulness" in format_table(summary)
    assert results[1].to_dict()["cot_faithful"] is False


def test_samples_with_a_cot_and_a_plan_are_scored_for_description_places():
    """A description that names each box's place agrees with its plan; one whose places moved
    (every place word said as another) does not, though it names the right objects."""
    prompts = benchmark_prompts(12, seed=2, cell=125)
    truth = oracle_generator()
    swap = {"top": "bottom", "bottom": "top", "left": "right", "right": "left", "center": "top"}

    def gen(items):
        out = []
        for it, images in zip(items, truth(items)):
            cot = write_cot(it.scene)
            if it.index % 3 == 0:  # every third prompt: the description's places moved
                desc, plan = cot.split("\n", 1)
                desc = re.sub(r"\b(top|bottom|left|right|center)\b", lambda m: swap[m.group(1)], desc)
                cot = desc + "\n" + plan
            out.append([_sample(it, images[0], cot)])
        return out

    results = evaluate_shapes(gen, prompts)
    assert [r.cot_places for r in results] == [i % 3 != 0 for i in range(12)]
    assert all(r.cot_faithful for r in results)  # the objects are still named
    summary = summarize(results)
    assert summary["description"]["places"] == 8 / 12
    assert "description places = plan" in format_table(summary)
    assert results[0].to_dict()["cot_places"] is False
