"""APCO common codes as NENA EIDO carries them: incident types and dispositions, and what they mean here.

EIDO's ``incidentTypeCommonRegistryText`` takes its values from the EIDO-IncidentType-Common
registry (APCO ANS 2.103.2-2019 common incident types) and ``dispositionCommonRegistryCode`` from
the APCO ANS 1.111.2-2018 common disposition codes. These tables are our own reading of the codes
that matter to a crisis program (README, "Nature codes and MPDS determinants"); a code not listed
is not understood natively and is reported as unmapped, so a center can map it in its policy.
"""

from __future__ import annotations

from typing import Final

from domain.code_effects import CodeEffect
from schemas.calls import Disposition

_E = CodeEffect.of

# APCO common incident type -> concerns and safety flags.
INCIDENT_TYPES: Final[dict[str, CodeEffect]] = {
    # behavioral health
    "MNTL": _E({"mental_health"}),  # mental person, non-violent
    "MTLV": _E({"mental_health"}, {"violence_or_threat_to_others"}),  # mental person, violent
    "EDP": _E({"mental_health"}),  # emotional disturbance, abnormal behavior
    "SUICTHRT": _E({"mental_health", "suicidal_ideation"}, {"imminent_risk_to_self"}),  # attempt or threat
    "SUICIDE": _E({"mental_health", "suicidal_ideation"}, {"imminent_risk_to_self", "medical_emergency"}),
    "OD": _E({"substance_use"}, {"medical_emergency"}),  # overdose, poisoning, ingestion
    "INTOX": _E({"substance_use"}),  # intoxicated person
    "WELFARE": _E({"welfare_check"}),  # welfare check, man down check
    # safety: no concern of their own, but they raise a flag on a behavioral-health call
    "WEAPON": _E(flags={"weapon_present"}),
    "NCRASLTWF": _E(flags={"weapon_present", "violence_or_threat_to_others"}),  # assault with weapon
    "ACTSHOOT": _E(flags={"weapon_present", "violence_or_threat_to_others"}),
    "ASSAULT": _E(flags={"violence_or_threat_to_others"}),
    "FASX": _E(flags={"violence_or_threat_to_others", "crime_in_progress"}),  # felonious assault, suspect near
    "DVA": _E(flags={"violence_or_threat_to_others"}),  # domestic, violent
    "THREATS": _E(flags={"violence_or_threat_to_others"}),
    "BARICADE": _E(flags={"violence_or_threat_to_others"}),
    "CU1": _E(flags={"violence_or_threat_to_others"}),  # civil unrest, violent
    # known, no behavioral-health meaning of their own
    "DVNA": _E(),  # domestic, non-violent
    "CU2": _E(),  # civil unrest, non-violent
    "DRUGS": _E(),  # drug law violation (a crime report, not a person in crisis)
    "DRUGPAR": _E(),
    "PERSUSP": _E(),
    "SCRM": _E(),  # person screaming: unknown until someone asks
    "NONEMERG": _E(),
}

# APCO common disposition code -> our disposition. Codes without a crisis-program meaning (report
# taken, citation, building secure, NFIRS categories, ...) are not listed: an EIDO closing an
# incident with one of them is refused with the field named, so nothing is recorded wrongly.
DISPOSITIONS: Final[dict[str, Disposition]] = {
    "03": Disposition.ARRESTED,
    "05": Disposition.RESOLVED_BY_PHONE,  # settled by phone contact
    "10": Disposition.CANCELLED,  # event cancelled
    "14": Disposition.UNABLE_TO_CONTACT,  # gone on arrival / unable to locate
    "15": Disposition.LINKED_TO_SERVICES,  # referred to partner agency
    "16": Disposition.TRANSPORTED,  # transport or escort given
    "18": Disposition.STABILIZED_ON_SCENE,  # settled by contact
    "21": Disposition.CANCELLED,  # unit cancelled en route
    "22": Disposition.CANCELLED,  # duplicate call
    "25": Disposition.TRANSPORTED,  # EMS and transport
    "32": Disposition.CANCELLED,  # cancelled prior to arrival
    "33": Disposition.TRANSPORTED,  # treated, transported by law enforcement
    "34": Disposition.TRANSPORTED,  # treated, transported by private vehicle
    "38": Disposition.UNABLE_TO_CONTACT,  # no patient found
    "41": Disposition.STABILIZED_ON_SCENE,  # evaluated, no treatment or transport required
    "42": Disposition.RESOURCES_DECLINED,  # refused evaluation or care
    "43": Disposition.STABILIZED_ON_SCENE,  # treated and released
    "44": Disposition.TRANSPORTED,  # care transferred to another EMS
    "45": Disposition.TRANSPORTED,  # treated, transported by EMS
}


def incident_type_effect(code: str) -> CodeEffect | None:
    """The meaning of an APCO common incident type, or ``None`` when we do not know the code."""
    return INCIDENT_TYPES.get(code.strip().upper())


def disposition_for(code: str) -> Disposition | None:
    """Our disposition for an APCO common disposition code (``"5"`` and ``"05"`` alike), if it has one."""
    text = code.strip()
    return DISPOSITIONS.get(text.zfill(2) if text.isdigit() else text)
