"""``benchmarks/detector_junk.py``: images that hold no shape must not pass benchmark prompts.

A smaller sample of the benchmark's junk set (30 prompts x every kind); the full set (300
prompts per kind) is the script's default run.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def junk(load_benchmark):
    return load_benchmark("detector_junk")


def test_junk_images_are_seeded_and_of_every_kind(junk) -> None:
    assert len(junk.KINDS) >= 6
    for kind in junk.KINDS:
        a, b = junk.junk_image(kind, 3), junk.junk_image(kind, 3)
        assert a.size == (128, 128) and a.mode == "RGB"
        assert a.tobytes() == b.tobytes()
    assert junk.junk_image("blobs", 3).tobytes() != junk.junk_image("blobs", 4).tobytes()
    with pytest.raises(ValueError, match="unknown junk kind"):
        junk.junk_image("photo", 0)


def test_junk_passes_at_most_one_prompt_per_kind_and_clean_renders_all_pass(junk) -> None:
    results = junk.run(n=30)
    passed = {kind: [p.index for p, ok in rows if ok] for kind, rows in results.items()}
    assert all(len(passed[kind]) <= 1 for kind in junk.KINDS), passed
    assert len(passed["clean"]) == 30
    table = junk.format_table(results)
    assert "clean" in table and "all junk" in table


def test_blurred_renders_still_read_blurred_blobs_do_not(junk) -> None:
    """The edge-sharpness rule sits between a 1 px blur of a render and a blob of sigma 3 px."""
    from PIL import ImageFilter

    from reasongen.shapes import render_objects
    from reasongen.shapes.detect import detect
    from reasongen.shapes.scene import ShapeObject
    from reasongen.types import Box

    obj = ShapeObject("circle", "blue", "large", None, Box("blue circle", 300, 300, 650, 650))
    sharp = render_objects([obj])
    assert [(d.shape, d.color) for d in detect(sharp.filter(ImageFilter.GaussianBlur(1.0)))] == [
        ("circle", "blue")
    ]
    assert detect(sharp.filter(ImageFilter.GaussianBlur(3.0))) == []
    flat = np.full((128, 128, 3), (30, 80, 225), dtype=np.uint8)  # a blue canvas is no square
    assert detect(flat) == []
