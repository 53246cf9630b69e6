"""Logs in deployed forms: JSON lines on stdout, with no message text (bot/logs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

PROGRAM = """
import sys
sys.modules.setdefault("tensorflow", None)  # as bot.web and actions do
import logging
from bot import logs
logs.configure({process!r})
logging.getLogger("bot.web.app").info("rasa relay failed: %s", "timeout")
try:
    raise ValueError("a secret sentence somebody typed")
except ValueError:
    logging.getLogger("bot.crisis").exception("crisis detector failed; assessing as ask")
logging.getLogger("sanic.access").warning("served")
import warnings, spacy
logging.getLogger("spacy").warning("a spaCy warning")
warnings.warn("a library warning")
"""


def _run(process: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM.format(process=process)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_deployed_processes_write_json_lines_to_stdout_without_what_was_typed():
    result = _run("web", LOG_FORMAT="json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["level"], line["process"], line["logger"]) for line in lines] == [
        ("INFO", "web", "bot.web.app"),
        ("ERROR", "web", "bot.crisis"),
        ("WARNING", "web", "sanic.access"),
        ("WARNING", "web", "spacy"),
        ("WARNING", "web", "py.warnings"),
    ]
    assert lines[0]["event"] == "rasa relay failed: timeout" and lines[0]["time"].endswith("+00:00")
    assert lines[1]["error"] == "ValueError"
    assert "secret sentence" not in result.stdout + result.stderr  # no exception message, no traceback
    assert result.stderr == ""


def test_make_run_keeps_plain_lines_for_its_log_files():
    result = _run("web")
    assert result.stdout == ""
    assert "INFO bot.web.app rasa relay failed: timeout" in result.stderr


def test_rasa_logs_json_lines_when_deployed(monkeypatch, capsys):
    import logging

    import rasa.core.actions.action as action
    import rasa.core.agent as agent
    import rasa.utils.endpoints as endpoints
    import rasa.utils.io

    from bot.rasa_ext.__main__ import install

    monkeypatch.setenv("LOG_FORMAT", "json")
    # install() changes these too; each is put back after the test.
    for module, name in (
        (rasa.utils.io, "configure_colored_logging"),
        (agent, "FailSafeTrackerStore"),
        (action, "DEFAULT_REQUEST_TIMEOUT"),
        (endpoints, "DEFAULT_REQUEST_TIMEOUT"),
        (action.RemoteAction, "_validate_action_result"),
    ):
        monkeypatch.setattr(module, name, getattr(module, name))
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        install()
        rasa.utils.io.configure_colored_logging(logging.INFO)  # what `rasa run` calls
        logging.getLogger("rasa.core.processor").info("turn finished")
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (line["process"], line["logger"]) == ("rasa", "rasa.core.processor")
        assert line["event"] == "turn finished"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
