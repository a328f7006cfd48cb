"""What the API holds for its lifetime: settings, verifier, authoriser, audit log, stores, snapshot.

Why one object: every dependency of :mod:`pdp.api.deps` needs the same few long-lived parts,
built once at start-up (fail closed: a missing issuer, an unreadable policy or purposes file
stops ``create_app``), and tests build an app over their own settings without touching the
process-wide ones.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Engine

from pdp.api.auth import JwksSource, TokenVerifier
from pdp.api.cursor import CursorSigner
from pdp.api.snapshot import GoldSnapshot, SnapshotStore
from pdp.config import Settings
from pdp.governance import create_all, make_engine
from pdp.governance.audit import AuditDecisionRecorder, AuditLog, PolicyChangeRecorder, create_audit_tables
from pdp.governance.authz import Authoriser, SqlCareRelationships
from pdp.governance.opposition import OppositionRegistry

__all__ = ["ApiContext", "GoldAndRecordedRelationships", "PscIssuer", "SnapshotMembership"]


class GoldAndRecordedRelationships:
    """A professional's patients: declared GP in gold (``gp_rpps``) or a recorded care relationship."""

    def __init__(self, snapshot: GoldSnapshot, recorded: SqlCareRelationships) -> None:
        self._snapshot, self._recorded = snapshot, recorded

    def related(self, rpps: str, pseudonyms: Sequence[str]) -> set[str]:
        declared = {p for p in pseudonyms if self._snapshot.gp_of.get(p) == rpps}
        rest = [p for p in pseudonyms if p not in declared]
        return declared | (self._recorded.related(rpps, rest) if rest else set())


class SnapshotMembership:
    """``TerritoryMembership`` backed by the snapshot: only persons of the snapshot's territory."""

    def __init__(self, snapshot: GoldSnapshot) -> None:
        self._snapshot = snapshot

    def in_territory(self, territory: str, pseudonyms: Sequence[str]) -> set[str]:
        if self._snapshot.territory != territory:
            return set()
        known = self._snapshot.gp_of
        return {p for p in pseudonyms if p in known}


@dataclass(frozen=True)
class PscIssuer:
    """Pro Santé Connect as a second trusted issuer: its verifier and the practice-commune table."""

    verifier: TokenVerifier
    communes: dict[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> PscIssuer | None:
        """None when PSC is not configured; a one-line error when it is half-configured."""
        from pdp.api.auth import JwksError
        from pdp.api.psc import load_communes

        parts = (settings.psc_issuer, settings.psc_audience, settings.psc_jwks, settings.psc_communes)
        if not any(parts):
            return None
        if not all(parts):
            raise JwksError("Pro Santé Connect needs PDP_PSC_ISSUER, PDP_PSC_AUDIENCE, PDP_PSC_JWKS and "
                            "PDP_PSC_COMMUNES together")
        verifier = TokenVerifier(issuer=settings.psc_issuer or "", audience=settings.psc_audience or "",
                                 jwks=JwksSource(settings.psc_jwks or ""))
        return cls(verifier=verifier, communes=load_communes(settings.psc_communes))  # type: ignore[arg-type]


@dataclass
class ApiContext:
    settings: Settings
    verifier: TokenVerifier
    authoriser: Authoriser
    audit: AuditLog
    engine: Engine
    snapshots: SnapshotStore
    cursors: CursorSigner
    psc: PscIssuer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> ApiContext:
        """Every long-lived part, from ``settings``; raises a one-line error on a bad configuration."""
        verifier = TokenVerifier(issuer=settings.oidc_issuer or "", audience=settings.oidc_audience or "",
                                 jwks=JwksSource(settings.oidc_jwks or ""))
        engine = make_engine(settings.db_url)
        create_all(engine)
        audit_engine = make_engine(settings.audit_db_url) if settings.audit_db_url else engine
        create_audit_tables(audit_engine)
        audit = AuditLog(audit_engine)
        authoriser = Authoriser.from_settings(settings, on_decision=AuditDecisionRecorder(audit),
                                              on_reload=PolicyChangeRecorder(audit))
        return cls(settings=settings, verifier=verifier, authoriser=authoriser, audit=audit, engine=engine,
                   snapshots=SnapshotStore(settings.lake_uri, check_seconds=settings.api_snapshot_check_seconds),
                   cursors=CursorSigner.from_var(settings.var_dir), psc=PscIssuer.from_settings(settings))

    @cached_property
    def registry(self) -> OppositionRegistry:
        return OppositionRegistry(self.engine)

    @cached_property
    def key_store(self) -> Any:
        from pdp.pseudonym import KeyStore

        return KeyStore.from_settings(self.settings)

    @cached_property
    def vault(self) -> Any:
        from pdp.pseudonym.vault import IdentityVault

        return IdentityVault(self.engine, self.key_store)

    @cached_property
    def psi(self) -> Any:
        from pdp.pseudonym.psi.service import PsiService

        return PsiService(self.engine, self.key_store)

    @cached_property
    def definitions(self) -> Any:
        from pdp.algorithms import load_definitions

        return load_definitions(self.settings.definitions_dir)

    def relationships(self, snapshot: GoldSnapshot) -> GoldAndRecordedRelationships:
        return GoldAndRecordedRelationships(snapshot, SqlCareRelationships(self.engine))

    def not_opposed(self, pseudonyms: Sequence[str]) -> list[str]:
        """``pseudonyms`` minus the opposed ones, read from the registry now (effective on the next request)."""
        opposed = self.registry.opposed(list(pseudonyms)) if pseudonyms else set()
        return [p for p in pseudonyms if p not in opposed]
