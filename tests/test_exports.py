"""Exports: each referral as an HL7 FHIR R4 Bundle, checked against the R4
models of fhir.resources 6.4 (FHIR 4.0.1), and the queue as CSV. Both are
read back and compared with the stored dataset."""

from __future__ import annotations

import copy
import csv
import io
import re

import pydantic
import pytest
from fhir.resources import __fhir_version__
from fhir.resources.bundle import Bundle
from test_referral import supported
from test_staff_api import sign_in
from test_triage import CRITERIA, routine

from bot import dataset, fhir, services
from bot.store.unit_of_work import UnitOfWork
from bot.web.staff import QUEUE_COLUMNS


def record_of(url: str, conversation: str, referrer_type: str, answers: dict, **kwargs) -> dict:
    result = services.submit_referral(
        UnitOfWork(url),
        services.Submission(conversation, referrer_type, answers, criteria=CRITERIA, **kwargs),
    )
    return services.find_referral(UnitOfWork(url), result.reference)


def stored_dataset(record: dict) -> dict:
    """Every answered data-dictionary field of a stored referral, referrer included."""
    referrer = record["referrer"] or {}
    out = {}
    for spec in dataset.load().fields:
        value = referrer.get(spec.name) if spec.section == "referrer" else record.get(spec.name)
        if value is not None:
            out[spec.name] = value
    return out


def resources(bundle: dict) -> dict[str, dict]:
    return {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}


@pytest.fixture
def url(tmp_path):
    from bot.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    return url


def test_the_models_are_fhir_r4():
    assert __fhir_version__ == "4.0.1"


def test_a_self_referral_is_a_valid_bundle_that_round_trips_the_dataset(url):
    answers = routine(preferred_language="Spanish", interpreter_needed=True, phq9_1=2)
    record = record_of(url, "fhir-self", "self", answers)
    bundle = fhir.bundle(record, services.TRIAGE_NOTE)
    parsed = Bundle.parse_obj(bundle)
    assert [e.resource.resource_type for e in parsed.entry] == [
        "Patient",
        "ServiceRequest",
        "QuestionnaireResponse",
    ]
    assert fhir.answers(bundle) == stored_dataset(record)
    found = resources(bundle)
    assert found["ServiceRequest"]["priority"] == "routine"
    assert found["ServiceRequest"]["identifier"][0]["value"] == record["reference"]
    assert found["Patient"]["birthDate"] == record["date_of_birth"]
    assert found["Patient"]["extension"] == [{"url": fhir.INTERPRETER, "valueBoolean": True}]
    assert any(services.TRIAGE_NOTE == n["text"] for n in found["ServiceRequest"]["note"])
    items = {i["linkId"]: i["answer"][0] for i in found["QuestionnaireResponse"]["item"]}
    assert items["phq9_1"] == {"valueInteger": 2} and items["date_of_birth"] == {"valueDate": "1990-03-14"}


def test_a_supported_referral_in_crisis_has_a_flag_and_a_related_person(url):
    answers = supported("professional")
    record = record_of(url, "fhir-supported", "professional", answers, crisis_flag=True)
    bundle = fhir.bundle(record)
    Bundle.parse_obj(bundle)
    found = resources(bundle)
    assert set(found) == {"Patient", "ServiceRequest", "QuestionnaireResponse", "Flag", "RelatedPerson"}
    assert found["ServiceRequest"]["priority"] == "stat"  # the emergency band
    assert found["RelatedPerson"]["name"] == [{"text": "Pat"}]
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"]}
    assert found["ServiceRequest"]["requester"] == {"reference": urls["RelatedPerson"]}
    assert found["Flag"]["subject"] == {"reference": urls["Patient"]}
    assert fhir.answers(bundle) == stored_dataset(record)
    assert fhir.answers(bundle)["referrer_organisation"] == "Oak Clinic"


