import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from test_referral import answered

from bot import services
from bot.dataset import DECLINED, SKIPPED
from bot.dataset import load as load_dataset
from bot.store.db import StoreUnavailable, engine_for
from bot.store.models import Base
from bot.store.unit_of_work import UnitOfWork

ACCESS = {spec.name for spec in load_dataset().section("access")}
MEASURES = {spec.name for spec in load_dataset().section("measures")}


def submission(conversation_id="conv-1", **overrides):
    return services.Submission(
        conversation_id=conversation_id,
        referrer_type="self",
        answers=answered(**overrides),
        consent_given_at=dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.timezone.utc),
    )


def test_migrations_match_the_models(database_url):
    with engine_for(database_url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_a_submitted_referral_reads_back_with_typed_fields(database_url):
    result = services.submit_referral(UnitOfWork(database_url), submission())
    assert result.created and result.reference.startswith("CMH-")
    record = services.find_referral(UnitOfWork(database_url), result.reference)
    assert record["full_name"] == "Jane"
    assert record["date_of_birth"] == "1990-03-14"
    assert record["safe_to_leave_message"] is True
    assert record["declined_fields"] == ["self_harm_history"]
    assert set(record["skipped_fields"]) == {"preferred_name", "pronouns", "email"} | ACCESS | MEASURES
    assert record["dataset_complete"] is True
    assert record["consent_given_at"].startswith("2026-11-22T09:00:00")
    assert [e["kind"] for e in record["events"]] == ["created", "submitted"]


def test_the_same_conversation_submitting_twice_yields_one_referral(database_url):
    first = services.submit_referral(UnitOfWork(database_url), submission())
    again = services.submit_referral(UnitOfWork(database_url), submission())
    assert (again.reference, again.created) == (first.reference, False)
    assert len(list(services.export_records(UnitOfWork(database_url)))) == 1


def test_simultaneous_submissions_yield_one_referral(database_url):
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(
            pool.map(lambda _: services.submit_referral(UnitOfWork(database_url), submission()), range(6))
        )
    assert len({r.reference for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert len(list(services.export_records(UnitOfWork(database_url)))) == 1


def test_export_uses_data_dictionary_names(database_url):
    services.submit_referral(UnitOfWork(database_url), submission("a"))
    services.submit_referral(UnitOfWork(database_url), submission("b", presenting_problem=None))
    records = list(services.export_records(UnitOfWork(database_url)))
    assert [r["dataset_complete"] for r in records] == [True, False]
    for name in (
        "reference",
        "referrer_type",
        "submitted_at",
        "consent_given_at",
        "dataset_complete",
        "declined_fields",
        "skipped_fields",
        "channel",
        "full_name",
        "current_supports",
    ):
        assert name in records[0]
    assert "conversation_id" not in records[0]


def test_unknown_reference_is_none(database_url):
    assert services.find_referral(UnitOfWork(database_url), "CMH-NOPE-NOPE") is None


def test_unreachable_store_raises_store_unavailable(tmp_path):
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    with pytest.raises(StoreUnavailable):
        services.submit_referral(UnitOfWork(url), submission())


def test_markers_never_reach_the_store(database_url):
    result = services.submit_referral(
        UnitOfWork(database_url), submission(allergies=SKIPPED, legal_issues=DECLINED)
    )
    record = services.find_referral(UnitOfWork(database_url), result.reference)
    assert "__" not in repr({k: v for k, v in record.items() if k != "events"})


def test_a_supported_referral_keeps_the_referrer_apart(database_url):
    from test_referral import supported

    from bot.dataset import UNKNOWN

    submission = services.Submission(
        conversation_id="supported-1",
        referrer_type="professional",
        answers=supported("professional", current_risk=UNKNOWN, current_risk_details=UNKNOWN),
        minimum=("full_name", "current_risk", "current_risk_details"),
    )
    result = services.submit_referral(UnitOfWork(database_url), submission)
    record = services.find_referral(UnitOfWork(database_url), result.reference)
    assert record["referrer"]["referrer_name"] == "Pat"
    assert record["referrer"]["referrer_organisation"] == "Oak Clinic"
    assert "referrer_name" not in {k for k in record if k != "referrer"}
    assert record["person_consent_status"] == "They don't know yet"
    assert record["needs_clarification"] is True
    assert record["missing_fields"] == ["current_risk", "current_risk_details"]
    assert "needs_clarification" in [e["kind"] for e in record["events"]]


def test_only_a_crisis_not_a_direct_question_answered_no_makes_the_emergency_band(database_url):
    from test_triage import CRITERIA, routine

    for conversation, level in (("asked-1", "ask"), ("crisis-1", "crisis")):
        services.record_crisis_event(UnitOfWork(database_url), conversation, level, "self", [], [])
        result = services.submit_referral(
            UnitOfWork(database_url),
            services.Submission(conversation, "self", routine(), criteria=CRITERIA, person_secret=b"k"),
        )
        assert result.band == ("routine" if level == "ask" else "emergency"), level
