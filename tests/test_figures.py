"""Audit figures on a seeded dataset whose answers are worked out by hand.

Seven referrals sent over a day ten days ago, one a month earlier, three crisis
events and four unsent conversations in Rasa's own tracker store. The expected
numbers are written out below, each with the arithmetic behind it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from test_staff_api import sign_in
from test_triage import CRITERIA, routine

from bot import decisions, figures, services
from bot.config import PROJECT_ROOT
from bot.store.models import Referral, ReferralEvent
from bot.store.unit_of_work import UnitOfWork

TODAY = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
BASE = (TODAY - dt.timedelta(days=10)).replace(hour=9, minute=0, second=0)
H = dt.timedelta(hours=1)


def seed(url: str) -> dict[str, str]:
    """Referrals A..G in the period and H before it; returns their references."""
    refs = {}

    def send(key, sent_at, answers, referrer_type="self", minimum=()):
        result = services.submit_referral(
            UnitOfWork(url),
            services.Submission(f"conv-{key}", referrer_type, answers, criteria=CRITERIA, minimum=minimum),
        )
        with UnitOfWork(url) as uow:
            uow.session.query(Referral).filter_by(reference=result.reference).one().submitted_at = sent_at
            uow.commit()
        refs[key] = result.reference

    def decide(key, after_hours, **kwargs):
        decisions.record_decision(
            UnitOfWork(url), refs[key], "tom", alternatives=CRITERIA.alternatives, **kwargs
        )
        with UnitOfWork(url) as uow:  # the decision was made this long after sending
            row = uow.session.query(Referral).filter_by(reference=refs[key]).one()
            event = uow.session.query(ReferralEvent).filter_by(referral_id=row.id, kind="decision").one()
            event.at = row.submitted_at + after_hours * H
            uow.commit()

    def contact(key, sent_at, hours_after_sending, **kwargs):
        decisions.record_first_contact(
            UnitOfWork(url), refs[key], "tom", contacted_at=sent_at + hours_after_sending * H, **kwargs
        )

    send("A", BASE, routine(preferred_language=" english ", interpreter_needed=False))
    decide("A", 2, decision="accept")
    contact("A", BASE, 2 + 24)
    send("B", BASE + 1 * H, routine())
    decide("B", 6, decision="accept")
    contact("B", BASE + 1 * H, 6 + 12)
    send("C", BASE + 2 * H, routine())
    decide("C", 10, decision="accept")
    send("D", BASE + 3 * H, routine(recent_hospital_discharge=True))  # urgent by the criteria
    decide("D", 1, decision="accept")
    contact("D", BASE + 3 * H, 1 + 3, risk_band="same_day")
    send("E", BASE + 4 * H, routine())
    decide(
        "E", 8, decision="redirect", redirect_to="substance_use_service", safety_action="Crisis numbers given"
    )
    decisions.record_redirect_outcome(UnitOfWork(url), refs["E"], "tom", "engaged")
    send("F", BASE + 5 * H, routine())
    decide("F", 0.5, decision="accept", band="urgent")
    send(
        "G",
        BASE + 6 * H,
        routine(
            postal_code=None,
            preferred_language="Spanish",
            interpreter_needed=True,
            date_of_birth="2010-01-01",
        ),
        referrer_type="professional",
        minimum=("postal_code",),
    )
    send("H", BASE - 30 * 24 * H, routine())
    with UnitOfWork(url) as uow:
        uow.session.query(Referral).filter_by(reference=refs["B"]).one().repeat_referral = True
        uow.commit()
    for conversation, level in (("chat-1", "crisis"), ("chat-1", "crisis"), ("chat-2", "imminent")):
        services.record_crisis_event(UnitOfWork(url), conversation, level, "self", ["suicide"], [])
    return refs


async def write_tracker(tracker_url) -> None:
    """Unsent conversations in the project's tracker store, as Rasa writes them (and one sent one)."""
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    domain = Domain.load(str(PROJECT_ROOT / "domain.yml"))
    from bot.rasa_ext.tracker_store import EncryptedSQLTrackerStore

    store = EncryptedSQLTrackerStore(domain, url=tracker_url)
    chats = {
        "unsent-1": ["consent", "full_name"],
        "unsent-2": ["consent", "full_name", "presenting_problem"],
        "unsent-3": ["full_name"],
        "unsent-4": [],
        "conv-A": ["consent", "full_name"],  # sent: not a drop-off
    }
    for sender, steps in chats.items():
        events = [UserUttered("hello")] + [SlotSet("requested_slot", step) for step in steps]
        await store.save(DialogueStateTracker.from_events(sender, events, domain.slots))


@pytest.fixture
async def seeded(desk):
    desk.refs = seed(desk.url)
    await write_tracker(desk.settings.tracker_url)
    return desk


def period_of_seed() -> figures.Period:
    # To tomorrow: the crisis events are recorded "now", which may be past midnight.
    return figures.Period(BASE.date() - dt.timedelta(days=1), TODAY.date() + dt.timedelta(days=1))


