"""Logging for every process: plain lines for `make run`, JSON lines on
standard output in deployed forms (LOG_FORMAT=json: systemd, containers).

A JSON line holds the time, the level, the process, the logger and the
event (the log message). The project's own messages never hold what a person
wrote or an identifier; an exception adds only its type, never its message
or traceback, which can quote the values it failed on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys

PLAIN = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str = "") -> None:
        super().__init__()
        self.process = process or os.environ.get("REFERRAL_PROCESS", "")

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        line = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "process": self.process,
            "logger": record.name,
            "event": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
        return json.dumps(line, ensure_ascii=False)


def json_lines(env: dict[str, str] | None = None) -> bool:
    return (os.environ if env is None else env).get("LOG_FORMAT", "").lower() == "json"


def configure(process: str, level: int = logging.INFO) -> None:
    """One handler on the root logger: JSON lines on stdout, or plain lines on stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if json_lines():
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter(process))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(PLAIN))
    root.addHandler(handler)
    root.setLevel(level)
    if not json_lines():
        return
    # Python's warnings become log records (JSON too), not lines on stderr.
    logging.captureWarnings(True)
    # Loggers that bring their own handlers (Sanic's; spaCy's, added when it
    # is imported, so it is imported now) go through the one above instead.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ lines, if it is imported
    import spacy.util  # noqa: F401

    for name in ("sanic.root", "sanic.error", "sanic.access", "sanic.server", "spacy"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
