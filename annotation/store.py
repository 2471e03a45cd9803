"""The annotation store's service layer: users, studies, prompts, candidates and tasks.

``Store`` owns an engine and a session factory; every method opens its own short session and
transaction, so one ``Store`` may be used from many threads (sessions are never shared).
Serving tasks and taking rankings live in :mod:`annotation.workflow`, tables for statistics and
export in :mod:`annotation.tables`: both are functions of a ``Store``, built on top of it.

Roles: the researcher-only operations (creating users and studies, archiving or deleting a study,
adding prompts, candidates, scores and tasks, resetting passwords) take ``actor``, the id or name
of the user on whose behalf the call is made, and raise ``PermissionDeniedError`` unless that user
is an active researcher. ``actor=None`` (the default) is the administrator: the process that holds
the database URL itself (the CLI, scripts), which could write to the database directly anyway.
An application serving users (the web UI) passes the logged-in user as ``actor``.
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

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation import validation as v
from annotation.db import DEFAULT_DATA_DIR, default_url, make_engine, session_factory, upgrade
from annotation.errors import AnnotationError, ConflictError, NotFoundError, PermissionDeniedError
from annotation.lookups import load_study, load_user, system_label
from annotation.models import (
    ROLES,
    Assignment,
    Candidate,
    Prompt,
    Ranking,
    RankingEntry,
    RewardScore,
    Study,
    Task,
    TaskCandidate,
    User,
    utcnow,
)
from annotation.security import DEFAULT_N, hash_password, verify_password


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    role: str
    active: bool
    simulated: bool = False


@dataclass(frozen=True)
class StudyInfo:
    id: int
    name: str
    guidelines: str
    group_size: int
    rankings_per_task: int
    control_rate: float
    seed: int
    archived: bool = False


Actor = int | str | None
"""Who a call acts for: a user id or username, or None for the administrator (see the module)."""


def _check_actor(s: Session, actor: Actor, what: str) -> User | None:
    """The acting user, who must be an active researcher; None for the administrator."""
    if actor is None:
        return None
    user = load_user(s, actor, active=True)
    if user.role != "researcher":
        raise PermissionDeniedError(f"{what} is for researchers; {user.username!r} is an {user.role}")
    return user


def _user_info(u: User) -> UserInfo:
    return UserInfo(u.id, u.username, u.role, u.active, bool(u.simulated))


def _study_info(s: Study) -> StudyInfo:
    return StudyInfo(
        s.id,
        s.name,
        s.guidelines,
        s.group_size,
        s.rankings_per_task,
        s.control_rate,
        s.seed,
        s.archived_at is not None,
    )


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

    # ------------------------------------------------------------------ roles

    def require_researcher(self, actor: Actor, what: str = "this") -> UserInfo | None:
        """Raise ``PermissionDeniedError`` unless ``actor`` is an active researcher (or None, the
        administrator); for callers guarding researcher-only work outside the store."""
        with self.session() as s:
            user = _check_actor(s, actor, what)
            return None if user is None else _user_info(user)

    # ------------------------------------------------------------------ users

    def create_user(
        self,
        username: str,
        password: str,
        role: str = "annotator",
        *,
        simulated: bool = False,
        actor: Actor = None,
    ) -> UserInfo:
        """Add a user with a scrypt password hash. Raises ``ConflictError`` if the name is taken.

        ``simulated`` marks a software annotator (a simulated panel): it cannot log in, and its
        rankings are labelled and kept out of human-only statistics unless asked for."""
        if not isinstance(simulated, bool):
            raise AnnotationError(f"simulated must be true or false, got {simulated!r}")
        v.check_username(username)
        if role not in ROLES:
            raise AnnotationError(f"role must be one of {ROLES}, got {role!r}")
        with self.session() as s:
            _check_actor(s, actor, "creating users")
        pw_hash = _hash(password, self.password_cost)
        try:
            with self.session() as s:
                user = User(
                    username=username, password_hash=pw_hash, role=role, active=True, simulated=simulated
                )
                s.add(user)
                s.flush()
                return _user_info(user)
        except IntegrityError as exc:
            raise ConflictError(f"user {username!r} already exists") from exc

    def authenticate(self, username: str, password: str) -> UserInfo | None:
        """The active, non-simulated user with this name and password, or None."""
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
        if not user.active or not verify_password(password, user.password_hash) or user.simulated:
            return None  # simulated annotators submit through the library, never by logging in
        return _user_info(user)

    def get_user(self, user: int | str) -> UserInfo:
        """Look a user up by id or username; raises ``NotFoundError``."""
        with self.session() as s:
            return _user_info(load_user(s, user))

    def set_user_active(self, user: int | str, active: bool, *, actor: Actor = None) -> UserInfo:
        """Deactivate (``active=False``) or reactivate a user. A deactivated user cannot log in,
        and their rankings stop counting toward quotas (see :mod:`annotation.quota`)."""
        if not isinstance(active, bool):
            raise AnnotationError(f"active must be True or False, got {active!r}")
        with self.session() as s:
            _check_actor(s, actor, "activating or deactivating users")
            u = load_user(s, user)
            u.active = active
            return _user_info(u)

    def reset_password(self, user: int | str, password: str, *, actor: Actor = None) -> UserInfo:
        """Give a user a new password (researchers for anyone; any active user for themselves)."""
        pw_hash = _hash(password, self.password_cost)
        with self.session() as s:
            u = load_user(s, user)
            if actor is not None:
                me = load_user(s, actor, active=True)
                if me.id != u.id:
                    _check_actor(s, actor, "resetting another user's password")
            u.password_hash = pw_hash
            return _user_info(u)

    def list_users(self) -> list[UserInfo]:
        """Every user, by id."""
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
        actor: Actor = None,
    ) -> StudyInfo:
        """Add a study; ``AnnotationError`` for bad settings, ``ConflictError`` if it exists.

        ``actor`` (else ``created_by``) must be a researcher and is recorded as the creator.
        """
        v.check_study_name(name)
        seed = v.check_int(seed, "seed")
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
                creator = _check_actor(s, actor if actor is not None else created_by, "creating studies")
                if created_by is not None:
                    load_user(s, created_by)
                elif creator is not None:
                    created_by = creator.id
                study = Study(
                    name=name,
                    guidelines=guidelines,
                    group_size=group_size,
                    rankings_per_task=rankings_per_task,
                    control_rate=float(control_rate),
                    seed=seed,
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

    def find_study(self, ref: str) -> StudyInfo:
        """The study a command line names: ``name:X`` or ``id:N`` say which; a bare ``ref`` is a
        name first and, when no study has that name and it is all digits, an id (so a study named
        "1" is reachable as ``1`` or ``name:1``, the study with id 1 as ``id:1``).
        Raises ``NotFoundError`` or, for ``id:`` without a number, ``AnnotationError``."""
        kind, sep, rest = ref.partition(":")
        if sep and kind == "id":
            if not rest.isdigit():
                raise AnnotationError(f"study id:N needs a number, got {ref!r}")
            return self.get_study(int(rest))
        if sep and kind == "name":
            return self.get_study(rest)
        try:
            return self.get_study(ref)
        except NotFoundError:
            if not ref.isdigit():
                raise
            return self.get_study(int(ref))

    def list_studies(self, *, include_archived: bool = False) -> list[StudyInfo]:
        """The studies by id; archived ones only with ``include_archived``."""
        with self.session() as s:
            q = select(Study).order_by(Study.id)
            if not include_archived:
                q = q.where(Study.archived_at.is_(None))
            return [_study_info(x) for x in s.scalars(q)]

    def archive_study(self, study: int | str, archived: bool = True, *, actor: Actor = None) -> StudyInfo:
        """Archive a study (it serves no tasks, takes no rankings and leaves the study lists; its
        data stays for statistics and export), or reopen it with ``archived=False``."""
        if not isinstance(archived, bool):
            raise AnnotationError(f"archived must be True or False, got {archived!r}")
        with self.session() as s:
            _check_actor(s, actor, "archiving studies")
            st = load_study(s, study)
            if archived and st.archived_at is None:
                st.archived_at = utcnow()
            elif not archived:
                st.archived_at = None
            return _study_info(st)

    def delete_study(self, study: int | str, *, force: bool = False, actor: Actor = None) -> dict[str, int]:
        """Delete a study with its prompts, candidates, tasks, assignments and rankings, and the
        image files no other candidate uses. A study with rankings is only deleted with
        ``force=True`` (else ``ConflictError``: archive it instead). Returns counts deleted."""
        with self.session() as s:
            _check_actor(s, actor, "deleting studies")
            st = load_study(s, study)
            task_ids = select(Task.id).where(Task.study_id == st.id)
            prompt_ids = select(Prompt.id).where(Prompt.study_id == st.id)
            cand_ids = select(Candidate.id).where(Candidate.prompt_id.in_(prompt_ids))
            n_rankings = s.scalar(
                select(func.count()).select_from(Ranking).where(Ranking.task_id.in_(task_ids))
            )
            if n_rankings and not force:
                raise ConflictError(
                    f"study {st.name!r} holds {n_rankings} ranking(s); archive it, or delete with force"
                )
            shas = set(s.scalars(select(Candidate.image_sha256).where(Candidate.id.in_(cand_ids))))
            ranking_ids = select(Ranking.id).where(Ranking.task_id.in_(task_ids))
            counts = {"rankings": n_rankings or 0}
            s.execute(delete(RankingEntry).where(RankingEntry.ranking_id.in_(ranking_ids)))
            s.execute(delete(Ranking).where(Ranking.task_id.in_(task_ids)))
            s.execute(delete(Assignment).where(Assignment.task_id.in_(task_ids)))
            s.execute(delete(TaskCandidate).where(TaskCandidate.task_id.in_(task_ids)))
            counts["tasks"] = s.execute(delete(Task).where(Task.study_id == st.id)).rowcount
            s.execute(delete(RewardScore).where(RewardScore.candidate_id.in_(cand_ids)))
            counts["candidates"] = s.execute(
                delete(Candidate).where(Candidate.prompt_id.in_(prompt_ids))
            ).rowcount
            counts["prompts"] = s.execute(delete(Prompt).where(Prompt.study_id == st.id)).rowcount
            s.delete(st)
        counts["images"] = self._remove_unused_images(shas)
        return counts

    def add_prompts(
        self, study_id: int, prompts: Sequence[str | Mapping[str, Any]], *, actor: Actor = None
    ) -> list[int]:
        """Append prompts (strings, or dicts with ``prompt`` and optional ``metadata``)."""
        rows = [_prompt_row(p, i) for i, p in enumerate(prompts)]
        with self.session() as s:
            _check_actor(s, actor, "adding prompts")
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
        sha, rel, _created = self._write_image(image)
        return sha, rel

    def _write_image(self, image: Any) -> tuple[str, str, bool]:
        """``save_image`` that also says whether this call created the file."""
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        rel = Path("images") / sha[:2] / f"{sha}.png"
        path = self.data_dir / rel
        if path.exists():
            return sha, rel.as_posix(), False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return sha, rel.as_posix(), True

    def _remove_unused_images(self, shas: set[str | None]) -> int:
        """Delete the image files of these hashes that no stored candidate refers to."""
        shas = {x for x in shas if x}
        if not shas:
            return 0
        with self.session() as s:
            used = set(s.scalars(select(Candidate.image_sha256).where(Candidate.image_sha256.in_(shas))))
        removed = 0
        for sha in shas - used:
            path = self.data_dir / "images" / sha[:2] / f"{sha}.png"
            if path.exists():
                path.unlink()
                removed += 1
        return removed

    def add_candidates(
        self,
        prompt_id: int,
        samples: Sequence[Any],
        rewards: Mapping[str, Any] | None = None,
        *,
        actor: Actor = None,
    ) -> list[int]:
        """Store ``samples`` (``reasongen.types.Sample``) for a prompt; return their ids.

        ``rewards`` maps a reward name to that reward's output for these samples, any object with
        ``scores`` (one float or None per sample) and ``details`` (one dict per sample).
        Everything is validated before any image is written; if storing then fails, the image
        files this call wrote are removed again (unless another candidate uses them).
        """
        from reasongen.types import Sample

        v.check_id(prompt_id, "prompt_id")
        if isinstance(samples, (str, bytes, Mapping)) or not isinstance(samples, Sequence):
            raise AnnotationError(f"samples must be a list of Sample objects, got {type(samples).__name__}")
        for smp in samples:
            if not isinstance(smp, Sample):
                raise AnnotationError(f"candidates must be reasongen Sample objects, got {type(smp)}")
        rows = [_candidate_row(smp) for smp in samples]
        scores = {name: _score_rows(name, out, len(samples)) for name, out in (rewards or {}).items()}
        with self.session() as s:
            _check_actor(s, actor, "adding candidates")
            prompt = s.get(Prompt, prompt_id)
            if prompt is None:
                raise NotFoundError(f"prompt {prompt_id} does not exist")
            for smp in samples:
                if smp.prompt != prompt.text:
                    raise AnnotationError(
                        f"sample prompt {smp.prompt[:60]!r} differs from prompt {prompt_id}'s text"
                    )
        written: set[str | None] = set()
        try:
            images = []
            for smp in samples:
                if smp.image is None:
                    images.append((None, None))
                    continue
                sha, rel, created = self._write_image(smp.image)
                if created:
                    written.add(sha)
                images.append((sha, rel))
            with self.session() as s:
                if s.get(Prompt, prompt_id) is None:
                    raise NotFoundError(f"prompt {prompt_id} does not exist")
                objs = [
                    Candidate(prompt_id=prompt_id, image_sha256=sha, image_path=rel, **row)
                    for row, (sha, rel) in zip(rows, images, strict=True)
                ]
                s.add_all(objs)
                s.flush()
                ids = [o.id for o in objs]
                for name, pairs in scores.items():
                    _put_scores(s, ids, name, pairs)
                return ids
        except BaseException:
            self._remove_unused_images(written)
            raise

    def add_reward_scores(
        self, candidate_ids: Sequence[int], name: str, output: Any, *, actor: Actor = None
    ) -> None:
        """Store one reward's ``output`` (``scores``/``details``) for these candidates (upsert)."""
        ids = [v.check_id(cid, "candidate id") for cid in candidate_ids]
        pairs = _score_rows(name, output, len(ids))
        with self.session() as s:
            _check_actor(s, actor, "adding reward scores")
            for cid in ids:
                if s.get(Candidate, cid) is None:
                    raise NotFoundError(f"candidate {cid} does not exist")
            _put_scores(s, ids, name, pairs)

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
        self,
        study_id: int,
        candidate_ids: Sequence[int],
        *,
        control_best: int | None = None,
        actor: Actor = None,
    ) -> int:
        """A task ranking these candidates (in this canonical order).

        Regular tasks need candidates of one prompt of the study; a control task
        (``control_best`` given) may mix in candidates of other prompts and is about the prompt of
        ``control_best``.
        """
        with self.session() as s:
            _check_actor(s, actor, "creating tasks")
            return _create_task(s, load_study(s, study_id), candidate_ids, control_best)

    def build_tasks(self, study_id: int, layout: str = "mixed", *, actor: Actor = None) -> list[int]:
        """Group every not-yet-tasked candidate of the study into regular tasks.

        ``mixed``: per prompt, candidates of all systems (model, recipe) are dealt round-robin so
        each task mixes systems as evenly as possible (for comparing systems). ``per_system``: per
        prompt and system, consecutive groups (the groups a policy sampled, for GRPO training).
        Leftover groups smaller than 2 are not made into tasks.
        """
        if layout not in ("mixed", "per_system"):
            raise AnnotationError(f"layout must be 'mixed' or 'per_system', got {layout!r}")
        with self.session() as s:
            _check_actor(s, actor, "building tasks")
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

    def add_control_tasks(self, study_id: int, n: int, seed: int = 0, *, actor: Actor = None) -> list[int]:
        """Make ``n`` control tasks: one candidate of a prompt (the known best) among candidates
        made for other prompts, which cannot match it. Needs at least two prompts."""
        n = v.check_int(n, "number of control tasks", 0, 100_000)
        rng = random.Random(f"controls:{study_id}:{v.check_int(seed, 'seed')}")
        with self.session() as s:
            _check_actor(s, actor, "adding control tasks")
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
        return v.check_text(p["prompt"], f"prompt {i}"), v.check_json(meta, f"prompt {i} metadata")
    raise AnnotationError(f"prompt {i} must be a string or a dict with a 'prompt' string")


