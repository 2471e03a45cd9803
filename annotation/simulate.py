"""Simulated annotator panels on the shapes world: software annotators whose judgement is a
function of the shapes detector's verdicts, ranking through the same ``next_task`` /
``submit_ranking`` calls as people. They are created as users flagged ``simulated`` (labelled in
every table and export, left out of human-only statistics unless asked for).

Profiles (:data:`PROFILES`), judging each candidate against the *task's* prompt (a control task's
intruders are judged against the prompt they were mixed into):

- ``careful``: correct first (the image satisfies the prompt, ``check_image``), then plan
  faithfulness, then plan–image IoU (rounded to ``iou_step``); equal verdicts are ties. A part
  that does not apply (a recipe without a plan) counts 0: there is no plan to credit;
- ``noisy``: the careful ranking, then one pass over its adjacent tie groups, best first, each
  pair swapped with probability ``flip`` (every swap adds exactly one discordant group pair);
- ``position``: the order the images were shown in (first shown = best), blind to content;
- ``spammer``: a uniformly random order without ties (so it fails control tasks).

Deterministic for a seed: each decision draws from a generator seeded by (seed, annotator, task).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from annotation.errors import AnnotationError
from annotation.lookups import load_study
from annotation.models import Prompt, Task

if TYPE_CHECKING:
    from annotation.store import Store
    from annotation.workflow import TaskView

PROFILES = ("careful", "noisy", "position", "spammer")
"""The simulated annotator profiles, in the order panels are listed."""
MAX_PANEL = 1000
"""Most simulated annotators one panel may have."""

Key = tuple[float, float, float]
"""A candidate's verdict as the careful annotator orders it: (correct, plan, IoU), higher better."""


def parse_panel(spec: str) -> list[tuple[str, int]]:
    """``"careful:6,noisy:3,position:1,spammer:1"`` → ``[("careful", 6), ...]``; a profile may
    be named once, counts are whole numbers ≥ 1 (at most :data:`MAX_PANEL` annotators in all)."""
    if not isinstance(spec, str) or not spec.strip():
        raise AnnotationError(
            f"--panel takes PROFILE:COUNT,... (profiles {', '.join(PROFILES)}); got {spec!r}"
        )
    out: list[tuple[str, int]] = []
    for part in spec.split(","):
        name, sep, count = part.strip().partition(":")
        if name not in PROFILES:
            raise AnnotationError(f"unknown annotator profile {name!r} in --panel; use {', '.join(PROFILES)}")
        if not sep or not count.strip().isdigit() or int(count) < 1:
            raise AnnotationError(
                f"--panel {part.strip()!r}: the count after ':' must be a whole number >= 1"
            )
        if any(name == n for n, _ in out):
            raise AnnotationError(f"--panel names {name!r} twice; give each profile once with its count")
        out.append((name, int(count)))
    total = sum(n for _, n in out)
    if total > MAX_PANEL:
        raise AnnotationError(f"--panel asks for {total} annotators; at most {MAX_PANEL}")
    return out


def careful_order(keys: dict[int, Key]) -> list[list[int]]:
    """Tie groups, best first: candidates by verdict (correct, plan, IoU), equal verdicts tied
    (ids ascending within a group)."""
    groups: dict[Key, list[int]] = {}
    for cid in sorted(keys):
        groups.setdefault(keys[cid], []).append(cid)
    return [groups[k] for k in sorted(groups, reverse=True)]


def noisy_order(
    groups: Sequence[Sequence[int]], flip: float, rng: random.Random
) -> tuple[list[list[int]], int]:
    """One pass over adjacent tie groups, best first, swapping each pair with probability ``flip``;
    returns the new groups and the number of swaps."""
    out = [list(g) for g in groups]
    swaps = 0
    for i in range(len(out) - 1):
        if rng.random() < flip:
            out[i], out[i + 1] = out[i + 1], out[i]
            swaps += 1
    return out, swaps


def position_order(shown: Sequence[int]) -> list[list[int]]:
    """First shown is best, no ties."""
    return [[c] for c in shown]