@pytest.mark.parametrize(("band", "priority"), list(fhir.PRIORITY.items()))
def test_the_priority_comes_from_the_band(url, band, priority):
    record = {**record_of(url, f"band-{band}", "self", routine()), "urgency_band": band}
    assert resources(fhir.bundle(record))["ServiceRequest"]["priority"] == priority


def test_the_validator_rejects_a_broken_bundle(url):
    """The check can fail: a missing required element, an unknown one, a wrong type."""
    bundle = fhir.bundle(record_of(url, "broken", "self", routine()))
    no_status = copy.deepcopy(bundle)
    del resources(no_status)["ServiceRequest"]["status"]
    unknown = copy.deepcopy(bundle)
    resources(unknown)["Patient"]["nickname"] = "Jay"
    wrong_type = copy.deepcopy(bundle)
    resources(wrong_type)["QuestionnaireResponse"]["item"][0]["answer"] = [{"valueInteger": "two"}]
    for broken in (no_status, unknown, wrong_type):
        with pytest.raises(pydantic.ValidationError):
            Bundle.parse_obj(broken)


# fhir.resources 6.4 checks structure and types but not value sets or time zones,
# so these two R4 rules are checked here: ServiceRequest.priority's required value
# set, and a zone on every dateTime with a time (R4 datatypes, dateTime regex).
R4_PRIORITIES = {"routine", "urgent", "asap", "stat"}
R4_DATETIME = re.compile(
    r"-?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[0-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)"
    r"(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)


def test_value_sets_and_time_zones_follow_r4(url):
    record = record_of(url, "r4-rules", "self", routine(), crisis_flag=True)
    bundle = fhir.bundle(record)
    assert set(fhir.PRIORITY.values()) <= R4_PRIORITIES
    times = [bundle["timestamp"], resources(bundle)["ServiceRequest"]["authoredOn"]]
    times += [
        resources(bundle)["QuestionnaireResponse"]["authored"],
        resources(bundle)["Flag"]["period"]["start"],
    ]
    for moment in times:
        assert R4_DATETIME.fullmatch(moment), moment
    assert not R4_DATETIME.fullmatch("2026-01-01T10:00:00")  # the pattern itself rejects no zone


async def test_the_fhir_route_serves_the_bundle(desk):
    record = record_of(desk.url, "fhir-route", "self", routine())
    await sign_in(desk, "tom")
    response = await desk.get(f"/api/staff/referrals/{record['reference']}/fhir")
    assert response.status == 200 and response.content_type == "application/fhir+json"
    body = await response.json(content_type=None)
    Bundle.parse_obj(body)
    assert fhir.answers(body) == stored_dataset(record)


async def test_the_queue_csv_round_trips_the_queue(desk):
    record_of(desk.url, "csv-1", "self", routine())
    record_of(desk.url, "csv-2", "self", routine(recent_hospital_discharge=True, full_name="=HYPERLINK(1)"))
    await sign_in(desk, "tom")
    queue = (await (await desk.get("/api/staff/queue")).json())["referrals"]
    response = await desk.get("/api/staff/queue.csv")
    assert response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert tuple(rows[0]) == QUEUE_COLUMNS
    assert len(rows) == len(queue) == 2

    def back(value: str, like: object) -> object:
        if isinstance(like, bool):
            return value == "true"
        if isinstance(like, list):
            return value.split("\n") if value else []
        return value or None

    assert [
        {k: back(row[k], item[k]) for k in QUEUE_COLUMNS} for row, item in zip(rows, queue, strict=True)
    ] == [{k: item[k] for k in QUEUE_COLUMNS} for item in queue]


def test_csv_cells_never_start_a_formula():
    from bot.web.staff import _cell

    assert _cell("=SUM(A1)") == "'=SUM(A1)" and _cell("-1") == "'-1" and _cell("@x") == "'@x"
    assert _cell(True) == "true" and _cell(None) == "" and _cell(["a", "b"]) == "a\nb"
