"""SQLAlchemy models: a referral with typed dataset columns, and its events.

The dataset columns are generated from the data dictionary so the names can
never drift from the contract. Personal and health values are stored
encrypted (``Encrypted``); only what triage sorts and filters on is in clear:
the band, dates, flags and the criteria version. Alembic migrations are the schema's source of
truth in a database; tests check the two agree.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import declarative_base, relationship

from bot import crypto, dataset

Base = declarative_base()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """A stored time with its zone: SQLite hands times back without one, and they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


class Encrypted(TypeDecorator):
    """A value stored as a Fernet token (bot/crypto.py), read back as its Python type.

    ``kind`` is the data dictionary's type (text, date, bool, int) or json.
    Nothing can be searched or sorted on such a column in SQL.
    """

    impl = Text
    cache_ok = True

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, dt.date):
            value = value.isoformat()
        return crypto.keyring().encrypt(json.dumps(value).encode())

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        plain = json.loads(crypto.keyring().decrypt(value))
        if self.kind == "date" and isinstance(plain, str):
            return dt.date.fromisoformat(plain)
        return plain


def _columns(specs) -> dict[str, Column]:
    return {spec.name: Column(spec.name, Encrypted(spec.type), nullable=True) for spec in specs}


class _ReferralBase(Base):
    __abstract__ = True

    id = Column(Integer, primary_key=True)
    reference = Column(String(20), nullable=False, unique=True)
    # The chat conversation that produced the referral: the idempotency key.
    conversation_id = Column(String(64), nullable=False, unique=True)
    referrer_type = Column(String(20), nullable=False)
    channel = Column(String(20), nullable=False)
    status = Column(String(30), nullable=False, default="submitted")
    consent_given_at = Column(DateTime(timezone=True), nullable=True)
    submitted_at = Column(DateTime(timezone=True), nullable=False)
    dataset_version = Column(Integer, nullable=False)
    dataset_complete = Column(Boolean, nullable=False)
    declined_fields = Column(JSON, nullable=False, default=list)
    skipped_fields = Column(JSON, nullable=False, default=list)
    unknown_fields = Column(JSON, nullable=False, default=list)
    # What triage needs later: set by the triage engine and staff.
    urgency_band = Column(String(20), nullable=True, index=True)
    pathway = Column(String(30), nullable=True)
    crisis_flag = Column(Boolean, nullable=False, default=False)
    needs_clarification = Column(Boolean, nullable=False, default=False)
    missing_fields = Column(JSON, nullable=False, default=list)
    criteria_version = Column(String(40), nullable=True)
    # The triage engine's suggestion (bot/triage.py), with its reasons.
    triage_reasons = Column(Encrypted("json"), nullable=False, default=list)
    redirect_to = Column(String(60), nullable=True)
    repeat_referral = Column(Boolean, nullable=False, default=False)
    # Standard measures, worked out at submission from the item scores.
    phq9_score = Column(Encrypted("int"), nullable=True)
    phq9_severity = Column(Encrypted("text"), nullable=True)
    gad7_score = Column(Encrypted("int"), nullable=True)
    gad7_severity = Column(Encrypted("text"), nullable=True)
    person_key = Column(String(64), nullable=True, index=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at = Column(DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow)


Referral = type(
    "Referral", (_ReferralBase,), {"__tablename__": "referrals", **_columns(dataset.load().person_fields)}
)


# Who made a supported referral: kept apart from the person referred.
Referrer = type(
    "Referrer",
    (Base,),
    {
        "__tablename__": "referrers",
        "id": Column(Integer, primary_key=True),
        "referral_id": Column(
            Integer, ForeignKey("referrals.id", ondelete="CASCADE"), nullable=False, unique=True
        ),
        **_columns(dataset.load().referrer_fields),
    },
)


class ReferralEvent(Base):
    """Something that happened to a referral: created, submitted, triaged, ..."""

    __tablename__ = "referral_events"

    id = Column(Integer, primary_key=True)
    referral_id = Column(Integer, ForeignKey("referrals.id", ondelete="CASCADE"), nullable=False, index=True)
    kind = Column(String(40), nullable=False)
    at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    detail = Column(Encrypted("json"), nullable=False, default=dict)  # staff notes, safety actions


class CrisisEvent(Base):
    """A crisis response shown in a conversation. Never holds what the person wrote."""

    __tablename__ = "crisis_events"

    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(64), nullable=False, index=True)
    at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    # Sealed (bot/crypto.py): what kind of crisis it was is health information.
    level = Column(Encrypted("text"), nullable=False)
    subject = Column(Encrypted("text"), nullable=False)
    categories = Column(Encrypted("json"), nullable=False, default=list)
    resources = Column(Encrypted("json"), nullable=False, default=list)
    detector_version = Column(String(80), nullable=True)


