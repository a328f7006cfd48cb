"""Pro Santé Connect (PSC) claims → the platform's claims (role, RPPS, territories).

Why a mapping and not PSC tokens as they are: PSC (the national e-CPS / CPS identity provider for
health professionals, OpenID Connect) says *who* a professional is and *where they practise*,
not what they may do on this platform. A professional's token carries:

- ``SubjectNameID``: the national professional identifier, ``8`` + RPPS (11 digits) for an RPPS
  holder (the ``idNat_PS``);
- ``SubjectRefPro.exercices[]``: one item per profession exercised, with
  ``codeProfession`` (``10`` = médecin, ``21`` = pharmacien, ``60`` = infirmier, ...) and
  ``activities[]`` whose ``codeCommuneStructure`` (INSEE code of the practice) says where.

The mapping (the README's table) is: role ``professional``; ``pdp_rpps`` = the 11 digits of
``SubjectNameID`` after its leading ``8``; ``pdp_territories`` = the territories whose communes
contain one of the practice communes (a table ``commune → territory`` the deployment provides).
A professional with no practice in an onboarded territory gets no territory, hence no principal.

Wiring: with ``PDP_PSC_ISSUER``, ``PDP_PSC_AUDIENCE``, ``PDP_PSC_JWKS`` and ``PDP_PSC_COMMUNES``
set, a bearer token whose ``iss`` is PSC's is verified against PSC's key set (same algorithms and
checks as the platform's issuer), then mapped here; every other token goes to ``PDP_OIDC_*``.

Example::

    >>> claims = {"sub": "f:550e8400", "SubjectNameID": "810000000001",
    ...           "SubjectRefPro": {"exercices": [{"codeProfession": "10",
    ...                                            "activities": [{"codeCommuneStructure": "59178"}]}]}}
    >>> map_psc_claims(claims, {"59178": "douaisis"})["pdp_territories"]
    ['douaisis']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PscMappingError", "load_communes", "map_psc_claims"]

_NATIONAL_ID = re.compile(r"8(\d{11})")


class PscMappingError(ValueError):
    """The PSC claims do not make a platform professional (one line, no value)."""


def map_psc_claims(claims: Mapping[str, Any], territory_of_commune: Mapping[str, str]) -> dict[str, Any]:
    """The platform's claims (``sub``, ``pdp_role``, ``pdp_rpps``, ``pdp_territories``) for a PSC token's claims."""
    match = _NATIONAL_ID.fullmatch(str(claims.get("SubjectNameID") or ""))
    if match is None:
        raise PscMappingError("SubjectNameID is not an RPPS national identifier (8 + 11 digits)")
    ref = claims.get("SubjectRefPro") or {}
    exercices = ref.get("exercices") if isinstance(ref, Mapping) else None
    communes = {
        str(activity.get("codeCommuneStructure"))
        for exercice in exercices or [] if isinstance(exercice, Mapping)
        for activity in exercice.get("activities") or [] if isinstance(activity, Mapping)
    }
    territories = sorted({territory_of_commune[c] for c in communes if c in territory_of_commune})
    if not territories:
        raise PscMappingError("no practice (SubjectRefPro.exercices[].activities[]) in an onboarded territory")
    return {"sub": str(claims.get("sub") or ""), "pdp_role": "professional", "pdp_rpps": match.group(1),
            "pdp_territories": territories}


def load_communes(path: Path) -> dict[str, str]:
    """The deployment's ``commune,territory`` CSV (header required) as a dict; one-line error if unreadable."""
    import csv

    try:
        with Path(path).open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise PscMappingError(f"PSC communes file {path}: unreadable ({type(exc).__name__})") from None
    if not rows or set(rows[0]) != {"commune", "territory"}:
        raise PscMappingError(f"PSC communes file {path}: expected the columns commune,territory")
    bad = [i for i, r in enumerate(rows, start=2) if not re.fullmatch(r"[0-9][0-9AB][0-9]{3}", r["commune"] or "")
           or not re.fullmatch(r"[a-z][a-z0-9-]{0,63}", r["territory"] or "")]
    if bad:
        raise PscMappingError(f"PSC communes file {path}: line {bad[0]} is not an INSEE code and a territory slug")
    return {r["commune"]: r["territory"] for r in rows}
