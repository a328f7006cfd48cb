"""An opposition as the DMP sends it: a FHIR R4 ``Consent`` naming the patient by INS.

Why FHIR ``Consent``: it is the resource the DMP and the ANS profiles use for a patient's
choice about the use of their data. What we accept, and why each check:

- ``resourceType`` Consent, validated by the R4 model of ``fhir.resources`` (R4B = R4 here);
- ``provision.type = deny`` (an opposition; a ``permit`` is not one);
- ``status``: ``active`` to submit; a withdrawal names the same patient with any status;
- the patient: ``Consent.patient`` references a ``Patient`` contained in the Consent (``#id``)
  that carries the INS: the NIR (``urn:oid:1.2.250.1.213.1.4.8``) and the INS traits
  (birth name, first names, sex, birth date). The traits are required because the platform's
  pseudonym is the keyed hash of the normalised identity (NIR *and* birth date), exactly as
  the edge computes it for every source.

Nothing here keeps or prints an identity value: errors name the field, never its content, and
:class:`ConsentRequest` hides its identity in ``repr``.

>>> request = parse_consent(Path("consent.json").read_bytes())        # doctest: +SKIP
>>> request.kind, request.raw_identity                                  # doctest: +SKIP
('deny', RawIdentity(<hidden>))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pdp.pseudonym import RawIdentity

__all__ = ["INS_NIR_SYSTEM", "ConsentError", "ConsentRequest", "parse_consent"]

INS_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
_MAX_BYTES = 1_000_000
# FHIR R4 consent-state-codes: the model takes any code-shaped text, and a status outside these is
# shown nowhere (a message quoting it could quote a name)
CONSENT_STATUSES = frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"})


class ConsentError(ValueError):
    """The Consent cannot be used (one line naming the field; never a value)."""


@dataclass(frozen=True)
class ConsentRequest:
    status: str
    provision: str
    raw_identity: RawIdentity
    recorded_at: datetime | None

    def __repr__(self) -> str:
        return f"ConsentRequest(status={self.status!r}, provision={self.provision!r}, <identity hidden>)"


def parse_consent(raw: bytes) -> ConsentRequest:
    """The opposition a Consent expresses; :class:`ConsentError` when it is not a usable one."""
    from fhir.resources.R4B.consent import Consent
    from pydantic import ValidationError

    if len(raw) > _MAX_BYTES:
        raise ConsentError(f"Consent: larger than {_MAX_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConsentError("Consent: not a UTF-8 JSON document") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Consent":
        raise ConsentError("Consent: resourceType is not Consent")
    try:
        Consent.model_validate(data)
    except (ValidationError, ValueError, TypeError, LookupError) as exc:
        raise ConsentError(f"Consent: fails FHIR R4 validation at {_where(exc)}") from None
    if data.get("status") not in CONSENT_STATUSES:
        raise ConsentError(f"Consent.status: not a FHIR consent status ({', '.join(sorted(CONSENT_STATUSES))})")
    provision = (data.get("provision") or {}).get("type")
    if provision != "deny":
        raise ConsentError("Consent.provision.type: must be 'deny' (an opposition)")
    patient = _contained_patient(data)
    nir = next(
        (i.get("value") for i in patient.get("identifier") or [] if i.get("system") == INS_NIR_SYSTEM), None
    )
    if not nir:
        raise ConsentError(f"Consent.patient: the contained Patient has no INS-NIR identifier ({INS_NIR_SYSTEM})")
    name = _official_name(patient)
    identity = RawIdentity(
        birth_name=name.get("family"),
        first_names=list(name.get("given") or []) or None,
        sex={"male": "M", "female": "F"}.get(str(patient.get("gender"))),
        birth_date=patient.get("birthDate"),
        nir=nir,
    )
    for field, value in (("name.family", identity.birth_name), ("gender", identity.sex),
                         ("birthDate", identity.birth_date)):
        if not value:
            raise ConsentError(f"Consent.patient: the contained Patient lacks the INS trait {field}")
    return ConsentRequest(
        status=str(data.get("status")), provision=provision, raw_identity=identity,
        recorded_at=_instant(data.get("dateTime")),
    )


def _instant(value: object) -> datetime | None:
    """FHIR ``dateTime`` may be a year, a month, a day or an instant: only a full one is kept."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _contained_patient(data: dict[str, Any]) -> dict[str, Any]:
    reference = ((data.get("patient") or {}).get("reference")) or ""
    if not reference.startswith("#"):
        raise ConsentError("Consent.patient: must reference a Patient contained in the Consent (#id) carrying the INS")
    for resource in data.get("contained") or []:
        if resource.get("resourceType") == "Patient" and resource.get("id") == reference[1:]:
            return resource
    raise ConsentError("Consent.patient: the referenced Patient is not in Consent.contained")


def _official_name(patient: dict[str, Any]) -> dict[str, Any]:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    for use in ("official", "maiden", None):
        for name in names:
            if name.get("use") == use or use is None:
                return name
    return {}


def _where(exc: BaseException) -> str:
    """The first error's location: element names and positions, nothing the sender chose."""
    from pydantic import ValidationError

    from pdp.ingest import fhir_error_location

    errors = exc.errors() if isinstance(exc, ValidationError) else []
    return fhir_error_location("Consent", errors[0]) if errors else "Consent"
