"""``git_vqa``: GIT answering yes/no questions built from the prompt's attribute–noun pairs.

Expected checkpoint: ``microsoft/git-large-vqav2`` (the one T2I-R1 trains with), loaded through
``AutoModelForCausalLM`` (``GitForCausalLM``) + ``AutoProcessor``.

Per question, GIT reads ``[CLS] question`` after the image tokens (as in transformers' GIT VQA
usage: no ``[SEP]``); the first answer token's distribution gives
``P(yes) / (P(yes) + P(no))``. The sample's score is the mean over its questions
(:func:`reasongen.rewards.phrases.vqa_questions`: ``"is there a red cube?"``, ``"are there two
cats?"``; without metadata one question about the whole prompt).

``rules="t2i-r1"`` asks as T2I-R1's released reward does (``utils/reward_git.py``): one question
``"{attr_noun}?"`` per attribute phrase of its data (the nouns when there are none), 0 for
``spatial`` and ``numeracy`` prompts, 1 when there are no nouns (:mod:`.t2i_r1_rules`); a prompt
without T2I-R1 metadata scores ``None``.

Verification status: the loading path, question building, right-padded batching and the
probability read-out are tested on a tiny random ``GitForCausalLM`` (checked against an unbatched
forward pass). Agreement with T2I-R1's GIT reward on real images has NOT been checked (no
weights offline): run both on a few images with the real checkpoint and compare per question.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..t2i_r1_data import t2i_r1_of
from ..types import Sample
from .base import ModelReward, ModelRewardConfig, RewardOutput, batched, image_of, load_pretrained
from .phrases import vqa_questions
from .t2i_r1_rules import git_questions

RULES = ("geneval", "t2i-r1")


@dataclass
class GitVqaConfig(ModelRewardConfig):
    """GIT-VQA settings."""

    model: str = field(
        default="microsoft/git-large-vqav2",
        metadata={"help": "Hub id or local folder of a GIT VQA checkpoint."},
    )
    yes: str = field(default="yes", metadata={"help": "The answer token counted as yes."})
    no: str = field(default="no", metadata={"help": "The answer token counted as no."})
    rules: str = field(
        default="geneval",
        metadata={"help": "'geneval' (our questions) or 't2i-r1' (T2I-R1's '{attr_noun}?' questions)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rules not in RULES:
            raise ValueError(f"rules must be one of {', '.join(RULES)}; got {self.rules!r}")


class GitVqaReward(ModelReward):
    """Mean P(yes)/(P(yes)+P(no)) of GIT over the prompt's attribute–noun questions."""

    name = "git_vqa"
    config_class = GitVqaConfig
    config: GitVqaConfig

    def load(self) -> Any:
        from transformers import AutoModelForCausalLM, AutoProcessor

        cfg = self.config
        kw = {"local_files_only": cfg.local_files_only}
        processor = load_pretrained(AutoProcessor.from_pretrained, cfg.model, "GIT processor", **kw)
        model = load_pretrained(
            AutoModelForCausalLM.from_pretrained, cfg.model, "GIT VQA model",
            dtype=cfg.torch_dtype(), **kw,
        )  # fmt: skip
        tok = processor.tokenizer
        ids = []
        for word in (cfg.yes, cfg.no):
            t = tok(word, add_special_tokens=False).input_ids
            if len(t) != 1 or t[0] == tok.unk_token_id:
                raise ValueError(f"{word!r} is not a single known token of {cfg.model}'s tokenizer")
            ids.append(t[0])
        return model.to(cfg.torch_device()).eval(), processor, ids[0], ids[1]

    def answer_yes(self, images: list[Any], questions: list[str]) -> list[float | None]:
        """``P(yes)/(P(yes)+P(no))`` for each (image, question) pair, batched, from
        log-probabilities (two tiny probabilities keep their true ratio); ``None`` where the
        logits are not finite."""
        import torch

        model, processor, yes_id, no_id = self.bundle
        tok = processor.tokenizer
        out: list[float | None] = []
        for chunk in batched(list(zip(images, questions)), self.config.batch_size):
            pix = processor(images=[im for im, _ in chunk], return_tensors="pt").pixel_values
            rows = [[tok.cls_token_id, *tok(q, add_special_tokens=False).input_ids] for _, q in chunk]
            width = max(len(r) for r in rows)
            pad = tok.pad_token_id or 0
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])  # [B, T]
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])  # [B, T]
            dev = model.device
            with torch.no_grad():
                logits = model(
                    input_ids=ids.to(dev), attention_mask=mask.to(dev),
                    pixel_values=pix.to(dev, model.dtype),
                ).logits  # [B, image_tokens + T, V]  # fmt: skip
            text_logits = logits[:, -width:, :].float()  # [B, T, V]
            last = torch.tensor([len(r) - 1 for r in rows])  # [B]
            nxt = text_logits[torch.arange(len(rows)), last].log_softmax(-1)  # [B, V]
            p = torch.sigmoid(nxt[:, yes_id] - nxt[:, no_id])  # [B]
            out += [float(v) if math.isfinite(v) else None for v in p.tolist()]
        return out

    def _questions(self, sample: Sample, meta: dict[str, Any] | None) -> list[str] | float | str:
        """The questions for one sample, a fixed score (T2I-R1's rules), or why it is skipped."""
        if sample.image is None:
            return "no image"
        if self.config.rules == "geneval":
            return vqa_questions(meta, sample.prompt)
        fields = t2i_r1_of(meta)
        return "no T2I-R1 metadata (nouns, task_type...)" if fields is None else git_questions(fields)

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        asked = [self._questions(s, m) for s, m in zip(samples, metas)]
        pairs: list[tuple[int, str]] = []
        for i, qs in enumerate(asked):
            if isinstance(qs, list):
                pairs += [(i, q) for q in qs]
        probs = self.answer_yes([image_of(samples[i]) for i, _ in pairs], [q for _, q in pairs])
        per: dict[int, list[tuple[str, float | None]]] = {}
        for (i, q), p in zip(pairs, probs):
            per.setdefault(i, []).append((q, p))
        scores: list[float | None] = []
        details: list[dict[str, Any]] = []
        for i in range(len(samples)):
            if isinstance(asked[i], str):
                scores.append(None)
                details.append({"skipped": asked[i]})
                continue
            if isinstance(asked[i], float):  # T2I-R1 asks nothing: 0 (spatial/numeracy) or 1 (no nouns)
                scores.append(asked[i])  # type: ignore[arg-type]
                details.append({"rules": "t2i-r1", "fixed": asked[i]})
                continue
            qa = per[i]
            usable = [p for _, p in qa if p is not None]
            scores.append(sum(usable) / len(qa) if len(usable) == len(qa) else None)
            details.append({"questions": [{"question": q, "p_yes": p} for q, p in qa]})
            if len(usable) < len(qa):
                details[-1]["error"] = "GIT's answer logits are not finite for some question"
        return RewardOutput(self.name, scores, details)
