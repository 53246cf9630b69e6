"""Triage at submission: the service's criteria applied the same way every time.

The criteria live in the service configuration (bot/service.yml, `triage`),
versioned, and are checked when the configuration is loaded. This module
turns them into a result with reasons a person can read:

- an urgency band: `emergency` (a crisis in the conversation, already handed
  to the crisis route), `same_day` (a red flag), `urgent` (a priority rule),
  or `routine`;
- a suggested pathway for staff: `accept_for_assessment`,
  `needs_clarification` (minimum information missing; never a rejection) or
  `redirect` (an exclusion, with a named alternative and a safe next step).

Bands set the speed and the route, never eligibility for help. A redirect is
only suggested at the routine and urgent bands: anyone more urgent is seen
by this team first, whatever the criteria say about fit.

Conditions are small YAML mappings over the answers, so a service changes
its criteria without code. `detects` asks the crisis detector's semantic
layer what a free-text answer is about (bot.crisis.semantic.SIGNAL_CATEGORIES),
so a red flag does not depend on the words a person happens to use; keep a
`mentions` list beside it as a second route:

    {field: current_risk, in: [yes, unclear]}
    {field: current_risk_details, mentions: [plan, planned]}
    {field: current_risk_details, detects: plan_or_preparation}
    {field: recent_hospital_discharge, is: yes}
    {field: postal_code, starts_with_none_of: ["900", "902"]}
    {all: [...]}, {any: [...]}, {not: {...}}
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from bot.crisis.semantic import SIGNAL_CATEGORIES
from bot.dataset import NON_ANSWERS

BANDS = ("emergency", "same_day", "urgent", "routine")
ACCEPT = "accept_for_assessment"
CLARIFY = "needs_clarification"
REDIRECT = "redirect"
REPEAT_WINDOW_DAYS = 84  # 12 weeks
REPEAT_FLAG_AT = 3  # the third referral of the same person in the window


class CriteriaError(ValueError):
    """The triage section of the service configuration is malformed."""


@dataclass(frozen=True)
class Rule:
    id: str
    reason: str  # shown to staff, and readable by the person
    when: Mapping
    band: str | None = None  # for priority rules and red flags
    redirect: str | None = None  # for exclusions: an alternative's id
    unless: Mapping | None = None  # for exclusions: when it does not apply


@dataclass(frozen=True)
class Alternative:
    id: str
    name: str
    service_type: str
    call: str
    how: str
    cost: str = ""
    languages: str = ""
    access: str = ""
    transport: str = ""
    hours: str = ""


@dataclass(frozen=True)
class Criteria:
    version: str
    red_flags: tuple[Rule, ...]
    priority_rules: tuple[Rule, ...]
    exclusions: tuple[Rule, ...]
    alternatives: Mapping[str, Alternative]
    waits: Mapping[str, str]
    matching: tuple[tuple[Mapping, str], ...] = ()  # (condition, what to say)


@dataclass(frozen=True)
class Result:
    band: str
    pathway: str
    reasons: tuple[str, ...]
    criteria_version: str
    redirect: Alternative | None = None
    repeat_referral: bool = False
    rules: tuple[str, ...] = field(default=())  # ids of the rules that fired

    def as_dict(self) -> dict:
        return {
            "band": self.band,
            "pathway": self.pathway,
            "reasons": list(self.reasons),
            "rules": list(self.rules),
            "criteria_version": self.criteria_version,
            "redirect": self.redirect.id if self.redirect else None,
            "repeat_referral": self.repeat_referral,
        }


# ---------------------------------------------------------------- loading

_OPERATORS = {"is", "in", "mentions", "starts_with_none_of", "answered", "detects"}
# What `detects` may name: the semantic layer's signal categories.
DETECTABLE = SIGNAL_CATEGORIES

# (field, text) -> the signal categories found in that answer.
Detector = Callable[[str, str], Collection[str]]


def load(raw: Mapping, fields: Sequence[str]) -> Criteria:
    """Criteria from the `triage` section; every field and redirect named must exist."""
    try:
        alternatives = {
            key: Alternative(id=key, **{k: str(v) for k, v in value.items()})
            for key, value in (raw.get("alternatives") or {}).items()
        }
        criteria = Criteria(
            version=str(raw["criteria_version"]),
            red_flags=tuple(_rule(r) for r in raw.get("red_flags") or ()),
            priority_rules=tuple(_rule(r) for r in raw.get("priority_rules") or ()),
            exclusions=tuple(_rule(r) for r in raw.get("exclusions") or ()),
            alternatives=alternatives,
            waits={str(k): str(v) for k, v in raw["waits"].items()},
            matching=tuple((m["when"], str(m["say"])) for m in raw.get("matching") or ()),
        )
    except (KeyError, TypeError) as err:
        raise CriteriaError(f"triage: missing or bad setting: {err}") from err
    if set(criteria.waits) != set(BANDS):
        raise CriteriaError(f"triage.waits must give a wait for each band: {', '.join(BANDS)}")
    for rule in criteria.red_flags + criteria.priority_rules:
        if rule.band not in ("same_day", "urgent"):
            raise CriteriaError(f"triage rule {rule.id}: band must be same_day or urgent")
    for rule in criteria.exclusions:
        if rule.redirect not in alternatives:
            raise CriteriaError(f"triage exclusion {rule.id}: unknown alternative {rule.redirect!r}")
    known = set(fields)
    for rule in criteria.red_flags + criteria.priority_rules + criteria.exclusions:
        for condition in (rule.when, rule.unless):
            if condition is not None:
                _check(condition, known, rule.id)
    for number, (condition, _) in enumerate(criteria.matching, 1):
        _check(condition, known, f"matching {number}")
    ids = [r.id for r in criteria.red_flags + criteria.priority_rules + criteria.exclusions]
    if len(ids) != len(set(ids)):
        raise CriteriaError("triage rule ids must be unique")
    return criteria


def _rule(raw: Mapping) -> Rule:
    return Rule(
        id=str(raw["id"]),
        reason=str(raw["reason"]),
        when=raw["when"],
        band=raw.get("band"),
        redirect=raw.get("redirect"),
        unless=raw.get("unless"),
    )


def _check(condition: Mapping, known: set[str], rule_id: str) -> None:
    if not isinstance(condition, Mapping) or not condition:
        raise CriteriaError(f"triage rule {rule_id}: a condition must be a mapping")
    if "all" in condition or "any" in condition:
        for part in condition.get("all") or condition.get("any"):
            _check(part, known, rule_id)
        return
    if "not" in condition:
        _check(condition["not"], known, rule_id)
        return
    if condition.get("field") not in known:
        raise CriteriaError(f"triage rule {rule_id}: unknown field {condition.get('field')!r}")
    operators = set(condition) - {"field"}
    if len(operators) != 1 or not operators <= _OPERATORS:
        raise CriteriaError(f"triage rule {rule_id}: one of {sorted(_OPERATORS)} is needed")
    if "detects" in condition:
        named = condition["detects"]
        names = [named] if isinstance(named, str) else named
        if not isinstance(names, list) or not names or any(n not in DETECTABLE for n in names):
            raise CriteriaError(
                f"triage rule {rule_id}: detects takes one or more of {', '.join(DETECTABLE)}, not {named!r}"
            )


# ---------------------------------------------------------------- evaluating


def matches(condition: Mapping, answers: Mapping[str, object], detect: Detector | None = None) -> bool:
    """Whether the answers meet a condition. `detect` answers `detects`
    conditions (default: the crisis detector, bot.crisis.signals_of)."""
    if "all" in condition:
        return all(matches(part, answers, detect) for part in condition["all"])
    if "any" in condition:
        return any(matches(part, answers, detect) for part in condition["any"])
    if "not" in condition:
        return not matches(condition["not"], answers, detect)
    value = answers.get(condition["field"])
    if value in NON_ANSWERS:
        value = None
    if "answered" in condition:
        given = value is not None and str(value).strip().lower() not in _NOTHING
        return given == bool(condition["answered"])
    if value is None:
        return False
    if "is" in condition:
        return _same(value, condition["is"])
    if "in" in condition:
        return any(_same(value, option) for option in condition["in"])
    if "mentions" in condition:
        words = _words(str(value))
        return any(_mentions(words, phrase) for phrase in condition["mentions"])
    if "detects" in condition:
        named = condition["detects"]
        wanted = {named} if isinstance(named, str) else set(named)
        found = (detect or _detect)(condition["field"], str(value))
        return bool(wanted & set(found))
    if "starts_with_none_of" in condition:
        code = re.sub(r"\s", "", str(value)).upper()
        return not any(code.startswith(p.replace(" ", "").upper()) for p in condition["starts_with_none_of"])
    raise CriteriaError(f"unknown condition {condition!r}")


_NOTHING = {"no", "none", "nothing", "n/a", "na", "nobody", "no one"}


def _detect(field: str, text: str) -> Collection[str]:
    from bot.crisis import signals_of

    return signals_of(text)


def _same(value: object, expected: object) -> bool:
    if isinstance(value, bool) or isinstance(expected, bool):
        wanted = expected if isinstance(expected, bool) else str(expected).lower() in ("yes", "true")
        return bool(value) == wanted
    return str(value).strip().lower() == str(expected).strip().lower()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


_NEGATIONS = {
    "no",
    "not",
    "nobody",
    "never",
    "none",
    "isn't",
    "aren't",
    "don't",
    "doesn't",
    "didn't",
    "haven't",
}


def _mentions(words: list[str], phrase: str) -> bool:
    """Whole words, in order; a trailing * matches any ending ("hallucinat*").
    A match just after a negation ("nobody is hurting me") does not count."""
    target = phrase.lower().split()
    for i in range(len(words) - len(target) + 1):
        if all(
            words[i + j].startswith(t[:-1]) if t.endswith("*") else words[i + j] == t
            for j, t in enumerate(target)
        ) and not (_NEGATIONS & set(words[max(0, i - 3) : i]) or words[max(0, i - 2) : i] == ["no", "one"]):
            return True
    return False


def assess(
    criteria: Criteria,
    answers: Mapping[str, object],
    *,
    crisis: bool = False,
    missing: Sequence[str] = (),
    earlier_referrals: int = 0,
    detect: Detector | None = None,
    earlier_crisis: bool = False,
) -> Result:
    """The band, pathway and reasons for one referral. Same input, same result.

    ``missing`` is the route's minimum information without a value;
    ``earlier_referrals`` how many referrals of the same person arrived in
    the last 12 weeks; ``detect`` answers `detects` conditions (the action
    server passes what the NLU component found in each answer);
    ``earlier_crisis``: crisis wording was shown in an earlier chat from the
    same browser (then "start again" or "delete my answers"): same day at least.
    """
    reasons: list[str] = []
    fired: list[str] = []
    band = "routine"
    if crisis:
        band = "emergency"
        reasons.append("Crisis support was given in the conversation; handed to the crisis route.")
        fired.append("crisis_in_conversation")
    elif earlier_crisis:
        band = "same_day"
        reasons.append("Crisis support was given in an earlier chat from the same browser; review today.")
        fired.append("crisis_in_earlier_chat")
    for rule in criteria.red_flags + criteria.priority_rules:
        if matches(rule.when, answers, detect):
            reasons.append(rule.reason)
            fired.append(rule.id)
            if BANDS.index(rule.band) < BANDS.index(band):
                band = rule.band
    redirect = None
    for rule in criteria.exclusions:
        if matches(rule.when, answers, detect):
            if rule.unless is not None and matches(rule.unless, answers, detect):
                continue
            reasons.append(rule.reason)
            fired.append(rule.id)
            redirect = redirect or criteria.alternatives[rule.redirect]
    if missing:
        pathway = CLARIFY
        reasons.append("Missing from the minimum information: " + ", ".join(missing) + ".")
    elif redirect is not None and band in ("urgent", "routine"):
        pathway = REDIRECT
    else:
        pathway = ACCEPT
        if redirect is not None:
            reasons.append("Needs would fit another service, but the band means this team sees them first.")
            redirect = None
    repeat = earlier_referrals + 1 >= REPEAT_FLAG_AT
    if repeat:
        number = earlier_referrals + 1
        reasons.append(f"Referral number {number} for this person in 12 weeks: review the pattern.")
        fired.append("repeat_referral")
    if not reasons:
        reasons.append("No red flags or priority rules apply.")
    return Result(
        band=band,
        pathway=pathway,
        reasons=tuple(reasons),
        criteria_version=criteria.version,
        redirect=redirect,
        repeat_referral=repeat,
        rules=tuple(fired),
    )


def fit(criteria: Criteria, answers: Mapping[str, object]) -> list[str]:
    """What the configuration says about how the service fits these answers."""
    return [say for condition, say in criteria.matching if matches(condition, answers)]


# ---------------------------------------------------------------- repeat referrals


def person_key(secret: bytes, name: object, date_of_birth: object, postal_code: object) -> str | None:
    """A keyed hash of normalised name, date of birth and postal code, or None
    when any is missing. Plain identifiers are never compared or stored for this."""
    parts = [name, date_of_birth, postal_code]
    if any(p is None or p in NON_ANSWERS or not str(p).strip() for p in parts):
        return None
    normal_name = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode().lower()
    normal_name = " ".join(re.findall(r"[a-z]+", normal_name))
    normal_postal = re.sub(r"\s", "", str(postal_code)).upper()
    message = f"{normal_name}|{date_of_birth}|{normal_postal}".encode()
    return hmac.new(secret, b"person-key:" + message, hashlib.sha256).hexdigest()
