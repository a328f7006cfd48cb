"""The Casbin policy as the ``authorizer`` of :func:`pdp.pseudonym.reidentify.reidentify`.

Why an adapter: re-identification asks its ``Authorizer`` hook "may this actor see these
pseudonyms for this purpose?" and expects a :class:`pdp.pseudonym.reidentify.Decision` listing
the pseudonyms it may release. :class:`PolicyAuthorizer` answers with the one decision function
(object ``identity``, action ``reidentify``, in the territory of the request) and then keeps
only the patients in the principal's scope (a professional's own patients, through
:class:`~pdp.governance.authz.relationships.CareRelationships`). The authorisation decision
goes through ``Authoriser.on_decision`` like every other; re-identification audits the call.

Example::

    authorizer = PolicyAuthorizer(authz, principal, "douaisis", relationships=SqlCareRelationships(engine))
    records = reidentify(pseudonyms, actor=Actor(principal.sub, frozenset({principal.role})),
                         purpose="care_coordination", vault=vault, audit=sink, authorizer=authorizer,
                         opposition=registry)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pdp.governance.authz.authoriser import Authoriser, Principal
from pdp.governance.authz.relationships import CareRelationships, patients_in_scope
from pdp.governance.authz.vocabulary import PATIENT_SCOPE, Action, Resource
from pdp.pseudonym.reidentify import Actor, Decision

__all__ = ["PolicyAuthorizer", "TerritoryMembership"]


class TerritoryMembership(Protocol):
    """Which of these pseudonyms belong to persons of ``territory``? (backed by gold, for the API).

    Optional defence in depth for the SIOP platform, whose patient scope is the whole territory:
    without it, :class:`PolicyAuthorizer` trusts the caller to pass pseudonyms of the territory
    the decision was about (the API reads them from that territory's worklist, never from the client).
    """

    def in_territory(self, territory: str, pseudonyms: Sequence[str]) -> set[str]: ...


class PolicyAuthorizer:
    """Implements ``pdp.pseudonym.reidentify.Authorizer`` for one authenticated principal and territory."""

    def __init__(
        self,
        authoriser: Authoriser,
        principal: Principal,
        domain: str,
        *,
        relationships: CareRelationships | None = None,
        membership: TerritoryMembership | None = None,
    ) -> None:
        self._authz = authoriser
        self._principal = principal
        self._domain = domain
        self._relationships = relationships
        self._membership = membership

    def authorize(self, actor: Actor, purpose: str, pseudonyms: Sequence[str]) -> Decision:
        """Deny unless the policy allows ``identity``/``reidentify``; then allow only the principal's patients."""
        principal = self._principal
        if not isinstance(actor, Actor) or actor.id != principal.sub:
            return Decision.deny("the actor is not the authenticated principal")
        decision = self._authz.authorise(principal, self._domain, Resource.IDENTITY, Action.REIDENTIFY, purpose)
        if not decision.allowed:
            return Decision.deny(decision.rule)
        scope = PATIENT_SCOPE.get(principal.role, "none")
        if scope == "relationship" and self._relationships is None:
            return Decision.deny("no care-relationship source configured for a professional (fail closed)")
        visible = patients_in_scope(principal, pseudonyms, self._relationships)
        if self._membership is not None and visible:
            members = self._membership.in_territory(self._domain, tuple(visible))
            visible = frozenset(p for p in visible if p in members)
        return Decision.allow(
            visible, f"{decision.rule}; {len(visible)} of {len(pseudonyms)} in the principal's patient scope ({scope})"
        )
