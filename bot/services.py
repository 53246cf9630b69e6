"""Service layer: what the chat, the web service and the CLI do with referrals.

Each function takes a unit of work, so the caller chooses the database and
tests can use a real SQLite file or PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError

from bot import dataset, measures, referral, triage
from bot.store.models import (
    DATASET_COLUMNS,
    REFERRER_COLUMNS,
    SYSTEM_FIELDS,
    CrisisEvent,
    Referral,
    Referrer,
    as_utc,
    utcnow,
)
from bot.store.unit_of_work import UnitOfWork

_REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no 0/O, 1/I/L, U


def new_reference() -> str:
    """A short reference people can read out on the phone: CMH-XXXX-XXXX."""
    chars = [secrets.choice(_REFERENCE_ALPHABET) for _ in range(8)]
    return f"CMH-{''.join(chars[:4])}-{''.join(chars[4:])}"


@dataclass(frozen=True)
class Submission:
    conversation_id: str
    referrer_type: str
    answers: Mapping[str, object]
    channel: str = "web_chat"
    consent_given_at: dt.datetime | None = None
    crisis_flag: bool = False
    minimum: tuple[str, ...] = ()  # the route's minimum information
    criteria: triage.Criteria | None = None  # the service's triage criteria
    person_secret: bytes | None = None  # key for matching repeat referrals
    detect: triage.Detector | None = None  # for `detects:` rules (default: the crisis detector)
    # Safety questions answered with anything but a plain answer, word for word, for staff.
    safety_words: Mapping[str, str] = field(default_factory=dict)
    # Crisis wording was shown in an earlier chat from this browser (its signed marker).
    earlier_crisis: bool = False


@dataclass(frozen=True)
class SubmitResult:
    reference: str
    created: bool
    dataset_complete: bool = field(default=False)
    band: str | None = None
    pathway: str | None = None
    redirect_to: str | None = None


def submit_referral(uow: UnitOfWork, submission: Submission) -> SubmitResult:
    """Store the referral once per conversation.

    Any pause code for the conversation stops working. Submitting the same
    conversation again (a retry, a double click, two
    requests at the same moment) returns the first referral's reference with
    ``created=False``; the unique conversation id settles races.
    """
    with uow:
        existing = uow.referrals.by_conversation(submission.conversation_id)
        if existing is not None:
            return _result(existing, created=False)
        values = referral.record(submission.answers, submission.minimum)
        referrer = values.pop("referrer")
        if values.get("date_of_birth"):
            values["date_of_birth"] = dt.date.fromisoformat(str(values["date_of_birth"]))
        values.update(measures.scores(submission.answers))
        row = Referral(
            reference=new_reference(),
            conversation_id=submission.conversation_id,
            referrer_type=submission.referrer_type,
            channel=submission.channel,
            consent_given_at=submission.consent_given_at,
            submitted_at=utcnow(),
            dataset_version=dataset.load().version,
            **values,
        )
        if referrer is not None:
            row.referrer = Referrer(**referrer)
        # A crisis shown in the conversation; a direct question answered "no"
        # (level "ask") is not one.
        crisis = submission.crisis_flag or any(
            e.level in ("crisis", "imminent") for e in uow.referrals.crisis_events(submission.conversation_id)
        )
        if crisis:
            _flag_crisis(row)
        result = _triage(uow, row, submission, crisis)
        uow.referrals.add(row)
        try:
            uow.session.flush()
            uow.referrals.add_event(row, "created", channel=submission.channel)
            uow.referrals.add_event(row, "submitted", dataset_complete=row.dataset_complete)
            if crisis:
                uow.referrals.add_event(row, "flagged_crisis", reason="crisis in the conversation")
            if result is not None:
                uow.referrals.add_event(row, "triaged", **result.as_dict(), reasons_text=list(result.reasons))
            if row.needs_clarification:
                uow.referrals.add_event(row, "needs_clarification", missing=list(row.missing_fields))
            if submission.safety_words:
                uow.referrals.add_event(row, "unclear_safety_answers", answers=dict(submission.safety_words))
            # Sent: a pause code would only reopen a finished chat.
            uow.referrals.remove_resume_codes(submission.conversation_id)
            uow.commit()
        except IntegrityError:
            uow.rollback()
            existing = uow.referrals.by_conversation(submission.conversation_id)
            if existing is None:  # a reference collision, not a duplicate: try again
                return submit_referral(uow, submission)
            return _result(existing, created=False)
        return _result(row, created=True)


def _result(row: Referral, created: bool) -> SubmitResult:
    return SubmitResult(
        row.reference, created, row.dataset_complete, row.urgency_band, row.pathway, row.redirect_to
    )


def _triage(uow: UnitOfWork, row: Referral, submission: Submission, crisis: bool) -> triage.Result | None:
    """Apply the service's criteria and keep the result, its reasons and version on the row."""
    if submission.criteria is None:
        return None
    key = None
    if submission.person_secret is not None:
        key = triage.person_key(submission.person_secret, row.full_name, row.date_of_birth, row.postal_code)
    since = utcnow() - dt.timedelta(days=triage.REPEAT_WINDOW_DAYS)
    earlier = uow.referrals.count_for_person(key, since) if key else 0
    result = triage.assess(
        submission.criteria,
        submission.answers,
        crisis=crisis,
        missing=list(row.missing_fields or []),
        earlier_referrals=earlier,
        detect=submission.detect,
        earlier_crisis=submission.earlier_crisis,
    )
    row.person_key = key
    row.urgency_band = result.band
    row.pathway = result.pathway
    row.triage_reasons = list(result.reasons)
    row.criteria_version = result.criteria_version
    row.redirect_to = result.redirect.id if result.redirect else None
    row.repeat_referral = result.repeat_referral
    return result


