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
