"""Authorisation: Casbin policy (``infra/policy/``), purposes tied to roles, one decision function.

Public surface (everything else is internal):

- :class:`Authoriser` — loads and validates ``model.conf``, ``policy.csv`` and ``purposes.yml``
  (fail closed), decides with :meth:`Authoriser.authorise`, reloads, reports every decision to
  ``on_decision``; :func:`get_authoriser` / :func:`authorise` use one shared instance over the
  default files, which records every decision and policy reload in the audit log.
- :class:`Principal` (from token claims), :class:`Decision`, :class:`DecisionRecord`.
- The vocabulary: :class:`Role`, :class:`Resource`, :class:`Action`.
- Per-patient scope: :class:`CareRelationships` and its in-memory and SQL implementations,
  :func:`patients_in_scope`.
- :class:`PolicyAuthorizer` — the policy as ``reidentify``'s authorizer.

Example::

    >>> from pdp.governance.authz import Principal, authorise
    >>> ethics = Principal(sub="committee-1", role="ethics", territories={"*"})
    >>> authorise(ethics, "douaisis", "identity", "reidentify", "ethics_review").allowed
    False
"""

from __future__ import annotations

import threading

from pdp.governance.authz.authoriser import (
    DENY_BY_DEFAULT,
    PURPOSE_NOT_ALLOWED,
    TERRITORY_NOT_IN_CLAIMS,
    Authoriser,
    CacheInfo,
    Decision,
    DecisionRecord,
    Principal,
    PrincipalError,
)
from pdp.governance.authz.policy import DEFAULT_MODEL_FILE, DEFAULT_POLICY_FILE, AuthzConfigError, PolicyLine
from pdp.governance.authz.reidentify_policy import PolicyAuthorizer, TerritoryMembership
from pdp.governance.authz.relationships import (
    CareRelationship,
    CareRelationships,
    InMemoryCareRelationships,
    SqlCareRelationships,
    patients_in_scope,
)
from pdp.governance.authz.vocabulary import Action, Resource, Role

__all__ = [
    "DEFAULT_MODEL_FILE",
    "DEFAULT_POLICY_FILE",
    "DENY_BY_DEFAULT",
    "PURPOSE_NOT_ALLOWED",
    "TERRITORY_NOT_IN_CLAIMS",
    "Action",
    "Authoriser",
    "AuthzConfigError",
    "CacheInfo",
    "CareRelationship",
    "CareRelationships",
    "Decision",
    "DecisionRecord",
    "InMemoryCareRelationships",
    "PolicyAuthorizer",
    "PolicyLine",
    "Principal",
    "PrincipalError",
    "Resource",
    "Role",
    "SqlCareRelationships",
    "TerritoryMembership",
    "authorise",
    "get_authoriser",
    "patients_in_scope",
]

_shared: Authoriser | None = None
_shared_lock = threading.Lock()


def get_authoriser() -> Authoriser:
    """The process-wide authoriser over ``PDP_POLICY_DIR`` or the default files (built on first use; fails closed)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            # Every decision, allowed or denied, and every policy reload goes to the audit log.
            from pdp.governance.audit import AuditDecisionRecorder, AuditLog, PolicyChangeRecorder

            log = AuditLog.from_settings(with_keys=False)
            _shared = Authoriser.from_settings(on_decision=AuditDecisionRecorder(log),
                                               on_reload=PolicyChangeRecorder(log))
        return _shared


def authorise(principal: Principal, domain: str, obj: str, action: str, purpose: str) -> Decision:
    """The one decision function, on the shared authoriser: see :meth:`Authoriser.authorise`."""
    return get_authoriser().authorise(principal, domain, obj, action, purpose)