def spammer_order(shown: Sequence[int], rng: random.Random) -> list[list[int]]:
    """A uniformly random order, no ties."""
    ids = list(shown)
    rng.shuffle(ids)
    return [[c] for c in ids]


class ShapesJudge:
    """The careful annotator's eyes: each candidate's (correct, plan, IoU) against a prompt, from
    the shapes reward's parts (``reasongen.rewards.shapes``), cached per (candidate, prompt).

    A prompt's metadata is its stored metadata, else the shapes parser's reading of its text; a
    prompt neither gives raises ``AnnotationError`` (these annotators judge shapes-world prompts).
    """

    def __init__(self, store: Store, iou_step: float = 0.1) -> None:
        if not 0.0 < iou_step <= 1.0:
            raise AnnotationError(f"iou_step must be in (0, 1], got {iou_step}")
        from reasongen.rewards.shapes import ShapesReward

        self.store = store
        self.iou_step = iou_step
        self.reward = ShapesReward()
        self._meta: dict[int, dict[str, Any]] = {}
        self._task_prompt: dict[int, int] = {}
        self._keys: dict[tuple[int, int], Key] = {}

    def prompt_metadata(self, prompt_id: int) -> dict[str, Any]:
        """The metadata a prompt's candidates are judged against."""
        if prompt_id not in self._meta:
            from reasongen.shapes.parse import parse_prompt

            with self.store.session() as s:
                p = s.get(Prompt, prompt_id)
                if p is None:
                    raise AnnotationError(f"prompt {prompt_id} does not exist")
                text, meta = p.text, p.meta
            meta = meta or parse_prompt(text)
            if not meta:
                raise AnnotationError(
                    f"prompt {text[:60]!r} has no metadata and is not a shapes-world prompt the parser "
                    "can read: simulated annotators judge with the shapes detector"
                )
            self._meta[prompt_id] = meta
        return self._meta[prompt_id]

    def task_prompt(self, task_id: int) -> int:
        """The id of the prompt a task is about (a control task's: its known best's prompt)."""
        if task_id not in self._task_prompt:
            with self.store.session() as s:
                pid = s.scalar(select(Task.prompt_id).where(Task.id == task_id))
            if pid is None:
                raise AnnotationError(f"task {task_id} does not exist")
            self._task_prompt[task_id] = pid
        return self._task_prompt[task_id]

    def verdict(self, candidate_id: int, prompt_id: int) -> Key:
        """(correct, plan faithful, IoU rounded to ``iou_step``) of a candidate for a prompt."""
        cache = (candidate_id, prompt_id)
        if cache not in self._keys:
            meta = self.prompt_metadata(prompt_id)
            sample = self.store.load_sample(candidate_id)
            if sample.image is None:
                self._keys[cache] = (0.0, 0.0, 0.0)
            else:
                values, _ = self.reward.parts(sample, meta)
                iou = round((values["iou"] or 0.0) / self.iou_step) * self.iou_step
                self._keys[cache] = (float(values["prompt"] or 0.0), float(values["plan"] or 0.0), iou)
        return self._keys[cache]

    def key(self, candidate_id: int, task_id: int) -> Key:
        """The candidate's verdict for the prompt of a task."""
        return self.verdict(candidate_id, self.task_prompt(task_id))


def _check_count(n: Any) -> None:
    """``AnnotationError`` unless ``n`` (a number of control tasks) is a whole number >= 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise AnnotationError(f"the number of controls must be a whole number >= 1, got {n!r}")


def _controls_of(study_id: int) -> Any:
    """The SQL condition for a task being one of ``study_id``'s control tasks."""
    return (Task.study_id == study_id) & Task.is_control.is_(True)


