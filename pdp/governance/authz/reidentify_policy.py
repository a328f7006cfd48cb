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

from pdp.governance.authz.authoriser import Authoriser, Principal
from pdp.governance.authz.relationships import CareRelationships, patients_in_scope
from pdp.governance.authz.vocabulary import PATIENT_SCOPE, Action, Resource
from pdp.pseudonym.reidentify import Actor, Decision

__all__ = ["PolicyAuthorizer"]


class PolicyAuthorizer:
    """Implements ``pdp.pseudonym.reidentify.Authorizer`` for one authenticated principal and territory."""

    def __init__(
        self,
        authoriser: Authoriser,
        principal: Principal,
        domain: str,
        *,
        relationships: CareRelationships | None = None,
    ) -> None:
        self._authz = authoriser
        self._principal = principal
        self._domain = domain
        self._relationships = relationships

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
        return Decision.allow(
            visible, f"{decision.rule}; {len(visible)} of {len(pseudonyms)} in the principal's patient scope ({scope})"
        )
