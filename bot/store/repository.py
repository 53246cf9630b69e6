"""Repository: the only code that queries referral tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from bot.store.models import CrisisEvent, Referral, ReferralEvent, ResumeCode


class ReferralRepository:
    def __init__(self, session: Session):
        self.session = session

    def add(self, referral: Referral) -> None:
        self.session.add(referral)

    def add_event(self, referral: Referral, kind: str, **detail) -> None:
        self.session.add(ReferralEvent(referral_id=referral.id, kind=kind, detail=detail))

    def by_conversation(self, conversation_id: str) -> Referral | None:
        return self.session.scalars(
            select(Referral).where(Referral.conversation_id == conversation_id)
        ).one_or_none()

    def by_reference(self, reference: str) -> Referral | None:
        return self.session.scalars(
            select(Referral).where(Referral.reference == reference).options(selectinload(Referral.events))
        ).one_or_none()

    def count_for_person(self, person_key: str, since: dt.datetime) -> int:
        """Referrals of the person with this keyed hash submitted since ``since``."""
        return self.session.scalar(
            select(func.count(Referral.id)).where(
                Referral.person_key == person_key, Referral.submitted_at >= since
            )
        )

    def add_crisis_event(self, event: CrisisEvent) -> None:
        self.session.add(event)

    def crisis_events(self, conversation_id: str) -> list[CrisisEvent]:
        return list(
            self.session.scalars(
                select(CrisisEvent)
                .where(CrisisEvent.conversation_id == conversation_id)
                .order_by(CrisisEvent.id)
            )
        )

    def all(self, batch: int = 200) -> Iterator[Referral]:
        statement = select(Referral).order_by(Referral.id).execution_options(yield_per=batch)
        yield from self.session.scalars(statement)

    def add_resume_code(self, code: ResumeCode) -> None:
        self.session.add(code)

    def resume_code(self, code_hash: str) -> ResumeCode | None:
        return self.session.scalars(select(ResumeCode).where(ResumeCode.code_hash == code_hash)).one_or_none()

    def remove_resume_codes(self, conversation_id: str) -> int:
        result = self.session.execute(delete(ResumeCode).where(ResumeCode.conversation_id == conversation_id))
        return result.rowcount

    def submitted_times(self, conversation_ids: list[str]) -> dict[str, dt.datetime]:
        """When each of these conversations' referral was submitted (those with one)."""
        return self._by_conversation(Referral.conversation_id, Referral.submitted_at, conversation_ids)

    def pause_expiries(self, conversation_ids: list[str]) -> dict[str, dt.datetime]:
        """The latest expiry of each of these conversations' pause codes (those with one)."""
        return self._by_conversation(
            ResumeCode.conversation_id, func.max(ResumeCode.expires_at), conversation_ids, group=True
        )

    def _by_conversation(self, key, value, conversation_ids: list[str], group: bool = False) -> dict:
        found = {}
        for start in range(0, len(conversation_ids), 500):
            statement = select(key, value).where(key.in_(conversation_ids[start : start + 500]))
            found.update(self.session.execute(statement.group_by(key) if group else statement).all())
        return found
