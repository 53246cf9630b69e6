"""Chat sessions that end: a browser's chat cookie carries on its conversation
only while its session is live.

A session ends when the person leaves ("Leave this site", "Start again"), or
after CHAT_IDLE_MINUTES without a message. After that the cookie opens
nothing; the conversation itself is kept (until its transcript is purged) and
its pause code still opens it. Nothing personal is kept here: the
conversation id and two times.

The time of the last message is written at most every ``SEEN_STEP``: a
write and its commit on every message were about a quarter of the web
service's CPU under load. So a session may end up to ``SEEN_STEP`` sooner
than CHAT_IDLE_MINUTES after its last message, never later.
"""

from __future__ import annotations

import datetime as dt

from bot.store.models import ChatSession, utcnow
from bot.store.unit_of_work import UnitOfWork

LIVE, ENDED, IDLE = "live", "ended", "idle"
SEEN_STEP = dt.timedelta(seconds=60)


def check(uow: UnitOfWork, conversation_id: str, idle: dt.timedelta, now: dt.datetime | None = None) -> str:
    """LIVE (and its last message is now), ENDED or IDLE."""
    now = now or utcnow()
    with uow:
        row = uow.session.get(ChatSession, conversation_id)
        if row is None:  # a conversation from before sessions were kept: live from now
            uow.session.add(ChatSession(conversation_id=conversation_id, last_seen=now))
            uow.commit()
            return LIVE
        if row.ended_at is not None:
            return ENDED
        last = row.last_seen if row.last_seen.tzinfo else row.last_seen.replace(tzinfo=dt.timezone.utc)
        if now - last > idle:
            row.ended_at = now
            uow.commit()
            return IDLE
        if now - last >= SEEN_STEP or now < last:
            row.last_seen = now
            uow.commit()
        return LIVE


def start(uow: UnitOfWork, conversation_id: str, now: dt.datetime | None = None) -> None:
    """A live session for this conversation: a new chat, or one opened by its pause code."""
    now = now or utcnow()
    with uow:
        row = uow.session.get(ChatSession, conversation_id)
        if row is None:
            uow.session.add(ChatSession(conversation_id=conversation_id, last_seen=now))
        else:
            row.last_seen, row.ended_at = now, None
        uow.commit()


def end(uow: UnitOfWork, conversation_id: str, now: dt.datetime | None = None) -> None:
    now = now or utcnow()
    with uow:
        row = uow.session.get(ChatSession, conversation_id)
        if row is None:
            uow.session.add(ChatSession(conversation_id=conversation_id, last_seen=now, ended_at=now))
        elif row.ended_at is None:
            row.ended_at = now
        uow.commit()