def add_verified_controls(
    store: Store, study: int | str, n: int, *, seed: int = 0, judge: ShapesJudge | None = None
) -> list[int]:
    """``n`` control tasks the detector vouches for: the known best is a candidate that is correct
    for its prompt, the others are candidates of other prompts that are neither correct nor
    plan-faithful for it. (``Store.add_control_tasks`` picks any candidate as the best and trusts
    other prompts' candidates to be worse, which in the shapes world fails when a sample is wrong
    or two prompts ask for the same thing: careful annotators then "fail" them.) A candidate that
    is already some control task's best is not used again. Raises ``AnnotationError`` when fewer
    than ``n`` can be made."""
    from annotation.models import Candidate

    _check_count(n)
    judge = judge or ShapesJudge(store)
    with store.session() as s:
        st = load_study(s, study)
        study_id, gsize = st.id, st.group_size
        rows = s.execute(
            select(Candidate.id, Candidate.prompt_id)
            .join(Prompt, Prompt.id == Candidate.prompt_id)
            .where(Prompt.study_id == study_id)
            .order_by(Candidate.id)
        ).all()
        used = set(s.scalars(select(Task.control_best_id).where(_controls_of(study_id))))
    rng = random.Random(f"verified-controls:{study_id}:{seed}")
    bests = [(cid, pid) for cid, pid in rows if cid not in used and judge.verdict(cid, pid)[0] == 1.0]
    rng.shuffle(bests)
    groups: list[tuple[list[int], int]] = []
    for best, pid in bests:
        if len(groups) == n:
            break
        others = [cid for cid, p in rows if p != pid]
        rng.shuffle(others)
        wrong = []
        for cid in others:
            if judge.verdict(cid, pid)[:2] == (0.0, 0.0):
                wrong.append(cid)
                if len(wrong) == gsize - 1:
                    break
        if len(wrong) == gsize - 1:
            members = [best, *wrong]
            rng.shuffle(members)
            groups.append((members, best))
    if len(groups) < n:
        raise AnnotationError(
            f"only {len(groups)} of {n} verified control tasks can be made: too few candidates are correct "
            "for their prompt, or too few of other prompts are wrong for it"
        )
    return [store.create_task(study_id, members, control_best=best) for members, best in groups]


def control_task_count(store: Store, study: int | str) -> int:
    """How many control tasks ``study`` has (verified or not)."""
    from sqlalchemy import func

    with store.session() as s:
        study_id = load_study(s, study).id
        return int(s.scalar(select(func.count(Task.id)).where(_controls_of(study_id))))


def ensure_verified_controls(
    store: Store, study: int | str, n: int, *, seed: int = 0, judge: ShapesJudge | None = None
) -> list[int]:
    """Add verified control tasks (:func:`add_verified_controls`) until ``study`` has ``n``
    control tasks; returns the new tasks' ids (none when it has ``n`` already). So a panel run
    again with the same ``n`` (a killed run, resumed) adds nothing twice."""
    _check_count(n)
    missing = n - control_task_count(store, study)
    return add_verified_controls(store, study, missing, seed=seed, judge=judge) if missing > 0 else []


@dataclass
class PanelRun:
    """What one :func:`simulate_panel` call did."""

    annotators: dict[str, str] = field(default_factory=dict)
    """Username → profile, in panel order."""
    rankings: dict[str, int] = field(default_factory=dict)
    """Username → rankings submitted by this call (regular and control tasks)."""
    swaps: int = 0
    """Adjacent tie-group swaps the noisy annotators made."""
    swap_chances: int = 0
    """Adjacent tie-group pairs the noisy annotators could have swapped (swaps / chances ≈ flip)."""

    @property
    def total(self) -> int:
        return sum(self.rankings.values())


def panel_users(
    store: Store, panel: Sequence[tuple[str, int]], prefix: str = "sim"
) -> dict[str, tuple[int, str]]:
    """The panel's simulated users, ``PREFIX-PROFILE-N``, created if new: username → (id, profile).
    An existing simulated user of that name is reused (a panel run again continues where it
    stopped); a person of that name raises ``AnnotationError``."""
    from annotation.errors import NotFoundError

    users: dict[str, tuple[int, str]] = {}
    for profile, count in panel:
        for i in range(1, count + 1):
            name = f"{prefix}-{profile}-{i}"
            try:
                u = store.get_user(name)
            except NotFoundError:
                u = store.create_user(name, secrets.token_urlsafe(24), simulated=True)
            if not u.simulated:
                raise AnnotationError(
                    f"user {name!r} exists and is a person, not simulated; choose another --prefix"
                )
            if not u.active:
                raise AnnotationError(
                    f"simulated user {name!r} is deactivated; activate it or choose another --prefix"
                )
            users[name] = (u.id, profile)
    return users


