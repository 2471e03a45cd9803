"""``benchmarks/engine_profile.py``: the op groups, and a profile and bound on the tiny model.

Figures are not asserted (speed lives in the benchmark); what is: every profiled op lands in a
group, the shares are shares, and the bound is the reference's time over the shared part of ours.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def prof(load_benchmark):
    return load_benchmark("engine_profile")


def test_group_of_aten_ops(prof):
    assert prof.group_of("aten::addmm") == "matmul"
    assert prof.group_of("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert prof.group_of("aten::mkldnn_convolution") == "convolution"
    assert prof.group_of("aten::exponential_") == "sampling"
    assert prof.group_of("aten::copy_") == "other"


def test_measure_profiles_both_sides(prof, tiny_loaded):
    r = prof.measure(tiny_loaded, batch=2, repeats=1, profiled=1)
    assert r.ours_s > 0 and r.ref_s > 0 and r.vq_s > 0
    assert (
        set(r.groups) <= {*prof.GROUPS, "other", prof.VQ} and r.groups["matmul"] > 0 and r.groups[prof.VQ] > 0
    )
    assert r.ref_groups["matmul"] > 0 and r.ref_groups[prof.VQ] > 0
    assert 0 < r.share_vq < 1 and 0 <= r.share_lm < 1
    assert r.shared_s == pytest.approx(r.ours_s * (r.share_vq + r.share_lm))
    assert r.bound == pytest.approx(r.ref_s / r.shared_s)
