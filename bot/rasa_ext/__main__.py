"""`python -m bot.rasa_ext run ...`: `rasa run`, with the project's safety settings.

Before Rasa starts:

- Rasa's fail-safe tracker store wrapper is replaced by ``FailClosedTrackerStore``
  (bot/rasa_ext/tracker_store.py).
- One call to the action server may take ``ACTION_TIMEOUT`` seconds, not Rasa's 300.
- The speed patches in bot/rasa_ext/patches.py (each pinned to Rasa 3.6.21).
- With LOG_FORMAT=json, JSON lines on stdout in place of coloured logs (bot/logs.py).
- The conversation lock lives ``TICKET_LOCK_LIFETIME`` seconds (20 unless set),
  longer than a whole turn may take (bot/rasa_ext/channel.py).
- JAX is never imported: TensorFlow's lite converter imports it only when it
  is installed, Rasa never uses it, and it held about 75 MB of every Rasa
  process (``leave_out_jax``).
- With RASA_FORK_PORTS naming several ports, the model is loaded once and a
  server is forked on each port (bot/rasa_ext/forks.py).
- It refuses to start when a setting would be unsafe (``problems``: no
  GATEWAY_TOKEN, an open HTTP API, debug logs in production...), or when
  the crisis detector's sentence encoder cannot load.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import yaml

ACTION_TIMEOUT = 8  # seconds: inside the turn's deadline (channel.TURN_DEADLINE)
LOCK_LIFETIME = 20  # seconds: longer than the turn's deadline
DEBUG_FLAGS = ("--debug", "-vv")
SHARED_LOCK_STORE = "bot.rasa_ext.lock_store.AtomicRedisLockStore"


def problems(argv: list[str], env: dict[str, str]) -> list[str]:
    """What stops this Rasa server from starting, in words an operator can act on."""
    found = []
    if argv[:1] == ["run"] and not env.get("GATEWAY_TOKEN"):
        found.append(
            "GATEWAY_TOKEN is not set: the gateway channel would answer anyone "
            "(the referral service and Rasa must share it; `referral-assistant run` sets it)"
        )
    if "--enable-api" in argv and "--auth-token" not in argv and "-t" not in argv:
        found.append("--enable-api needs --auth-token: Rasa's HTTP API must never be open")
    if env.get("REFERRAL_PROFILE") == "production":
        if any(flag in argv for flag in DEBUG_FLAGS) or env.get("LOG_LEVEL", "").upper() == "DEBUG":
            found.append("production logs at INFO or above: Rasa's debug logs print what people type")
    several = int(env.get("RASA_INSTANCES") or 1) > 1 or int(env.get("SANIC_WORKERS") or 1) > 1
    if several and _lock_store_type(argv) != SHARED_LOCK_STORE:
        found.append(
            "several Rasa instances or workers (RASA_INSTANCES, SANIC_WORKERS) need a shared lock store: "
            f"set lock_store type {SHARED_LOCK_STORE} in the endpoints file (Rasa's own redis "
            "lock store is not atomic), or two may process one conversation at once"
        )
    lifetime = int(env.get("TICKET_LOCK_LIFETIME") or LOCK_LIFETIME)
    if lifetime <= 10:
        found.append("TICKET_LOCK_LIFETIME must be more than 10 s, longer than a turn may take")
    return found


def _lock_store_type(argv: list[str]) -> str | None:
    path = Path(argv[argv.index("--endpoints") + 1]) if "--endpoints" in argv else Path("endpoints.yml")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    store = config.get("lock_store") or {}
    return str(store.get("type", "")) or None


def install() -> None:
    """Put the project's behaviour into Rasa (a pinned 3.6.21; tests/test_rasa_ext.py checks it)."""
    import rasa.core.actions.action as action
    import rasa.core.agent as agent
    import rasa.utils.endpoints as endpoints

    from bot import logs
    from bot.rasa_ext import patches
    from bot.rasa_ext.tracker_store import FailClosedTrackerStore

    agent.FailSafeTrackerStore = FailClosedTrackerStore
    patches.install()
    if logs.json_lines():
        # Deployed (LOG_FORMAT=json): Rasa's coloured console logging becomes
        # JSON lines on stdout, like every other process (bot/logs.py).
        import rasa.utils.io

        rasa.utils.io.configure_colored_logging = lambda level: logs.configure("rasa", level or logging.INFO)
    action.DEFAULT_REQUEST_TIMEOUT = ACTION_TIMEOUT
    endpoints.DEFAULT_REQUEST_TIMEOUT = ACTION_TIMEOUT


def leave_out_jax() -> None:
    """TensorFlow (a dependency of Rasa) imports JAX if it can, for converting
    JAX models to TensorFlow Lite, which nothing here does; an import that
    finds None in sys.modules fails as if JAX were not installed."""
    if "jax" not in sys.modules:
        sys.modules["jax"] = None  # type: ignore[assignment]


def _load_crisis_detector() -> None:
    """The NLU component's sentence encoder and heads, loaded before Rasa starts:
    without them Rasa must not answer anyone, so it refuses to start instead."""
    from bot.crisis.encoder import EncoderUnavailable
    from bot.crisis.semantic import CorpusError, scorer

    try:
        scorer()
    except (EncoderUnavailable, CorpusError) as err:
        print(f"Refusing to start Rasa: the crisis detector cannot load: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    argv = sys.argv[1:]
    found = problems(argv, dict(os.environ))
    if found:
        for problem in found:
            print(f"Refusing to start Rasa: {problem}", file=sys.stderr)
        sys.exit(2)
    os.environ.setdefault("TICKET_LOCK_LIFETIME", str(LOCK_LIFETIME))
    if os.environ.get("LOG_FORMAT", "").lower() == "json":
        # TensorFlow's own C++ lines would go to stderr, outside the JSON lines.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["RASA_TELEMETRY_ENABLED"] = "false"
    leave_out_jax()
    if argv[:1] == ["run"]:
        _load_crisis_detector()
    install()
    from rasa.__main__ import main as rasa_main

    from bot.rasa_ext import forks

    several = forks.ports(dict(os.environ))
    if argv[:1] == ["run"] and several:
        sys.exit(forks.serve(argv, several, rasa_main))
    sys.argv = ["rasa", *argv]
    rasa_main()


if __name__ == "__main__":
    main()
