"""The same calls through the three front doors give identical stored decisions.

One table of calls is sent (1) as our events straight to Kafka, (2) as NENA EIDO documents to the
ingest service (a first snapshot when units are dispatched, a second when they arrive), and
(3) as a CAD unit-history export through `crisis import-cad --publish`. Each path has its own
database and worker (same policy, same pseudonym key); what they store must be identical.
"""

from __future__ import annotations

import asyncio
import csv
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from typer.testing import CliRunner

from crisis.cli import app
from crisis.services import temporary_env
from domain.call_ids import compact_time
from streams import topics
from tests.integration.ingest_service import running_ingest
from tests.integration.kafka_io import as_records, publish
from tests.integration.test_ingest import read_everything

pytestmark = pytest.mark.integration

CENTER = "tri-911"
CHICAGO = ZoneInfo("America/Chicago")
START = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
# Units: id, type in the export, EIDO resource type, seconds after the call to dispatch and to arrival.
CALLS: list[dict[str, Any]] = [
    {"incident": "T1", "nature": "25B6V", "apco": "MTLV", "beat": "D1", "phone": "+13145550101",
     "units": [("P1", "PD", "PatrolUnit", 40, 400), ("CRT1", "CRT", "CrisisInterventionUnit", 60, 700)]},
    {"incident": "T2", "nature": "EDP-LOCAL", "apco": "EDP", "beat": "D2", "phone": "+13145550102",
     "units": [("CRT2", "CRT", "CrisisInterventionUnit", 30, 500)]},
    {"incident": "T3", "nature": "10-56", "apco": "SUICTHRT", "beat": "D1", "phone": "+13145550103", "units": []},
    {"incident": "T4", "nature": "WC", "apco": "WELFARE", "beat": "D3", "phone": "+13145550104",
     "units": [("CRT3", "CRT", "CrisisInterventionUnit", 45, 1500)]},
    {"incident": "T5", "nature": "23C1I", "apco": "OD", "beat": "D2", "phone": "+13145550105",
     "units": [("M5", "EMS", "GroundALSAmbulance", 20, 300)]},
    {"incident": "T6", "nature": "FIREX", "apco": "FIRE", "beat": "D4", "phone": "+13145550106", "units": []},
]
UNIT_TYPES = {"PD": "police", "CRT": "co_responder", "EMS": "ems"}


def received_at(index: int) -> datetime:
    return START + timedelta(minutes=7 * index)


def iso(moment: datetime) -> str:
    return moment.isoformat()


# -- path 1: our events, straight to Kafka ---------------------------------------------------------


def kafka_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for index, call in enumerate(CALLS):
        call_id, at = f"{CENTER}:{call['incident']}", received_at(index)
        events.append({"type": "call.received", "event_id": f"{call_id}:received", "call_id": call_id,
                       "occurred_at": iso(at), "center_id": CENTER, "nature_code": call["nature"],
                       "incident_type_common": call["apco"], "district": call["beat"],
                       "caller_phone": call["phone"]})
        for unit, kind, _, dispatch_s, arrive_s in call["units"]:
            for step, seconds in (("dispatched", dispatch_s), ("arrived", arrive_s)):
                moment = at + timedelta(seconds=seconds)
                events.append({"type": f"unit.{step}", "event_id": f"{call_id}:{step}:{unit}:{compact_time(moment)}",
                               "call_id": call_id, "occurred_at": iso(moment), "unit_id": unit,
                               "unit_type": UNIT_TYPES[kind]})
    return sorted(events, key=lambda e: e["occurred_at"])


# -- path 2: NENA EIDO snapshots to the ingest service -------------------------------------------


