"""Commands at any point: the phrase gate, pause codes, and the command actions."""

from __future__ import annotations

import datetime as dt

import pytest
from test_referral import answered

from actions import settings as action_settings
from actions.commands import ActionDeleteAnswers, ActionHandleCommand
from actions.fallback import ActionHandleUnexpected
from bot import commands, referral, resume
from bot.store.models import ResumeCode
from bot.store.unit_of_work import UnitOfWork

# Every test reads the actions' settings afresh from its own var/.
pytestmark = pytest.mark.usefixtures("settings_env")

# ---------------------------------------------------------------- the gate


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("help", "help"),
        ("Help please!", "help"),
        ("can you repeat that please?", "repeat"),
        ("What does that mean?", "explain"),
        ("i don\u2019t understand", "explain"),
        ("skip", "skip"),
        ("Go back", "go_back"),
        ("I want to change my date of birth", "change_answer"),
        ("change their phone number", "change_answer"),
        ("pause", "pause"),
        ("I'll come back later", "pause"),
        ("stop", "stop"),
        ("delete my answers", "delete_answers"),
        ("Yes, delete everything", "delete_confirmed"),
        ("I want to talk to a person", "talk_to_person"),
        ("simple words please", "easy_read_on"),
        ("normal words", "easy_read_off"),
        ("I'm back", "resume_conversation"),
    ],
)
def test_whole_command_phrases_are_commands(text, intent):
    assert commands.match(text).intent == intent


@pytest.mark.parametrize(
    "text",
    [
        "I need help with my mood",
        "help me, everything is falling apart at work and at home",
        "my name is Help",
        "change my mind",
        "I want to change how I feel",
        "back pain and headaches",
        "I stopped going out",
        "skip school a lot",
        "easy words",
        "Jane Smith",
        "x" * 100,
        "",
    ],
)
def test_answers_are_never_commands(text):
    assert commands.match(text) is None


def test_every_nlu_example_of_a_command_passes_the_gate():
    import yaml

    doc = yaml.safe_load(commands.COMMANDS_FILE.read_text())
    for block in doc["nlu"]:
        for line in block["examples"].splitlines():
            example = line.strip().removeprefix("- ")
            assert commands.match(example).intent == block["intent"], example


def test_no_command_phrase_is_risk_to_the_crisis_detector():
    from bot.crisis import assess

    assert [p for p in commands.phrases() if assess(p).level != "none"] == []


# ---------------------------------------------------------------- pause codes

SECRET = b"test-secret"


def test_a_code_is_random_readable_and_holds_nothing_personal(database_url):
    code = resume.issue(UnitOfWork(database_url), "conv-1", SECRET, days=7)
    assert len(code) == 9 and code[4] == "-" and all(c in resume.ALPHABET for c in code.replace("-", ""))
    assert resume.redeem(UnitOfWork(database_url), code, SECRET) == "conv-1"
    # People mistype: lower case, spaces, O for 0 and I or L for 1.
    sloppy = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert resume.redeem(UnitOfWork(database_url), sloppy, SECRET) == "conv-1"
    with UnitOfWork(database_url) as uow:
        [row] = uow.session.query(ResumeCode).all()
        assert code.replace("-", "") not in row.code_hash  # only a keyed hash is stored


def test_wrong_expired_replaced_and_sent_codes_do_not_work(database_url):
    first = resume.issue(UnitOfWork(database_url), "conv-1", SECRET, days=7)
    assert resume.redeem(UnitOfWork(database_url), first, b"another-secret") is None
    assert resume.redeem(UnitOfWork(database_url), "not a code", SECRET) is None
    second = resume.issue(UnitOfWork(database_url), "conv-1", SECRET, days=7)
    assert resume.redeem(UnitOfWork(database_url), first, SECRET) is None  # replaced
    assert resume.redeem(UnitOfWork(database_url), second, SECRET) == "conv-1"
    with UnitOfWork(database_url) as uow:
        for row in uow.session.query(ResumeCode).all():
            row.expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
        uow.commit()
    assert resume.redeem(UnitOfWork(database_url), second, SECRET) is None  # expired
    third = resume.issue(UnitOfWork(database_url), "conv-1", SECRET, days=7)
    resume.revoke(UnitOfWork(database_url), "conv-1")
    assert resume.redeem(UnitOfWork(database_url), third, SECRET) is None  # sent or deleted


# ---------------------------------------------------------------- the actions


def asking(slot: str, **overrides) -> dict:
    """Answers so far, with the form asking ``slot``."""
    values = answered(**overrides)
    order = referral.required_slots(values)
    for later in order[order.index(slot) :]:
        values[later] = None
    return {**values, "requested_slot": slot}


async def run(action, dispatcher, make_tracker, domain, slots, text, intent, active_loop="referral_form"):
    tracker = make_tracker(slots=slots, text=text, intent=intent, active_loop=active_loop)
    events = await action.run(dispatcher, tracker, domain)
    said = [m["response"] for m in dispatcher.messages]
    return events, said


def slot_events(events) -> dict:
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}


async def test_explain_names_the_question_being_asked(dispatcher, make_tracker, domain):
    events, said = await run(
        ActionHandleCommand(), dispatcher, make_tracker, domain, asking("postal_code"), "what?", "explain"
    )
    assert said == ["utter_explain_postal_code"] and events == []


async def test_go_back_clears_the_last_answer_only(dispatcher, make_tracker, domain):
    events, said = await run(
        ActionHandleCommand(), dispatcher, make_tracker, domain, asking("postal_code"), "go back", "go_back"
    )
    assert said == ["utter_going_back"] and slot_events(events) == {"date_of_birth": None}


