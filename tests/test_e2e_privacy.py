"""No personal data in any log, nor in plaintext in any database file.

A full referral is made with sentinel values (a name, phone number, date of
birth, email and sentence no other test uses); then every log file and every
database file of the running stack is searched for each of them, in every
form the service may have turned them into.
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
    runner_output = "".join(stack.output).lower()
    found += [
        f"{field} in the runner's output"
        for field, (_, forms) in SENTINELS.items()
        if any(form.lower() in runner_output for form in forms)
    ]
    assert found == []
