"""Database schema of the annotation store (SQLAlchemy 2.0 declarative, typed with ``Mapped``).

Tables: users, studies, prompts, candidates (a stored ``reasongen.types.Sample``), reward_scores,
tasks (a group of candidates, possibly a control task with a known best candidate),
task_candidates (membership and canonical order), assignments (a task served to an annotator and
the shuffled order they saw), rankings (one per task and annotator) and ranking_entries (the rank
of each candidate, 1 = best, equal ranks are ties).

The schema itself is created by Alembic (``annotation/migrations``); ``Base.metadata`` is the
target the migrations are checked against.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("annotator", "researcher")
"""User roles. Researchers may also annotate."""

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[int]: JSON,
        datetime: DateTime(timezone=True),
    }


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('annotator', 'researcher')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="annotator")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A software annotator (a simulated panel), never a person: labelled in every export and
    left out of human-only statistics unless asked for; cannot log in."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Study(Base):
    __tablename__ = "studies"
    __table_args__ = (
        CheckConstraint("group_size >= 2", name="group_size"),
        CheckConstraint("rankings_per_task >= 1", name="rankings_per_task"),
        CheckConstraint("control_rate >= 0 AND control_rate <= 1", name="control_rate"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    guidelines: Mapped[str] = mapped_column(Text, default="")
    group_size: Mapped[int] = mapped_column(Integer)
    rankings_per_task: Mapped[int] = mapped_column(Integer)
    control_rate: Mapped[float] = mapped_column(Float, default=0.0)
    seed: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column()
    """Set when the study is archived: it serves no tasks and takes no rankings."""

    prompts: Mapped[list[Prompt]] = relationship(back_populates="study", order_by="Prompt.position")


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("study_id", "position", name="uq_prompts_study_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship(back_populates="prompts")


class Candidate(Base):
    """A stored ``Sample``: ``sample`` holds ``Sample.to_dict()`` (token ids, log-probs, plan...)
    without the image; the image lives once under the data directory, named by its SHA-256."""

    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(String(512))
    recipe: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    sample_index: Mapped[int] = mapped_column(Integer, default=0)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    sample: Mapped[dict[str, Any]] = mapped_column(JSON)
    image_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    image_path: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    rewards: Mapped[list[RewardScore]] = relationship(
        back_populates="candidate", cascade="all, delete-orphan", order_by="RewardScore.name"
    )


class RewardScore(Base):
    __tablename__ = "reward_scores"
    __table_args__ = (UniqueConstraint("candidate_id", "name", name="uq_reward_scores_cand_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    candidate: Mapped[Candidate] = relationship(back_populates="rewards")


class Task(Base):
    """A group of candidates to rank. A control task has a known best candidate."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    is_control: Mapped[bool] = mapped_column(Boolean, default=False)
    control_best_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[TaskCandidate]] = relationship(
        back_populates="task", cascade="all, delete-orphan", order_by="TaskCandidate.position"
    )


class TaskCandidate(Base):
    __tablename__ = "task_candidates"
    __table_args__ = (UniqueConstraint("task_id", "position", name="uq_task_candidates_pos"),)

    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)

    task: Mapped[Task] = relationship(back_populates="members")


class Assignment(Base):
    """A task served to an annotator, with the shuffled candidate order they were shown."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("task_id", "annotator_id", name="uq_assignments_task_annotator"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    shown_order: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()


class Ranking(Base):
    """One annotator's answer for one task: ranks in ``entries`` or ``skipped``."""

    __tablename__ = "rankings"
    __table_args__ = (
        UniqueConstraint("task_id", "annotator_id", name="uq_rankings_task_annotator"),
        CheckConstraint("time_taken_s IS NULL OR time_taken_s >= 0", name="time_taken"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"))
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    time_taken_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    skip_reason: Mapped[str | None] = mapped_column(String(500))
    """Why the annotator skipped the task (a listed reason and/or their words), if they said."""
    both_bad: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """An arena answer "both bad": stored as a tie, flagged so it can be told from a good tie."""
    edited_at: Mapped[datetime | None] = mapped_column()
    """When the annotator last changed this ranking (``workflow.edit_ranking``), else NULL."""

    entries: Mapped[list[RankingEntry]] = relationship(
        back_populates="ranking", cascade="all, delete-orphan", order_by="RankingEntry.rank"
    )


class RankingEntry(Base):
    __tablename__ = "ranking_entries"
    __table_args__ = (CheckConstraint("rank >= 1", name="rank"),)

    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"), primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer)

    ranking: Mapped[Ranking] = relationship(back_populates="entries")
