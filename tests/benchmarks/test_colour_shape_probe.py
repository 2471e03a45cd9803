"""``benchmarks/colour_shape_probe.py``: every colour x shape, judged, on the shipped SFT model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_probe_prints_every_combination_and_the_plans(capsys, load_benchmark) -> None:
    model = ROOT / "assets" / "models" / "shapes-janus"
    if not (model / "config.json").is_file():
        pytest.skip("shapes-janus is not shipped")
    probe = load_benchmark("colour_shape_probe")
    assert probe.main([str(model), "--samples", "1"]) == 0
    out = capsys.readouterr().out
    total = int(re.search(r"(\d+) / 48 right", out).group(1))
    rows = [ln for ln in out.splitlines() if ln.split() and ln.split()[0] in {"red", "pink", "black"}]
    assert len(rows) == 3 and all(len(r.split()) == 7 for r in rows)
    cells = [int(c) for ln in out.splitlines()[2:10] for c in ln.split()[1:]]
    assert len(cells) == 48 and sum(cells) == total and total >= 40  # the SFT model draws nearly all
    assert "most common plan:" in out and '"a photo of a <colour> <shape>"' in out
    assert probe.main([str(model), "--samples", "1", "--size", "large"]) == 0
    out = capsys.readouterr().out
    assert '"a photo of a large <colour> <shape>"' in out and re.search(r"(\d+) / 48 right", out)
    wrong = out.split("below all-right: ")[1].splitlines()[0]
    assert wrong == "none" or all(w.strip().startswith("large ") for w in wrong.split(","))
    # a lead no benchmark text has: the same 48 combinations, off the benchmark (a validation check)
    assert probe.main([str(model), "--samples", "1", "--lead", "an illustration of"]) == 0
    out = capsys.readouterr().out
    assert '"an illustration of a <colour> <shape>"' in out and re.search(r"(\d+) / 48 right", out)
    # "an image of a black circle" is a compositional benchmark text: refused, nothing generated
    with pytest.raises(SystemExit):
        probe.main([str(model), "--lead", "an image of"])
    assert "gives benchmark texts" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        probe.main([str(model), "--size", "huge"])
    with pytest.raises(SystemExit):
        probe.main([str(model), "--samples", "0"])