def eido(index: int, call: dict[str, Any], step: str) -> dict[str, Any]:
    at = received_at(index)
    component = {"updatedByAgencyReference": {"$ref": "psap.tri.example"}}
    resources = []
    for unit, _, resource_type, dispatch_s, arrive_s in call["units"]:
        seconds, status = (dispatch_s, "Dispatched") if step == "dispatched" else (arrive_s, "OnScene")
        resources.append({"$id": f"res-{unit}", "lastUpdateTimeStamp": iso(at + timedelta(seconds=seconds)),
                          **component, "emergencyResourceTypeCommonRegistryText": resource_type,
                          "emergencyResourceName": unit, "resourceAttributeRegistryText": [],
                          "primaryUnitStatusRegistryText": "NotAvailable",
                          "secondaryUnitStatusRegistryText": [status], "agentReference": [{"$ref": "crew"}]})
    return {
        "$id": f"urn:emergency:uid:incidentid:{call['incident'].lower()}:psap.tri.example",
        "lastUpdateTimeStamp": iso(at + timedelta(minutes=30)), **component, "eidoVersion": "1.0",
        "issuingElementIdentification": "cad.tri.example",
        "agencyComponent": [{"$id": "psap.tri.example", "lastUpdateTimeStamp": iso(at), **component,
                             "agencyRoleDescriptionRegistryText": ["CallReceiving"], "agencyType": ["psap"]}],
        "incidentComponent": {"$id": "incident", "lastUpdateTimeStamp": iso(at), **component,
                              "incidentTypeInternalCode": call["nature"],
                              "incidentTypeCommonRegistryText": call["apco"],
                              "incidentStatusCommonRegistryText": ["Active"],
                              "internalIncidentId": call["incident"], "beatOrDispatchGroupText": call["beat"]},
        "callComponent": [{"$id": "call-1", "lastUpdateTimeStamp": iso(at), **component,
                           "standardPrimaryCallType": "emergency", "direction": "incoming",
                           "callStartTimestamp": iso(at), "callStateRegistryText": "callAnswered",
                           "callBackReference": {"$ref": "cb-1"}}],
        "callbackComponent": [{"$id": "cb-1", "lastUpdateTimeStamp": iso(at), **component,
                               "callBackInformationUri": [f"tel:{call['phone']}"]}],
        "personComponent": [{"$id": "p-1", "lastUpdateTimeStamp": iso(at), **component,
                             "personIncidentRoleRegistryText": ["Caller"]}],
        "emergencyResourceComponent": resources,
    }


# -- path 3: a CAD unit-history export -------------------------------------------------------------

MAPPING = f"""
name = "three paths"
center_id = "{CENTER}"
timezone = "America/Chicago"
layout = "unit_rows"
[call]
incident_number = "Incident"
nature_code = "Nature"
incident_type_common = "Type"
district = "Beat"
caller_phone = "Phone"
received_at = {{ column = "Received", formats = ["%Y-%m-%d %H:%M:%S"] }}
[units.columns]
unit_id = "Unit"
dispatched = {{ column = "Dispatched", formats = ["%Y-%m-%d %H:%M:%S"] }}
arrived = {{ column = "Arrived", formats = ["%Y-%m-%d %H:%M:%S"] }}
[units.types]
column = "UnitType"
values = {{ "PD" = "police", "CRT" = "co_responder", "EMS" = "ems" }}
"""


def write_export(folder: Path) -> tuple[Path, Path]:
    def chicago(moment: datetime) -> str:
        """As the export writes times: local, without an offset (the mapping gives the zone)."""
        return moment.astimezone(CHICAGO).strftime("%Y-%m-%d %H:%M:%S")

    export, mapping = folder / "export.csv", folder / "mapping.toml"
    with export.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Incident", "Nature", "Type", "Beat", "Phone", "Received", "Unit", "UnitType",
                         "Dispatched", "Arrived"])
        for index, call in enumerate(CALLS):
            at = received_at(index)
            head = [call["incident"], call["nature"], call["apco"], call["beat"], call["phone"], chicago(at)]
            if not call["units"]:
                writer.writerow([*head, "", "", "", ""])
            for unit, kind, _, dispatch_s, arrive_s in call["units"]:
                writer.writerow([*head, unit, kind, chicago(at + timedelta(seconds=dispatch_s)),
                                 chicago(at + timedelta(seconds=arrive_s))])
    mapping.write_text(MAPPING, encoding="utf-8")
    return export, mapping