def _hash(password: Any, cost: int) -> str:
    try:
        return hash_password(password, n=cost)
    except ValueError as exc:  # a password too short or too long
        raise AnnotationError(str(exc)) from None


def _sample_payload(smp: Any) -> dict[str, Any]:
    d = smp.to_dict(with_image=False)
    for key in ("cot_logprobs", "image_logprobs"):
        if not all(math.isfinite(x) for x in d[key]):
            raise AnnotationError(f"sample has non-finite {key}; refusing to store it")
    return v.check_json(d, "sample")


def _candidate_row(smp: Any) -> dict[str, Any]:
    """The columns of one candidate, every value checked so each backend stores it alike."""
    return {
        "model_id": v.check_label(smp.model_id, "sample model_id", 512),
        "recipe": v.check_label(smp.recipe, "sample recipe", 64),
        "seed": v.check_int(smp.seed, "sample seed"),
        "sample_index": v.check_int(smp.index, "sample index", *v.INT32),
        "settings": v.check_json(smp.settings.to_dict(), "sample settings"),
        "sample": _sample_payload(smp),
    }


def _score_rows(name: Any, out: Any, n: int) -> list[tuple[float | None, Any]]:
    """One reward output as ``(score, JSON details)`` per candidate, checked before any write."""
    v.check_label(name, "reward name", 64)
    raw_scores = getattr(out, "scores", None)
    if raw_scores is None or isinstance(raw_scores, (str, bytes)):
        raise AnnotationError(f"reward {name!r} output has no list of scores")
    try:
        scores = list(raw_scores)
    except TypeError:
        raise AnnotationError(
            f"reward {name!r} scores must be a list, got {type(raw_scores).__name__}"
        ) from None
    details = list(getattr(out, "details", None) or [{}] * n)
    if len(scores) != n or len(details) != n:
        raise AnnotationError(f"reward {name!r} gave {len(scores)} scores for {n} candidates")
    return [
        (v.check_score(x, f"reward {name!r} score"), _jsonable(d))
        for x, d in zip(scores, details, strict=True)
    ]


def _put_scores(s: Session, ids: list[int], name: str, pairs: list[tuple[float | None, Any]]) -> None:
    for cid, (val, det) in zip(ids, pairs, strict=True):
        row = s.scalar(select(RewardScore).where(RewardScore.candidate_id == cid, RewardScore.name == name))
        if row is None:
            s.add(RewardScore(candidate_id=cid, name=name, score=val, details=det))
        else:
            row.score, row.details = val, det


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
