"""How long chat transcripts are kept, and the purge that enforces it.

Rasa's tracker store holds everything a person typed. A transcript goes:

- ``after_submit`` (24 hours by default) after its referral was submitted:
  the referral itself is the record triage works from;
- ``idle`` (7 days by default) after the conversation was last active, if no
  referral came of it, unless a pause code still works (it is kept until the
  code expires, so the person can come back);
- at once when the person asks to delete what they gave (bot/web/app.py).

A purged conversation's pause codes go with it, and its chat session is
ended, so neither a code nor an old cookie can open it again; expired codes
are removed too. The web service purges every ``PURGE_EVERY`` seconds;
`referral-assistant purge` does it by hand. Nothing personal is logged, only counts.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import delete

from bot import chat_sessions, transcripts
from bot.store.models import ResumeCode, as_utc, utcnow
from bot.store.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

PURGE_EVERY = 15 * 60


@dataclass(frozen=True)
class Retention:
    after_submit: dt.timedelta = dt.timedelta(hours=24)
    idle: dt.timedelta = dt.timedelta(days=7)


@dataclass(frozen=True)
class Purged:
    submitted: int  # conversations whose referral was sent long enough ago
    idle: int  # conversations left long enough without a referral
    events: int  # rows removed
    codes: int = 0  # pause codes removed: of purged conversations, or expired

    def as_dict(self) -> dict[str, int]:
        return {"submitted": self.submitted, "idle": self.idle, "events": self.events, "codes": self.codes}


def due(
    uow: UnitOfWork, active: dict[str, float], retention: Retention, now: dt.datetime
) -> tuple[set[str], set[str]]:
    """Of the stored conversations (with their last activity), those whose time is up:
    (submitted ones, idle ones)."""
    if not active:
        return set(), set()
    with uow:
        submitted_at = uow.referrals.submitted_times(list(active))
        paused_until = uow.referrals.pause_expiries(list(active))
    submitted = {c for c, at in submitted_at.items() if as_utc(at) + retention.after_submit <= now}
    idle = {
        conversation
        for conversation, at in active.items()
        if conversation not in submitted_at
        and dt.datetime.fromtimestamp(at, dt.timezone.utc) + retention.idle <= now
        and not (conversation in paused_until and as_utc(paused_until[conversation]) > now)
    }
    return submitted, idle


def purge(uow: UnitOfWork, tracker_url: str, retention: Retention, now: dt.datetime | None = None) -> Purged:
    now = now or utcnow()
    submitted, idle = due(uow, transcripts.last_active(tracker_url), retention, now)
    gone = submitted | idle
    removed = transcripts.delete_conversations(tracker_url, gone)
    codes = _close(uow, gone, now)
    transcripts.forget_tombstones(tracker_url, now.timestamp())
    result = Purged(len(submitted), len(idle), removed, codes)
    if removed or codes:
        log.info("transcripts purged: %s", result.as_dict())
    return result


def _close(uow: UnitOfWork, conversations: set[str], now: dt.datetime) -> int:
    """Pause codes of purged conversations and expired ones go; purged chat sessions end."""
    with uow:
        ids = sorted(conversations)
        removed = uow.session.execute(delete(ResumeCode).where(ResumeCode.expires_at <= now)).rowcount
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            removed += uow.session.execute(
                delete(ResumeCode).where(ResumeCode.conversation_id.in_(batch))
            ).rowcount
        uow.commit()
    for conversation_id in ids:
        chat_sessions.end(uow, conversation_id, now)
    return removed
