"""The parts of a NENA EIDO (Emergency Incident Data Object, NENA-STA-021.1b) that we accept.

An EIDO is a snapshot of an incident: its type, calls, callbacks, persons and emergency resources,
each a "data component" with an ``$id`` and a ``lastUpdateTimeStamp``. We read only what maps to
our lifecycle events (``domain.eido_mapping``) and ignore the rest (locations, notes, additional
data, vehicles): an EIDO carries far more than a crisis program may keep. Field names are the
standard's; the 2020 sample's capitalised ``LastUpdateTimeStamp`` and ``EIDOVersion`` (and the
``lastUpdateTimestamp`` some libraries write) are accepted too, as is an ``incidentComponent``
written as a one-element array.

Personal data: names and jCards (``ncPersonComponent``, ``agentJcard``) are never read; the only
personal datum taken is the caller's ``tel:`` callback number, which stays in the internal topic.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

Text = Annotated[str, Field(min_length=1, max_length=256)]
# The standard's spelling first (named in errors), then the 2020 sample's and EidoLib's.
_LAST_UPDATE = ("lastUpdateTimeStamp", "LastUpdateTimeStamp", "lastUpdateTimestamp")
Code = Annotated[str, Field(min_length=1, max_length=64)]


def _as_list(value: Any) -> Any:
    """A single string where the standard has an array (seen in CAD output) counts as a one-item array."""
    return [value] if isinstance(value, str) else value


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Reference(_Part):
    """A JSON reference to another component: ``{"$ref": "<its $id>"}``."""

    ref: Text = Field(validation_alias="$ref")


class _Component(_Part):
    id: Text = Field(validation_alias="$id")
    last_update_at: AwareDatetime = Field(validation_alias=AliasChoices(*_LAST_UPDATE))


class EidoDisposition(_Component):
    """A disposition of the incident: an APCO common disposition code, maybe marked primary."""

    code: Code = Field(validation_alias="dispositionCommonRegistryCode")
    primary: bool | None = Field(default=None, validation_alias="dispositionPrimaryIndicator")


class EidoIncident(_Component):
    """The incident: its types (internal code, APCO common type), status, id, beat, dispositions."""

    type_internal_code: Code | None = Field(default=None, validation_alias="incidentTypeInternalCode")
    type_common: Annotated[str, Field(min_length=1, max_length=32)] = Field(
        validation_alias="incidentTypeCommonRegistryText")
    status_common: tuple[Code, ...] = Field(default=(), validation_alias="incidentStatusCommonRegistryText")
    internal_incident_id: Code | None = Field(default=None, validation_alias="internalIncidentId")
    beat: Code | None = Field(default=None, validation_alias="beatOrDispatchGroupText")
    dispositions: tuple[EidoDisposition, ...] = Field(default=(), validation_alias="dispositionComponent")

    @field_validator("status_common", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)


class EidoCall(_Component):
    """A call of the incident: when it started, its direction, its callback."""

    start_at: AwareDatetime = Field(validation_alias="callStartTimestamp")
    direction: Literal["incoming", "outgoing", "internal"] | None = None
    callback: Reference | None = Field(default=None, validation_alias="callBackReference")


class EidoCallback(_Component):
    """How to call the caller back; only a ``tel:`` URI is read (personal data, internal only)."""

    uris: tuple[Annotated[str, Field(max_length=256)], ...] = Field(
        default=(), validation_alias="callBackInformationUri")

    @field_validator("uris", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)


class EidoPerson(_Component):
    """A person's roles in the incident (``Caller``, ``Patient``, ...); names are never read."""

    roles: tuple[Code, ...] = Field(validation_alias="personIncidentRoleRegistryText")

    @field_validator("roles", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)


class EidoEmergencyResource(_Component):
    """A unit: its registry type, name, attributes and secondary statuses."""

    type_common: Code = Field(validation_alias="emergencyResourceTypeCommonRegistryText")
    name: Code | None = Field(default=None, validation_alias="emergencyResourceName")
    attributes: tuple[Code, ...] = Field(default=(), validation_alias="resourceAttributeRegistryText")
    secondary_status: tuple[Code, ...] = Field(default=(), validation_alias="secondaryUnitStatusRegistryText")

    @field_validator("attributes", "secondary_status", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)


class EidoDocument(_Part):
    """The EIDO header and the components we map. ``$id`` is the Incident Tracking Identifier."""

    id: Text = Field(validation_alias="$id")
    last_update_at: AwareDatetime = Field(validation_alias=AliasChoices(*_LAST_UPDATE))
    version: Literal["1.0"] = Field(validation_alias=AliasChoices("eidoVersion", "EIDOVersion"))
    # The 2020 sample carries the tracking identifier in its own field; its $id names the header.
    tracking_id: Text | None = Field(default=None, validation_alias="incidentTrackingIdentifier")
    incident: EidoIncident | None = Field(default=None, validation_alias="incidentComponent")
    calls: tuple[EidoCall, ...] = Field(default=(), validation_alias="callComponent")
    callbacks: tuple[EidoCallback, ...] = Field(default=(), validation_alias="callbackComponent")
    persons: tuple[EidoPerson, ...] = Field(default=(), validation_alias="personComponent")
    resources: tuple[EidoEmergencyResource, ...] = Field(default=(), validation_alias="emergencyResourceComponent")

    @field_validator("incident", mode="before")
    @classmethod
    def _one_incident(cls, value: Any) -> Any:
        """The standard has one incident component; the 2020 sample wraps it in an array."""
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError(f"an EIDO describes one incident, got {len(value)} incident components")
            return value[0]
        return value
