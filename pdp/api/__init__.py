"""The serving API: FastAPI routers over gold (a JVM-free snapshot) and the governance core.

Public surface: :func:`create_app`. See ``app`` (assembly), ``deps`` (principal, purpose,
permission, audit), ``auth`` (JWT/JWKS), ``snapshot`` (gold in memory), ``routers/``.
"""

from pdp.api.app import create_app

__all__ = ["create_app"]
