"""Key rotation: re-encrypt every stored value under the newest key.

`referral-assistant keys rotate` calls this after a new key was put first in
REFERRAL_ENCRYPTION_KEYS (or the development key file) and the services
restarted. Values already under the newest key are rewritten too, which is
harmless; each table is rotated in one transaction, so a failure leaves it
as it was.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot import crypto


def rotate_columns(engine: Engine, table: str, columns: Iterable[str], key: str = "id") -> int:
    """Re-encrypt the named columns of every row; returns how many values were rewritten."""
    columns = tuple(columns)
    target = sa.table(table, sa.column(key), *(sa.column(name, sa.Text()) for name in columns))
    keyring = crypto.keyring()
    rewritten = 0
    with engine.begin() as connection:
        for row in connection.execute(sa.select(target)).all():
            values = {name: keyring.rotate(row._mapping[name]) for name in columns if row._mapping[name]}
            if values:
                connection.execute(
                    sa.update(target).where(target.c[key] == row._mapping[key]).values(**values)
                )
                rewritten += len(values)
    return rewritten


def rotate_tracker(tracker_url: str) -> int:
    """Every stored chat event's data (Rasa's tracker store)."""
    from bot import transcripts
    from bot.store.db import StoreUnavailable

    if not transcripts.stored(tracker_url):
        return 0
    try:
        return rotate_columns(transcripts.engine(tracker_url), "events", ["data"])
    except SQLAlchemyError as err:
        raise StoreUnavailable(type(err).__name__) from err


def rotate_store(database_url: str) -> dict[str, int]:
    """Every encrypted column of the referral store, by table."""
    from bot.store.db import StoreUnavailable, engine_for
    from bot.store.models import ENCRYPTED_COLUMNS

    engine = engine_for(database_url)
    try:
        return {table: rotate_columns(engine, table, columns) for table, columns in ENCRYPTED_COLUMNS.items()}
    except SQLAlchemyError as err:
        raise StoreUnavailable(type(err).__name__) from err
