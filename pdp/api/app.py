"""``create_app(settings)``: the FastAPI application, assembled from its routers.

Why a factory: the app is built over explicit settings (tests build theirs over a private lake
and store; ``pdp serve`` over the process settings), and every long-lived part is made once
here, failing closed — no issuer, audience or JWKS, an unreadable policy: no app.

Errors: every refusal is a JSON ``{"detail": ...}`` with its status; anything unexpected is a
500 with a fixed message (the exception is logged by type only: no request data, no identity).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from pdp.api.context import ApiContext
from pdp.api.deps import Permission, any_role
from pdp.api.routers import admin, definitions, dmp, ethics, psi, public, siop
from pdp.config import Settings, get_settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over ``settings`` (default: the process settings)."""
    settings = settings or get_settings()
    ctx = ApiContext.build(settings)
    app = FastAPI(
        title="pdp — population data platform API",
        version="0.1.0",
        description="SIOP worklists and alerts, DMP opposition and transparency, ethics review, admin; "
                    "bearer JWT (RS256/ES256) + X-Purpose on every route but /healthz and /openapi.json.",
        docs_url=None, redoc_url=None,
    )
    app.state.ctx = ctx
    # fold the boxes the edge sealed since the last start: the first worklist then costs AES-GCM
    # reads, not X25519 exchanges (see IdentityVault.compact)
    from pdp.pseudonym.kms import KeyStoreError

    try:
        folded = ctx.vault.compact()
        logger.info("serving: %d persons' new identity observations folded", folded)
    except KeyStoreError as exc:  # no key store here: routes that re-identify will refuse, the rest serve
        logger.warning("serving: identity cache not folded (%s)", exc)
    for module in (public, definitions, admin, ethics, dmp, siop, psi):
        describe_access(module.router)
        app.include_router(module.router)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI echoes the offending input by default: a NIR or a name in a body must not come back
        # (proxies and clients log responses). Location, message and type say what to fix.
        # A location names our schema's fields; a key the client typed (an unknown body key, a
        # dict key) is shown as "?" (it could be a name or a NIR). `msg` never quotes the input for
        # the models served today; a discriminated union would ("Input tag 'X' ..."): keep them out
        # of request bodies, or drop `msg` for their errors.
        known = _schema_names(app)
        errors = [{"loc": [part if isinstance(part, int) or part in known else "?" for part in e.get("loc", ())],
                   "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error on %s %s: %s", request.method, request.scope.get("route") and
                     getattr(request.scope["route"], "path", "?"), type(exc).__name__)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def _schema_names(app: FastAPI) -> frozenset[str]:
    """Every name the API's own schema declares (parameters, properties of every body and
    response model): the only strings a validation error's location may show."""
    names = getattr(app.state, "schema_names", None)
    if names is None:
        found = set(_LOCATIONS)

        def walk(node: object) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "properties" and isinstance(value, dict):
                        found.update(str(name) for name in value)
                    elif key == "parameters" and isinstance(value, list):
                        found.update(str(p["name"]) for p in value if isinstance(p, dict) and "name" in p)
                    walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(app.openapi())
        names = app.state.schema_names = frozenset(found)
    return names


def _openapi(app: FastAPI) -> dict:
    """The generated schema plus the bearer scheme every non-public operation requires."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (RS256/ES256)"}}
        schema["components"].setdefault("schemas", {})["ApiError"] = {
            "type": "object", "properties": {"detail": {}}, "required": ["detail"], "title": "ApiError"}
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}}
        refusals = {"400": "Missing or unknown X-Purpose (the allowed purposes are listed), or a bad cursor",
                    "401": "Missing or invalid bearer token (WWW-Authenticate: Bearer error=\"invalid_token\")",
                    "403": "Not allowed for this role, territory or purpose (recorded in the audit log)",
                    "404": "Nothing served for this territory or patient", "409": "Too many changes",
                    "410": "Changes no longer kept", "503": "A store the answer depends on is unavailable"}
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                if isinstance(op, dict) and op.get("x-pdp-access") not in (None, "public"):
                    op["security"] = [{"bearer": []}]
                    for code, text in refusals.items():
                        op.setdefault("responses", {}).setdefault(code, {"description": text, **error})
                    if "422" in op["responses"]:  # our handler's shape, not FastAPI's default
                        op["responses"]["422"] = {"description": "Invalid request (the input is never echoed)",
                                                  **error}
        app.openapi_schema = schema
    return app.openapi_schema


def _access_of(dependant: Dependant) -> dict | None:
    for dep in dependant.dependencies:
        if isinstance(dep.call, Permission):
            return {"roles": sorted(str(r) for r in dep.call.roles), "object": str(dep.call.obj),
                    "action": str(dep.call.action), "territorial": dep.call.territorial}
        if dep.call is any_role:
            return {"roles": "any", "territorial": False}
        if isinstance(getattr(dep.call, "pdp_access", None), dict):  # a route deciding per path (/psi)
            return dict(dep.call.pdp_access)
        found = _access_of(dep)
        if found is not None:
            return found
    return None


def describe_access(router: APIRouter) -> None:
    """Write each route's access rule into its OpenAPI operation (``x-pdp-access``): what the matrix
    test and API clients read — roles served, policy object and action, whether a territory applies;
    a route without one is public."""
    for route in router.routes:
        if isinstance(route, APIRoute):
            access = _access_of(route.dependant)
            route.openapi_extra = {**(route.openapi_extra or {}), "x-pdp-access": access or "public"}
