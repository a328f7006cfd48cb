"""Re-identification: the only way from a pseudonym back to a person, checked and recorded.

Why one function: every path that turns pseudonyms into identities (the care-coordination API,
ethics review, an export) must apply the same checks in the same order and leave the same
trace. :func:`reidentify` does, for every call:

1. refuses a missing or anonymous actor;
2. refuses a missing purpose, or one not declared in ``pdp/governance/purposes.yml``;
3. refuses malformed pseudonyms (a NIR or a name passed by mistake is never decrypted nor logged);
4. asks the ``authorizer`` hook, which may allow all, some or none of the pseudonyms — the
   default, :class:`DenyAllAuthorizer`, denies everything until the policy layer is plugged in;
5. removes the pseudonyms the ``opposition`` hook reports as opposed, *before* any decryption;
6. decrypts what is left from the vault;
7. records the call — allowed, refused or failed — through the ``audit`` sink: who, when, for
   which purpose, which pseudonyms were asked and which were released, and why. Pseudonyms are
   not nominative; no identity value is ever written to the audit trail. Identities are handed
   back only once their release is recorded: if the audit write fails, nothing is returned.

Example::

    records = reidentify(
        ["P1…"], actor=Actor("coordinator-42"), purpose="care_coordination",
        vault=vault, audit=DbAuditSink(engine), authorizer=policy,
    )
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, NoReturn, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import JSON, Column, DateTime, Engine, Index, Integer, String, Table, insert, select

from pdp.governance.db import metadata
from pdp.pseudonym.vault import VaultError, VaultRecord, check_pseudonym

__all__ = [
    "DEFAULT_PURPOSES_FILE",
    "Actor",
    "AuditEvent",
    "AuditSink",
    "AuditWriteFailed",
    "Authorizer",
    "DbAuditSink",
    "Decision",
    "DenyAllAuthorizer",
    "NoOppositionRegistry",
    "OppositionRegistry",
    "PurposeCatalog",
    "PurposeCatalogError",
    "ReidentificationError",
    "ReidentificationRefused",
    "load_purposes",
    "reidentify",
]

logger = logging.getLogger(__name__)

DEFAULT_PURPOSES_FILE = Path(__file__).resolve().parent.parent / "governance" / "purposes.yml"
_ANONYMOUS_IDS = frozenset({"anonymous", "anon", "guest", "nobody"})
_ACTOR_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,199}")
_REASON_MAX = 500
_UNDECLARED = "<undeclared>"

DecisionLabel = Literal["allowed", "refused", "failed"]


# -- errors ------------------------------------------------------------------------------------


class ReidentificationError(Exception):
    """Re-identification did not release identities (one-line message, no identity value)."""


class ReidentificationRefused(ReidentificationError):
    """The request was refused: no actor, no declared purpose, policy denial, bad input."""


class AuditWriteFailed(ReidentificationError):
    """The call could not be recorded, so nothing was released (fail closed)."""


class PurposeCatalogError(Exception):
    """The purposes file is missing or invalid: re-identification stops until it is fixed."""


# -- purposes ----------------------------------------------------------------------------------


class Purpose(BaseModel):
    """One declared use within the platform's purpose family, and the roles that may invoke it.

    ``roles`` are checked against the role vocabulary by the authoriser
    (``pdp.governance.authz``); an empty list means no role may invoke the purpose.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1)
    legal_basis: str = Field(min_length=1)
    roles: tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], ...] = ()


