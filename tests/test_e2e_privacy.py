"""No personal data in any log, nor in plaintext in any database file.

A full referral is made with sentinel values (a name, phone number, date of
birth, email and sentence no other test uses); then every log file and every
database file of the running stack is searched for each of them, in every
form the service may have turned them into. A crisis chat is had too, and
the database files are searched for what would say so next to its
conversation id: the crisis intents, the level and the detector's categories.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from chat_client import ChatClient, play

pytestmark = pytest.mark.e2e

PERSONA = yaml.safe_load((Path(__file__).parent / "data" / "personas.yml").read_text())["self_referral"]
SENTINELS = {
    "full_name": ("Quillon Vexmoor", ["Quillon", "Vexmoor"]),
    "phone": ("(415) 555-0187", ["555-0187", "5550187"]),
    "date_of_birth": ("29/02/1988", ["29/02/1988", "1988-02-29"]),
    "email": ("quillon.vexmoor@example.org", ["vexmoor@example"]),
    "presenting_problem": (
        "The marmalade zeppelin hums all night and I cannot sleep.",
        ["marmalade zeppelin", "marmalade"],
    ),
}


def test_sentinel_values_are_in_no_log_and_no_database_file_in_plaintext(stack):
    answers = {**PERSONA["answers"], **{field: value for field, (value, _) in SENTINELS.items()}}
    client = ChatClient(stack.web_url)
    play(client, answers)
    reference = client.say("send").submitted["reference"]
    record = stack.cli("referrals", "show", reference)
    assert "Quillon Vexmoor" in record.stdout  # stored, and readable with the key
    crisis_words = _crisis_chat(stack)

    logs = sorted((stack.var_dir / "logs").glob("*.log"))
    databases = sorted(stack.var_dir.glob("*.db*"))
    assert {p.name for p in logs} >= {"rasa.log", "actions.log", "web.log"}
    assert {"referrals.db", "tracker.db"} <= {p.name for p in databases}
    found = []
    for path in [*logs, *databases]:
        content = path.read_bytes().lower()
        for field, (_, forms) in SENTINELS.items():
            found += [
                f"{field} ({form}) in {path.name}" for form in forms if form.lower().encode() in content
            ]
    for path in [*databases, *stack.var_dir.glob("*.jsonl")]:
        content = path.read_bytes()
        found += [f"{word!r} in {path.name}" for word in crisis_words if word.encode() in content]
    runner_output = "".join(stack.output).lower()
    found += [
        f"{field} in the runner's output"
        for field, (_, forms) in SENTINELS.items()
        if any(form.lower() in runner_output for form in forms)
    ]
    assert found == []


def _crisis_chat(stack) -> set[str]:
    """Have a chat that reaches imminent risk; the names that would give it away."""
    from bot import services
    from bot.store.unit_of_work import UnitOfWork

    crisis_client = ChatClient(stack.web_url)
    reply = crisis_client.say("I've taken an overdose")
    shown = [m["custom"]["crisis"] for m in reply.messages if "crisis" in m.get("custom", {})]
    assert shown and shown[0]["level"] == "imminent"
    events = services.crisis_events(UnitOfWork(stack.database_url), crisis_client.cookie().split(".")[0])
    assert events and events[0]["level"] == "imminent"  # stored, and readable with the key
    categories = {c for e in events for c in e.get("categories") or ()}
    assert categories  # the detector said why
    names = {"crisis_imminent", "crisis_danger", "crisis_other", "action_crisis_follow_up"}
    return names | categories | {"imminent"}
