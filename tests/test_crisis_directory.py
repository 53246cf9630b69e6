import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.crisis import directory
from bot.crisis.directory import DirectoryError

US = directory.load(profile="us")
UK = directory.load(profile="uk")
CLI = str(Path(sys.executable).with_name("referral-assistant"))


def names(resources):
    return [r["name"] for r in resources]


def test_us_national_resources_have_988_911_text_and_dv_lines():
    crisis = US.resources("crisis")
    assert crisis[0]["call"] == "911"
    assert any(r["call"] == "988" and r["text"] == "988" for r in crisis)
    assert any("Veterans" in r["name"] for r in crisis)
    assert any(r["text"] == "741741" for r in crisis)
    assert any("Domestic Violence" in n for n in names(US.resources("danger")))
    assert any("español" in n for n in names(US.resources("crisis", language="es")))
    assert not any("español" in n for n in names(US.resources("crisis", language="en")))


def test_local_team_is_matched_on_postal_code_with_hours():
    resources = US.resources("crisis", "90210")
    local = resources[-1]
    assert local["local"] and local["name"].startswith("Example West") and local["call"] == "(555) 010-0101"
    assert local["open_now"] is True


def test_out_of_hours_says_what_to_do_instead():
    saturday_night = dt.datetime(2026, 11, 21, 23, 0, tzinfo=US.timezone)
    local = US.resources("crisis", "90610", now=saturday_night)[-1]
    assert local["open_now"] is False and "988" in local["hours"]


def test_unknown_area_gets_national_resources_only():
    assert not any(r.get("local") for r in US.resources("crisis", "10001"))
    assert not any(r.get("local") for r in US.resources("crisis", None))


def test_uk_profile():
    resources = UK.resources("crisis", "SW1A 1AA")
    calls = [r["call"] for r in resources]
    assert "999" in calls and "111" in calls and "116123" in calls
    assert any(r["text"] == "85258" for r in resources)
    assert resources[-1]["local"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["national"][0].pop("name"), "needs 'name'"),
        (lambda d: d["areas"][0].update(hours={"days": ["someday"]}), "hours.days"),
        (lambda d: d["areas"][0].update(hours={"days": ["mon"], "open": "8am"}), "bad time"),
        (
            lambda d: d.update(national=[r for r in d["national"] if "imminent" not in r.get("for", [])]),
            "imminent",
        ),
        (lambda d: d["national"][1].update(call=None, text=None, chat_url=None), "needs a call"),
    ],
)
def test_bad_directories_are_refused_with_a_clear_message(change, message):
    raw = yaml.safe_load(directory.directory_path("us").read_text())
    change(raw)
    with pytest.raises(DirectoryError, match=message):
        directory.parse(raw)


def test_directory_lookup_command():
    out = subprocess.run([CLI, "directory", "lookup", "90210"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["area"] == "example-west" and data["example"] is True
    assert "EXAMPLE" in out.stderr
    listed = json.loads(
        subprocess.run([CLI, "directory", "list"], capture_output=True, text=True, check=True).stdout
    )
    assert [a["id"] for a in listed["areas"]] == ["example-west", "example-east"]
    bad = subprocess.run([CLI, "directory", "lookup", "nowhere"], capture_output=True, text=True)
    assert bad.returncode == 2 and "postal code" in bad.stderr


def test_crisis_check_command_answers_every_line_in_order():
    lines = [
        {"text": "I want to end my life"},
        {"text": "Which bridges are taller than 25 m?", "history": ["I lost my job"]},
        "not json",
        {"text": "my back is killing me"},
        {"history": []},
    ]
    stdin = "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n"
    out = subprocess.run([CLI, "crisis-check"], input=stdin, capture_output=True, text=True, check=True)
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r.get("level") for r in results] == ["crisis", "crisis", None, "none", None]
    assert "error" in results[2] and "error" in results[4]
    assert set(results[0]) == {"level", "subject", "categories", "evidence"}
