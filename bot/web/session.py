"""Signed session cookies: the conversation id is ours, never the browser's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

COOKIE_NAME = "ra_session"


def _sign(secret: bytes, conversation_id: str) -> str:
    mac = hmac.new(secret, conversation_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode().rstrip("=")


def new_conversation_id() -> str:
    return secrets.token_urlsafe(18)


def encode(secret: bytes, conversation_id: str) -> str:
    return f"{conversation_id}.{_sign(secret, conversation_id)}"


def decode(secret: bytes, cookie: str | None) -> str | None:
    """The conversation id in a cookie we signed, or None for anything else."""
    if not cookie or cookie.count(".") != 1:
        return None
    conversation_id, signature = cookie.split(".")
    if not conversation_id or not hmac.compare_digest(signature, _sign(secret, conversation_id)):
        return None
    return conversation_id


# ---------------------------------------------------------------- crisis marker
# Set when crisis wording was shown in this browser; kept through "start
# again" and "delete my answers", so a later referral from the same browser
# is still flagged for same-day review. It names no conversation and holds
# nothing but the time it was set, signed with a key of its own (a marker can
# never pass as a conversation cookie).
CRISIS_COOKIE_NAME = "ra_crisis"
CRISIS_MARKER_DAYS = 30


def _marker_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"crisis-marker", hashlib.sha256).digest()


def crisis_marker(secret: bytes, now: float) -> str:
    return encode(_marker_key(secret), f"m{int(now)}")


def has_crisis_marker(secret: bytes, cookie: str | None, now: float) -> bool:
    value = decode(_marker_key(secret), cookie)
    if value is None or not value.startswith("m") or not value[1:].isdigit():
        return False
    return now - int(value[1:]) < CRISIS_MARKER_DAYS * 86400
