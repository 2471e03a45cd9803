"""Shared Qwen2.5-VL judge machinery: lazy loading, batched chat generation, yes/no probability.

Expected checkpoint for every judge family: ``Qwen/Qwen2.5-VL-7B-Instruct`` (the judge GoT-R1
and ReasonGen-R1 report), loaded with ``AutoModelForImageTextToText`` + ``AutoProcessor``; the
3B/32B/72B instruct models load the same way. Generation is greedy (ReasonGen-R1 samples its
judge with ``do_sample=False``), batched with left padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .base import ModelReward, ModelRewardConfig, batched, load_pretrained

JudgeItem = tuple[list[Any], str]
"""One judge query: the images shown (PIL, possibly none) and the text after them."""


@dataclass
class QwenJudgeConfig(ModelRewardConfig):
    """Settings shared by the Qwen2.5-VL judges."""

    model: str = field(
        default="Qwen/Qwen2.5-VL-7B-Instruct",
        metadata={"help": "Hub id or local folder of a Qwen2.5-VL instruct checkpoint."},
    )
    max_new_tokens: int = field(default=512, metadata={"help": "Cap on each judge reply."})
    batch_size: int = field(default=4, metadata={"help": "Judge queries per generate call."})
    min_answer_mass: float = field(
        default=1e-4,
        metadata={
            "help": "Yes/no questions: below this first-token probability of yes + no the judge "
            "did not answer yes or no, and the sample scores None."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not 0.0 <= self.min_answer_mass < 1.0:
            raise ValueError(f"min_answer_mass must be in [0, 1), got {self.min_answer_mass}")


IMAGE_SLOT = "<image>"
"""Where a judge prompt wants its image (ReasonGen-R1's judge template has one mid-text)."""


def _content(imgs: list[Any], text: str) -> list[dict[str, Any]]:
    """Chat content for one query: the images where the text has ``<image>`` slots (one per
    image, in order), else all images first and then the text."""
    if imgs and text.count(IMAGE_SLOT) == len(imgs):
        parts = text.split(IMAGE_SLOT)
        content: list[dict[str, Any]] = []
        for i, part in enumerate(parts):
            if part:
                content.append({"type": "text", "text": part})
            if i < len(imgs):
                content.append({"type": "image"})
        return content
    return [{"type": "image"} for _ in imgs] + [{"type": "text", "text": text}]


class QwenJudge(ModelReward):
    """Base for rewards that ask Qwen2.5-VL questions about images and text."""

    config: QwenJudgeConfig

    def load(self) -> Any:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        cfg = self.config
        kw = {"local_files_only": cfg.local_files_only}
        processor = load_pretrained(AutoProcessor.from_pretrained, cfg.model, "Qwen2.5-VL processor", **kw)
        processor.tokenizer.padding_side = "left"
        model = load_pretrained(
            AutoModelForImageTextToText.from_pretrained, cfg.model, "Qwen2.5-VL judge model",
            dtype=cfg.torch_dtype(), **kw,
        )  # fmt: skip
        return model.to(cfg.torch_device()).eval(), processor

    def _inputs(self, items: list[JudgeItem]) -> dict[str, Any]:
        _, processor = self.bundle
        texts, flat = [], []
        for imgs, text in items:
            content = _content(imgs, text)
            msgs = [{"role": "user", "content": content}]
            texts.append(processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
            flat += [im.convert("RGB") for im in imgs]
        enc = processor(text=texts, images=flat or None, return_tensors="pt", padding=True)
        model, _ = self.bundle
        enc = {k: v.to(model.device) for k, v in enc.items()}
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(model.dtype)
        return enc

    def chat(self, items: list[JudgeItem]) -> list[str]:
        """Greedy replies, one per item, in order."""
        import torch

        model, processor = self.bundle
        out: list[str] = []
        for chunk in batched(items, self.config.batch_size):
            enc = self._inputs(chunk)
            with torch.no_grad():
                gen = model.generate(
                    **enc, max_new_tokens=self.config.max_new_tokens, do_sample=False,
                    pad_token_id=processor.tokenizer.pad_token_id,
                )  # [B, prompt + new]  # fmt: skip
            new = gen[:, enc["input_ids"].shape[1] :]  # [B, new]
            out += processor.batch_decode(new, skip_special_tokens=True)
        return out

    def yes_no_ids(self) -> tuple[list[int], list[int]]:
        """First-token ids of "Yes"/"yes" and "No"/"no" in the judge's tokenizer."""
        _, processor = self.bundle
        tok = processor.tokenizer

        def first(words: tuple[str, ...]) -> list[int]:
            return sorted({tok(w, add_special_tokens=False).input_ids[0] for w in words})

        yes, no = first(("Yes", "yes")), first(("No", "no"))
        if set(yes) & set(no):
            raise ValueError(f"{self.config.model}: 'yes' and 'no' share a first token")
        return yes, no

    def yes_probability(self, items: list[JudgeItem]) -> list[float | None]:
        """``P(yes)/(P(yes)+P(no))`` of the first reply token for each item (both casings);
        ``None`` where it is unusable: non-finite logits, or yes + no below ``min_answer_mass``.

        Computed from log-probabilities, so two tiny probabilities still give their true ratio
        instead of 0/0."""
        import torch

        model, _ = self.bundle
        yes, no = self.yes_no_ids()
        out: list[float | None] = []
        for chunk in batched(items, self.config.batch_size):
            enc = self._inputs(chunk)
            with torch.no_grad():
                logits = model(**enc).logits[:, -1, :].float()  # [B, V] (left padded)
            logp = logits.log_softmax(-1)  # [B, V]
            ly, ln = logp[:, yes].logsumexp(-1), logp[:, no].logsumexp(-1)  # [B]
            ratio = torch.sigmoid(ly - ln)  # [B]
            mass = torch.logaddexp(ly, ln).exp()  # [B]
            for r, m in zip(ratio.tolist(), mass.tolist()):
                usable = math.isfinite(r) and math.isfinite(m) and m >= self.config.min_answer_mass
                out.append(float(r) if usable else None)
        return out