async def test_go_back_at_the_first_question_says_so(dispatcher, make_tracker, domain):
    slots = {"requested_slot": "easy_read"}
    events, said = await run(
        ActionHandleCommand(), dispatcher, make_tracker, domain, slots, "back", "go_back"
    )
    assert said == ["utter_cannot_go_back"] and events == []


async def test_go_back_over_a_no_to_the_extra_questions_asks_them_after_a_yes(
    dispatcher, make_tracker, domain
):
    from bot.dataset import SKIPPED

    slots = asking("review", optional_questions=False)
    slots.update({name: SKIPPED for name in ("allergies", "insurance")})
    events, _ = await run(
        ActionHandleCommand(), dispatcher, make_tracker, domain, slots, "change an answer", "go_back"
    )
    assert slot_events(events) == {"review": referral.REVIEW_CHANGE}  # at review: which one?
    cleared = referral.slots_to_clear("optional_questions", slots)
    assert cleared["optional_questions"] is None and cleared["allergies"] is None


async def test_change_by_name_clears_that_answer(dispatcher, make_tracker, domain):
    events, said = await run(
        ActionHandleCommand(),
        dispatcher,
        make_tracker,
        domain,
        asking("presenting_problem"),
        "change my phone number",
        "change_answer",
    )
    assert said == ["utter_going_back"] and slot_events(events)["phone"] is None


async def test_change_by_name_of_an_unanswered_question_says_so(dispatcher, make_tracker, domain):
    events, said = await run(
        ActionHandleCommand(),
        dispatcher,
        make_tracker,
        domain,
        asking("full_name"),
        "change my phone number",
        "change_answer",
    )
    assert said == ["utter_change_not_answered"] and events == []


async def test_simple_words_asked_about_reading_needs_is_also_the_answer(dispatcher, make_tracker, domain):
    events, said = await run(
        ActionHandleCommand(),
        dispatcher,
        make_tracker,
        domain,
        asking("communication_needs"),
        "simple words",
        "easy_read_on",
    )
    assert said == ["utter_easy_read_on"]
    assert slot_events(events) == {
        "wording": "easy",
        "easy_read": True,
        "communication_needs": "simple words",
    }


async def test_talk_to_a_person_uses_the_configured_number(dispatcher, make_tracker, domain):
    await run(
        ActionHandleCommand(), dispatcher, make_tracker, domain, asking("phone"), "human", "talk_to_person"
    )
    [message] = dispatcher.messages
    assert message["response"] == "utter_talk_to_person"
    assert message["team_phone"] == "(555) 010-0123" and "Monday" in message["team_hours"]


async def test_pause_stores_a_code_for_this_conversation(dispatcher, make_tracker, domain, tmp_path):
    from bot.store.migrate import upgrade

    upgrade(f"sqlite:///{tmp_path / 'referrals.db'}")
    await run(ActionHandleCommand(), dispatcher, make_tracker, domain, asking("phone"), "pause", "pause")
    [message] = dispatcher.messages
    assert message["response"] == "utter_paused" and message["resume_days"] == 7
    current = action_settings.settings()[0]
    found = resume.redeem(UnitOfWork(current.database_url), message["resume_code"], current.session_secret())
    assert found == "test-conversation"


async def test_pause_with_the_store_down_says_so_and_keeps_the_answers(dispatcher, make_tracker, domain):
    events, said = await run(
        ActionHandleCommand(), dispatcher, make_tracker, domain, asking("phone"), "pause", "pause"
    )
    assert said == ["utter_pause_failed"] and events == []  # the store was never migrated


async def test_commands_that_need_a_question_hand_over_outside_the_form(dispatcher, make_tracker, domain):
    events, _ = await run(
        ActionHandleCommand(),
        dispatcher,
        make_tracker,
        domain,
        answered(),
        "go back",
        "go_back",
        active_loop=None,
    )
    assert events == [{"event": "followup", "name": "action_handle_unexpected", "timestamp": None}]


async def test_delete_ends_the_form_and_empties_every_slot(dispatcher, make_tracker, domain):
    events, said = await run(
        ActionDeleteAnswers(), dispatcher, make_tracker, domain, asking("phone"), "yes", "delete_confirmed"
    )
    assert said == ["utter_answers_deleted"]
    assert [e["event"] for e in events] == ["active_loop", "reset_slots", "slot"]
    assert slot_events(events) == {"referral_outcome": "deleted"}


async def test_an_answer_after_pause_is_handed_to_the_waiting_form(dispatcher, make_tracker, domain):
    events, said = await run(
        ActionHandleUnexpected(), dispatcher, make_tracker, domain, asking("postal_code"), "90210", "inform"
    )
    assert said == []
    assert slot_events(events)["postal_code"] == "90210"
    assert events[-1]["name"] == "referral_form"


async def test_an_answer_after_pause_takes_the_same_checks_as_any_answer(dispatcher, make_tracker, domain):
    # Once, an answer typed after "pause" was stored raw: 31 February as a
    # date of birth, and the referral could then never be sent.
    events, said = await run(
        ActionHandleUnexpected(),
        dispatcher,
        make_tracker,
        domain,
        asking("date_of_birth"),
        "31/02/1988",
        "inform",
    )
    assert said == ["utter_invalid_date_of_birth"]
    assert slot_events(events)["date_of_birth"] is None
    assert events[-1]["name"] == "referral_form"  # which asks it again


async def test_pause_after_sending_gives_no_code(dispatcher, make_tracker, domain):
    slots = {**answered(), "referral_outcome": "submitted"}
    events, said = await run(
        ActionHandleCommand(), dispatcher, make_tracker, domain, slots, "pause", "pause", active_loop=None
    )
    assert said == [] and events[0]["name"] == "action_handle_unexpected"
