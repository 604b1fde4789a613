"""Alembic environment: the target is imchat's models, the database imchat's settings.

Used both by ``imchat.ops.migrate`` (a Config built in code that carries the URL in
``sqlalchemy.url``) and by the ``alembic`` CLI with the repository's
alembic.ini (no URL there: it comes from ``IMCHAT_*`` via ``load_settings``).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import make_url

from imchat.config import load_settings
from imchat.ops import migrate
from imchat.stores.models import Base

config = context.config
target_metadata = Base.metadata

# Only the CLI has an ini file; programmatic runs keep the application's logging.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL imchat.ops.migrate put in the config, else the one imchat's settings give."""
    return config.get_main_option("sqlalchemy.url") or load_settings().effective_database_url


def run_migrations_offline() -> None:
    """Write the SQL instead of running it (``alembic upgrade head --sql``)."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **migrate.context_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a live connection."""
    engine = migrate.migration_engine(database_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                **migrate.context_options(connection.dialect.name),
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
