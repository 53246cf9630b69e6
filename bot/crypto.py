"""Encryption at rest for personal and health data (Fernet, several keys).

Keys come from REFERRAL_ENCRYPTION_KEYS: Fernet keys separated by commas,
newest first. The first key encrypts; every key decrypts. To rotate, put a
new key in front, restart, and run `referral-assistant keys rotate`, which
re-encrypts everything under the new key; then the old key can be dropped.

In development, with the variable unset, a key is generated once into
<var>/encryption_keys (one key a line, newest first) and a warning is
logged. In production (REFERRAL_PROFILE=production) there is no fallback:
the process refuses to start.
"""

from __future__ import annotations

import functools
import logging
import threading

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

KEYS_VARIABLE = "REFERRAL_ENCRYPTION_KEYS"
TOKEN_PREFIX = "gAAAAA"  # every Fernet token starts so (version byte and a 64-bit time)


class DecryptError(RuntimeError):
    """A stored value could not be decrypted with any configured key."""


class Keyring:
    """The configured keys. Encrypts with the first, decrypts with any."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self.size = len(keys)

    def encrypt(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError) as err:
            raise DecryptError("a stored value could not be decrypted with the configured keys") from err

    def rotate(self, token: str) -> str:
        """The same value, encrypted under the first key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError) as err:
            raise DecryptError("a stored value could not be decrypted with the configured keys") from err


def parse_keys(raw: str) -> list[bytes]:
    """Keys from text (commas or new lines between them); a bad key names its position."""
    keys = [part.strip().encode() for part in raw.replace("\n", ",").split(",") if part.strip()]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError as err:
            raise ValueError(
                f"encryption key {position} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with `referral-assistant keys new`"
            ) from err
    return keys


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def keyring() -> Keyring:
    """The process's keyring, from the settings in the environment, built on first use."""
    from bot.config import Settings

    with _lock:
        return Keyring(Settings.from_env().encryption_keys())


def reset() -> None:
    """Forget the cached keyring (after the keys changed: tests and `keys` commands)."""
    keyring.cache_clear()
