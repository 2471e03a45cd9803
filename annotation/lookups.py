"""Lookups shared by the store's services: a user or a study inside an open session, and the
name a (model, recipe) pair goes by in statistics.

``annotation.store``, ``annotation.workflow`` and ``annotation.tables`` all use these, so the
rules (ids are checked, a missing row raises ``NotFoundError``) are written once.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation import validation as v
from annotation.errors import NotFoundError, PermissionDeniedError
from annotation.models import Study, User


def system_label(model_id: str, recipe: str) -> str:
    """The name a (model, recipe) pair goes by in statistics: ``model_id:recipe``."""
    return f"{model_id}:{recipe}"


def load_user(s: Session, user: int | str, *, active: bool = False) -> User:
    """The user with this id or username; ``NotFoundError`` if there is none.

    With ``active`` a deactivated user raises ``PermissionDeniedError`` (annotators at work).
    """
    if isinstance(user, str):
        obj = s.scalar(select(User).where(User.username == user))
    else:
        obj = s.get(User, v.check_id(user, "user id"))
    if obj is None:
        raise NotFoundError(f"user {user!r} does not exist")
    if active and not obj.active:
        raise PermissionDeniedError(f"user {obj.username!r} is deactivated")
    return obj


def load_study(s: Session, study: int | str) -> Study:
    """The study with this id or name; ``NotFoundError`` if there is none."""
    if isinstance(study, str):
        obj = s.scalar(select(Study).where(Study.name == study))
    else:
        obj = s.get(Study, v.check_id(study, "study id"))
    if obj is None:
        raise NotFoundError(f"study {study!r} does not exist")
    return obj
