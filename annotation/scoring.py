"""Scoring a study's stored candidates with rewards after the fact (``python -m annotation
score``), so any reward's agreement with the rankings can be measured.

Scores go into the same ``reward_scores`` rows as those written at candidate creation
(``study create --reward``), one per (candidate, reward name); a reward's existing scores are
kept unless ``rescore``. Each candidate is scored against its own prompt: the sample's metadata,
else its prompt's stored metadata, else the shapes parser's reading of the prompt text (as
``study create --reward`` does), else none (metadata-driven rewards then store no score).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from annotation.errors import AnnotationError
from annotation.lookups import load_study
from annotation.models import Candidate, Prompt, RewardScore

if TYPE_CHECKING:
    from annotation.store import Store

RewardFn = Callable[..., Any]
"""``reward(samples, metadata=[...]) -> output`` with ``scores`` and ``details`` (a
``reasongen.rewards`` reward)."""


def build_rewards(
    names: str | list[str], options: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """Registry rewards by name (``"shapes,hps"``), each with its options (``{"hps": {"model":
    ...}}``); nothing is loaded yet. Unknown or repeated names, and options for a reward not
    named, raise ``AnnotationError``."""
    from reasongen.rewards import get_reward

    parts = [n.strip() for n in names.split(",")] if isinstance(names, str) else [n.strip() for n in names]
    parts = [n for n in parts if n]
    if not parts:
        raise AnnotationError("name at least one reward, e.g. --rewards shapes,hps")
    repeated = sorted({n for n in parts if parts.count(n) > 1})
    if repeated:
        raise AnnotationError(f"reward(s) named twice: {', '.join(repeated)}")
    unused = sorted(set(options or {}) - set(parts))
    if unused:
        raise AnnotationError(f"options given for rewards not requested: {', '.join(unused)}")
    try:
        return {n: get_reward(n, **dict((options or {}).get(n, {}))) for n in parts}
    except ValueError as exc:
        raise AnnotationError(str(exc)) from None


def _candidates(store: Store, study: int | str) -> list[tuple[int, str, dict[str, Any] | None]]:
    with store.session() as s:
        st = load_study(s, study)
        rows = s.execute(
            select(Candidate.id, Prompt.text, Prompt.meta)
            .join(Prompt, Prompt.id == Candidate.prompt_id)
            .where(Prompt.study_id == st.id)
            .order_by(Candidate.id)
        ).all()
    return [(r.id, r.text, r.meta) for r in rows]


def _scored(store: Store, ids: list[int], name: str) -> set[int]:
    with store.session() as s:
        return set(
            s.scalars(
                select(RewardScore.candidate_id).where(
                    RewardScore.name == name, RewardScore.candidate_id.in_(ids)
                )
            )
        )


def score_study(
    store: Store,
    study: int | str,
    rewards: Mapping[str, RewardFn],
    *,
    rescore: bool = False,
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Score the study's candidates with each reward and store the scores under the reward's
    name; returns how many candidates each reward scored (candidates it already scored are
    skipped unless ``rescore``). Scores are stored batch by batch: an interrupted run keeps what
    it scored and a rerun carries on."""
    from reasongen.shapes.parse import parse_prompt

    if batch_size < 1:
        raise AnnotationError(f"batch size must be at least 1, got {batch_size}")
    cands = _candidates(store, study)
    if not cands:
        raise AnnotationError("the study has no candidates to score")
    parsed: dict[str, dict[str, Any] | None] = {}
    done: dict[str, int] = {}
    for name, reward in rewards.items():
        skip = set() if rescore else _scored(store, [c for c, _, _ in cands], name)
        todo = [c for c in cands if c[0] not in skip]
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            samples, metas = [], []
            for cid, text, meta in batch:
                smp = store.load_sample(cid)
                if smp.metadata is None and meta is None and text not in parsed:
                    parsed[text] = parse_prompt(text)
                samples.append(smp)
                metas.append(smp.metadata or meta or parsed.get(text))
            out = reward(samples, metadata=metas)
            store.add_reward_scores([cid for cid, _, _ in batch], name, out)
            if progress is not None:
                progress(f"{name}: {min(i + batch_size, len(todo))}/{len(todo)} candidates scored")
        done[name] = len(todo)
    return done
