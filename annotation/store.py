"""The annotation store's service layer: users, studies, prompts, candidates and tasks.

``Store`` owns an engine and a session factory; every method opens its own short session and
transaction, so one ``Store`` may be used from many threads (sessions are never shared).
Serving tasks and taking rankings live in :mod:`annotation.workflow`, tables for statistics and
export in :mod:`annotation.tables`: both are functions of a ``Store``, built on top of it.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import random
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation import validation as v
from annotation.db import DEFAULT_DATA_DIR, default_url, make_engine, session_factory, upgrade
from annotation.errors import AnnotationError, ConflictError, NotFoundError
from annotation.lookups import load_study, load_user, system_label
from annotation.models import (
    ROLES,
    Candidate,
    Prompt,
    RewardScore,
    Study,
    Task,
    TaskCandidate,
    User,
)
from annotation.security import DEFAULT_N, hash_password, verify_password


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    role: str
    active: bool


@dataclass(frozen=True)
class StudyInfo:
    id: int
    name: str
    guidelines: str
    group_size: int
    rankings_per_task: int
    control_rate: float
    seed: int


def _user_info(u: User) -> UserInfo:
    return UserInfo(u.id, u.username, u.role, u.active)


def _study_info(s: Study) -> StudyInfo:
    return StudyInfo(s.id, s.name, s.guidelines, s.group_size, s.rankings_per_task, s.control_rate, s.seed)


class Store:
    """Annotation database plus the data directory that holds candidate images.

    Args:
        url: SQLAlchemy URL; default ``sqlite:///<data_dir>/reasongen.db``.
        data_dir: folder for images (``images/<sha[:2]>/<sha>.png``) and the default database.
        migrate: run Alembic migrations to head on open.
        password_cost: scrypt ``n`` for new password hashes.
    """

    def __init__(
        self,
        url: str | None = None,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        *,
        migrate: bool = True,
        password_cost: int = DEFAULT_N,
        pool_size: int = 8,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.url = url or default_url(self.data_dir)
        self.engine = make_engine(self.url, pool_size=pool_size)
        if migrate:
            upgrade(self.engine)
        self._sessions = session_factory(self.engine)
        self.password_cost = password_cost
        self._dummy_hash: str | None = None

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A new session inside one transaction: committed on success, rolled back on error."""
        with self._sessions() as s, s.begin():
            yield s

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ users

    def create_user(self, username: str, password: str, role: str = "annotator") -> UserInfo:
        """Add a user with a scrypt password hash. Raises ``ConflictError`` if the name is taken."""
        v.check_username(username)
        if role not in ROLES:
            raise AnnotationError(f"role must be one of {ROLES}, got {role!r}")
        pw_hash = hash_password(password, n=self.password_cost)
        try:
            with self.session() as s:
                user = User(username=username, password_hash=pw_hash, role=role, active=True)
                s.add(user)
                s.flush()
                return _user_info(user)
        except IntegrityError as exc:
            raise ConflictError(f"user {username!r} already exists") from exc

    def authenticate(self, username: str, password: str) -> UserInfo | None:
        """The active user with this name and password, or None."""
        if not isinstance(username, str) or not v.USERNAME_RE.match(username):
            return None
        with self.session() as s:
            user = s.scalar(select(User).where(User.username == username))
        if user is None:
            # Spend the same time as a real check so response time does not reveal the name.
            if self._dummy_hash is None:
                self._dummy_hash = hash_password("not-a-real-password", n=self.password_cost)
            verify_password(password, self._dummy_hash)
            return None
        if not user.active or not verify_password(password, user.password_hash):
            return None
        return _user_info(user)

    def get_user(self, user: int | str) -> UserInfo:
        """Look a user up by id or username; raises ``NotFoundError``."""
        with self.session() as s:
            return _user_info(load_user(s, user))

    def set_user_active(self, user: int | str, active: bool) -> UserInfo:
        with self.session() as s:
            u = load_user(s, user)
            u.active = bool(active)
            return _user_info(u)

    def list_users(self) -> list[UserInfo]:
        with self.session() as s:
            return [_user_info(u) for u in s.scalars(select(User).order_by(User.id))]

    # ------------------------------------------------------------------ studies and prompts

    def create_study(
        self,
        name: str,
        *,
        group_size: int,
        rankings_per_task: int,
        control_rate: float = 0.0,
        guidelines: str = "",
        seed: int = 0,
        created_by: int | None = None,
    ) -> StudyInfo:
        """Add a study; ``AnnotationError`` for bad settings, ``ConflictError`` if it exists."""
        v.check_study_name(name)
        v.check_text(guidelines, "guidelines", allow_empty=True)
        for what, val, lo in (
            ("group_size", group_size, 2),
            ("rankings_per_task", rankings_per_task, 1),
        ):
            if isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= v.MAX_GROUP_SIZE:
                raise AnnotationError(f"{what} must be an integer in [{lo}, {v.MAX_GROUP_SIZE}]")
        if not isinstance(control_rate, (int, float)) or not 0.0 <= float(control_rate) < 1.0:
            raise AnnotationError(f"control_rate must be in [0, 1), got {control_rate!r}")
        try:
            with self.session() as s:
                if created_by is not None:
                    load_user(s, created_by)
                study = Study(
                    name=name,
                    guidelines=guidelines,
                    group_size=group_size,
                    rankings_per_task=rankings_per_task,
                    control_rate=float(control_rate),
                    seed=int(seed),
                    created_by=created_by,
                )
                s.add(study)
                s.flush()
                return _study_info(study)
        except IntegrityError as exc:
            raise ConflictError(f"study {name!r} already exists; pick another name") from exc

    def get_study(self, study: int | str) -> StudyInfo:
        """Look a study up by id or name; raises ``NotFoundError``."""
        with self.session() as s:
            return _study_info(load_study(s, study))

    def list_studies(self) -> list[StudyInfo]:
        with self.session() as s:
            return [_study_info(x) for x in s.scalars(select(Study).order_by(Study.id))]

    def add_prompts(self, study_id: int, prompts: Sequence[str | Mapping[str, Any]]) -> list[int]:
        """Append prompts (strings, or dicts with ``prompt`` and optional ``metadata``)."""
        rows = [_prompt_row(p, i) for i, p in enumerate(prompts)]
        with self.session() as s:
            study = load_study(s, study_id)
            start = (
                s.scalar(
                    select(func.coalesce(func.max(Prompt.position), -1)).where(Prompt.study_id == study.id)
                )
                + 1
            )
            objs = [
                Prompt(study_id=study.id, position=start + i, text=t, meta=m) for i, (t, m) in enumerate(rows)
            ]
            s.add_all(objs)
            s.flush()
            return [o.id for o in objs]

    def list_prompts(self, study_id: int) -> list[tuple[int, str]]:
        """``(prompt_id, text)`` of the study's prompts in order."""
        return [(i, t) for i, t, _ in self.prompt_rows(study_id)]

    def prompt_rows(self, study_id: int) -> list[tuple[int, str, dict[str, Any] | None]]:
        """``(prompt_id, text, metadata)`` of the study's prompts in order."""
        with self.session() as s:
            q = select(Prompt.id, Prompt.text, Prompt.meta).where(Prompt.study_id == study_id)
            return [(i, t, m) for i, t, m in s.execute(q.order_by(Prompt.position))]

    # ------------------------------------------------------------------ candidates and rewards

    def save_image(self, image: Any) -> tuple[str, str]:
        """Write ``image`` as PNG under ``data_dir/images`` once, named by the SHA-256 of its bytes.

        Returns ``(sha256, path relative to data_dir)``. Writing is atomic (temp file + rename).
        """
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        rel = Path("images") / sha[:2] / f"{sha}.png"
        path = self.data_dir / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return sha, rel.as_posix()

    def add_candidates(
        self,
        prompt_id: int,
        samples: Sequence[Any],
        rewards: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Store ``samples`` (``reasongen.types.Sample``) for a prompt; return their ids.

        ``rewards`` maps a reward name to that reward's output for these samples, any object with
        ``scores`` (one float or None per sample) and ``details`` (one dict per sample).
        """
        from reasongen.types import Sample

        v.check_id(prompt_id, "prompt_id")
        for smp in samples:
            if not isinstance(smp, Sample):
                raise AnnotationError(f"candidates must be reasongen Sample objects, got {type(smp)}")
        payloads = [_sample_payload(smp) for smp in samples]
        images = [self.save_image(smp.image) if smp.image is not None else (None, None) for smp in samples]
        with self.session() as s:
            prompt = s.get(Prompt, prompt_id)
            if prompt is None:
                raise NotFoundError(f"prompt {prompt_id} does not exist")
            objs = []
            for smp, payload, (sha, rel) in zip(samples, payloads, images, strict=True):
                if smp.prompt != prompt.text:
                    raise AnnotationError(
                        f"sample prompt {smp.prompt[:60]!r} differs from prompt {prompt_id}'s text"
                    )
                objs.append(
                    Candidate(
                        prompt_id=prompt_id,
                        model_id=smp.model_id,
                        recipe=smp.recipe,
                        seed=smp.seed,
                        sample_index=smp.index,
                        settings=smp.settings.to_dict(),
                        sample=payload,
                        image_sha256=sha,
                        image_path=rel,
                    )
                )
            s.add_all(objs)
            s.flush()
            ids = [o.id for o in objs]
            for name, out in (rewards or {}).items():
                _add_scores(s, ids, name, out)
            return ids

    def add_reward_scores(self, candidate_ids: Sequence[int], name: str, output: Any) -> None:
        """Store one reward's ``output`` (``scores``/``details``) for these candidates (upsert)."""
        with self.session() as s:
            for cid in candidate_ids:
                if s.get(Candidate, v.check_id(cid, "candidate id")) is None:
                    raise NotFoundError(f"candidate {cid} does not exist")
            _add_scores(s, list(candidate_ids), name, output)

    def load_sample(self, candidate_id: int, with_image: bool = True) -> Any:
        """The stored ``Sample`` of a candidate (image reloaded from the data directory)."""
        from PIL import Image

        from reasongen.types import Sample

        with self.session() as s:
            c = s.get(Candidate, v.check_id(candidate_id, "candidate_id"))
            if c is None:
                raise NotFoundError(f"candidate {candidate_id} does not exist")
            image = None
            if with_image and c.image_path:
                with Image.open(self.data_dir / c.image_path) as im:
                    image = im.convert("RGB")
            return Sample.from_dict(c.sample, image=image)

    # ------------------------------------------------------------------ tasks

    def create_task(
        self, study_id: int, candidate_ids: Sequence[int], *, control_best: int | None = None
    ) -> int:
        """A task ranking these candidates (in this canonical order).

        Regular tasks need candidates of one prompt of the study; a control task
        (``control_best`` given) may mix in candidates of other prompts and is about the prompt of
        ``control_best``.
        """
        with self.session() as s:
            return _create_task(s, load_study(s, study_id), candidate_ids, control_best)

    def build_tasks(self, study_id: int, layout: str = "mixed") -> list[int]:
        """Group every not-yet-tasked candidate of the study into regular tasks.

        ``mixed``: per prompt, candidates of all systems (model, recipe) are dealt round-robin so
        each task mixes systems as evenly as possible (for comparing systems). ``per_system``: per
        prompt and system, consecutive groups (the groups a policy sampled, for GRPO training).
        Leftover groups smaller than 2 are not made into tasks.
        """
        if layout not in ("mixed", "per_system"):
            raise AnnotationError(f"layout must be 'mixed' or 'per_system', got {layout!r}")
        with self.session() as s:
            study = load_study(s, study_id)
            tasked = select(TaskCandidate.candidate_id)
            rows = s.execute(
                select(Candidate.id, Candidate.prompt_id, Candidate.model_id, Candidate.recipe)
                .join(Prompt, Prompt.id == Candidate.prompt_id)
                .where(Prompt.study_id == study.id, Candidate.id.not_in(tasked))
                .order_by(Prompt.position, Candidate.id)
            ).all()
            gsize = study.group_size
        groups: list[list[int]] = []
        by_prompt: dict[int, dict[str, list[int]]] = {}
        for r in rows:
            by_prompt.setdefault(r.prompt_id, {}).setdefault(system_label(r.model_id, r.recipe), []).append(
                r.id
            )
        for systems in by_prompt.values():
            if layout == "per_system":
                for ids in systems.values():
                    groups += [ids[i : i + gsize] for i in range(0, len(ids), gsize)]
            else:
                dealt = _round_robin(list(systems.values()))
                n_tasks = math.ceil(len(dealt) / gsize)
                bounds = [round(i * len(dealt) / n_tasks) for i in range(n_tasks + 1)]
                groups += [dealt[a:b] for a, b in itertools.pairwise(bounds)]
        with self.session() as s:  # all tasks or none
            study = load_study(s, study_id)
            return [_create_task(s, study, g, None) for g in groups if len(g) >= 2]

    def add_control_tasks(self, study_id: int, n: int, seed: int = 0) -> list[int]:
        """Make ``n`` control tasks: one candidate of a prompt (the known best) among candidates
        made for other prompts, which cannot match it. Needs at least two prompts."""
        rng = random.Random(f"controls:{study_id}:{seed}")
        with self.session() as s:
            study = load_study(s, study_id)
            rows = s.execute(
                select(Candidate.id, Candidate.prompt_id)
                .join(Prompt, Prompt.id == Candidate.prompt_id)
                .where(Prompt.study_id == study.id)
                .order_by(Candidate.id)
            ).all()
            gsize = study.group_size
        by_prompt: dict[int, list[int]] = {}
        for r in rows:
            by_prompt.setdefault(r.prompt_id, []).append(r.id)
        if len(by_prompt) < 2:
            raise AnnotationError("control tasks need candidates for at least two prompts")
        groups = []
        prompt_ids = sorted(by_prompt)
        for _ in range(n):
            pid = rng.choice(prompt_ids)
            best = rng.choice(by_prompt[pid])
            others = [c for p in prompt_ids if p != pid for c in by_prompt[p]]
            members = [best, *rng.sample(others, min(gsize - 1, len(others)))]
            rng.shuffle(members)
            groups.append((members, best))
        with self.session() as s:  # all tasks or none
            study = load_study(s, study_id)
            return [_create_task(s, study, g, best) for g, best in groups]


# ---------------------------------------------------------------------- helpers


def _create_task(s: Session, study: Study, candidate_ids: Sequence[int], control_best: int | None) -> int:
    ids = [v.check_id(c, "candidate id") for c in candidate_ids]
    if len(set(ids)) != len(ids):
        raise AnnotationError("a task lists a candidate more than once")
    if not 2 <= len(ids) <= study.group_size:
        raise AnnotationError(f"a task needs 2..{study.group_size} candidates (the study's group size)")
    rows = s.execute(
        select(Candidate.id, Candidate.prompt_id, Prompt.study_id)
        .join(Prompt, Prompt.id == Candidate.prompt_id)
        .where(Candidate.id.in_(ids))
    ).all()
    found = {r.id: r for r in rows}
    missing = [c for c in ids if c not in found]
    if missing:
        raise NotFoundError(f"candidates do not exist: {missing[:10]}")
    if any(r.study_id != study.id for r in rows):
        raise AnnotationError("all candidates of a task must belong to the task's study")
    if control_best is None:
        prompts = {r.prompt_id for r in rows}
        if len(prompts) != 1:
            raise AnnotationError("a regular task's candidates must share one prompt")
        prompt_id = prompts.pop()
    else:
        if control_best not in found:
            raise AnnotationError("control_best must be one of the task's candidates")
        prompt_id = found[control_best].prompt_id
    task = Task(
        study_id=study.id,
        prompt_id=prompt_id,
        is_control=control_best is not None,
        control_best_id=control_best,
    )
    task.members = [TaskCandidate(candidate_id=c, position=i) for i, c in enumerate(ids)]
    s.add(task)
    s.flush()
    return task.id


def _prompt_row(p: str | Mapping[str, Any], i: int) -> tuple[str, dict[str, Any] | None]:
    if isinstance(p, str):
        return v.check_text(p, f"prompt {i}"), None
    if isinstance(p, Mapping) and isinstance(p.get("prompt"), str):
        if "metadata" in p:  # {"prompt": ..., "metadata": {...} or None}
            meta = p["metadata"]
        else:  # GenEval style: the metadata fields sit beside "prompt"
            meta = {k: val for k, val in p.items() if k != "prompt"} or None
        if meta is not None and not isinstance(meta, Mapping):
            raise AnnotationError(f"prompt {i} metadata must be a JSON object or null")
        return v.check_text(p["prompt"], f"prompt {i}"), meta
    raise AnnotationError(f"prompt {i} must be a string or a dict with a 'prompt' string")


def _sample_payload(smp: Any) -> dict[str, Any]:
    d = smp.to_dict(with_image=False)
    for key in ("cot_logprobs", "image_logprobs"):
        if not all(math.isfinite(x) for x in d[key]):
            raise AnnotationError(f"sample has non-finite {key}; refusing to store it")
    return d


def _add_scores(s: Session, ids: list[int], name: str, out: Any) -> None:
    v.check_text(name, "reward name")
    scores, details = list(out.scores), list(getattr(out, "details", None) or [{}] * len(ids))
    if len(scores) != len(ids) or len(details) != len(ids):
        raise AnnotationError(f"reward {name!r} gave {len(scores)} scores for {len(ids)} candidates")
    for cid, score, det in zip(ids, scores, details, strict=True):
        val = None if score is None or not math.isfinite(float(score)) else float(score)
        row = s.scalar(select(RewardScore).where(RewardScore.candidate_id == cid, RewardScore.name == name))
        if row is None:
            s.add(RewardScore(candidate_id=cid, name=name, score=val, details=_jsonable(det)))
        else:
            row.score, row.details = val, _jsonable(det)


def _jsonable(obj: Any) -> Any:
    """Details as plain JSON (non-finite floats and unknown objects become strings)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(x) for k, x in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(x) for x in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    return str(obj)


def _round_robin(lists: list[list[int]]) -> list[int]:
    out: list[int] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
    return out
