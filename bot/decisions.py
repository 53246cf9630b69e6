"""What triage staff record about a referral: the decision, the first contact,
and the outcome of a redirect.

Each is a referral event with a timestamp and the member of staff, so the
audit figures (bot/figures.py) can measure how fast urgent need is seen and
whether redirects are safe, and an audit row in the same transaction.
Nothing is ever overwritten: a later decision is
a new event. A raised band is its own event (`escalated` at the decision,
`risk_upgraded` at first contact), so the figures can count them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from bot import staff, triage
from bot.store.models import Referral, as_utc, utcnow
from bot.store.unit_of_work import UnitOfWork

DECISIONS = ("accept", "needs_clarification", "redirect")
REDIRECT_OUTCOMES = ("engaged", "re_referred", "not_engaged")
STATUS = {"accept": "accepted", "needs_clarification": "needs_clarification", "redirect": "redirected"}
MAX_NOTE = 1000


class DecisionError(ValueError):
    """A request that cannot be recorded. ``code`` is safe to show: it holds no data."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def more_urgent(band: str | None, than: str | None) -> bool:
    if band is None:
        return False
    if than is None:
        return True
    return triage.BANDS.index(band) < triage.BANDS.index(than)


def record_decision(
    uow: UnitOfWork,
    reference: str,
    who: str,
    decision: str,
    band: str | None = None,
    redirect_to: str | None = None,
    safety_action: str | None = None,
    note: str | None = None,
    alternatives: Mapping[str, object] | None = None,
) -> dict:
    """Accept, ask for clarification, or redirect.

    A redirect needs the safety action taken (what was done so the person is
    safe while they reach the other service) and a named alternative. A band
    more urgent than the current one is an escalation; a less urgent one is
    refused: lowering urgency is a clinical review, not a queue action.
    """
    if decision not in DECISIONS:
        raise DecisionError("unknown_decision")
    if band is not None and band not in triage.BANDS:
        raise DecisionError("unknown_band")
    safety_action = _text(safety_action)
    note = _text(note)
    with uow:
        row = _referral(uow, reference)
        if decision == "redirect":
            redirect_to = redirect_to or row.redirect_to
            if not safety_action:
                raise DecisionError("safety_action_required")
            if not redirect_to or (alternatives is not None and redirect_to not in alternatives):
                raise DecisionError("unknown_alternative")
        else:
            redirect_to = None
        if band is not None and band != row.urgency_band:
            if not more_urgent(band, row.urgency_band):
                raise DecisionError("band_can_only_go_up")
            uow.referrals.add_event(
                row, "escalated", by=who, at_step="decision", to=band, **{"from": row.urgency_band}
            )
            row.urgency_band = band
        row.status = STATUS[decision]
        row.needs_clarification = decision == "needs_clarification"
        detail = {"by": who, "decision": decision, "band": row.urgency_band}
        if redirect_to:
            detail["redirect_to"] = redirect_to
            row.redirect_to = redirect_to
        if safety_action:
            detail["safety_action"] = safety_action
        if note:
            detail["note"] = note
        uow.referrals.add_event(row, "decision", **detail)
        staff.add_audit(uow, who, "record_decision", row.reference)
        uow.commit()
        return {"reference": row.reference, "status": row.status, "band": row.urgency_band}


def record_first_contact(
    uow: UnitOfWork,
    reference: str,
    who: str,
    contacted_at: dt.datetime | None = None,
    risk_band: str | None = None,
    note: str | None = None,
) -> dict:
    """The first time the team reached the person. ``risk_band``, when given and
    more urgent than the current band, records a risk upgrade after contact."""
    if risk_band is not None and risk_band not in triage.BANDS:
        raise DecisionError("unknown_band")
    now = utcnow()
    contacted_at = contacted_at or now
    if contacted_at.tzinfo is None:
        raise DecisionError("time_needs_zone")
    note = _text(note)
    with uow:
        row = _referral(uow, reference)
        submitted = as_utc(row.submitted_at)
        if contacted_at < submitted or contacted_at > now + dt.timedelta(minutes=5):
            raise DecisionError("time_out_of_range")
        if any(e.kind == "first_contact" for e in row.events):
            raise DecisionError("already_recorded")
        if not any(e.kind == "decision" for e in row.events):
            raise DecisionError("decision_first")
        if risk_band is not None and more_urgent(risk_band, row.urgency_band):
            uow.referrals.add_event(row, "risk_upgraded", by=who, to=risk_band, **{"from": row.urgency_band})
            row.urgency_band = risk_band
        detail = {"by": who, "contacted_at": contacted_at.isoformat()}
        if note:
            detail["note"] = note
        uow.referrals.add_event(row, "first_contact", **detail)
        staff.add_audit(uow, who, "record_first_contact", row.reference)
        uow.commit()
        return {"reference": row.reference, "status": row.status, "band": row.urgency_band}


def record_redirect_outcome(uow: UnitOfWork, reference: str, who: str, outcome: str) -> dict:
    """Whether a redirected person engaged with the alternative or was referred back."""
    if outcome not in REDIRECT_OUTCOMES:
        raise DecisionError("unknown_outcome")
    with uow:
        row = _referral(uow, reference)
        if row.status != STATUS["redirect"]:
            raise DecisionError("not_redirected")
        uow.referrals.add_event(row, "redirect_outcome", by=who, outcome=outcome)
        staff.add_audit(uow, who, "record_redirect_outcome", row.reference)
        uow.commit()
        return {"reference": row.reference, "status": row.status, "outcome": outcome}


def _referral(uow: UnitOfWork, reference: str) -> Referral:
    row = uow.referrals.by_reference(reference.strip().upper())
    if row is None:
        raise DecisionError("not_found")
    return row


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise DecisionError("bad_request")
    value = value.strip()
    if len(value) > MAX_NOTE:
        raise DecisionError("too_long")
    return value or None
