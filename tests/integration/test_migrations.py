from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from clearhouse.db import migrate
from clearhouse.db.schema import metadata


def test_migrations_create_exactly_the_declared_schema(app):
    with app.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == []
    assert migrate.pending_revisions(app.engine) == []
