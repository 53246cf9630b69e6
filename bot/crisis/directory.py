"""The crisis directory: national resources and local crisis teams by area.

Loaded from YAML (directory_us.yml, directory_uk.yml, or CRISIS_DIRECTORY)
and validated on load, so a bad directory stops startup with a clear message.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
AUDIENCES = {"imminent", "crisis", "ask", "other", "danger"}


class DirectoryError(ValueError):
    """The directory file is missing something; the message says what."""


@dataclass(frozen=True)
class Resource:
    id: str
    name: str
    call: str | None = None
    text: str | None = None
    chat_url: str | None = None
    hours: str = "24/7"
    audiences: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()

    def as_payload(self) -> dict:
        """The chat protocol's resource shape: name, call, text, chat_url, hours."""
        return {
            "name": self.name,
            "call": self.call,
            "text": self.text,
            "chat_url": self.chat_url,
            "hours": self.hours,
        }


@dataclass(frozen=True)
class Area:
    id: str
    name: str
    postal_prefixes: tuple[str, ...]
    call: str
    text: str | None
    days: tuple[str, ...]
    open: dt.time
    close: dt.time | None  # None: until midnight
    out_of_hours: str

    def is_open(self, now: dt.datetime) -> bool:
        if DAYS[now.weekday()] not in self.days:
            return False
        current = now.time()
        return self.open <= current and (self.close is None or current < self.close)

    @property
    def hours_text(self) -> str:
        close = "midnight" if self.close is None else self.close.strftime("%H:%M")
        days = "every day" if len(self.days) == 7 else ", ".join(d.title() for d in self.days)
        if self.open == dt.time(0) and self.close is None:
            return f"24 hours, {days}"
        return f"{self.open.strftime('%H:%M')} to {close}, {days}"


@dataclass(frozen=True)
class Directory:
    version: str
    profile: str
    example: bool
    timezone: ZoneInfo
    national: tuple[Resource, ...]
    areas: tuple[Area, ...]
    carer_support: tuple[Resource, ...] = field(default=())

    def area_for(self, postal_code: str | None) -> Area | None:
        if not postal_code:
            return None
        code = postal_code.replace(" ", "").upper()
        matches = [(len(p), a) for a in self.areas for p in a.postal_prefixes if code.startswith(p.upper())]
        return max(matches, key=lambda m: m[0])[1] if matches else None

    def resources(
        self,
        audience: str,
        postal_code: str | None = None,
        language: str = "en",
        now: dt.datetime | None = None,
    ) -> list[dict]:
        """What a person is shown: national resources for this audience, then the local team.

        The local team comes with its hours; out of hours, what to do instead.
        """
        shown = [
            r.as_payload()
            for r in self.national
            if audience in r.audiences and (not r.languages or language in r.languages)
        ]
        area = self.area_for(postal_code)
        if area is not None:
            local_now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(self.timezone)
            open_now = area.is_open(local_now)
            shown.append(
                {
                    "name": area.name,
                    "call": area.call,
                    "text": area.text,
                    "chat_url": None,
                    "hours": area.hours_text if open_now else f"Closed now. {area.out_of_hours}",
                    "open_now": open_now,
                    "local": True,
                }
            )
        return shown


def _resource(raw: dict, where: str) -> Resource:
    for key in ("id", "name"):
        if not raw.get(key):
            raise DirectoryError(f"{where}: every resource needs '{key}'")
    if not (raw.get("call") or raw.get("text") or raw.get("chat_url")):
        raise DirectoryError(f"{where} {raw['id']}: needs a call, text or chat_url")
    audiences = frozenset(raw.get("for", []))
    if not audiences <= AUDIENCES:
        raise DirectoryError(f"{where} {raw['id']}: 'for' must be among {sorted(AUDIENCES)}")
    return Resource(
        id=raw["id"],
        name=raw["name"],
        call=_str(raw.get("call")),
        text=_str(raw.get("text")),
        chat_url=raw.get("chat_url"),
        hours=str(raw.get("hours", "24/7")),
        audiences=audiences,
        languages=frozenset(raw.get("languages", [])),
    )


def _str(value) -> str | None:
    return None if value is None else str(value)


def _time(value: str, where: str) -> dt.time | None:
    if value == "24:00":
        return None
    try:
        return dt.time.fromisoformat(value)
    except ValueError as err:
        raise DirectoryError(f"{where}: bad time {value!r}, use HH:MM") from err


def _area(raw: dict) -> Area:
    where = f"area {raw.get('id', '?')}"
    for key in ("id", "name", "postal_prefixes", "call", "hours", "out_of_hours"):
        if not raw.get(key):
            raise DirectoryError(f"{where}: needs '{key}'")
    hours = raw["hours"]
    days = tuple(hours.get("days", []))
    if not days or not set(days) <= set(DAYS):
        raise DirectoryError(f"{where}: hours.days must be among {DAYS}")
    return Area(
        id=raw["id"],
        name=raw["name"],
        postal_prefixes=tuple(str(p) for p in raw["postal_prefixes"]),
        call=str(raw["call"]),
        text=_str(raw.get("text")),
        days=days,
        open=_time(hours.get("open", "00:00"), where) or dt.time(0),
        close=_time(hours.get("close", "24:00"), where),
        out_of_hours=str(raw["out_of_hours"]),
    )


def parse(raw: dict, source: str = "directory") -> Directory:
    try:
        national = tuple(_resource(r, "national") for r in raw["national"])
        directory = Directory(
            version=str(raw["version"]),
            profile=str(raw["profile"]),
            example=bool(raw.get("example", False)),
            timezone=ZoneInfo(str(raw.get("timezone", "UTC"))),
            national=national,
            areas=tuple(_area(a) for a in raw.get("areas", [])),
            carer_support=tuple(_resource(r, "carer_support") for r in raw.get("carer_support", [])),
        )
    except (KeyError, TypeError) as err:
        raise DirectoryError(f"{source}: missing or malformed {err}") from err
    if not any("imminent" in r.audiences for r in national):
        raise DirectoryError(f"{source}: no national resource for 'imminent' (emergency services)")
    ids = [a.id for a in directory.areas]
    if len(ids) != len(set(ids)):
        raise DirectoryError(f"{source}: area ids must be unique")
    return directory


def directory_path(profile: str | None = None) -> Path:
    configured = os.environ.get("CRISIS_DIRECTORY")
    if configured:
        return Path(configured)
    return HERE / f"directory_{profile or 'us'}.yml"


@functools.lru_cache(maxsize=4)
def load(path: Path | None = None, profile: str | None = None) -> Directory:
    path = path or directory_path(profile)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DirectoryError(f"crisis directory not found: {path}") from err
    directory = parse(raw, str(path))
    if directory.example:
        log.warning(
            "The crisis directory in use (%s) is EXAMPLE data. Replace it before real use.", path.name
        )
    return directory
