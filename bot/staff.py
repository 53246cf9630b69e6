"""Staff accounts: passwords under a memory-hard KDF, and a second factor for all.

Passwords: argon2id (argon2-cffi); older scrypt (RFC 7914) hashes verify
and are rehashed at the next sign-in. Every account can read referrals, so
every account signs in with a code from an authenticator app too: RFC 6238
TOTP (HMAC-SHA1, 6 digits, 30-second steps), each code accepted once.
There is never a default account or password: the first admin is created
with `referral-assistant staff add NAME --role admin`.

Every change to an account, every sign-in and every failed one is written to
the audit trail in the same transaction as the change itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
import struct
import time
from dataclasses import dataclass
from urllib.parse import quote

import argon2
from sqlalchemy import case, delete, select
from sqlalchemy.exc import IntegrityError

from bot.store.models import AuditEvent, Referral, StaffSession, StaffUser, as_utc, utcnow
from bot.store.unit_of_work import UnitOfWork

ROLES = ("triage", "admin")
MIN_PASSWORD_LENGTH = 12
# scrypt cost: n=2**15, r=8 uses 32 MiB and about 0.1 s per hash here.
_SCRYPT = {"n": 2**15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,39}$")
TOTP_STEP = 30
TOTP_DIGITS = 6


class StaffError(ValueError):
    """A staff account request that cannot be done; the message says why."""


# ---------------------------------------------------------------- passwords


# argon2id with argon2-cffi's defaults (RFC 9106's second profile: 64 MiB,
# t=3, p=4; about 0.15 s here), above OWASP's floor. Older scrypt hashes
# still verify and are replaced at the next successful sign-in.
_ARGON2 = argon2.PasswordHasher()


def hash_password(password: str) -> str:
    return _ARGON2.hash(password)


def needs_rehash(stored: str) -> bool:
    """A hash of an older scheme or weaker settings, to replace at the next sign-in."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return _ARGON2.check_needs_rehash(stored)
    except argon2.exceptions.InvalidHashError:
        return True


def _scrypt_hash(password: str) -> str:
    """The old scheme (kept to test the upgrade path)."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt${n}${r}${p}${salt}${key}".format(
        **_SCRYPT, salt=base64.b64encode(salt).decode(), key=base64.b64encode(key).decode()
    )


def verify_password(password: str, stored: str) -> bool:
    if stored.startswith("$argon2"):
        try:
            return _ARGON2.verify(stored, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    try:
        scheme, n, r, p, salt, key = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    derived = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        maxmem=_SCRYPT["maxmem"],
        dklen=len(base64.b64decode(key)),
    )
    return hmac.compare_digest(derived, base64.b64decode(key))


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"The password must be at least {MIN_PASSWORD_LENGTH} characters."
    if password.strip() != password or len(set(password)) < 5:
        return "The password is too simple."
    return None


# ---------------------------------------------------------------- TOTP


def new_totp_secret() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def totp(secret: str, at: float | None = None) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int((time.time() if at is None else at) // TOTP_STEP)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**TOTP_DIGITS
    return str(code).zfill(TOTP_DIGITS)


def verify_totp(secret: str, code: str, at: float | None = None, after_step: int | None = None) -> int | None:
    """The time step the code is for (now, or one step either side for clock
    drift), or None. A step at or before ``after_step`` (the last one accepted)
    is refused: each code works once."""
    code = re.sub(r"\s", "", code or "")
    now = time.time() if at is None else at
    for drift in (-1, 0, 1):
        step = int((now + drift * TOTP_STEP) // TOTP_STEP)
        if hmac.compare_digest(totp(secret, now + drift * TOTP_STEP), code):
            return step if after_step is None or step > after_step else None
    return None


def provisioning_uri(secret: str, username: str, issuer: str = "Referral assistant") -> str:
    """For an authenticator app's QR code or manual entry."""
    return f"otpauth://totp/{quote(issuer)}:{quote(username)}?secret={secret}&issuer={quote(issuer)}"


# ---------------------------------------------------------------- accounts