class ResumeCode(Base):
    """A pause code. Holds a keyed hash of the code and the conversation, nothing personal."""

    __tablename__ = "resume_codes"

    id = Column(Integer, primary_key=True)
    code_hash = Column(String(64), nullable=False, unique=True)
    conversation_id = Column(String(64), nullable=False, index=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    expires_at = Column(DateTime(timezone=True), nullable=False)


class ChatSession(Base):
    """Whether a browser's chat cookie may still carry on its conversation.

    Ended by "Leave this site" or "Start again", or by being idle longer than
    CHAT_IDLE_MINUTES; after that only the pause code opens the conversation.
    Holds the conversation id and times, nothing personal.
    """

    __tablename__ = "chat_sessions"

    conversation_id = Column(String(64), primary_key=True)
    last_seen = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    ended_at = Column(DateTime(timezone=True), nullable=True)


class StaffUser(Base):
    """A member of staff who may read referrals. Passwords are argon2id hashes (bot/staff.py)."""

    __tablename__ = "staff_users"

    id = Column(Integer, primary_key=True)
    username = Column(String(40), nullable=False, unique=True)
    password_hash = Column(String(200), nullable=False)
    role = Column(String(20), nullable=False)
    totp_secret = Column(String(64), nullable=True)  # admins only
    totp_last_step = Column(Integer, nullable=True)  # the last time step accepted: each code works once
    active = Column(Boolean, nullable=False, default=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class StaffSession(Base):
    """A signed-in member of staff. Only a hash of the cookie's token is stored."""

    __tablename__ = "staff_sessions"

    id = Column(Integer, primary_key=True)
    token_hash = Column(String(64), nullable=False, unique=True)
    staff_username = Column(String(40), nullable=False, index=True)
    role = Column(String(20), nullable=False)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_seen_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class AuditEvent(Base):
    """Who viewed or changed what, and when. Holds no personal data itself."""

    __tablename__ = "audit_events"

    id = Column(Integer, primary_key=True)
    at = Column(DateTime(timezone=True), nullable=False, default=utcnow, index=True)
    staff_username = Column(String(40), nullable=False, index=True)
    action = Column(String(40), nullable=False)
    referral_reference = Column(String(20), nullable=True, index=True)
    detail = Column(JSON, nullable=False, default=dict)


Referral.events = relationship(
    ReferralEvent, order_by=ReferralEvent.id, cascade="all, delete-orphan", lazy="raise"
)
Referral.referrer = relationship(Referrer, uselist=False, cascade="all, delete-orphan", lazy="selectin")

DATASET_COLUMNS = tuple(spec.name for spec in dataset.load().person_fields)
REFERRER_COLUMNS = tuple(spec.name for spec in dataset.load().referrer_fields)
# Every encrypted column, by table: what `referral-assistant keys rotate` re-encrypts.
ENCRYPTED_COLUMNS = {
    table.name: tuple(c.name for c in table.columns if isinstance(c.type, Encrypted))
    for table in Base.metadata.sorted_tables
    if any(isinstance(c.type, Encrypted) for c in table.columns)
}
SYSTEM_FIELDS = (
    "reference",
    "referrer_type",
    "submitted_at",
    "consent_given_at",
    "dataset_complete",
    "declined_fields",
    "skipped_fields",
    "unknown_fields",
    "channel",
)
