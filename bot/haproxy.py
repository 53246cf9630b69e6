"""HAProxy in front of several Rasa instances (deploy/haproxy/haproxy.cfg).

The production profile runs more than one Rasa server. HAProxy takes
``RASA_PORT`` and sends each conversation's turns to one instance: the web
gateway sets ``ROUTING_HEADER`` to a hash of the conversation id and the
backend hashes on it consistently, so a conversation moves to another
instance only while its own is down, and turns of one conversation rarely
wait on each other's lock. A turn is retried only when the connection could
not be made, so a turn that reached an instance is never sent twice.

The runner writes the committed file to ``<var>/haproxy/haproxy.cfg`` with
one server line per instance (the file itself names two) and starts
``haproxy -W -db`` with the variables the file reads.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from bot.config import PROJECT_ROOT, Settings

CONFIG = PROJECT_ROOT / "deploy" / "haproxy" / "haproxy.cfg"
ROUTING_HEADER = "X-Conversation-Key"
HEALTH_PATH = "/haproxy/health"
MAXCONN_PER_INSTANCE = 8
_SERVERS = re.compile(r"(?ms)^(?P<indent>[ \t]*)# servers begin\n.*?^[ \t]*# servers end\n")


class HAProxyMissing(RuntimeError):
    """Several Rasa instances need HAProxy, and it is not installed."""


def routing_key(conversation_id: str) -> str:
    """What HAProxy hashes on: stable per conversation, and not the id itself."""
    return hashlib.sha256(conversation_id.encode("utf-8")).hexdigest()[:16]


def executable() -> str:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None
    )
    if found is None:
        raise HAProxyMissing(
            "RASA_INSTANCES is above 1, and that needs HAProxy in front of the instances, "
            "but haproxy is not installed. Install it (Debian: apt-get install haproxy) "
            "or set RASA_INSTANCES=1."
        )
    return found


def render(instances: int, source: Path = CONFIG) -> str:
    """The committed config with one server line per instance."""
    text = source.read_text(encoding="utf-8")
    match = _SERVERS.search(text)
    if match is None:
        raise ValueError(f"{source} has no '# servers begin' ... '# servers end' block")
    indent = match["indent"]
    lines = [f"{indent}# servers begin"]
    lines += [f'{indent}server rasa-{i} "${{RASA_UPSTREAM_{i}}}"' for i in range(1, instances + 1)]
    lines.append(f"{indent}# servers end")
    return text[: match.start()] + "\n".join(lines) + "\n" + text[match.end() :]


def environment(settings: Settings) -> dict[str, str]:
    """The variables deploy/haproxy/haproxy.cfg reads, for this machine's ports."""
    env = {
        "HAPROXY_BIND": f"127.0.0.1:{settings.rasa_port}",
        "HAPROXY_STATS_BIND": f"127.0.0.1:{settings.haproxy_stats_port}",
        "RASA_MAXCONN": str(MAXCONN_PER_INSTANCE),
    }
    for i, port in enumerate(settings.rasa_instance_ports, start=1):
        env[f"RASA_UPSTREAM_{i}"] = f"127.0.0.1:{port}"
    return env


def write_config(settings: Settings) -> Path:
    path = settings.var_dir / "haproxy" / "haproxy.cfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(settings.rasa_instances), encoding="utf-8")
    return path


def argv(config: Path) -> list[str]:
    """HAProxy in the foreground (-db), as a master process with one worker (-W)."""
    return [executable(), "-W", "-db", "-f", str(config)]


def server_stats(settings: Settings, timeout: float = 2.0) -> dict[str, dict]:
    """HAProxy's stats page (CSV) row for each Rasa server, by name; {} when it cannot be read."""
    url = f"http://127.0.0.1:{settings.haproxy_stats_port}/;csv"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {
        r["svname"]: r for r in rows if r["pxname"] == "rasa" and r["svname"] not in ("FRONTEND", "BACKEND")
    }


def servers_up(settings: Settings) -> dict[str, bool]:
    """Each Rasa server as HAProxy's own checks see it."""
    return {name: row["status"] == "UP" for name, row in server_stats(settings).items()}


def all_up(settings: Settings) -> bool:
    """Ready: HAProxy sees every instance up, so no conversation starts on the
    wrong one just because a check had not passed yet."""
    up = servers_up(settings)
    return len(up) == settings.rasa_instances and all(up.values())