def add_staff(uow: UnitOfWork, username: str, password: str, role: str, by: str = "cli") -> str:
    """Create an account. Returns its TOTP secret, to show once."""
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise StaffError("A username is 2 to 40 lower-case letters, digits, dots, dashes or underscores.")
    if role not in ROLES:
        raise StaffError(f"The role must be one of: {', '.join(ROLES)}.")
    problem = password_problem(password)
    if problem:
        raise StaffError(problem)
    secret = new_totp_secret()
    with uow:
        uow.session.add(
            StaffUser(username=username, password_hash=hash_password(password), role=role, totp_secret=secret)
        )
        uow.session.add(_audit_row(by, "add_account", account=username, role=role))
        try:
            uow.commit()
        except IntegrityError as err:
            raise StaffError(f"There is already an account called {username}.") from err
    return secret


def authenticate(uow: UnitOfWork, username: str, password: str, code: str | None = None) -> StaffUser | None:
    """The account, if it is active and both the password and the TOTP code are right; else None.

    A wrong username still costs one hash, so timing does not tell which part
    was wrong. A failure is audited under the account's name when there is
    such an account (an unknown name is not stored: it may be a mistyped password).
    """
    with uow:
        user = uow.session.query(StaffUser).filter_by(username=username.strip().lower()).one_or_none()
        if user is None or not user.active:
            verify_password(password, _dummy_hash())
            reason = "unknown_account" if user is None else "inactive"
        elif not verify_password(password, user.password_hash):
            reason = "password"
        elif (step := _code_step(user, code)) is None:
            reason = "code"
        else:
            user.totp_last_step = step  # a replay of this code is refused from now on
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            uow.commit()
            uow.session.expunge(user)
            return user
        uow.session.add(_audit_row(user.username if user else "-", "sign_in_failed", reason=reason))
        uow.commit()
        return None


def _code_step(user: StaffUser, code: str | None) -> int | None:
    if not user.totp_secret:  # made before every account had a second factor: `staff new-code`
        return None
    return verify_totp(user.totp_secret, code or "", after_step=user.totp_last_step)


def _account(uow: UnitOfWork, username: str) -> StaffUser:
    user = uow.session.scalars(
        select(StaffUser).where(StaffUser.username == username.strip().lower())
    ).one_or_none()
    if user is None:
        raise StaffError(f"There is no account called {username.strip().lower()}.")
    return user


def _end_sessions(uow: UnitOfWork, username: str) -> int:
    return uow.session.execute(delete(StaffSession).where(StaffSession.staff_username == username)).rowcount


def set_active(uow: UnitOfWork, username: str, active: bool, by: str = "cli") -> int:
    """Deactivate (or reactivate) an account. Its sessions end at once; returns how many."""
    with uow:
        user = _account(uow, username)
        user.active = active
        ended = _end_sessions(uow, user.username)
        uow.session.add(_audit_row(by, "activate" if active else "deactivate", account=user.username))
        uow.commit()
        return ended


def set_role(uow: UnitOfWork, username: str, role: str, by: str = "cli") -> int:
    """Change an account's role. Its sessions end at once; returns how many."""
    if role not in ROLES:
        raise StaffError(f"The role must be one of: {', '.join(ROLES)}.")
    with uow:
        user = _account(uow, username)
        before, user.role = user.role, role
        ended = _end_sessions(uow, user.username)
        uow.session.add(_audit_row(by, "change_role", account=user.username, role=role, **{"from": before}))
        uow.commit()
        return ended


def new_code(uow: UnitOfWork, username: str, by: str = "cli") -> str:
    """A new TOTP secret for an account (a lost phone, or an account made before
    every account had one). The old one stops working and its sessions end."""
    secret = new_totp_secret()
    with uow:
        user = _account(uow, username)
        user.totp_secret, user.totp_last_step = secret, None
        _end_sessions(uow, user.username)
        uow.session.add(_audit_row(by, "new_code", account=user.username))
        uow.commit()
    return secret


def accounts(uow: UnitOfWork) -> list[dict]:
    with uow:
        return [
            {
                "username": u.username,
                "role": u.role,
                "active": u.active,
                "second_factor": bool(u.totp_secret),
            }
            for u in uow.session.scalars(select(StaffUser).order_by(StaffUser.username))
        ]


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


