"""Alembic environment: online migrations on the connection ResultsIndex passes in (or on `-x url=...`
from the alembic command line). Batch mode lets SQLite alter tables it cannot ALTER natively."""

from alembic import context
from sqlalchemy import create_engine

from cxrxai.index.schema import Base

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = context.get_x_argument(as_dictionary=True).get("url")
        if not url:
            raise SystemExit("give the database: alembic ... -x url=sqlite:///index.sqlite")
        with create_engine(url).connect() as connection:
            _migrate(connection)
    else:
        _migrate(connection)


def _migrate(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
