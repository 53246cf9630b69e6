"""Alembic environment: the URL comes from bot.store.migrate, never from a file."""

from alembic import context

from bot.store.db import engine_for
from bot.store.models import Base

config = context.config
url = config.attributes["database_url"]

with engine_for(url).connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
