"""The API's typed dependencies: who asks (principal), why (purpose), may they (permission), and audit.

Why dependencies and not checks in route bodies: a route declares what it serves —
``Depends(Permission(Resource.WORKLIST, Action.READ, roles={Role.SIOP_PLATFORM}))`` — and can
not forget a step. The order is fixed and each step fails closed:

1. ``principal``: the bearer token is verified (:mod:`pdp.api.auth`) and its claims make a
   :class:`~pdp.governance.authz.Principal`; anything wrong → 401 with ``WWW-Authenticate``;
2. ``purpose``: the ``X-Purpose`` header names a declared purpose; missing or unknown → 400
   listing the purposes the caller's role may state;
3. ``Permission``: the route serves the principal's role (else 403, recorded in the audit
   log), and the one decision function allows the object, action and purpose in the territory
   of the request (path or query ``territory``; ``*`` for national resources) — the authoriser
   records every decision, allowed or denied.

Route bodies then only read data; patient-level reads that no other entry covers are recorded
with :meth:`Access.record` (``data_access``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, status

from pdp.api.auth import JwksError, TokenError
from pdp.api.context import ApiContext
from pdp.api.psc import PscMappingError, map_psc_claims
from pdp.governance.authz import Principal, PrincipalError, Role
from pdp.governance.authz.vocabulary import WILDCARD

__all__ = ["Access", "ContextDep", "Permission", "PrincipalDep", "PurposeDep", "get_context", "unauthorised"]

REALM = "pdp"


def unauthorised(reason: str) -> HTTPException:
    """401 with the RFC 6750 challenge; the reason is a fixed phrase, never token content."""
    safe = reason.replace('"', "'")
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=f"invalid token: {reason}",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token", error_description="{safe}"'},
    )


def get_context(request: Request) -> ApiContext:
    return request.app.state.ctx


ContextDep = Annotated[ApiContext, Depends(get_context)]


def _issuer(token: str) -> str | None:
    """The ``iss`` a token claims, unverified: only to choose which issuer's keys verify it."""
    import jwt

    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except Exception:  # the chosen verifier reports a malformed token with its reason
        return None
    return issuer if isinstance(issuer, str) else None


def get_principal(
    ctx: ContextDep, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Principal:
    """The principal of a verified bearer token (401 for a missing or bad token, never a 500)."""
    if not authorization:
        raise unauthorised("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorised("authorization is not a bearer token")
    token = token.strip()
    psc = ctx.psc if ctx.psc is not None and _issuer(token) == ctx.psc.verifier.issuer else None
    try:
        claims = (psc or ctx).verifier.verify(token)
        if psc is not None:
            claims = map_psc_claims(claims, psc.communes)
    except PscMappingError as exc:
        raise unauthorised(f"Pro Sante Connect claims do not make a professional here ({exc})") from None
    except TokenError as exc:
        raise unauthorised(str(exc)) from None
    except JwksError:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the issuer's key set is unavailable") from None
    except Exception:  # a verifier bug must still be a refusal, not a 500
        raise unauthorised("token could not be verified") from None
    try:
        return Principal.from_claims(claims)
    except PrincipalError as exc:
        raise unauthorised(f"claims do not make a principal ({exc})") from None


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_purpose(
    ctx: ContextDep,
    principal: PrincipalDep,
    x_purpose: Annotated[str | None, Header(description="The purpose of use (pdp/governance/purposes.yml).")] = None,
) -> str:
    """The declared purpose of the request; 400 listing the role's purposes when missing or unknown."""
    catalog = ctx.authoriser.purposes
    stated = (x_purpose or "").strip()
    if not stated or not catalog.declares(stated):
        mine = sorted(n for n, p in catalog.purposes.items() if str(principal.role) in p.roles)
        what = "missing X-Purpose header" if not stated else "unknown purpose in X-Purpose"
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            {"error": what, "allowed_purposes": mine, "declared_purposes": sorted(catalog.purposes)})
    return stated


PurposeDep = Annotated[str, Depends(get_purpose)]


@dataclass(frozen=True)
class Access:
    """An allowed request: who, why, where (territory, or ``*``), and the context to read with."""

    principal: Principal
    purpose: str
    territory: str
    ctx: ApiContext
    route: str

    def record(self, pseudonyms: Iterable[str], *, decision: str = "allowed", rule: str = "",
               details: dict[str, Any] | None = None) -> None:
        """A ``data_access`` audit entry (pseudonyms or counts, never an identity)."""
        self.ctx.audit.append(
            actor=self.principal.sub, actor_role=str(self.principal.role), action="data_access", decision=decision,
            data_ref=list(pseudonyms), purpose=self.purpose, rule=rule or f"route {self.route}",
            details={"route": self.route, "territory": self.territory, **(details or {})},
        )


class Permission:
    """Route dependency: role served by the route, then the policy decision, in the request's territory."""

    def __init__(self, obj: str, action: str, *, roles: Iterable[Role], territorial: bool = True) -> None:
        self.obj, self.action = obj, action
        self.roles = frozenset(roles)
        self.territorial = territorial

    def __call__(self, request: Request, ctx: ContextDep, principal: PrincipalDep, purpose: PurposeDep) -> Access:
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        territory = WILDCARD
        if self.territorial:
            territory = request.path_params.get("territory") or request.query_params.get("territory") or ""
        if principal.role not in self.roles:
            rule = f"route {path} serves {', '.join(sorted(self.roles))} only"
            ctx.audit.append(actor=principal.sub, actor_role=str(principal.role), action="authorisation_decision",
                             decision="denied", purpose=purpose, rule=rule,
                             details={"domain": territory or WILDCARD, "object": self.obj, "action": self.action})
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"forbidden: {rule}")
        decision = ctx.authoriser.authorise(principal, territory, self.obj, self.action, purpose)
        if not decision.allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"forbidden: {decision.rule}")
        return Access(principal=principal, purpose=purpose, territory=territory, ctx=ctx, route=path)


def any_role(ctx: ContextDep, principal: PrincipalDep, purpose: PurposeDep) -> Principal:
    """Every authenticated role, with a purpose its role may state (definitions: no patient data)."""
    if str(principal.role) not in ctx.authoriser.purposes.purposes[purpose].roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "forbidden: purpose-not-allowed-for-role")
    return principal
