"""Fixtures shared by every test package: tiny random Janus models built offline."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config) -> None:
    """One torch thread for the whole run: the tests' models are tiny, and on a 2-core machine
    (CI's, shared with a browser and a database) intra-op threads only add synchronisation."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Janus model + processor saved in HF format (built once per session)."""
    from reasongen.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny-janus"), seed=0)


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir):
    """The tiny model loaded through the real ``load_model`` path, on the CPU in float32."""
    from reasongen.loading import load_model

    return load_model(tiny_model_dir, device="cpu", dtype="float32")


class _PlanIoUScorer:
    """A stand-in reward-model scorer that reads the plan from its ``prompt_plan`` text and scores the
    shapes detector's plan-image IoU of the image it is shown: what a scorer reading alignment
    perfectly would give (``training.reward_model.probe`` and ``candidate_probe``'s tests)."""

    text_mode = "prompt_plan"
    image_mode = "image"

    def model_image(self, image, boxes=()):
        return image

    def score(self, images, texts):
        from reasongen.rewards.learned import plan_of_text
        from reasongen.shapes.detect import detect
        from reasongen.shapes.geneval import plan_image_iou

        return [
            plan_image_iou(plan_of_text(t)[1], detect(im))[0] for im, t in zip(images, texts, strict=True)
        ]


@pytest.fixture
def plan_iou_scorer():
    """A :class:`_PlanIoUScorer`."""
    return _PlanIoUScorer()
