"""``/psi``: private set intersection for partners (role ``partner``), over protobuf bytes.

A partner lists the registries its agreement opens (``GET /psi/{territory}/registries``),
downloads a registry's setup for a mode (``GET .../{registry}/{count|query}/setup``; the
``X-PSI-Tag`` header names its version), then sends its encrypted request to
``POST .../{registry}/{mode}`` with that tag and gets the server's response. ``count`` is
cardinality only (purpose ``psi_screening``), ``query`` the full intersection (a care purpose,
``partner_follow_up``, granted per partner and registry by the policy). The client may report its
result size (``POST .../{mode}/result``) so the audit holds it; the server itself never learns it.

Refusals: the policy (403), a stale tag (409: download the setup again), the partner's limits
(403 for a client set too large or, in cardinality mode, too small; 429 for too many requests in
the period), a body that is not a PSI request (400). Every exchange is audited (``psi_query``):
partner, registry, version, mode, sizes; never an item.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from pdp.api.deps import ContextDep, PrincipalDep, PurposeDep
from pdp.api.snapshot import GoldSnapshot
from pdp.governance.authz import Role
from pdp.governance.authz.policy import INSTANCE_RE

router = APIRouter(prefix="/psi", tags=["psi"], responses={
    413: {"description": "A request body far over the partner's item limit (refused unread)"},
    429: {"description": "Too many requests to this registry in the partner's period (the limit is named)"},
})

Mode = Literal["count", "query"]
PROTOBUF = "application/x-protobuf"
_BYTES_PER_ITEM = 64  # an encrypted P-256 point (33 bytes) and its protobuf framing, with room to spare


class RegistryOut(BaseModel):
    name: str
    label: str
    description: str
    version: str = Field(description="The registry's version in the gold run served (definition, as-of, table).")
    modes: list[Mode] = Field(description="What the stated purpose lets this partner do with it.")


class ResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "example": {"tag": "r1-20260630-v3-g5d41402abc4b", "matched": 12, "client_set": 2000}})
    tag: str = Field(min_length=1, max_length=100)
    matched: int = Field(ge=0)
    client_set: int = Field(ge=0)


def _registry_version(snapshot: GoldSnapshot, definition_version: int) -> str:
    """``r<definition>-<as of>-v<gold table version>``: letters between the numbers, so no tag ever
    looks like a NIR to the audit trail's identifier check."""
    as_of = snapshot.as_of.strftime("%Y%m%d") if snapshot.as_of else "none"
    return f"r{definition_version}-{as_of}-v{snapshot.versions.get('psi_registry', 0)}"


class _Partner:
    """The partner, its purpose, the territory served; 403 for another role or territory, 404 if not served.

    Not a :class:`~pdp.api.deps.Permission`: the policy object names the registry of the path
    (``psi_registry/<registry>``) and the action is the path's mode, so each route decides with
    :meth:`require` once it knows them. ``pdp_access`` is what the OpenAPI document says of it.
    """

    pdp_access: ClassVar[dict[str, object]] = {"roles": ["partner"], "object": "psi_registry/{registry}",
                                               "action": "{mode}", "territorial": True}

    def __init__(self, request: Request, ctx: ContextDep, principal: PrincipalDep, purpose: PurposeDep,
                 territory: str) -> None:
        if principal.role is not Role.PARTNER:
            rule = "route /psi serves partner only"
            ctx.audit.append(actor=principal.sub, actor_role=str(principal.role), action="authorisation_decision",
                             decision="denied", purpose=purpose, rule=rule,
                             details={"domain": territory, "object": "psi_registry", "action": "*"})
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"forbidden: {rule}")
        if not principal.holds(territory):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "forbidden: territory-not-in-claims")
        self.ctx, self.principal, self.purpose, self.territory = ctx, principal, purpose, territory
        self.snapshot = ctx.snapshots.current()
        if self.snapshot.as_of is None or self.snapshot.territory != territory:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no gold run served for this territory")

    def allowed(self, registry: str, mode: Mode) -> bool:
        return self.ctx.authoriser.authorise(self.principal, self.territory, f"psi_registry/{registry}", mode,
                                             self.purpose).allowed

    def require(self, registry: str, mode: Mode) -> None:
        if not INSTANCE_RE.fullmatch(registry) or registry not in self.ctx.definitions.registries:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown registry")
        decision = self.ctx.authoriser.authorise(self.principal, self.territory, f"psi_registry/{registry}", mode,
                                                 self.purpose)
        if not decision.allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"forbidden: {decision.rule} (this partner may not {mode} "
                                                           f"psi_registry/{registry} for {self.purpose})")

    def prepared(self, registry: str, mode: Mode):
        definition = self.ctx.definitions.registries[registry]
        version = _registry_version(self.snapshot, definition.version)
        return self.ctx.psi.prepare(registry, version, self.snapshot.registries.get(registry, []), mode)

    def audit(self, decision: str, rule: str, **details: object) -> None:
        self.ctx.audit.append(actor=self.principal.sub, actor_role=str(self.principal.role), action="psi_query",
                              decision=decision, purpose=self.purpose, rule=rule,
                              details={"territory": self.territory, "limits_version": self.ctx.psi.limits.version,
                                       **details})