async def test_every_figure_on_the_seeded_dataset(seeded):
    got = figures.compute(UnitOfWork(seeded.url), seeded.settings.tracker_url, period_of_seed())
    assert got["referrals"] == 7  # A..G; H is a month earlier
    # G misses its minimum (postal code): 6 of 7 complete.
    assert got["minimum_dataset_complete"] == {"count": 6, "share": 0.857}
    routine_band, urgent = got["by_band"]["routine"], got["by_band"]["urgent"]
    # Routine at decision: A, B, C, E and G (no decision yet).
    assert routine_band["referrals"] == 5
    # Hours to decision 2, 6, 10, 8: median (6+8)/2 = 7; p90 is rank ceil(0.9*4) = 4 of 2,6,8,10 = 10.
    assert routine_band["submission_to_decision_hours"] == {"count": 4, "median": 7.0, "p90": 10.0}
    # Decision to first contact: A 24, B 12: median 18; p90 rank ceil(1.8) = 2 = 24.
    assert routine_band["decision_to_first_contact_hours"] == {"count": 2, "median": 18.0, "p90": 24.0}
    # Urgent at decision: D (criteria) and F (escalated at decision): 1 and 0.5 hours.
    assert urgent["referrals"] == 2
    assert urgent["submission_to_decision_hours"] == {"count": 2, "median": 0.75, "p90": 1.0}
    assert urgent["decision_to_first_contact_hours"] == {"count": 1, "median": 3.0, "p90": 3.0}
    assert got["by_band"]["emergency"]["referrals"] == got["by_band"]["same_day"]["referrals"] == 0
    assert got["urgent_escalations"] == 1  # F
    assert got["risk_upgrades"] == 1  # D, to same day at first contact
    assert got["redirects"] == {
        "redirected": 1,
        "engaged": 1,
        "re_referred": 0,
        "not_engaged": 0,
        "no_outcome_yet": 0,
    }
    assert got["repeat_referrals"] == 1
    assert [b["reference"] for b in got["bounce_list"]] == [seeded.refs["B"]]
    assert got["crisis_signposting"] == {
        "events": 3,
        "conversations": 2,
        "by_level": {"crisis": 2, "imminent": 1},
    }
    assert got["drop_off"] == {
        "conversations": 4,
        "by_step": {"full_name": 2, "presenting_problem": 1, "before the first question": 1},
    }


async def test_equity_breakdowns_repeat_the_figures_per_group(seeded):
    equity = figures.compute(UnitOfWork(seeded.url), seeded.settings.tracker_url, period_of_seed())["equity"]
    assert {g: n["referrals"] for g, n in equity["referrer_type"].items()} == {"professional": 1, "self": 6}
    assert equity["referrer_type"]["professional"]["minimum_dataset_complete"] == {"count": 0, "share": 0.0}
    assert {g: n["referrals"] for g, n in equity["preferred_language"].items()} == {
        "English": 1,
        "Spanish": 1,
        "not given": 5,
    }
    assert {g: n["referrals"] for g, n in equity["interpreter_needed"].items()} == {
        "no": 1,
        "not given": 5,
        "yes": 1,
    }
    # The routine() answers give 1990-03-14; G was born in 2010.
    assert {g: n["referrals"] for g, n in equity["age_band"].items()} == {"25 to 64": 6, "under 18": 1}
    assert equity["referrer_type"]["self"]["urgent_escalations"] == 1
    assert (
        equity["referrer_type"]["self"]["by_band"]["routine"]["submission_to_decision_hours"]["median"] == 7.0
    )


async def test_the_date_range_filters_by_the_day_sent(seeded):
    everything = figures.compute(UnitOfWork(seeded.url), seeded.settings.tracker_url)
    assert everything["referrals"] == 8
    month_ago = (BASE - 30 * 24 * H).date()
    only_h = figures.compute(UnitOfWork(seeded.url), None, figures.Period(month_ago, month_ago))
    assert only_h["referrals"] == 1 and only_h["crisis_signposting"]["events"] == 0
    with pytest.raises(ValueError):
        figures.Period(TODAY.date(), month_ago)


def test_spread_uses_the_nearest_rank_90th_percentile():
    assert figures.spread([]) == {"count": 0, "median": None, "p90": None}
    assert figures.spread(range(1, 11)) == {"count": 10, "median": 5.5, "p90": 9}
    assert figures.spread([5, None, 1, 3]) == {"count": 3, "median": 3, "p90": 5}


def test_age_bands_turn_on_the_birthday():
    on = dt.date(2026, 6, 1)
    assert figures.age_band(dt.date(2008, 6, 2), on) == "under 18"
    assert figures.age_band(dt.date(2008, 6, 1), on) == "18 to 24"
    assert figures.age_band(dt.date(1961, 6, 1), on) == "65 and over"
    assert figures.age_band(None, on) == "not given"


async def test_the_api_and_the_csv_give_the_same_numbers(seeded):
    await sign_in(seeded, "tom")
    query = {"from": period_of_seed().start.isoformat(), "to": period_of_seed().end.isoformat()}
    body = await (await seeded.get("/api/staff/figures", params=query)).json()
    assert body["referrals"] == 7
    response = await seeded.get("/api/staff/figures.csv", params=query)
    assert response.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == ["breakdown", "group", "measure", "value"]
    expected = [[b, g, m, "" if v is None else str(v)] for b, g, m, v in figures.rows(body)]
    assert rows[1:] == expected
    assert ["all", "all", "by_band.urgent.submission_to_decision_hours.median", "0.75"] in rows
    assert ["age_band", "under 18", "referrals", "1"] in rows
    bad = await seeded.get("/api/staff/figures", params={"from": "last week"})
    assert (bad.status, await bad.json()) == (400, {"error": "bad_dates"})


async def test_the_figures_page_draws_the_charts_with_text_equivalents(seeded):
    from test_desk import sign_in_page

    await sign_in_page(seeded)
    text = await (await seeded.get("/staff/figures", params={"from": "2000-01-01"})).text()
    assert text.count("<svg") >= 3 and 'role="img"' in text
    assert "Referrals by band. Emergency: 0 referrals, Same day: 0 referrals, Urgent: 2 referrals" in text
    assert seeded.refs["B"] in text  # the bounce list
