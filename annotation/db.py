"""Opening the annotation database: engines, per-request sessions and Alembic upgrades.

Any SQLAlchemy URL works (SQLite by default, PostgreSQL via ``postgresql+psycopg://...``).
SQLite connections get WAL journaling, a busy timeout and foreign keys, and every transaction
starts with ``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout instead of failing
with a stale read snapshot. Nothing here runs at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DATA_DIR = Path("data")
DEFAULT_DB_NAME = "reasongen.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_url(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> str:
    """``sqlite:///<data_dir>/reasongen.db`` (an absolute path)."""
    return f"sqlite:///{(Path(data_dir) / DEFAULT_DB_NAME).resolve()}"


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide where transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str | None = None, *, echo: bool = False, pool_size: int = 8) -> Engine:
    """An engine for ``url`` (default: :func:`default_url`); creates the SQLite file's folder.

    Raises ``ValueError`` for a URL SQLAlchemy cannot parse.
    """
    url = url or default_url()
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError
        raise ValueError(
            f"not a database URL: {url!r} (examples: sqlite:///data/reasongen.db, "
            "postgresql+psycopg://user:pass@127.0.0.1/reasongen)"
        ) from exc
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        db = parsed.database
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if db and db != ":memory:":
            kwargs.update(pool_size=pool_size, max_overflow=2 * pool_size, pool_timeout=60)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=2 * pool_size, pool_pre_ping=True)
    engine = create_engine(parsed, **kwargs)
    if is_sqlite:
        _setup_sqlite(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A factory for short-lived sessions: open one per request, never share one across threads."""
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


def alembic_config(url: str | None = None) -> Any:
    """An Alembic ``Config`` pointing at ``annotation/migrations`` (and ``url`` when given)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


MIGRATION_LOCK_KEY = 0x52474D4947  # "RGMIG": the PostgreSQL advisory lock held while migrating


def lock_migrations(conn: Connection) -> None:
    """Make concurrent migrations of one database take turns (call first in the transaction).

    On PostgreSQL this takes a transaction-level advisory lock (``pg_advisory_xact_lock``),
    released when the transaction commits or rolls back: a process that opens the database while
    another migrates it waits, then finds it at the new revision and has nothing to do. Without
    it, processes opening a new database at once all create the same tables, and all but one fail
    with a unique violation. SQLite needs nothing: its transactions start with ``BEGIN IMMEDIATE``
    (see :func:`make_engine`), which already serialises writers.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run Alembic migrations on ``engine`` up to ``revision`` (one process at a time)."""
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        lock_migrations(conn)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Run Alembic migrations on ``engine`` down to ``revision`` (``"base"``: drop everything)."""
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        lock_migrations(conn)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def init_db(url: str | None = None, *, pool_size: int = 8) -> Engine:
    """Open ``url`` (default ``data/reasongen.db``), migrate it to the newest schema, return it."""
    engine = make_engine(url, pool_size=pool_size)
    upgrade(engine)
    return engine
