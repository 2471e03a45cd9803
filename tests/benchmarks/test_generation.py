"""``benchmarks/generation.py`` still runs both sides (ours and transformers' generate) end to end.

Figures are not asserted (speed lives in the benchmark, not in tests); the rows, their token counts
and the printed line are. A transformers upgrade that changes Janus's ``generate`` arguments broke
this script once without any test noticing.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("generation")


def test_run_size_times_ours_and_reference(bench, tiny_loaded):
    rows = bench.run_size(tiny_loaded, "tiny", [1, 2], cot_tokens=4, device="cpu", repeats=2)
    n_img = tiny_loaded.num_image_tokens
    assert [(r.batch, r.what, r.tokens) for r in rows] == [
        (1, "image", n_img),
        (1, "cot4+image", n_img + 4),
        (1, "vq-decode", n_img),
        (2, "image", n_img),
        (2, "cot4+image", n_img + 4),
        (2, "vq-decode", n_img),
    ]
    assert all(r.ours_s > 0 and r.ref_s > 0 for r in rows)
    line = rows[0].line(weight_bytes=1, bandwidth=None)
    assert line.split()[:3] == ["tiny", "1", "image"] and line.rstrip().endswith("x")
    # With a bandwidth the floor column is the weights' read time over ours: here 1e9 bytes per
    # token at 1e12 bytes/s, i.e. 1 ms per token.
    floored = rows[0].line(weight_bytes=10**9, bandwidth=1e12)
    expected = n_img * 1e-3 / rows[0].ours_s
    assert floored.split()[-1] == f"{expected:.1%}"
    vq = rows[2]
    assert vq.bound == pytest.approx(rows[0].ref_s / vq.ours_s)  # the image call's ceiling
    assert vq.line(weight_bytes=1, bandwidth=None).split()[:3] == ["tiny", "1", "vq-decode"]


def test_gpu_bandwidth_by_name(bench):
    assert bench.gpu_bandwidth("NVIDIA H200") == 4.8e12
    assert bench.gpu_bandwidth("NVIDIA H100 80GB HBM3") == 3.35e12
    assert bench.gpu_bandwidth("NVIDIA GeForce RTX 4090") is None


def test_median_of_repeats(bench):
    calls = []
    assert bench._time(lambda: calls.append(1), "cpu", repeats=3) >= 0
    assert len(calls) == 3
