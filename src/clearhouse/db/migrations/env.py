"""Alembic environment: runs on the connection handed over by ``clearhouse.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from clearhouse.db.engine import make_engine
from clearhouse.db.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    # `alembic revision --autogenerate` run by a developer: connect from the URL in the config.
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///clearhouse.db")
    with engine.connect() as conn:
        _run(conn)
