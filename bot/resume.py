"""Pause codes: a short random code that brings a paused chat back.

The code is random and holds nothing about the person. Only a keyed hash of
it is stored (HMAC with the service's session secret), next to the
conversation id, so a copy of the database cannot be used to resume anyone's
chat. A code works until it expires, until the person pauses again (the new
code replaces it), or until the referral is sent or the answers deleted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

from bot.store.models import ResumeCode, as_utc, utcnow
from bot.store.unit_of_work import UnitOfWork

# Crockford's base 32: no I, L, O or U, so nothing is misread.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_MISREAD = str.maketrans({"O": "0", "I": "1", "L": "1"})
CODE_LENGTH = 8  # 40 bits: guessing one is hopeless, and it can be read out on the phone


def new_code() -> str:
    chars = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{chars[:4]}-{chars[4:]}"


def canonical(text: str) -> str | None:
    """The code as stored, from what a person typed ("abcd efgh", "ABCD-EFGH"), or None."""
    chars = re.sub(r"[\s\-_.]", "", text.upper()).translate(_MISREAD)
    if len(chars) != CODE_LENGTH or any(c not in ALPHABET for c in chars):
        return None
    return chars


def _hash(secret: bytes, code: str) -> str:
    return hmac.new(secret, code.encode(), hashlib.sha256).hexdigest()


def issue(uow: UnitOfWork, conversation_id: str, secret: bytes, days: int) -> str:
    """A new code for this conversation; earlier codes for it stop working."""
    code = new_code()
    with uow:
        uow.referrals.remove_resume_codes(conversation_id)
        uow.referrals.add_resume_code(
            ResumeCode(
                code_hash=_hash(secret, canonical(code)),
                conversation_id=conversation_id,
                expires_at=utcnow() + dt.timedelta(days=days),
            )
        )
        uow.commit()
    return code


def redeem(uow: UnitOfWork, text: str, secret: bytes) -> str | None:
    """The conversation a code belongs to, or None if it is wrong or has expired."""
    code = canonical(text)
    if code is None:
        return None
    with uow:
        row = uow.referrals.resume_code(_hash(secret, code))
        if row is None:
            return None
        expires = as_utc(row.expires_at)
        if expires <= utcnow():
            uow.referrals.remove_resume_codes(row.conversation_id)
            uow.commit()
            return None
        return row.conversation_id


def revoke(uow: UnitOfWork, conversation_id: str) -> None:
    """Stop every code for this conversation working (sent, or answers deleted)."""
    with uow:
        uow.referrals.remove_resume_codes(conversation_id)
        uow.commit()
