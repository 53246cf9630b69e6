"""Who is asking, and how often they may get it wrong.

``client_address`` is the address a request came from. Behind a proxy the
connection's address is the proxy's; the real client is then read from
``X-Forwarded-For``, but only when the connection comes from a proxy listed
in TRUSTED_PROXIES (anyone else can write that header).

``AttemptLimit`` (pause codes) is a hard count per address and in all.
``SignInThrottle`` (staff) never locks an account: past a few failures each
further try on that account has to wait longer (2, 4, 8 ... seconds, at most
a minute); a hard count stays per address. Both are kept in memory: a restart
forgets them.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """TRUSTED_PROXIES: addresses or networks, comma between them. Raises ValueError."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def _trusted(address: str | None, trusted: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str | None:
    """The client's address: the nearest hop a trusted proxy did not add."""
    peer = request.remote
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


class _Window:
    """Times of recent failures per key, within ``window`` seconds."""

    def __init__(self, window: float):
        self.window = window
        self._times: dict[object, deque[float]] = {}

    def recent(self, key: object, now: float) -> deque[float]:
        times = self._times.get(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def add(self, key: object, now: float) -> None:
        self._times[key] = self.recent(key, now)
        self._times[key].append(now)
        if len(self._times) > 10_000:  # forget the quiet ones
            for quiet in [k for k in self._times if not self.recent(k, now)]:
                del self._times[quiet]

    def forget(self, key: object) -> None:
        self._times.pop(key, None)

    def wait_past(self, key: object, limit: int, now: float) -> float:
        """Seconds until fewer than ``limit`` failures are in the window (0 if already)."""
        times = self.recent(key, now)
        return times[0] + self.window - now if len(times) >= limit else 0.0


class AttemptLimit:
    """At most ``per_address`` failures from one address, and ``in_all`` from
    everyone, within ``window`` seconds; then the next try must wait."""

    _ALL = object()

    def __init__(self, per_address: int, in_all: int, window: float = 15 * 60):
        self.per_address, self.in_all = per_address, in_all
        self._failures = _Window(window)

    def wait(self, address: str | None, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return max(
            self._failures.wait_past(("address", address or ""), self.per_address, now),
            self._failures.wait_past(self._ALL, self.in_all, now),
        )

    def failed(self, address: str | None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._failures.add(("address", address or ""), now)
        self._failures.add(self._ALL, now)


class SignInThrottle:
    """Failed staff sign-ins: a growing delay per account, a limit per address.

    An account's first ``free`` failures in the window cost nothing; after
    that the next try must wait 2 s, then 4 s, 8 s ... up to ``max_delay``
    after the last failure. The account is never locked, so someone guessing
    cannot keep its owner out for long. One address may fail ``per_address``
    times in the window (across all accounts) before it must wait.
    """

    def __init__(
        self, per_address: int = 20, window: float = 15 * 60, free: int = 3, max_delay: float = 60.0
    ):
        self.per_address, self.free, self.max_delay = per_address, free, max_delay
        self._failures = _Window(window)

    @staticmethod
    def _account(username: str) -> tuple[str, str]:
        return ("user", username.strip().casefold())

    def delay(self, failures: int) -> float:
        """How long after the last failure the next try must wait, after ``failures`` of them."""
        if failures < self.free:
            return 0.0
        return min(self.max_delay, 2.0 ** (failures - self.free + 1))

    def wait(self, username: str, address: str | None, now: float | None = None) -> float:
        """Seconds before this sign-in may be tried (0: it may be now)."""
        now = time.monotonic() if now is None else now
        mine = self._failures.recent(self._account(username), now)
        account_wait = mine[-1] + self.delay(len(mine)) - now if mine else 0.0
        address_wait = self._failures.wait_past(("address", address or ""), self.per_address, now)
        return max(account_wait, address_wait, 0.0)

    def failed(self, username: str, address: str | None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._failures.add(self._account(username), now)
        self._failures.add(("address", address or ""), now)

    def succeeded(self, username: str) -> None:
        self._failures.forget(self._account(username))
