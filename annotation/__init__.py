"""Annotation store and human-study statistics.

- :mod:`annotation.models`: SQLAlchemy schema; :mod:`annotation.db`: engines, sessions, Alembic.
- :class:`annotation.store.Store`: users, studies, prompts, candidates, tasks;
  :mod:`annotation.lookups`: finding a user or a study in a session, system labels.
- :mod:`annotation.workflow`: ``next_task``, ``submit_ranking``, ``progress`` (functions of a
  ``Store``); :mod:`annotation.tables`: study data as pandas tables.
- :mod:`annotation.stats`: pairwise outcomes, Bradley–Terry with bootstrap CIs, win rates,
  Krippendorff's α, agreement, control pass rates, recipe comparison (pure, seeded).
- :mod:`annotation.export`: CSV/Parquet/JSONL tables and a ``datasets`` image folder.
- ``python -m annotation``: researcher CLI.

Importing this package opens no database and loads no model.
"""

from annotation.errors import AnnotationError, ConflictError, NotFoundError, PermissionDeniedError

__all__ = ["AnnotationError", "ConflictError", "NotFoundError", "PermissionDeniedError"]
