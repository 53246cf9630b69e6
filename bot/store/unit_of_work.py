"""Unit of work: one session per use, rolled back unless committed."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from bot.store.db import StoreUnavailable, session_factory
from bot.store.repository import ReferralRepository


class UnitOfWork:
    """``with UnitOfWork(url) as uow: ...; uow.commit()``.

    Database errors surface as :class:`StoreUnavailable` so callers can tell
    the person plainly without knowing about SQLAlchemy.
    """

    def __init__(self, database_url: str):
        self.database_url = database_url

    def __enter__(self) -> UnitOfWork:
        try:
            self.session = session_factory(self.database_url)()
        except SQLAlchemyError as err:
            raise StoreUnavailable(type(err).__name__) from err
        self.referrals = ReferralRepository(self.session)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self.rollback()
        finally:
            self.session.close()
        if exc_type is not None and issubclass(exc_type, SQLAlchemyError):
            raise StoreUnavailable(exc_type.__name__) from exc
        return False

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()
