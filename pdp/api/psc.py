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
from typing import Any

__all__ = ["PscMappingError", "map_psc_claims"]

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