PartnerDep = Annotated[_Partner, Depends(_Partner)]


@router.get("/{territory}/registries", response_model=list[RegistryOut])
def registries(partner: PartnerDep) -> list[RegistryOut]:
    """The registries this partner may query with the stated purpose, and in which modes."""
    out = []
    for name, definition in sorted(partner.ctx.definitions.registries.items()):
        modes: list[Mode] = [m for m in ("count", "query") if partner.allowed(name, m)]
        if modes:
            out.append(RegistryOut(name=name, label=definition.label, description=definition.description,
                                   version=_registry_version(partner.snapshot, definition.version), modes=modes))
    return out


@router.get("/{territory}/registries/{registry}/{mode}/setup", response_class=Response,
            responses={200: {"content": {PROTOBUF: {}}}})
def setup(partner: PartnerDep, registry: str, mode: Mode) -> Response:
    """The registry's setup message for `mode` (serialised ``ServerSetup``), tagged with its version."""
    partner.require(registry, mode)
    prepared = partner.prepared(registry, mode)
    partner.audit("allowed", f"route /psi setup {mode}", registry=registry, tag=prepared.tag, mode=mode,
                  step="setup", registry_items=prepared.items, setup_bytes=len(prepared.setup))
    return Response(prepared.setup, media_type=PROTOBUF,
                    headers={"X-PSI-Tag": prepared.tag, "X-PSI-Items": str(prepared.items),
                             "Cache-Control": "no-store"})


@router.post("/{territory}/registries/{registry}/{mode}", response_class=Response,
             responses={200: {"content": {PROTOBUF: {}}}})
async def exchange(
    request: Request, partner: PartnerDep, registry: str, mode: Mode,
    x_psi_tag: Annotated[str | None, Header(description="The tag of the setup the request is made against.")] = None,
) -> Response:
    """The server's response to an encrypted request (serialised ``Request``), within the partner's limits."""
    from pdp.pseudonym.psi import ProtocolError
    from pdp.pseudonym.psi.service import PsiRefused

    partner.require(registry, mode)  # the policy first: a refused partner learns nothing of the request's shape
    if not x_psi_tag:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "missing X-PSI-Tag: download the setup first")
    # an encrypted item is ~35 bytes: a body far over the partner's item limit is refused unread
    cap = _BYTES_PER_ITEM * partner.ctx.psi.partner_limits(partner.principal.sub).max_client_set + 4096
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"request body over {cap} bytes")
    body = await request.body()
    if len(body) > cap:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"request body over {cap} bytes")
    # a setup build (seconds) and the point multiplications run off the event loop
    prepared = await run_in_threadpool(partner.prepared, registry, mode)
    if x_psi_tag != prepared.tag:
        partner.audit("denied", "stale setup tag", registry=registry, tag=prepared.tag, mode=mode, step="request")
        raise HTTPException(status.HTTP_409_CONFLICT, "the registry changed since this setup: download it again")
    try:
        response, size = await run_in_threadpool(partner.ctx.psi.answer, prepared, body,
                                                 partner=partner.principal.sub, territory=partner.territory)
    except ProtocolError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except PsiRefused as exc:
        partner.audit("denied", exc.reason, registry=registry, tag=prepared.tag, mode=mode, step="request")
        raise HTTPException(exc.status, exc.reason) from None
    partner.audit("allowed", f"route /psi {mode}", registry=registry, tag=prepared.tag, mode=mode, step="request",
                  client_set=size, registry_items=prepared.items, request_bytes=len(body),
                  response_bytes=len(response))
    return Response(response, media_type=PROTOBUF, headers={"X-PSI-Tag": prepared.tag})


@router.post("/{territory}/registries/{registry}/{mode}/result", status_code=status.HTTP_204_NO_CONTENT)
def result(partner: PartnerDep, registry: str, mode: Mode, body: ResultIn) -> Response:
    """The client's own report of its result size, for the audit (the server cannot compute it)."""
    partner.require(registry, mode)
    partner.audit("done", f"route /psi {mode} result (reported by the client)", registry=registry, tag=body.tag,
                  mode=mode, step="result", client_set=body.client_set, matched=body.matched)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{territory}/limits")
def limits(partner: PartnerDep) -> dict[str, int]:
    """This partner's limits (client set size, requests per period, minimum count)."""
    return partner.ctx.psi.partner_limits(partner.principal.sub).model_dump()
