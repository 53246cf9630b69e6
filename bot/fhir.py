"""A referral as an HL7 FHIR R4 (4.0.1) Bundle, for health records systems.

The Bundle (type ``collection``) holds:
- Patient: the person referred, with how to reach them and their language;
- ServiceRequest: the referral, its priority from the urgency band, and the
  triage suggestion as a note;
- QuestionnaireResponse: every answered field of the data dictionary, by its
  name (``linkId``) and label, so :func:`answers` reads the dataset back;
- Flag: when there is risk (a crisis in the chat, or the emergency or
  same-day band);
- RelatedPerson: whoever made a supported referral.

Built from :func:`bot.services.as_record` and the data dictionary only; it is
plain JSON, checked against the R4 models by the tests (fhir.resources 6.4).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from bot import dataset
from bot.store.models import as_utc

FHIR_VERSION = "4.0.1"
REFERENCE_SYSTEM = "urn:referral-assistant:reference"
QUESTIONNAIRE = "urn:referral-assistant:dataset"
INTERPRETER = "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired"
PRIORITY = {"emergency": "stat", "same_day": "asap", "urgent": "urgent", "routine": "routine"}
RISK_BANDS = ("emergency", "same_day")
_ANSWER = {"text": "valueString", "bool": "valueBoolean", "date": "valueDate", "int": "valueInteger"}
_NAMESPACE = uuid.UUID("7c1f0f8e-2f59-4d8b-9a53-8f7c6f0d4a11")


def bundle(record: Mapping, triage_note: str = "") -> dict:
    reference = record["reference"]
    url = {
        kind: f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{reference}/{kind}')}"
        for kind in ("Patient", "ServiceRequest", "QuestionnaireResponse", "Flag", "RelatedPerson")
    }
    submitted = _instant(record["submitted_at"])
    entries = {"Patient": patient(record), "QuestionnaireResponse": questionnaire_response(record)}
    entries["QuestionnaireResponse"]["subject"] = {"reference": url["Patient"]}
    entries["QuestionnaireResponse"]["authored"] = submitted
    if record.get("referrer"):
        entries["RelatedPerson"] = related_person(record["referrer"], url["Patient"])
    if record.get("crisis_flag") or record.get("urgency_band") in RISK_BANDS:
        entries["Flag"] = flag(record, url["Patient"], submitted)
    entries["ServiceRequest"] = service_request(record, url, submitted, entries, triage_note)
    order = ("Patient", "ServiceRequest", "QuestionnaireResponse", "Flag", "RelatedPerson")
    return {
        "resourceType": "Bundle",
        "identifier": {"system": REFERENCE_SYSTEM, "value": reference},
        "type": "collection",
        "timestamp": submitted,
        "entry": [{"fullUrl": url[kind], "resource": entries[kind]} for kind in order if kind in entries],
    }


def patient(record: Mapping) -> dict:
    out: dict = {"resourceType": "Patient"}
    names = [{"use": "official", "text": record.get("full_name")}]
    if record.get("preferred_name"):
        names.append({"use": "usual", "text": record["preferred_name"]})
    out["name"] = [n for n in names if n["text"]]
    telecom = _telecom(record.get("phone"), record.get("email"))
    if telecom:
        out["telecom"] = telecom
    if record.get("date_of_birth"):
        out["birthDate"] = record["date_of_birth"]
    if record.get("postal_code"):
        out["address"] = [{"postalCode": record["postal_code"]}]
    if record.get("preferred_language"):
        out["communication"] = [{"language": {"text": record["preferred_language"]}, "preferred": True}]
    if record.get("interpreter_needed") is not None:
        out["extension"] = [{"url": INTERPRETER, "valueBoolean": record["interpreter_needed"]}]
    return {k: v for k, v in out.items() if v}


def service_request(record: Mapping, url: Mapping, submitted: str, entries: Mapping, note: str) -> dict:
    out: dict = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": REFERENCE_SYSTEM, "value": record["reference"]}],
        "status": "active",
        "intent": "order",
        "category": [
            {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}
                ]
            }
        ],
        "code": {"text": "Community mental health assessment"},
        "priority": PRIORITY.get(record.get("urgency_band") or "routine", "routine"),
        "subject": {"reference": url["Patient"]},
        "authoredOn": submitted,
        "requester": {"reference": url["RelatedPerson" if "RelatedPerson" in entries else "Patient"]},
        "supportingInfo": [
            {"reference": url[kind]} for kind in ("QuestionnaireResponse", "Flag") if kind in entries
        ],
    }
    if record.get("presenting_problem"):
        out["reasonCode"] = [{"text": record["presenting_problem"]}]
    lines = [
        f"Suggested band: {record.get('urgency_band') or 'none'}; pathway: {record.get('pathway') or 'none'}"
    ]
    lines += list(record.get("triage_reasons") or [])
    if record.get("criteria_version"):
        lines.append(f"Criteria version {record['criteria_version']}")
    if note:
        lines.append(note)
    out["note"] = [{"text": line} for line in lines]
    return out


def questionnaire_response(record: Mapping) -> dict:
    fields = dataset.load()
    items = []
    referrer = record.get("referrer") or {}
    for spec in fields.fields:
        value = referrer.get(spec.name) if spec.section == "referrer" else record.get(spec.name)
        if value is None:
            continue
        items.append(
            {
                "linkId": spec.name,
                "text": spec.label or spec.name,
                "answer": [{_ANSWER[spec.type]: value}],
            }
        )
    out = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{QUESTIONNAIRE}|{record.get('dataset_version', fields.version)}",
        "status": "completed",
    }
    if items:
        out["item"] = items
    return out


def flag(record: Mapping, patient_url: str, submitted: str) -> dict:
    reasons = list(record.get("triage_reasons") or [])
    if record.get("crisis_flag"):
        reasons.insert(0, "Crisis support was shown in the referral conversation.")
    return {
        "resourceType": "Flag",
        "status": "active",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/flag-category",
                        "code": "clinical",
                        "display": "Clinical",
                    }
                ]
            }
        ],
        "code": {"text": " ".join(reasons) or f"Urgency band: {record.get('urgency_band')}"},
        "subject": {"reference": patient_url},
        "period": {"start": submitted},
    }


def related_person(referrer: Mapping, patient_url: str) -> dict:
    out: dict = {"resourceType": "RelatedPerson", "patient": {"reference": patient_url}}
    if referrer.get("referrer_name"):
        out["name"] = [{"text": referrer["referrer_name"]}]
    relationship = referrer.get("referrer_relationship") or referrer.get("referrer_role")
    if relationship:
        out["relationship"] = [{"text": relationship}]
    telecom = _telecom(referrer.get("referrer_phone"), referrer.get("referrer_email"))
    if telecom:
        out["telecom"] = telecom
    return out


def answers(bundle_json: Mapping) -> dict[str, object]:
    """The dataset back out of a Bundle's QuestionnaireResponse: {field: value}."""
    [response] = [
        e["resource"]
        for e in bundle_json["entry"]
        if e["resource"]["resourceType"] == "QuestionnaireResponse"
    ]
    out = {}
    for item in response.get("item", []):
        [answer] = item["answer"]
        [(_, value)] = answer.items()
        out[item["linkId"]] = value
    return out


def _telecom(phone: object, email: object) -> list[dict]:
    out = []
    if phone:
        out.append({"system": "phone", "value": phone})
    if email:
        out.append({"system": "email", "value": email})
    return out


def _instant(value: str) -> str:
    return as_utc(dt.datetime.fromisoformat(value)).isoformat()