class PurposeCatalog(BaseModel):
    """The versioned list of declared purposes (``pdp/governance/purposes.yml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    family: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    purposes: dict[str, Purpose] = Field(min_length=1)

    def declares(self, purpose: str) -> bool:
        """Whether ``purpose`` is one of the declared purposes (exact name)."""
        return purpose in self.purposes


def load_purposes(path: Path | None = None) -> PurposeCatalog:
    """The purpose catalog at ``path`` (default: the packaged file); fails closed on any problem."""
    return _load_purposes(Path(path) if path is not None else DEFAULT_PURPOSES_FILE)


@lru_cache(maxsize=8)
def _load_purposes(path: Path) -> PurposeCatalog:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PurposeCatalogError(f"purposes file {path} is unreadable: {type(exc).__name__}") from exc
    try:
        catalog = PurposeCatalog.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<root>"
        raise PurposeCatalogError(f"purposes file {path} is invalid at {where}: {first['msg']}") from exc
    for name in catalog.purposes:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise PurposeCatalogError(f"purposes file {path}: purpose name {name!r} is not snake_case")
    return catalog


# -- actors, hooks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who asks: an authenticated principal of the platform (a person or a service)."""

    id: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_anonymous(self) -> bool:
        """True when the id is not a string, is blank, or is a well-known anonymous name."""
        return not isinstance(self.id, str) or not self.id.strip() or self.id.strip().lower() in _ANONYMOUS_IDS


@dataclass(frozen=True)
class Decision:
    """An authorizer's answer. Only ``allowed_pseudonyms`` may be released when ``allowed``.

    Allowing without listing pseudonyms releases nothing: the answer must be explicit.
    """

    allowed: bool
    reason: str
    allowed_pseudonyms: frozenset[str] = frozenset()

    @classmethod
    def deny(cls, reason: str) -> Decision:
        return cls(allowed=False, reason=reason)

    @classmethod
    def allow(cls, pseudonyms: Iterable[str], reason: str) -> Decision:
        return cls(allowed=True, reason=reason, allowed_pseudonyms=frozenset(pseudonyms))


class Authorizer(Protocol):
    """The policy hook: may ``actor`` re-identify these pseudonyms for ``purpose``?"""

    def authorize(self, actor: Actor, purpose: str, pseudonyms: Sequence[str]) -> Decision: ...


class DenyAllAuthorizer:
    """The default authorizer: denies every request (deny by default).

    Replaced by the governance policy layer (Casbin model + policies) when it is plugged in.
    """

    def authorize(self, actor: Actor, purpose: str, pseudonyms: Sequence[str]) -> Decision:
        return Decision.deny("no authorization policy configured (deny by default)")


class OppositionRegistry(Protocol):
    """The opposition hook: which of these pseudonyms belong to persons who objected?"""

    def opposed(self, pseudonyms: Sequence[str]) -> set[str]: ...


class NoOppositionRegistry:
    """Placeholder registry that reads nothing and reports no opposition.

    For tests of the other steps only: by default :func:`reidentify` consults the governance
    opposition registry in the vault's store (:class:`pdp.governance.opposition.OppositionRegistry`).
    """

    def opposed(self, pseudonyms: Sequence[str]) -> set[str]:
        return set()


@dataclass(frozen=True)
class AuditEvent:
    """One re-identification call as the audit trail sees it: no identity value, ever."""

    at: datetime
    actor: str
    purpose: str
    purposes_version: int | None
    decision: DecisionLabel
    reason: str
    pseudonym_count: int
    pseudonyms: tuple[str, ...]
    released: tuple[str, ...] = ()


class AuditSink(Protocol):
    """Where re-identification events go; ``record`` must persist or raise."""

    def record(self, event: AuditEvent) -> None: ...


# -- the database audit sink -------------------------------------------------------------------

reidentification_log = Table(
    "reidentification_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("purposes_version", Integer, nullable=True),
    Column("decision", String(16), nullable=False),
    Column("reason", String(_REASON_MAX), nullable=False),
    Column("pseudonym_count", Integer, nullable=False),
    Column("released_count", Integer, nullable=False),
    Column("pseudonyms", JSON, nullable=False),
    Column("released", JSON, nullable=False),
    Index("ix_reidentification_log_at", "at"),
    Index("ix_reidentification_log_actor", "actor"),
)


