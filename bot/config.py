"""Settings, read from the environment in one place.

Every variable has a safe local default so a new user needs no setup. The
defaults keep everything on loopback and in files under ``var/``.

| variable            | default                              |
|---------------------|--------------------------------------|
| REFERRAL_VAR_DIR    | ./var                                |
| DATABASE_URL        | sqlite:///<var>/referrals.db         |
| TRACKER_DB          | <var>/tracker.db (Rasa's tracker)    |
| HOST                | 127.0.0.1                            |
| RASA_PORT           | 5005                                 |
| ACTION_PORT         | 5055                                 |
| WEB_PORT            | 8080                                 |
| RASA_URL            | http://127.0.0.1:<RASA_PORT>         |
| RASA_TIMEOUT        | 10 (seconds, at most 10)             |
| RASA_MODEL          | newest models/referral-*.tar.gz      |
| SESSION_SECRET      | generated once into <var>/session_secret |
| PERSON_KEY_SECRET   | generated once into <var>/person_key_secret |
| SERVICE_CONFIG      | bot/service.yml                      |
| TRACKER_URL         | sqlite:///<TRACKER_DB>               |
| GATEWAY_TOKEN       | generated once into <var>/gateway_token |
| ACTION_SERVER_TOKEN | generated once into <var>/action_server_token |
| TRANSCRIPT_HOURS_AFTER_SUBMIT | 24 (chat transcripts kept after a referral is sent) |
| TRANSCRIPT_IDLE_DAYS | 7 (kept after last activity with no referral) |
| CHAT_MESSAGES_PER_MINUTE | 30 (per conversation; more is refused as "busy") |
| CHAT_IDLE_MINUTES   | 30 (a chat's session ends after this long idle; the pause code still works) |
| PUBLIC_ORIGIN       | (none) the chat's https origin behind a proxy |
| TRUSTED_PROXIES     | (none) proxies whose X-Forwarded-For is believed (networks, comma between) |
| REFERRAL_PROFILE    | development (or production)          |
| REFERRAL_ENCRYPTION_KEYS | generated once into <var>/encryption_keys |
| RASA_INSTANCES      | 1 (more: HAProxy on RASA_PORT in front of them) |
| HAPROXY_STATS_PORT  | 8404 (HAProxy's stats page, on 127.0.0.1) |
| ACTION_URL          | http://127.0.0.1:<ACTION_PORT> (the web service's view of the action server) |
| RASA_INSTANCE_PORTS | RASA_PORT+1, RASA_PORT+2, ... (one per instance) |
| RASA_ENDPOINTS      | endpoints.yml (production: endpoints.production.yml) |
| RASA_FORKS          | development, one instance: 2 (1 on one core); else 1 (bot/rasa_ext/forks.py) |
| RASA_FORK_PORTS     | RASA_PORT, RASA_PORT+1, ... (one per forked server) |
| REDIS_URL           | redis://127.0.0.1:6379/1 (the lock store of several instances) |

In production (REFERRAL_PROFILE=production) no secret or key has a default:
a missing one stops the process with a message naming it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from bot.triage import Criteria

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAX_MESSAGE_CHARS = 2000
PROFILES = ("development", "production")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class ServiceConfig:
    """What the service offers and how it talks about itself (bot/service.yml)."""

    name: str
    postal_format: str  # "us" or "uk"
    phone_region: str  # ISO 3166 region for parsing local numbers
    expected_wait: str
    local_crisis_line: str
    minimum_age: int
    is_example: bool
    routes: dict[str, tuple[str, ...]]
    criteria: Criteria  # triage: versioned criteria, waits and alternatives
    team_phone: str  # "talk to a person": the team's own line
    team_hours: str  # when that line is answered, in words people read
    resume_days: int  # how long a pause code keeps working

    @classmethod
    def load(cls, path: Path) -> ServiceConfig:
        from bot import dataset, triage

        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"SERVICE_CONFIG file not found: {path}") from err
        try:
            config = cls(
                name=str(raw["name"]),
                postal_format=str(raw["postal_format"]).lower(),
                phone_region=str(raw["phone_region"]).upper(),
                # What a routine referral is told; other bands have their own.
                expected_wait=str(raw["triage"]["waits"]["routine"]),
                local_crisis_line=str(raw["local_crisis_line"]),
                minimum_age=int(raw.get("minimum_age", 18)),
                is_example=bool(raw.get("example", False)),
                routes={str(k): tuple(v) for k, v in (raw.get("routes") or {}).items()},
                criteria=triage.load(raw["triage"], dataset.load().names),
                team_phone=str(raw["team"]["phone"]),
                team_hours=str(raw["team"]["hours"]),
                resume_days=int(raw.get("resume_days", 7)),
            )
        except triage.CriteriaError as err:
            raise ConfigError(f"{path}: {err}") from err
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: missing or bad setting: {err}") from err
        if not 1 <= config.resume_days <= 30:
            raise ConfigError(f"{path}: resume_days must be from 1 to 30")
        if config.postal_format not in ("us", "uk"):
            raise ConfigError(f"{path}: postal_format must be 'us' or 'uk'")
        known = set(dataset.load().names)
        for route, names in config.routes.items():
            if route not in ("self", "someone_else", "professional"):
                raise ConfigError(f"{path}: unknown route {route!r}")
            unknown = set(names) - known
            if unknown:
                raise ConfigError(f"{path}: route {route} names unknown fields {sorted(unknown)}")
        return config


@dataclass(frozen=True)
class Settings:
    var_dir: Path
    database_url: str
    tracker_db: Path
    host: str
    rasa_port: int
    action_port: int
    web_port: int
    rasa_url: str
    rasa_timeout: float
    service_config_path: Path
    secret_file: Path
    profile: str = "development"
    tracker_url: str = ""
    public_origin: str = ""  # the chat's address as people see it, behind a proxy
    trusted_proxies: tuple = ()  # networks whose X-Forwarded-For names the client (bot/web/limits.py)
    chat_messages_per_minute: int = 30
    chat_idle_minutes: float = 30.0  # a chat's session ends after this long without a message
    transcript_hours_after_submit: float = 24.0
    transcript_idle_days: float = 7.0
    rasa_instance_ports: tuple[int, ...] = ()  # empty: one Rasa, on rasa_port itself
    rasa_endpoints: str = "endpoints.yml"
    redis_url: str = "redis://127.0.0.1:6379/1"
    haproxy_stats_port: int = 8404
    action_base_url: str = ""  # ACTION_URL
    rasa_fork_ports: tuple[int, ...] = ()  # empty: Rasa is not forked (bot/rasa_ext/forks.py)

    @property
    def rasa_instances(self) -> int:
        return max(1, len(self.rasa_instance_ports))

    @property
    def rasa_urls(self) -> tuple[str, ...]:
        """Where the gateway sends turns: each forked Rasa server, or ``rasa_url``."""
        if not self.rasa_fork_ports:
            return (self.rasa_url,)
        return tuple(f"http://127.0.0.1:{port}" for port in self.rasa_fork_ports)

    @property
    def action_url(self) -> str:
        """The action server as the web service reaches it (ACTION_URL in
        containers, where it is another host; loopback otherwise)."""
        return self.action_base_url or f"http://127.0.0.1:{self.action_port}"

    @property
    def production(self) -> bool:
        return self.profile == "production"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        var_dir = Path(env.get("REFERRAL_VAR_DIR", PROJECT_ROOT / "var")).resolve()
        host = env.get("HOST", "127.0.0.1")
        rasa_port = _port(env, "RASA_PORT", 5005)
        timeout = _number(env, "RASA_TIMEOUT", 10.0)
        if not 0 < timeout <= 10:
            raise ConfigError("RASA_TIMEOUT must be more than 0 and at most 10 seconds")
        profile = env.get("REFERRAL_PROFILE") or "development"
        if profile not in PROFILES:
            raise ConfigError(f"REFERRAL_PROFILE must be one of {', '.join(PROFILES)}, got {profile!r}")
        return cls(
            var_dir=var_dir,
            database_url=env.get("DATABASE_URL") or f"sqlite:///{var_dir / 'referrals.db'}",
            tracker_db=Path(env.get("TRACKER_DB", var_dir / "tracker.db")).resolve(),
            host=host,
            rasa_port=rasa_port,
            action_port=_port(env, "ACTION_PORT", 5055),
            web_port=_port(env, "WEB_PORT", 8080),
            rasa_url=env.get("RASA_URL", f"http://127.0.0.1:{rasa_port}").rstrip("/"),
            rasa_timeout=timeout,
            service_config_path=Path(env.get("SERVICE_CONFIG", PROJECT_ROOT / "bot" / "service.yml")),
            secret_file=var_dir / "session_secret",
            profile=profile,
            public_origin=env.get("PUBLIC_ORIGIN", "").rstrip("/"),
            trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
            chat_messages_per_minute=int(_positive(env, "CHAT_MESSAGES_PER_MINUTE", 30)),
            chat_idle_minutes=_positive(env, "CHAT_IDLE_MINUTES", 30.0),
            transcript_hours_after_submit=_positive(env, "TRANSCRIPT_HOURS_AFTER_SUBMIT", 24.0),
            transcript_idle_days=_positive(env, "TRANSCRIPT_IDLE_DAYS", 7.0),
            tracker_url=env.get("TRACKER_URL")
            or f"sqlite:///{Path(env.get('TRACKER_DB', var_dir / 'tracker.db')).resolve()}",
            rasa_instance_ports=_instance_ports(env, rasa_port),
            rasa_endpoints=env.get("RASA_ENDPOINTS")
            or ("endpoints.production.yml" if profile == "production" else "endpoints.yml"),
            redis_url=env.get("REDIS_URL") or "redis://127.0.0.1:6379/1",
            haproxy_stats_port=_port(env, "HAPROXY_STATS_PORT", 8404),
            action_base_url=env.get("ACTION_URL", "").rstrip("/"),
            rasa_fork_ports=_fork_ports(env, rasa_port, profile),
        )

    def production_problems(self, env: dict[str, str] | None = None) -> list[str]:
        """Why this production configuration must not start (empty when it may).

        Each secret is checked by its own reader when used; this checks the
        shape of the deployment: shared stores on a server, not files."""
        env = os.environ if env is None else env
        if not self.production:
            return []
        found = [
            f"{name} must name a PostgreSQL database, not a file on this machine"
            for name, url in (("DATABASE_URL", self.database_url), ("TRACKER_URL", self.tracker_url))
            if not env.get(name) or url.startswith("sqlite")
        ]
        for reader in (self.session_secret, self.person_key_secret, self.gateway_token, self.action_token):
            try:
                reader(env)
            except ConfigError as err:
                found.append(str(err))
        try:
            self.encryption_keys(env)
        except ConfigError as err:
            found.append(str(err))
        return found

    def retention(self):
        from bot.retention import Retention

        return Retention(
            after_submit=dt.timedelta(hours=self.transcript_hours_after_submit),
            idle=dt.timedelta(days=self.transcript_idle_days),
        )

    def service_config(self) -> ServiceConfig:
        return ServiceConfig.load(self.service_config_path)

    def session_secret(self, env: dict[str, str] | None = None) -> bytes:
        """SESSION_SECRET, or a development secret generated once under var/."""
        return self._secret("SESSION_SECRET", self.secret_file, env)

    def person_key_secret(self, env: dict[str, str] | None = None) -> bytes:
        """PERSON_KEY_SECRET: the key of the hash that matches repeat referrals.
        Kept apart from the session secret, so rotating one never breaks the other."""
        return self._secret("PERSON_KEY_SECRET", self.var_dir / "person_key_secret", env)

    def gateway_token(self, env: dict[str, str] | None = None) -> str:
        """GATEWAY_TOKEN: what the web service shows Rasa's gateway channel."""
        return self._secret("GATEWAY_TOKEN", self.var_dir / "gateway_token", env).decode()

    def action_token(self, env: dict[str, str] | None = None) -> str:
        """ACTION_SERVER_TOKEN: what Rasa shows the action server."""
        return self._secret("ACTION_SERVER_TOKEN", self.var_dir / "action_server_token", env).decode()

    def encryption_keys(self, env: dict[str, str] | None = None) -> list[bytes]:
        """REFERRAL_ENCRYPTION_KEYS (newest first), or a development key generated once under var/."""
        from bot import crypto

        raw = self._secret(crypto.KEYS_VARIABLE, self.var_dir / "encryption_keys", env, crypto.new_key)
        try:
            return crypto.parse_keys(raw.decode())
        except ValueError as err:
            raise ConfigError(f"{crypto.KEYS_VARIABLE}: {err}") from err

    def _secret(self, name: str, path: Path, env: dict[str, str] | None, make=None) -> bytes:
        env = os.environ if env is None else env
        if env.get(name):
            return env[name].encode()
        if self.production:
            raise ConfigError(f"{name} must be set in production; there is no default")
        value = (make or (lambda: secrets.token_urlsafe(32)))().encode()
        self.var_dir.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: of processes starting at once, one writes and the others read.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_written(path)
        with os.fdopen(descriptor, "wb") as file:
            file.write(value)
        log.warning("%s not set; generated a development value in %s", name, path)
        return value


