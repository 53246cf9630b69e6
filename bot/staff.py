"""Staff accounts: passwords under a memory-hard KDF, and TOTP for admins.

Standard library only: scrypt (RFC 7914) for passwords, and RFC 6238 TOTP
(HMAC-SHA1, 6 digits, 30-second steps, as authenticator apps expect).
There is never a default account or password: the first admin is created
with `referral-assistant staff add NAME --role admin`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import struct
import time
from urllib.parse import quote

from sqlalchemy.exc import IntegrityError

from bot.store.models import StaffUser
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


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt${n}${r}${p}${salt}${key}".format(
        **_SCRYPT, salt=base64.b64encode(salt).decode(), key=base64.b64encode(key).decode()
    )


def verify_password(password: str, stored: str) -> bool:
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


def verify_totp(secret: str, code: str, at: float | None = None) -> bool:
    """The code for now, or one step either side (clock drift)."""
    code = re.sub(r"\s", "", code or "")
    now = time.time() if at is None else at
    return any(hmac.compare_digest(totp(secret, now + drift * TOTP_STEP), code) for drift in (-1, 0, 1))


def provisioning_uri(secret: str, username: str, issuer: str = "Referral assistant") -> str:
    """For an authenticator app's QR code or manual entry."""
    return f"otpauth://totp/{quote(issuer)}:{quote(username)}?secret={secret}&issuer={quote(issuer)}"


# ---------------------------------------------------------------- accounts


def add_staff(uow: UnitOfWork, username: str, password: str, role: str) -> str | None:
    """Create an account. Returns the TOTP secret for an admin (shown once), else None."""
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise StaffError("A username is 2 to 40 lower-case letters, digits, dots, dashes or underscores.")
    if role not in ROLES:
        raise StaffError(f"The role must be one of: {', '.join(ROLES)}.")
    problem = password_problem(password)
    if problem:
        raise StaffError(problem)
    secret = new_totp_secret() if role == "admin" else None
    with uow:
        uow.session.add(
            StaffUser(username=username, password_hash=hash_password(password), role=role, totp_secret=secret)
        )
        try:
            uow.commit()
        except IntegrityError as err:
            raise StaffError(f"There is already an account called {username}.") from err
    return secret


def authenticate(uow: UnitOfWork, username: str, password: str, code: str | None = None) -> StaffUser | None:
    """The account, if the password (and for an admin the TOTP code) is right; else None.

    A wrong username still costs one hash, so timing does not tell which part was wrong.
    """
    with uow:
        user = uow.session.query(StaffUser).filter_by(username=username.strip().lower()).one_or_none()
        if user is None or not user.active:
            verify_password(password, _dummy_hash())
            return None
        if not verify_password(password, user.password_hash):
            return None
        if user.role == "admin" and not (user.totp_secret and verify_totp(user.totp_secret, code or "")):
            return None
        uow.session.expunge(user)
        return user


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))