def rank_view(
    profile: str, view: TaskView, judge: ShapesJudge, flip: float, rng: random.Random
) -> tuple[list[list[int]], int, int]:
    """One profile's ranking of a served task: tie groups best first, plus (swaps, chances) for
    the noisy profile."""
    shown = [c.id for c in view.candidates]
    if profile == "position":
        return position_order(shown), 0, 0
    if profile == "spammer":
        return spammer_order(shown, rng), 0, 0
    groups = careful_order({cid: judge.key(cid, view.task_id) for cid in shown})
    if profile == "careful":
        return groups, 0, 0
    noisy, swaps = noisy_order(groups, flip, rng)
    return noisy, swaps, len(groups) - 1


def check_options(flip: Any, max_rankings: Any = None) -> None:
    """``AnnotationError`` unless ``flip`` is a probability and ``max_rankings`` None or >= 1."""
    if not isinstance(flip, (int, float)) or isinstance(flip, bool) or not 0.0 <= flip <= 1.0:
        raise AnnotationError(f"--flip must be a probability in [0, 1], got {flip!r}")
    if max_rankings is not None and (
        isinstance(max_rankings, bool) or not isinstance(max_rankings, int) or max_rankings < 1
    ):
        raise AnnotationError(f"max_rankings must be a whole number >= 1, got {max_rankings!r}")


def simulate_panel(
    store: Store,
    study: int | str,
    panel: Sequence[tuple[str, int]] | str,
    *,
    flip: float = 0.15,
    seed: int = 0,
    prefix: str = "sim",
    max_rankings: int | None = None,
    iou_step: float = 0.1,
    progress: Callable[[str], None] | None = None,
) -> PanelRun:
    """Let a simulated panel rank ``study``: in rounds, each annotator in panel order asks
    ``next_task`` and submits its profile's ranking with ``submit_ranking``, until a whole round
    submits nothing (every task has its rankings or has been seen) or ``max_rankings`` are in.
    Returns what was submitted. Bad input raises ``AnnotationError`` before anything is written."""
    from annotation.workflow import next_task, submit_ranking

    members = parse_panel(panel) if isinstance(panel, str) else list(panel)
    check_options(flip, max_rankings)
    with store.session() as s:
        st = load_study(s, study)
        study_id, archived = st.id, st.archived_at is not None
        prompt_ids = list(s.scalars(select(Prompt.id).where(Prompt.study_id == study_id)))
    if archived:
        raise AnnotationError(f"study {st.name!r} is archived; it takes no more rankings")
    judge = ShapesJudge(store, iou_step)
    for pid in prompt_ids:  # every prompt must be one the detector can judge, before any user exists
        judge.prompt_metadata(pid)
    users = panel_users(store, members, prefix)
    run = PanelRun({n: p for n, (_, p) in users.items()}, dict.fromkeys(users, 0))
    while True:
        submitted = 0
        for name, (uid, profile) in users.items():
            if max_rankings is not None and run.total >= max_rankings:
                return run
            view = next_task(store, uid, study_id)
            if view is None:
                continue
            rng = random.Random(f"{seed}:{name}:{view.task_id}")
            groups, swaps, chances = rank_view(profile, view, judge, float(flip), rng)
            submit_ranking(store, uid, study_id, view.task_id, groups)
            run.rankings[name] += 1
            run.swaps += swaps
            run.swap_chances += chances
            submitted += 1
        if progress is not None:
            progress(f"round done: {run.total} rankings so far")
        if not submitted:
            return run
