"""NENA EIDO documents (our own, in the standard's shapes) mapped to lifecycle events."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from crisis.services import REPO_ROOT
from domain.eido_mapping import EidoMappingError, map_eido
from domain.policy import load_policy
from domain.triage import triage
from schemas.calls import CallClosed, CallReceived, Disposition, UnitArrived, UnitDispatched, UnitType
from schemas.eido import EidoDocument

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "eido"
CENTRAL = timezone(timedelta(hours=-6))


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def mapped(data: dict[str, Any], center: str = "example-911") -> list[Any]:
    return map_eido(EidoDocument.model_validate(data), center)


def test_an_open_incident_maps_to_call_received_and_unit_steps() -> None:
    events = mapped(load("incident_dispatched.json"))

    assert [type(e) for e in events] == [CallReceived, UnitDispatched, UnitArrived]
    received, dispatched, arrived = events
    assert received.call_id == "example-911:26-1001"
    assert received.event_id == "example-911:26-1001:received"
    assert received.occurred_at == datetime(2026, 11, 2, 9, 0, tzinfo=CENTRAL)  # the call's start
    assert (received.center_id, received.nature_code, received.incident_type_common, received.district) == (
        "example-911", "MENTAL-V", "MTLV", "B4")
    assert received.caller_phone == "+13145550142"
    assert received.person_in_crisis_is_caller is False  # the caller is a relative of the patient
    assert (dispatched.unit_id, dispatched.unit_type, dispatched.event_id) == (
        "P17", UnitType.POLICE, "example-911:26-1001:dispatched:P17")
    assert (arrived.unit_id, arrived.unit_type) == ("CRT2", UnitType.CO_RESPONDER)
    assert arrived.occurred_at == datetime(2026, 11, 2, 9, 6, 30, tzinfo=CENTRAL)


def test_no_name_from_the_person_component_reaches_any_event() -> None:
    events = mapped(load("incident_dispatched.json"))
    assert not any("Invented" in e.model_dump_json() for e in events)


def test_the_apco_type_is_triaged_when_the_internal_code_is_unknown() -> None:
    received = mapped(load("incident_dispatched.json"))[0]
    result = triage(received, load_policy())

    assert result.route.value == "emergency"
    assert "incident_type_common:MTLV -> violence_or_threat_to_others" in result.reasons
    assert [str(code) for code in result.unmapped_codes] == ["nature_code:MENTAL-V"]


def test_a_later_snapshot_repeats_the_same_ids_and_adds_arrival_and_close() -> None:
    first = {e.event_id: e for e in mapped(load("incident_dispatched.json"))}
    later = {e.event_id: e for e in mapped(load("incident_closed.json"))}

    assert first["example-911:26-1001:received"] == later["example-911:26-1001:received"]
    assert set(later) == {"example-911:26-1001:received", "example-911:26-1001:arrived:P17",
                          "example-911:26-1001:closed"}
    closed = later["example-911:26-1001:closed"]
    assert isinstance(closed, CallClosed)
    assert closed.disposition is Disposition.LINKED_TO_SERVICES  # APCO 15, the primary disposition
    assert closed.occurred_at == datetime(2026, 11, 2, 10, 9, tzinfo=CENTRAL)


def test_the_2020_samples_capitalisation_and_incident_array_are_accepted() -> None:
    (received,) = mapped(load("legacy_2020_shape.json"))

    assert received.call_id == "example-911:urn:emergency:uid:incidentid:5b2e:psap.example-town.us"
    assert received.nature_code == "10-56" and received.incident_type_common == "SUICTHRT"
    assert received.district == "unknown"
    assert received.occurred_at == datetime.fromisoformat("2026-10-29T18:40:04.337+00:00")


def test_a_document_without_an_incident_is_refused_naming_the_component() -> None:
    with pytest.raises(EidoMappingError) as excinfo:
        mapped(load("call_transfer_shape.json"))
    assert [p.field for p in excinfo.value.problems] == ["incidentComponent"]


def test_a_closed_incident_with_an_unmappable_disposition_is_refused_naming_the_field() -> None:
    data = load("incident_closed.json")
    data["incidentComponent"]["dispositionComponent"][0]["dispositionCommonRegistryCode"] = "19"
    with pytest.raises(EidoMappingError) as excinfo:
        mapped(data)
    (problem,) = excinfo.value.problems
    assert problem.field == "incidentComponent.dispositionComponent.dispositionCommonRegistryCode"
    assert "'19'" in problem.message


def test_a_cancelled_incident_without_disposition_closes_as_cancelled() -> None:
    data = load("incident_dispatched.json")
    data["incidentComponent"]["incidentStatusCommonRegistryText"] = "Cancelled"  # one string, not an array
    closed = [e for e in mapped(data) if isinstance(e, CallClosed)]
    assert [c.disposition for c in closed] == [Disposition.CANCELLED]


def test_every_problem_is_listed_at_once() -> None:
    data = load("incident_closed.json")
    data["incidentComponent"]["dispositionComponent"] = []
    data["callComponent"][0]["callBackReference"] = {"$ref": "nowhere"}
    with pytest.raises(EidoMappingError) as excinfo:
        mapped(data)
    assert {p.field for p in excinfo.value.problems} == {
        "callComponent.callBackReference", "incidentComponent.dispositionComponent"}


def test_person_in_crisis_is_the_caller_when_one_person_is_caller_and_patient() -> None:
    data = load("incident_dispatched.json")
    data["personComponent"][0]["personIncidentRoleRegistryText"] = ["Caller", "Patient"]
    assert mapped(data)[0].person_in_crisis_is_caller is True


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(lambda d: d.pop("eidoVersion"), "eidoVersion", id="no-version"),
        pytest.param(lambda d: d["incidentComponent"].pop("incidentTypeCommonRegistryText"),
                     "incidentComponent.incidentTypeCommonRegistryText", id="no-incident-type"),
        pytest.param(lambda d: d["callComponent"][0].update(callStartTimestamp="2026-11-02T09:00:00"),
                     "callComponent.0.callStartTimestamp", id="time-without-offset"),
        pytest.param(lambda d: d.update(incidentComponent=[d["incidentComponent"], d["incidentComponent"]]),
                     "incidentComponent", id="two-incidents"),
    ],
)
def test_invalid_documents_name_the_standards_field(change: Any, field: str) -> None:
    data = load("incident_dispatched.json")
    change(data)
    with pytest.raises(ValidationError) as excinfo:
        EidoDocument.model_validate(data)
    assert field in {".".join(map(str, e["loc"])) for e in excinfo.value.errors()}


def test_unit_types_follow_the_resource_registry() -> None:
    data = load("incident_dispatched.json")
    resources = data["emergencyResourceComponent"]
    resources[0]["emergencyResourceTypeCommonRegistryText"] = "GroundALSAmbulance"
    resources[2]["secondaryUnitStatusRegistryText"] = ["Assigned"]
    resources[2]["emergencyResourceTypeCommonRegistryText"] = "PatrolUnit"
    resources[2]["resourceAttributeRegistryText"] = ["CrisisInterventionSpecialist"]
    types = {e.unit_id: e.unit_type for e in mapped(data) if not isinstance(e, CallReceived)}
    assert types == {"P17": UnitType.EMS, "CRT2": UnitType.CO_RESPONDER, "E5": UnitType.CO_RESPONDER}


def test_the_lower_case_timestamp_spelling_of_some_libraries_is_accepted() -> None:
    text = (FIXTURES / "incident_dispatched.json").read_text(encoding="utf-8")
    events = mapped(json.loads(text.replace('"lastUpdateTimeStamp"', '"lastUpdateTimestamp"')))
    assert [e.event_id for e in events] == [e.event_id for e in mapped(load("incident_dispatched.json"))]
