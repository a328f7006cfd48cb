"""The platform's PSI server: registry members → items → cached setups; requests checked against the limits.

What it reads: a registry's members (pseudonyms, from ``gold.psi_registry`` through the caller),
the opposition registry (opposed members are dropped when a setup is built, and any change of
the opposition registry makes a new setup under a new key, so an opposition counts from the next
query, not the next ``pdp run``), and the vault's *linkage view* (names, sex, birth date, NIR:
what the items are made of) through the edge's keys. What it never sees: a partner's item in
clear, or which of them matched.

Setups are cached per (registry, version, mode, opposition generation): a partner downloads one
with its tag and sends the tag with each request; a request for a tag that is no longer current
is refused (409), because it would be answered under another key.

Every accepted request is written to ``psi_request`` (partner, territory, registry, mode, size,
time; never an item): the per-period limit counts them. The caller (the API) writes the audit entry.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Column, DateTime, Engine, Integer, String, Table, func, insert, select

from pdp.governance.db import metadata
from pdp.pseudonym.psi.items import member_items
from pdp.pseudonym.psi.limits import Limits, PartnerLimits, load_limits
from pdp.pseudonym.psi.protocol import build_setup, process_request, request_size, server_key

__all__ = ["Mode", "Prepared", "PsiRefused", "PsiService", "psi_request"]

Mode = Literal["count", "query"]  # the policy's actions: cardinality only, full intersection

psi_request = Table(
    "psi_request",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("partner", String(200), nullable=False, index=True),
    Column("territory", String(64), nullable=False),
    Column("registry", String(64), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("client_set", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
)


class PsiRefused(Exception):
    """A request the limits refuse: ``status`` is the HTTP status (403, 409, 429), the message the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Prepared:
    """One registry version's setup for one mode: what a partner downloads."""

    registry: str
    tag: str  # registry version + opposition generation: what a request must name
    mode: Mode
    setup: bytes
    members: int  # persons in the set (after opposition)
    items: int  # their items (NIR and traits forms)
    key: bytes = b""

    def __repr__(self) -> str:
        return f"Prepared(registry={self.registry!r}, tag={self.tag!r}, mode={self.mode!r}, items={self.items})"


class PsiService:
    """Builds and caches setups, answers requests within the limits (one per API process)."""

    def __init__(self, engine: Engine, key_store: Any, *, limits: Limits | None = None,
                 workers: int | None = None) -> None:
        self._engine = engine
        self._store = key_store
        self.limits = limits or load_limits()
        self._workers = workers
        self._cache: dict[tuple[str, str, str], Prepared] = {}
        self._lock = threading.Lock()

    # -- setups ---------------------------------------------------------------------------

    def generation(self) -> str:
        """A short digest of the opposition registry's state: changes whenever an opposition does."""
        from pdp.governance.opposition.registry import opposition_registry as r

        with self._engine.connect() as conn:
            row = conn.execute(select(func.count(), func.max(r.c.submitted_at), func.max(r.c.withdrawn_at))).one()
        return hashlib.sha256(repr(tuple(row)).encode()).hexdigest()[:12]

    def prepare(self, registry: str, version: str, members: Sequence[str], mode: Mode) -> Prepared:
        """The setup of `registry` at `version` for `mode`, built once per opposition generation."""
        tag = f"{version}-g{self.generation()}"
        key = (registry, tag, mode)
        with self._lock:  # one build at a time: a build already uses every core
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            prepared = self._build(registry, tag, members, mode)
            for old in [k for k in self._cache if k[0] == registry and k[2] == mode]:
                del self._cache[old]
            self._cache[key] = prepared
            return prepared

    def _build(self, registry: str, tag: str, members: Sequence[str], mode: Mode) -> Prepared:
        from pdp.governance.opposition import OppositionRegistry
        from pdp.pseudonym import RawIdentity
        from pdp.pseudonym.vault import EdgeKeys, IdentityVault

        opposed = OppositionRegistry(self._engine).opposed(list(members))
        kept = [p for p in dict.fromkeys(members) if p not in opposed]
        # the linkage view only (names, sex, birth date, NIR), under the edge's keys: never a sealed record
        view = IdentityVault(self._engine, EdgeKeys(self._store)).linkage_view(kept)
        items: list[str] = []
        for record in view.values():
            raw = RawIdentity(birth_name=record.birth_name, used_name=record.used_name,
                              first_names=list(record.first_names or ()), sex=record.sex,
                              birth_date=record.birth_date, nir=record.nir)
            items.extend(member_items(raw))
        items = sorted(set(items))
        secret = self._store.ensure("psi").material
        key = server_key(secret, registry, tag, mode, "1")
        setup = build_setup(key, items, reveal=mode == "query", workers=self._workers)
        return Prepared(registry=registry, tag=tag, mode=mode, setup=setup, members=len(view), items=len(items),
                        key=key)

    # -- requests -------------------------------------------------------------------------

    def answer(self, prepared: Prepared, request: bytes, *, partner: str, territory: str) -> tuple[bytes, int]:
        """The response to a partner's request and its item count, once the limits admit it."""
        size = request_size(request)
        self.admit(partner, territory, prepared.registry, prepared.mode, size)
        return process_request(prepared.key, request, reveal=prepared.mode == "query"), size

    def partner_limits(self, partner: str) -> PartnerLimits:
        return self.limits.for_partner(partner)

    def admit(self, partner: str, territory: str, registry: str, mode: Mode, size: int) -> None:
        """Raise :class:`PsiRefused` if the request breaks a limit; else record it (it counts from now)."""
        limits = self.limits.for_partner(partner)
        if size > limits.max_client_set:
            raise PsiRefused(403, f"client set of {size} items exceeds this partner's limit of "
                                  f"{limits.max_client_set}")
        if mode == "count" and size < limits.min_client_set_for_count:
            raise PsiRefused(403, f"a cardinality request needs at least {limits.min_client_set_for_count} items "
                                  f"(got {size})")
        now = datetime.now(UTC)
        since = now - timedelta(hours=limits.period_hours)
        r = psi_request.c
        with self._engine.begin() as conn:
            used = conn.execute(select(func.count()).where(r.partner == partner, r.registry == registry,
                                                           r.at > since)).scalar_one()
            if used >= limits.queries_per_period:
                raise PsiRefused(429, f"{used} requests to {registry} in the last {limits.period_hours} h: "
                                      f"this partner's limit is {limits.queries_per_period}")
            conn.execute(insert(psi_request).values(partner=partner, territory=territory, registry=registry,
                                                    mode=mode, client_set=size, at=now))
