"""The API's one way to identities: :func:`pdp.pseudonym.reidentify.reidentify`, wired to the policy.

Why a wrapper: every identified response (worklist, alerts) must go through the same call with
the same hooks — the Casbin policy for ``identity``/``reidentify`` in the request's territory,
the principal's patient scope (a professional's own patients), the snapshot's territory
membership, the opposition registry, and the audit log — and map its refusals to HTTP the
same way (refused → 403, not recorded → 503: nothing is released that is not audited).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException, status

from pdp.api.context import SnapshotMembership
from pdp.api.deps import Access
from pdp.api.snapshot import GoldSnapshot
from pdp.governance.audit import AuditLogSink
from pdp.governance.authz import PolicyAuthorizer
from pdp.pseudonym.reidentify import Actor, AuditWriteFailed, ReidentificationError, ReidentificationRefused, reidentify

__all__ = ["BATCH", "release"]

#: Pseudonyms per ``reidentify`` call (the largest page). Each call is one audit entry whose details
#: name the shorter of the released and withheld lists (at most 1 000 pseudonyms, ~48 KiB, under the
#: 64 KiB cap of an entry's details): a 2 000-patient page is one hash-chained audit write.
BATCH = 2000


def release(access: Access, snapshot: GoldSnapshot, pseudonyms: Sequence[str]) -> dict[str, Any]:
    """Identities (vault records) of the authorised, non-opposed ``pseudonyms``; audited by ``reidentify``."""
    if not pseudonyms:
        return {}
    ctx, principal = access.ctx, access.principal
    authorizer = PolicyAuthorizer(ctx.authoriser, principal, access.territory,
                                  relationships=ctx.relationships(snapshot), membership=SnapshotMembership(snapshot))
    released: dict[str, Any] = {}
    try:
        for start in range(0, len(pseudonyms), BATCH):
            released.update(reidentify(
                pseudonyms[start:start + BATCH], actor=Actor(principal.sub, frozenset({str(principal.role)})),
                purpose=access.purpose, vault=ctx.vault, audit=AuditLogSink(ctx.audit, actor_role=str(principal.role)),
                authorizer=authorizer, opposition=ctx.registry, purposes=ctx.authoriser.purposes,
            ))
        return released
    except ReidentificationRefused as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except (AuditWriteFailed, ReidentificationError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
