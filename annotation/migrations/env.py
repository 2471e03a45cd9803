"""Alembic environment for the annotation store.

Used two ways: programmatically by ``annotation.db.upgrade`` (which hands over an open connection
in ``config.attributes["connection"]``), or from the command line with
``alembic -c annotation/alembic.ini upgrade head`` (URL from ``REASONGEN_DB_URL`` or the ini file).
"""

from __future__ import annotations

import os

from alembic import context

from annotation.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    from annotation.db import default_url

    return os.environ.get("REASONGEN_DB_URL") or config.get_main_option("sqlalchemy.url") or (default_url())


def run_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    from annotation.db import lock_migrations, make_engine

    engine = make_engine(_url())
    try:
        with engine.begin() as connection:
            lock_migrations(connection)
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
