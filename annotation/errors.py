"""Errors raised by the annotation store. All are ``ValueError`` subclasses with a message that
says what was wrong and how to fix it; nothing is written when one is raised."""

from __future__ import annotations


class AnnotationError(ValueError):
    """Bad input to the annotation store (malformed, hostile or inconsistent)."""


class NotFoundError(AnnotationError):
    """A user, study, prompt, candidate or task id/name that does not exist."""


class PermissionDeniedError(AnnotationError):
    """The user may not do this (inactive, wrong role, task not assigned to them)."""


class ConflictError(AnnotationError):
    """The request conflicts with stored data (duplicate name, a different earlier submission)."""