def _read_written(path: Path) -> bytes:
    """A generated file's value, waiting briefly for a process that is still writing it."""
    for _ in range(50):
        value = path.read_bytes().strip()
        if value:
            return value
        time.sleep(0.02)
    raise ConfigError(f"{path} is empty; delete it to generate a new development value")


def _instance_ports(env: dict[str, str], rasa_port: int) -> tuple[int, ...]:
    """Where each Rasa instance listens when there are several (none when there is one)."""
    count = int(_number(env, "RASA_INSTANCES", 1))
    if not 1 <= count <= 8:
        raise ConfigError("RASA_INSTANCES must be from 1 to 8")
    if count == 1:
        return ()
    raw = env.get("RASA_INSTANCE_PORTS", "")
    if not raw:
        return tuple(rasa_port + i for i in range(1, count + 1))
    ports = tuple(_port({"RASA_INSTANCE_PORTS": p.strip()}, "RASA_INSTANCE_PORTS", 0) for p in raw.split(","))
    if len(ports) != count or rasa_port in ports or len(set(ports)) != count:
        raise ConfigError(
            f"RASA_INSTANCE_PORTS must name {count} different ports (one per instance), "
            "none of them RASA_PORT"
        )
    return ports


def _fork_ports(env: dict[str, str], rasa_port: int, profile: str) -> tuple[int, ...]:
    """The ports of the Rasa servers forked from one loaded model (none when Rasa
    is not forked). By default the development profile forks one per core, up
    to two; deployments run one server a process (RASA_INSTANCES, HAProxy)."""
    alone = int(_number(env, "RASA_INSTANCES", 1)) == 1
    raw = env.get("RASA_FORK_PORTS", "")
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    ports = tuple(_port({"RASA_FORK_PORTS": part}, "RASA_FORK_PORTS", 0) for part in parts)
    default = len(ports) or (min(2, os.cpu_count() or 1) if profile == "development" and alone else 1)
    count = int(_number(env, "RASA_FORKS", default))
    if not 1 <= count <= 8:
        raise ConfigError("RASA_FORKS must be from 1 to 8")
    if count > 1 and not alone:
        raise ConfigError(
            "RASA_FORKS above 1 forks servers in one process on this host: "
            "it cannot be used with RASA_INSTANCES above 1"
        )
    if count == 1:
        return ()
    if not ports:
        return tuple(rasa_port + i for i in range(count))
    if len(ports) != count or len(set(ports)) != count:
        raise ConfigError(f"RASA_FORK_PORTS must name {count} different ports (one per forked Rasa server)")
    return ports


def _networks(env: dict[str, str], name: str) -> tuple:
    from bot.web.limits import parse_networks

    try:
        return parse_networks(env.get(name, ""))
    except ValueError as err:
        raise ConfigError(
            f"{name} must be addresses or networks such as 10.0.0.0/8, comma between: {err}"
        ) from err


def _port(env: dict[str, str], name: str, default: int) -> int:
    value = int(_number(env, name, default))
    if not 0 < value < 65536:
        raise ConfigError(f"{name} must be a port number between 1 and 65535")
    return value


def _positive(env: dict[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if value <= 0:
        raise ConfigError(f"{name} must be more than 0")
    return value


def _number(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as err:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from err