class DbAuditSink:
    """Writes each event to ``reidentification_log`` in its own transaction.

    Its own transaction, so a refused attempt stays recorded even if the caller rolls back.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, event: AuditEvent) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(reidentification_log).values(
                    at=event.at,
                    actor=event.actor,
                    purpose=event.purpose,
                    purposes_version=event.purposes_version,
                    decision=event.decision,
                    reason=event.reason,
                    pseudonym_count=event.pseudonym_count,
                    released_count=len(event.released),
                    pseudonyms=list(event.pseudonyms),
                    released=list(event.released),
                )
            )

    def recent(self, *, limit: int = 100) -> list[AuditEvent]:
        """The latest events, newest first (for review screens and tests)."""
        log = reidentification_log.c
        with self._engine.connect() as conn:
            rows = conn.execute(select(reidentification_log).order_by(log.id.desc()).limit(limit)).mappings()
            return [
                AuditEvent(
                    at=row["at"],
                    actor=row["actor"],
                    purpose=row["purpose"],
                    purposes_version=row["purposes_version"],
                    decision=row["decision"],
                    reason=row["reason"],
                    pseudonym_count=row["pseudonym_count"],
                    pseudonyms=tuple(row["pseudonyms"]),
                    released=tuple(row["released"]),
                )
                for row in rows
            ]


# -- the function ------------------------------------------------------------------------------

_DENY_ALL = DenyAllAuthorizer()


class _Vault(Protocol):
    def get_many(self, pseudonyms: Iterable[str]) -> dict[str, VaultRecord]: ...


def _registry_of(vault: _Vault) -> OppositionRegistry:
    """The governance opposition registry beside the vault (the default: opposition is never optional)."""
    from pdp.governance.opposition import OppositionRegistry as Registry

    engine = getattr(vault, "engine", None)
    if engine is None:
        raise ReidentificationError("no opposition registry: pass `opposition=` (the vault has no governance store)")
    return Registry(engine)


def reidentify(
    pseudonyms: Iterable[str],
    *,
    actor: Actor | None,
    purpose: str | None,
    vault: _Vault,
    audit: AuditSink,
    authorizer: Authorizer = _DENY_ALL,
    opposition: OppositionRegistry | None = None,
    purposes: PurposeCatalog | None = None,
) -> dict[str, VaultRecord]:
    """Identities of the authorised, non-opposed ``pseudonyms``, for ``actor`` and ``purpose``.

    Raises :class:`ReidentificationRefused` (one-line reason) when the actor, the purpose, the
    pseudonyms or the policy say no; every call is recorded through ``audit`` first. The
    result holds only pseudonyms that were allowed, not opposed and found in the vault.
    """
    at = datetime.now(UTC)
    not_a_collection = isinstance(pseudonyms, str | bytes)
    try:
        requested_all = [] if not_a_collection else list(pseudonyms)
    except TypeError:
        requested_all, not_a_collection = [], True
    well_formed: list[str] = []
    malformed = 0
    for value in requested_all:
        try:
            well_formed.append(check_pseudonym(value))
        except VaultError:
            malformed += 1
    requested = tuple(dict.fromkeys(well_formed))
    actor_id = actor.id.strip() if isinstance(actor, Actor) and not actor.is_anonymous else "anonymous"
    trail = _Trail(audit=audit, at=at, actor=actor_id, pseudonym_count=len(requested_all), requested=requested)

    if not isinstance(actor, Actor) or actor.is_anonymous:
        trail.refuse("no authenticated actor", purpose=_UNDECLARED)
    if not _ACTOR_RE.fullmatch(actor_id):
        trail.refuse("actor id is malformed", purpose=_UNDECLARED, actor="<malformed>")
    stated = purpose.strip() if isinstance(purpose, str) else ""
    if not stated:
        trail.refuse("no purpose stated", purpose=_UNDECLARED)
    try:
        catalog = purposes if purposes is not None else load_purposes()
    except PurposeCatalogError as exc:
        trail.refuse(f"purposes catalog unavailable: {exc}", purpose=_UNDECLARED)
    if not catalog.declares(stated):
        trail.refuse("purpose is not declared in the purposes catalog", purpose=_UNDECLARED)
    trail.purpose, trail.purposes_version = stated, catalog.version
    if not_a_collection:
        trail.refuse("pseudonyms must be a collection of pseudonyms (not recorded)")
    if malformed:
        trail.refuse(f"{malformed} malformed pseudonym(s) in the request (not recorded)")

    try:
        decision = authorizer.authorize(actor, stated, requested)
    except Exception as exc:  # fail closed: a broken policy must not open the vault.
        trail.refuse(f"authorizer failed: {type(exc).__name__}")
    if not isinstance(decision, Decision):
        trail.refuse("authorizer returned no decision")
    if not decision.allowed:
        trail.refuse(f"policy denied: {_one_line(decision.reason)}")
    allowed = [p for p in requested if p in decision.allowed_pseudonyms]

    try:
        registry = opposition if opposition is not None else _registry_of(vault)
        opposed = set(registry.opposed(tuple(allowed)))
    except Exception as exc:
        trail.refuse(f"opposition registry unavailable: {type(exc).__name__}")
    releasable = [p for p in allowed if p not in opposed]

    try:
        records = vault.get_many(releasable)
    except Exception as exc:
        trail.fail(f"vault read failed: {type(exc).__name__}")
        raise ReidentificationError("re-identification failed: vault read failed") from exc
    released = tuple(p for p in releasable if p in records)
    reason = (
        f"{_one_line(decision.reason)}; released {len(released)} of {len(requested)}: "
        f"{len(requested) - len(allowed)} withheld by policy, {len(allowed) - len(releasable)} opposed, "
        f"{len(releasable) - len(released)} not in vault"
    )
    trail.allow(reason, released)
    return {p: records[p] for p in released}


class _Trail:
    """The audit record of one call, written once whatever the outcome."""

    def __init__(
        self, *, audit: AuditSink, at: datetime, actor: str, pseudonym_count: int, requested: tuple[str, ...]
    ) -> None:
        self.audit = audit
        self.at = at
        self.actor = actor
        self.purpose = _UNDECLARED
        self.purposes_version: int | None = None
        self.pseudonym_count = pseudonym_count
        self.requested = requested

    def refuse(self, reason: str, *, purpose: str | None = None, actor: str | None = None) -> NoReturn:
        """Record a refusal, then raise :class:`ReidentificationRefused` with ``reason``."""
        reason = _one_line(reason)
        self._write("refused", reason, (), purpose=purpose, actor=actor)
        logger.warning("re-identification refused: %s", reason)
        raise ReidentificationRefused(f"re-identification refused: {reason}")

    def fail(self, reason: str) -> None:
        self._write("failed", _one_line(reason), ())

    def allow(self, reason: str, released: tuple[str, ...]) -> None:
        self._write("allowed", _one_line(reason), released)
        logger.info("re-identification by %s for %s: %d released", self.actor, self.purpose, len(released))

    def _write(
        self,
        decision: DecisionLabel,
        reason: str,
        released: tuple[str, ...],
        *,
        purpose: str | None = None,
        actor: str | None = None,
    ) -> None:
        event = AuditEvent(
            at=self.at,
            actor=actor or self.actor,
            purpose=purpose or self.purpose,
            purposes_version=self.purposes_version,
            decision=decision,
            reason=reason,
            pseudonym_count=self.pseudonym_count,
            pseudonyms=self.requested,
            released=released,
        )
        try:
            self.audit.record(event)
        except Exception as exc:
            logger.error("re-identification audit write failed: %s", type(exc).__name__)
            raise AuditWriteFailed("re-identification not recorded, nothing released: audit write failed") from exc


def _one_line(text: object) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _REASON_MAX - 100 else flat[: _REASON_MAX - 101] + "…"
