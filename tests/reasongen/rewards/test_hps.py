"""HPS v2.1: architecture parity with hpsv2's model code, checkpoint loading, preprocessing, scores."""

from __future__ import annotations

import importlib
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from reasongen.rewards import RewardModelUnavailable, get_reward
from reasongen.rewards.hps import HpsConfig, build_hps_model, preprocess

DATA = Path(__file__).parent / "data" / "hpsv2_state_dict_shapes.json"
HPS_SMALL = json.loads(DATA.read_text())["configs"]["small"]["config"]


def _shapes(model) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["small", "ViT-H-14"])
def test_state_dict_matches_hpsv2_model_code(name):
    """Keys and shapes recorded from hpsv2 1.2.0's bundled open_clip equal ours (meta device)."""
    ref = json.loads(DATA.read_text())["configs"][name]
    cfg = ref["config"] if name == "small" else HpsConfig(model="x:y").model_config()
    with torch.device("meta"):
        ours = _shapes(build_hps_model(cfg))
    assert ours == ref["state_dict"]
    if name == "ViT-H-14":
        assert ref["config"] == {k: cfg[k] for k in ref["config"]}
        assert len(ours) == 686


@pytest.mark.slow
def test_state_dict_matches_hpsv2_wheel(tmp_path):
    """Re-derive the reference from the hpsv2 wheel itself (needs PyPI; run with -m slow)."""
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "hpsv2==1.2.0", "--no-deps", "--timeout", "10",
         "--retries", "0", "-d", str(tmp_path)],
        capture_output=True, timeout=120,
    )  # fmt: skip
    wheels = list(tmp_path.glob("hpsv2-*.whl"))
    if got.returncode != 0 or not wheels:
        pytest.skip("PyPI not reachable for the hpsv2 wheel")
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(tmp_path / "wheel")
    # Import only hpsv2's bundled model code, as a package of its own (its __init__ pulls in
    # a tokenizer that needs a vocabulary file the release lacks).
    pkg = tmp_path / "ref" / "hps_open_clip"
    shutil.copytree(tmp_path / "wheel" / "hpsv2" / "src" / "open_clip", pkg)
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(pkg.parent))
    try:
        ref = importlib.import_module("hps_open_clip.model")
        vit_h = json.loads((pkg / "model_configs" / "ViT-H-14.json").read_text())
        for cfg in (HPS_SMALL, vit_h):
            with torch.device("meta"):
                assert _shapes(ref.CLIP(**cfg)) == _shapes(build_hps_model(cfg))
    finally:
        sys.path.remove(str(pkg.parent))
        for k in [k for k in sys.modules if k.startswith("hps_open_clip")]:
            del sys.modules[k]


def test_preprocess_matches_hpsv2_resize_and_pad():
    wide = Image.new("RGB", (64, 32), (255, 0, 0))
    x = preprocess(wide, 32)
    assert x.shape == (3, 32, 32)
    # 64x32 → 32x16, padded with 8 rows of black above and below; black normalises to -mean/std.
    black = (0 - 0.48145466) / 0.26862954
    assert x[0, :8].allclose(torch.full((8, 32), black), atol=1e-5)
    red = (1 - 0.48145466) / 0.26862954
    assert x[0, 12, 16].item() == pytest.approx(red, abs=1e-3)


def test_hps_scores_through_the_checkpoint_loading_path(tiny_hps_ckpt, sample_factory, images):
    r = get_reward("hps", model=str(tiny_hps_ckpt), arch_config=HPS_SMALL, batch_size=2)
    assert not r.loaded
    samples = [sample_factory(p, im) for p, im in zip(["a red square", "a blue", "green"], images)]
    samples.append(sample_factory("no image", None))
    out = r(samples)
    assert r.load_count == 1 and out.name == "hps"
    assert out.scores[3] is None and out.details[3] == {"skipped": "no image"}
    # The score is the cosine of normalised features, recomputed here by hand from the file.
    model = build_hps_model(HPS_SMALL)
    sd = torch.load(tiny_hps_ckpt, weights_only=True)["state_dict"]
    model.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    model.eval()
    from open_clip.tokenizer import SimpleTokenizer

    with torch.no_grad():
        f = model(preprocess(images[1], 32)[None], SimpleTokenizer()(["a blue"]))
    expected = torch.nn.functional.cosine_similarity(f["image_features"], f["text_features"])
    assert out.scores[1] == pytest.approx(expected.item(), abs=1e-5)
    assert all(-1.0 <= s <= 1.0 for s in out.scores[:3])
    # batching does not change scores
    one = get_reward("hps", model=str(tiny_hps_ckpt), arch_config=HPS_SMALL, batch_size=1)
    assert one(samples).scores[:3] == pytest.approx(out.scores[:3], abs=1e-5)
    clone = pickle.loads(pickle.dumps(r))
    assert not clone.loaded and clone(samples[:1]).scores == pytest.approx(out.scores[:1])


def test_hps_missing_checkpoint_is_one_clear_error(tmp_path, monkeypatch, sample_factory, images):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = get_reward("hps", model="xswu/HPSv2:HPS_v2.1_compressed.pt", arch_config=HPS_SMALL)
    with pytest.raises(RewardModelUnavailable, match=r"HPS v2\.1 checkpoint from 'xswu/HPSv2"):
        r([sample_factory("x", images[0])])
    r = get_reward("hps", model=str(tmp_path / "nope.pt"), arch_config=HPS_SMALL)
    with pytest.raises(RewardModelUnavailable, match=r"local path"):
        r([sample_factory("x", images[0])])


def test_hps_rejects_a_checkpoint_of_another_architecture(tmp_path, sample_factory, images):
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {"visual.conv1.weight": torch.zeros(1)}}, bad)
    r = get_reward("hps", model=str(bad), arch_config=HPS_SMALL)
    with pytest.raises(RewardModelUnavailable, match="does not fit open_clip"):
        r([sample_factory("x", images[0])])