# -- what each path stored -------------------------------------------------------------------------


async def stored(db: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(db)
    try:
        decisions = await conn.fetch(
            "SELECT event_id, type, call_id, source_event_id, decided_at, route, reasons, policy_name, policy_version,"
            " second_response_requested, center_id, district, person_ref FROM triage_decisions ORDER BY event_id")
        calls = await conn.fetch(
            "SELECT call_id, event_id, occurred_at, center_id, nature_code, mpds_code, concerns, safety_flags,"
            " person_in_crisis_is_caller, juvenile, district, caller_phone, person_ref FROM calls ORDER BY call_id")
        lifecycle = await conn.fetch(
            "SELECT call_id, type, occurred_at, unit_id, unit_type FROM call_events"
            " ORDER BY call_id, occurred_at, type, unit_id")
    finally:
        await conn.close()
    return {"decisions": [tuple(r) for r in decisions], "calls": [tuple(r) for r in calls],
            "lifecycle": [tuple(r) for r in lifecycle]}


async def test_kafka_http_eido_and_csv_import_store_identical_decisions(pipeline_env_factory, tmp_path: Path):
    key = secrets.token_hex(16)
    direct, through_eido, imported = [await pipeline_env_factory() for _ in range(3)]

    # 1. Kafka directly.
    events = kafka_events()
    await publish(direct.settings.kafka_bootstrap, direct.topic(topics.CALLS), as_records(events))

    # 2. EIDO documents over HTTP: the dispatch snapshot, then the arrival snapshot.
    eido_events = 0
    async with running_ingest(through_eido.settings, (CENTER,)) as ingest:
        for step in ("dispatched", "arrived"):
            for index, call in enumerate(CALLS):
                status, _, body = await ingest.post("/v1/eido", eido(index, call, step), CENTER)
                assert status == 202, body
                eido_events += body["accepted"]

    # 3. The CAD export, imported.
    export, mapping = write_export(tmp_path)

    def import_export() -> dict[str, Any]:
        with temporary_env(**imported.settings.as_env()):
            result = CliRunner().invoke(app, ["import-cad", str(export), "--mapping", str(mapping), "--publish"])
        assert result.exit_code == 0, result.output
        summary: dict[str, Any] = json.loads(result.stdout)
        return summary

    summary = await asyncio.to_thread(import_export)
    assert (summary["calls"], summary["dispatches"], summary["arrivals"]) == (6, 5, 5)

    results = []
    for env, published in ((direct, len(events)), (through_eido, eido_events), (imported, summary["published"])):
        worker = env.worker(CRISIS_PSEUDONYM_KEY=key, CRISIS_TIMER_CLOCK="event")
        await read_everything(worker, published)
        results.append(await stored(env.settings.database_url))
        worker.kill()

    kafka_result, eido_result, csv_result = results
    assert len(kafka_result["decisions"]) == 6 and len(kafka_result["lifecycle"]) == 10
    assert eido_result["decisions"] == kafka_result["decisions"]
    assert csv_result["decisions"] == kafka_result["decisions"]
    assert eido_result["calls"] == csv_result["calls"] == kafka_result["calls"]
    assert eido_result["lifecycle"] == csv_result["lifecycle"] == kafka_result["lifecycle"]
    routes = {row[2]: (row[5], row[6]) for row in kafka_result["decisions"]}
    assert routes["tri-911:T1"][0] == "emergency" and "nature_code:25B6V -> violence_or_threat_to_others" in \
        routes["tri-911:T1"][1]
    assert routes["tri-911:T6"] == ("emergency", ["no_behavioral_health_concern"])
