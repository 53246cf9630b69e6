"""How long chat transcripts are kept, and the purge that enforces it.

Rasa's tracker store holds everything a person typed. A transcript goes:

- ``after_submit`` (24 hours by default) after its referral was submitted:
  the referral itself is the record triage works from;
- ``idle`` (7 days by default) after the conversation was last active, if no
  referral came of it, unless a pause code still works (it is kept until the
  code expires, so the person can come back);
- at once when the person asks to delete what they gave (bot/web/app.py).

The web service purges every ``PURGE_EVERY`` seconds; `referral-assistant
purge` does it by hand. Nothing personal is logged, only counts.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from bot import transcripts
from bot.store.models import as_utc, utcnow
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

    def as_dict(self) -> dict[str, int]:
        return {"submitted": self.submitted, "idle": self.idle, "events": self.events}


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
    removed = transcripts.delete_conversations(tracker_url, submitted | idle)
    result = Purged(len(submitted), len(idle), removed)
    if removed:
        log.info("transcripts purged: %s", result.as_dict())
    return result