EMERGENCY = "emergency"


def _flag_crisis(row: Referral) -> None:
    """A crisis in the conversation: the emergency band, handed to the crisis route."""
    row.crisis_flag = True
    row.urgency_band = EMERGENCY


def record_crisis_event(
    uow: UnitOfWork,
    conversation_id: str,
    level: str,
    subject: str,
    categories: list[str],
    resources: list[dict],
    detector_version: str = "",
    at: dt.datetime | None = None,
) -> bool:
    """Record that crisis signposting was shown; move a referral already sent from
    this conversation to the emergency band. Returns whether a referral was flagged.
    """
    with uow:
        uow.referrals.add_crisis_event(
            CrisisEvent(
                conversation_id=conversation_id,
                level=level,
                subject=subject,
                categories=list(categories),
                resources=[r.get("name") for r in resources],
                detector_version=detector_version,
                **({"at": at} if at is not None else {}),
            )
        )
        existing = uow.referrals.by_conversation(conversation_id)
        flagged = False
        if existing is not None and not existing.crisis_flag:
            if existing.urgency_band != EMERGENCY:
                uow.referrals.add_event(
                    existing,
                    "escalated",
                    at_step="crisis_after_submission",
                    to=EMERGENCY,
                    **{"from": existing.urgency_band},
                )
            _flag_crisis(existing)
            uow.referrals.add_event(existing, "flagged_crisis", reason="crisis after submission")
            flagged = True
        uow.commit()
        return flagged


def crisis_events(uow: UnitOfWork, conversation_id: str) -> list[dict]:
    with uow:
        return [
            {
                "at": as_utc(e.at).isoformat(),
                "level": e.level,
                "subject": e.subject,
                "categories": e.categories,
                "resources": e.resources,
            }
            for e in uow.referrals.crisis_events(conversation_id)
        ]


def as_record(row: Referral) -> dict:
    """A referral as the export shows it: data-dictionary names, JSON-ready values."""
    out: dict[str, object] = {}
    for name in SYSTEM_FIELDS + DATASET_COLUMNS:
        value = getattr(row, name)
        if isinstance(value, dt.datetime):
            value = as_utc(value)
        out[name] = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value
    out["status"] = row.status
    out["crisis_flag"] = row.crisis_flag
    out["urgency_band"] = row.urgency_band
    out["pathway"] = row.pathway
    out["triage_reasons"] = list(row.triage_reasons or [])
    out["criteria_version"] = row.criteria_version
    out["redirect_to"] = row.redirect_to
    out["repeat_referral"] = row.repeat_referral
    for name in ("phq9_score", "phq9_severity", "gad7_score", "gad7_severity"):
        out[name] = getattr(row, name)
    out["needs_clarification"] = row.needs_clarification
    out["missing_fields"] = list(row.missing_fields or [])
    out["referrer"] = (
        {name: getattr(row.referrer, name) for name in REFERRER_COLUMNS} if row.referrer is not None else None
    )
    return out


def export_records(uow: UnitOfWork) -> Iterator[dict]:
    with uow:
        for row in uow.referrals.all():
            yield as_record(row)


def find_referral(uow: UnitOfWork, reference: str) -> dict | None:
    """One referral with its event history, or None."""
    with uow:
        row = uow.referrals.by_reference(reference.strip().upper())
        if row is None:
            return None
        record = as_record(row)
        record["events"] = [
            {"kind": e.kind, "at": as_utc(e.at).isoformat(), "detail": e.detail} for e in row.events
        ]
        record["triage_note"] = TRIAGE_NOTE
        return record


# Shown wherever staff read a triage result (the staff view of `referrals show`).
TRIAGE_NOTE = (
    "The urgency band sets how fast and by which route we respond, never whether the person gets help. "
    "The pathway is a suggestion for staff to confirm."
)
