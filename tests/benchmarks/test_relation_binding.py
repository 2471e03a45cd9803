"""``benchmarks/relation_binding.py``: the negatives it builds are false in the way they claim, the
CoCa it builds starts from finite weights (open_clip leaves the decoder's projection empty), and
a run trains, reports and resumes."""

from __future__ import annotations

import random

import pytest
import torch


@pytest.fixture(scope="module")
def rb(load_benchmark):
    return load_benchmark("relation_binding")


def test_swap_colours_exchanges_exactly_two_different_colours(rb) -> None:
    assert (
        rb.swap_colours("a photo of a red star and a yellow cross")
        == "a photo of a yellow star and a red cross"
    )
    assert rb.swap_colours("a red star") is None
    assert rb.swap_colours("a red star and a red cross") is None
    assert rb.swap_colours("a red star, a blue cross and a green circle") is None


@pytest.mark.parametrize("binding, category", [("relation", "position"), ("colour", "color_attr")])
def test_counterparts_are_false_of_the_scene_and_true_of_the_edited_objects(
    rb, binding: str, category: str
) -> None:
    """The false caption fails the scene's objects and the edited objects fail the caption (the
    detector's rules, via near_miss.satisfies); the edited objects satisfy the false caption."""
    from reasongen.shapes import sample_scene
    from reasongen.shapes.parse import parse_prompt
    from training.reward_model.near_miss import satisfies

    rng = random.Random(3)
    checked = 0
    for _ in range(20):
        scene = sample_scene(category, rng, None)
        text, objects = rb.counterparts(scene, binding)
        if text is None:
            continue
        checked += 1
        assert text != scene.prompt
        if binding == "colour":  # the same bag of words, bound otherwise
            assert sorted(text.split()) == sorted(scene.prompt.split())
        assert satisfies(scene.metadata, scene.objects)
        assert not satisfies(parse_prompt(text), scene.objects)
        assert not satisfies(scene.metadata, objects)
        assert satisfies(parse_prompt(text), objects)
    assert checked >= 10


def test_the_coca_starts_finite_and_a_tiny_run_trains_reports_and_resumes(rb, tmp_path, capsys) -> None:
    out = tmp_path / "spike.pt"
    args = ["--out", str(out), "--steps", "2", "--every", "2", "--batch", "8", "--itm", "--threads", "1"]
    assert rb.main(args) == 0
    printed = capsys.readouterr().out
    assert "step 0 caption: held-out text-swap" in printed and "step 2 itm: held-out" in printed
    state = torch.load(out, weights_only=True)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    projection = state["model"]["text_decoder.text_projection"]
    assert projection.abs().max() < 1.0  # initialised (CLIP's std), not leftover memory
    assert rb.main([*args[:3], "3", *args[4:]]) == 0  # --steps 3: resumes at 2
    printed = capsys.readouterr().out
    assert "resumed at step 2" in printed and "step 3 caption" in printed
    assert torch.load(out, weights_only=True)["step"] == 3


def test_a_larger_or_finer_model_trains_and_a_checkpoint_of_another_size_is_refused(
    rb, tmp_path, capsys
) -> None:
    out = tmp_path / "fine.pt"
    fine = ["--out", str(out), "--steps", "1", "--batch", "8", "--threads", "1", "--device", "cpu"]
    assert rb.main([*fine, "--width", "64", "--patch", "4", "--decoder_layers", "1", "--itm"]) == 0
    state = torch.load(out, weights_only=True)
    assert state["size"] == {
        "width": 64,
        "vision_layers": 4,
        "text_layers": 3,
        "decoder_layers": 1,
        "patch": 4,
    }
    assert state["model"]["visual.positional_embedding"].shape == (16 * 16 + 1, 64)  # 4 px patches of 64 px
    assert state["itm"]["weight"].shape == (1, 64)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        rb.main([*fine[:3], "2", *fine[4:]])  # the default size on that checkpoint
    assert stop.value.code == 2
    assert "holds a model of size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rb.main([*fine, "--width", "48"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_run_on_the_gpu_trains_and_resumes(rb, tmp_path, capsys) -> None:
    out = tmp_path / "gpu.pt"
    args = ["--out", str(out), "--steps", "2", "--every", "2", "--batch", "16", "--itm", "--device", "cuda"]
    assert rb.main(args) == 0
    assert rb.main([*args[:3], "3", *args[4:]]) == 0
    assert "resumed at step 2" in capsys.readouterr().out
    assert torch.load(out, weights_only=True)["step"] == 3
