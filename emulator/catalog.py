"""The standard entity types and their schemas (contract §5), as the emulator serves them.

Each type marks one name-like field required (two references for `contactClient`). The
schemas are descriptive: record writes do not validate attributes against them.
"""

from __future__ import annotations

from typing import Any

OPERATIONS = ("CREATE", "UPDATE", "DELETE")

# (name, type, required, description); a reference's target is the text after "->".
_FIELDS: dict[str, list[tuple[str, str, bool, str]]] = {
    "client": [
        ("name", "string", True, "Client's display name"),
        ("clientNumber", "string", False, "Number of the client in the practice system"),
        ("legalName", "string", False, "Registered legal name"),
        ("industry", "reference->industry", False, "Industry the client works in"),
        ("office", "reference->office", False, "Office that serves the client"),
        ("partner", "reference->staff", False, "Partner in charge"),
        ("email", "email", False, "Main e-mail address"),
        ("phone", "phone", False, "Main phone number"),
        ("fiscalYearEnd", "date", False, "Last day of the fiscal year"),
        ("annualRevenue", "decimal", False, "Revenue of the last fiscal year"),
        ("employeeCount", "integer", False, "Number of employees"),
        ("isProspect", "boolean", False, "Not yet a client"),
        ("notes", "text", False, "Free-form notes"),
    ],
    "contact": [
        ("name", "string", True, "Full display name"),
        ("firstName", "string", False, "Given name"),
        ("lastName", "string", False, "Family name"),
        ("title", "string", False, "Job title"),
        ("email", "email", False, "Main e-mail address"),
        ("phone", "phone", False, "Main phone number"),
        ("dateOfBirth", "date", False, "Date of birth"),
        ("notes", "text", False, "Free-form notes"),
    ],
    "clientBusinessEntity": [
        ("name", "string", True, "Name of the business entity"),
        ("client", "reference->client", False, "Client owning the entity"),
        ("entityKind", "string", False, "LLC, partnership, trust, ..."),
        ("taxId", "string", False, "Tax identification number"),
        ("jurisdiction", "string", False, "Where the entity is registered"),
        ("incorporatedOn", "date", False, "Date of incorporation"),
        ("isPrimary", "boolean", False, "The client's primary entity"),
    ],
    "contactClient": [
        ("contact", "reference->contact", True, "The contact"),
        ("client", "reference->client", True, "The client the contact belongs to"),
        ("role", "string", False, "Role of the contact at the client"),
        ("isPrimary", "boolean", False, "The client's primary contact"),
        ("startDate", "date", False, "Since when the contact has this role"),
    ],
    "contactInfo": [
        ("value", "string", True, "The address, number or handle"),
        ("contact", "reference->contact", False, "Contact the information belongs to"),
        ("kind", "string", False, "email, phone, address, ..."),
        ("label", "string", False, "work, home, ..."),
        ("isPrimary", "boolean", False, "The preferred one of its kind"),
    ],
    "department": [
        ("name", "string", True, "Department name"),
        ("code", "string", False, "Short code"),
        ("office", "reference->office", False, "Office the department belongs to"),
        ("head", "reference->staff", False, "Head of the department"),
    ],
    "industry": [
        ("name", "string", True, "Industry name"),
        ("code", "string", False, "Industry classification code"),
        ("description", "text", False, "What the industry covers"),
        ("parent", "reference->industry", False, "Broader industry"),
    ],
    "jobTemplate": [
        ("name", "string", True, "Template name"),
        ("serviceLine", "reference->serviceLine", False, "Service line of the jobs"),
        ("description", "text", False, "What the job involves"),
        ("estimatedHours", "decimal", False, "Estimated effort in hours"),
        ("billable", "boolean", False, "Whether time on the job is billable"),
    ],
    "office": [
        ("name", "string", True, "Office name"),
        ("code", "string", False, "Short code"),
        ("address", "text", False, "Postal address"),
        ("city", "string", False, "City"),
        ("country", "string", False, "Country"),
        ("phone", "phone", False, "Main phone number"),
        ("email", "email", False, "Main e-mail address"),
        ("openedOn", "date", False, "Date the office opened"),
    ],
    "serviceLine": [
        ("name", "string", True, "Service line name"),
        ("code", "string", False, "Short code"),
        ("description", "text", False, "Services offered"),
        ("department", "reference->department", False, "Department delivering the services"),
    ],
    "staff": [
        ("name", "string", True, "Full display name"),
        ("firstName", "string", False, "Given name"),
        ("lastName", "string", False, "Family name"),
        ("email", "email", False, "Work e-mail address"),
        ("title", "string", False, "Job title"),
        ("department", "reference->department", False, "Department"),
        ("office", "reference->office", False, "Office"),
        ("hireDate", "date", False, "First working day"),
        ("hourlyRate", "decimal", False, "Standard billing rate"),
        ("isPartner", "boolean", False, "Partner of the firm"),
        ("lastLoginAt", "datetime", False, "Last sign-in to the practice system"),
    ],
}

STANDARD_TYPES: tuple[str, ...] = tuple(_FIELDS)


def is_known_type(name: str) -> bool:
    """Whether `name` is an entity type the emulator stores records of."""
    return name in _FIELDS


def display_name(name: str) -> str:
    """`clientBusinessEntity` -> `Client Business Entity`."""
    words = "".join(" " + c if c.isupper() else c for c in name)
    return words[:1].upper() + words[1:]


def schema(name: str) -> dict[str, Any]:
    """The `data` of `GET /api/v1/records/schema/{name}`."""
    fields = []
    for rank, (field, kind, required, description) in enumerate(_FIELDS[name], start=1):
        kind, _, target = kind.partition("->")
        fields.append(
            {
                "name": field,
                "displayName": display_name(field),
                "type": kind,
                "required": required,
                "nullable": not required,
                "description": description,
                "referencedEntityType": target or None,
                "rank": rank,
            }
        )
    return {"entityType": name, "fields": fields}