# ---------------------------------------------------------------- sessions

IDLE_LIMIT = dt.timedelta(minutes=15)
SESSION_LIFETIME = dt.timedelta(hours=12)  # however active: then sign in again


@dataclass(frozen=True)
class SignedIn:
    username: str
    role: str


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(uow: UnitOfWork, user: StaffUser) -> str:
    """A new session token for the cookie (only its hash is stored), and the sign-in audited."""
    token = secrets.token_urlsafe(32)
    with uow:
        uow.session.add(
            StaffSession(token_hash=_token_hash(token), staff_username=user.username, role=user.role)
        )
        uow.session.add(_audit_row(user.username, "sign_in"))
        uow.commit()
    return token


def current(uow: UnitOfWork, token: str | None, now: dt.datetime | None = None) -> SignedIn | None:
    """Who holds this token, if the session is live; it is kept alive.

    A session ends after 15 minutes idle, after 12 hours in all, and as soon
    as its account is deactivated or its role changes (checked on every request).
    """
    if not token:
        return None
    now = now or utcnow()
    with uow:
        row = uow.session.scalars(
            select(StaffSession).where(StaffSession.token_hash == _token_hash(token))
        ).one_or_none()
        if row is None:
            return None
        seen = as_utc(row.last_seen_at)
        account = uow.session.scalars(
            select(StaffUser).where(StaffUser.username == row.staff_username)
        ).one_or_none()
        still_allowed = account is not None and account.active and account.role == row.role
        if now - seen > IDLE_LIMIT or now - as_utc(row.created_at) > SESSION_LIFETIME or not still_allowed:
            uow.session.delete(row)
            uow.commit()
            return None
        row.last_seen_at = now
        signed_in = SignedIn(row.staff_username, row.role)
        uow.commit()
        return signed_in


def end_session(uow: UnitOfWork, token: str | None) -> None:
    if not token:
        return
    with uow:
        uow.session.query(StaffSession).filter_by(token_hash=_token_hash(token)).delete()
        uow.commit()


# ---------------------------------------------------------------- audit and the queue


def _audit_row(who: str, action: str, reference: str | None = None, **detail) -> AuditEvent:
    return AuditEvent(staff_username=who[:40], action=action, referral_reference=reference, detail=detail)


def add_audit(uow: UnitOfWork, who: str, action: str, reference: str | None = None, **detail) -> None:
    """An audit row in the caller's transaction: it is stored with the change or not at all."""
    uow.session.add(_audit_row(who, action, reference, **detail))


def audit(uow: UnitOfWork, who: SignedIn, action: str, reference: str | None = None, **detail) -> None:
    """Audit a view (nothing else changes): its own transaction."""
    with uow:
        add_audit(uow, who.username, action, reference, **detail)
        uow.commit()


def audit_trail(uow: UnitOfWork, reference: str | None = None) -> list[dict]:
    with uow:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if reference is not None:
            query = query.where(AuditEvent.referral_reference == reference)
        return [
            {
                "at": as_utc(e.at).isoformat(),
                "who": e.staff_username,
                "action": e.action,
                "reference": e.referral_reference,
                "detail": dict(e.detail or {}),
            }
            for e in uow.session.scalars(query)
        ]


_BAND_ORDER = case(
    {"emergency": 0, "same_day": 1, "urgent": 2, "routine": 3}, value=Referral.urgency_band, else_=4
)


def queue(uow: UnitOfWork) -> list[dict]:
    """Referrals by band (most urgent first), then oldest first, with their flags."""
    with uow:
        rows = uow.session.scalars(select(Referral).order_by(_BAND_ORDER, Referral.submitted_at, Referral.id))
        return [
            {
                "reference": r.reference,
                "band": r.urgency_band,
                "pathway": r.pathway,
                "status": r.status,
                "submitted_at": as_utc(r.submitted_at).isoformat(),
                "referrer_type": r.referrer_type,
                "crisis_flag": r.crisis_flag,
                "needs_clarification": r.needs_clarification,
                "repeat_referral": r.repeat_referral,
                "reasons": list(r.triage_reasons or []),
            }
            for r in rows
        ]
