"""The one decision function: may this principal do this action on this object, in this territory, for this purpose?

Why one function: the API's permission dependency, re-identification, the ethics draw and the
command line must reach the same answer for the same question and explain it the same way.
:meth:`Authoriser.authorise` returns a :class:`Decision` whose ``rule`` names what decided:
the policy line (``policy.csv:42: p, siop_platform, douaisis, worklist, read, care_coordination,
allow``), the deny line that overrode it, or a named refusal (``deny-by-default``,
``purpose-not-allowed-for-role``, ``territory-not-in-claims``, ``unknown-purpose``, ...).

Order of the checks, each failing closed:

1. the request is well formed: a :class:`Principal`, a territory name, an object, an action and
   a purpose from the vocabulary and the purposes catalog;
2. the purpose is tied to the principal's role in ``purposes.yml`` — otherwise denied even where
   a policy line would allow it;
3. Casbin (real pycasbin, ``infra/policy/model.conf`` + ``policy.csv``) decides: deny by
   default, deny overrides allow; the principal holds its role in a territory only if its
   token's claims list it (the model's ``role_in`` function, computed at decision time);
4. every decision, allowed or denied, cached or not, is handed to ``on_decision`` as a
   :class:`DecisionRecord` (no identity value); if that hook fails the answer is a denial
   (``decision-not-recorded``), as re-identification refuses what it cannot audit.

Concurrency: Casbin's fast policy index is shared mutable state (a filter set per call), so the
enforcer runs under a lock; a bounded LRU cache keyed by (role, domain, whether the claims cover
the domain, object, action, purpose) answers repeated questions without the lock's contention
on the enforcer, and is emptied by :meth:`Authoriser.reload`.

Measured (``pdp bench authz``, 10 000 policy lines, 2 shared cores): see `pdp/bench/authz.py`.

Domains: a territory name, or ``*`` for what belongs to no one territory (a citizen's
opposition, the audit log as a whole, the source registry): only national lines match ``*``,
and only a principal whose claims carry ``*`` holds its role there.

Example::

    >>> authz = Authoriser()
    >>> siop = Principal(sub="siop-douaisis-1", role="siop_platform", territories={"douaisis"})
    >>> authz.authorise(siop, "douaisis", "worklist", "read", "care_coordination").allowed
    True
    >>> authz.authorise(siop, "cornouaille", "worklist", "read", "care_coordination").rule
    'territory-not-in-claims'
    >>> authz.authorise(siop, "douaisis", "audit_log", "read", "audit_review").rule
    'purpose-not-allowed-for-role'
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import casbin
from casbin.model import FastModel, fast_policy_filter

from pdp.config import Settings, get_settings
from pdp.governance.authz.policy import (
    DEFAULT_MODEL_FILE,
    DEFAULT_POLICY_FILE,
    TERRITORY_RE,
    AuthzConfigError,
    Policy,
    PolicyAdapter,
    PolicyLine,
    load_model,
    load_policy,
    split_object,
    validate_purpose_roles,
)
from pdp.governance.authz.vocabulary import ACTIONS, NAMED, NATIONAL, PER_SUBJECT, WILDCARD, Action, Resource, Role
from pdp.pseudonym.reidentify import DEFAULT_PURPOSES_FILE, PurposeCatalog, PurposeCatalogError, load_purposes

__all__ = [
    "DENY_BY_DEFAULT",
    "PURPOSE_NOT_ALLOWED",
    "TERRITORY_NOT_IN_CLAIMS",
    "Authoriser",
    "CacheInfo",
    "Decision",
    "DecisionRecord",
    "Principal",
    "PrincipalError",
]

logger = logging.getLogger(__name__)

DENY_BY_DEFAULT = "deny-by-default"
PURPOSE_NOT_ALLOWED = "purpose-not-allowed-for-role"
TERRITORY_NOT_IN_CLAIMS = "territory-not-in-claims"
UNKNOWN_PURPOSE = "unknown-purpose"
UNKNOWN_OBJECT = "unknown-object"
UNKNOWN_ACTION = "unknown-action"
ACTION_NOT_FOR_OBJECT = "action-not-defined-for-object"
INVALID_DOMAIN = "invalid-domain"
INVALID_PRINCIPAL = "invalid-principal"
ENFORCER_FAILED = "enforcer-error"
NOT_RECORDED = "decision-not-recorded"

_SUB_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@\-|]{0,199}")
_RPPS_RE = re.compile(r"\d{11}")


class PrincipalError(ValueError):
    """The claims do not make a valid principal (unknown role, no territory, ...)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks, as the authenticated token says: subject, role, territories, RPPS if a professional.

    ``territories`` may hold ``*`` (every territory) only for a national role. A professional
    must carry an RPPS number: their patients are found by it.

    Example::

        >>> Principal.from_claims({"sub": "u1", "pdp_role": "ethics", "pdp_territories": ["*"]}).holds("douaisis")
        True
    """

    sub: str
    role: Role
    territories: frozenset[str]
    rpps: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sub, str) or not _SUB_RE.fullmatch(self.sub):
            raise PrincipalError("principal subject is missing or malformed")
        try:
            role = Role(self.role)
        except ValueError:
            raise PrincipalError(f"unknown role {self.role!r}") from None
        object.__setattr__(self, "role", role)
        if isinstance(self.territories, str) or not isinstance(self.territories, Iterable):
            raise PrincipalError("territories must be a list of territory names")
        territories = frozenset(self.territories)
        if not territories:
            raise PrincipalError("a principal holds its role in at least one territory")
        for territory in territories:
            if territory == WILDCARD:
                if role not in NATIONAL:
                    raise PrincipalError(f"role {role} is territorial: '*' is not a territory it may hold")
            elif not isinstance(territory, str) or not TERRITORY_RE.fullmatch(territory):
                raise PrincipalError(f"malformed territory {territory!r}")
        object.__setattr__(self, "territories", territories)
        if role is Role.PROFESSIONAL and (not isinstance(self.rpps, str) or not _RPPS_RE.fullmatch(self.rpps)):
            raise PrincipalError("a professional needs an 11-digit RPPS number")
        if role is not Role.PROFESSIONAL and self.rpps is not None and not _RPPS_RE.fullmatch(str(self.rpps)):
            raise PrincipalError("malformed RPPS number")

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        """The principal of a verified token's claims (``sub``, ``pdp_role``, ``pdp_territories``, ``pdp_rpps``)."""
        return cls(
            sub=claims.get("sub"),  # type: ignore[arg-type]
            role=claims.get("pdp_role"),  # type: ignore[arg-type]
            territories=claims.get("pdp_territories") or (),  # type: ignore[arg-type]
            rpps=claims.get("pdp_rpps"),
        )

    def holds(self, domain: str) -> bool:
        """Whether the claims give this principal its role in ``domain`` (the runtime grouping)."""
        return domain in self.territories or WILDCARD in self.territories


def _role_in(principal: object, role: str, domain: str) -> bool:
    """The model's grouping ``role_in(r.sub, p.sub, r.dom)``: from the claims, never from stored lines."""
    role, _, subject = role.partition("=")  # "partner=<sub>": a line for one principal of the role
    return (isinstance(principal, Principal) and principal.role == role and (not subject or principal.sub == subject)
            and principal.holds(domain))


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer and the rule that decided it (a policy line, or a named refusal)."""

    allowed: bool
    rule: str


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What ``on_decision`` receives for every decision: who, where, what, why, the answer; no identity value."""

    at: datetime
    subject: str
    role: str
    domain: str
    obj: str
    action: str
    purpose: str
    allowed: bool
    rule: str
    cached: bool
    policy_version: str
    purposes_version: int | None


@dataclass(frozen=True, slots=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    maxsize: int


@dataclass(frozen=True)
class _State:
    """One loaded policy: swapped whole on reload, never mutated."""

    enforcer: casbin.Enforcer
    policy: Policy
    purposes: PurposeCatalog
    version: str
    rules: Mapping[tuple[str, ...], PolicyLine] = field(repr=False)
    inert: tuple[PolicyLine, ...] = ()


OnDecision = Callable[[DecisionRecord], None]


class Authoriser:
    """Casbin-backed authorisation over the files under ``infra/policy/`` and ``purposes.yml``.

    Construction loads and validates every file, and raises :class:`AuthzConfigError` (one
    line naming the file) on any problem. ``reload()`` re-reads them; on error the previous
    policy stays in force and the error is raised; on success ``on_reload(previous_version,
    new_version)`` is called (for the audit log's record of policy changes).
    """

    def __init__(
        self,
        *,
        model_path: Path = DEFAULT_MODEL_FILE,
        policy_path: Path = DEFAULT_POLICY_FILE,
        purposes_path: Path = DEFAULT_PURPOSES_FILE,
        cache_size: int = 65_536,
        on_decision: OnDecision | None = None,
        on_reload: Callable[[str, str], None] | None = None,
    ) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0 (0 disables the cache)")
        self.model_path, self.policy_path, self.purposes_path = Path(model_path), Path(policy_path), Path(purposes_path)
        self.on_decision = on_decision
        self.on_reload = on_reload
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, ...], Decision] = OrderedDict()
        self._hits = self._misses = 0
        self._lock = threading.Lock()
        self._state = self._load()

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> Authoriser:
        """The authoriser over ``PDP_POLICY_DIR`` (``model.conf`` + ``policy.csv``), or the default files."""
        settings = settings or get_settings()
        if settings.policy_dir is not None:
            kwargs.setdefault("model_path", Path(settings.policy_dir) / "model.conf")
            kwargs.setdefault("policy_path", Path(settings.policy_dir) / "policy.csv")
        return cls(**kwargs)

    # -- loading ---------------------------------------------------------------------------------

    def _load(self) -> _State:
        try:
            purposes = _fresh_purposes(self.purposes_path)
        except PurposeCatalogError as exc:
            raise AuthzConfigError(str(exc)) from exc
        validate_purpose_roles(purposes, str(self.purposes_path))
        model, model_digest = load_model(self.model_path)
        policy = load_policy(self.policy_path, purposes)
        # Casbin runs under the lock here too, not only in `_enforce`: a reload built and probed its
        # new enforcer while other threads enforced with the old one, and once (CI of 2026-12-06,
        # a loaded machine) an enforce then failed with a SystemError (test_concurrent_decisions_...).
        with self._lock:
            enforcer = self._new_enforcer(model, policy)
        inert = tuple(
            line for line in policy.lines
            if line.effect == "allow" and line.role not in purposes.purposes[line.purpose].roles
        )
        for line in inert:
            logger.warning("policy line %s is inert: purpose %s is not tied to role %s", line.source, line.purpose,
                           line.role)
        version = f"{model_digest[:12]}.{policy.digest[:12]}.p{purposes.version}"
        return _State(enforcer, policy, purposes, version, policy.by_fields(), inert)

    def _new_enforcer(self, model: FastModel, policy: Policy) -> casbin.Enforcer:
        """A Casbin enforcer over `policy`, its matcher evaluated once (caller holds the lock)."""
        try:
            enforcer = casbin.Enforcer(model, PolicyAdapter(policy.lines), enable_log=False)
        except Exception as exc:
            raise AuthzConfigError(f"policy file {self.policy_path}: Casbin refused it: {type(exc).__name__}") from exc
        enforcer.add_function("role_in", _role_in)
        try:  # a matcher that does not compile must stop the load, not the first request
            with fast_policy_filter(enforcer.model.model["p"]["p"].policy, "\x00", "\x00"):
                enforcer.enforce_ex(None, "x", "x", "x", "x")
        except Exception as exc:
            raise AuthzConfigError(
                f"policy model {self.model_path}: the matcher does not evaluate: {type(exc).__name__}: {exc}"
            ) from exc
        return enforcer

    def reload(self) -> None:
        """Re-read model, policy and purposes; swap them in and empty the decision cache.

        On any error the policy in force is kept and :class:`AuthzConfigError` is raised.
        """
        state = self._load()
        with self._lock:
            previous, self._state = self._state.version, state
            self._cache.clear()
        logger.info("authorisation policy reloaded: version %s, %d lines", state.version, len(state.policy.lines))
        if self.on_reload is not None:  # the audit log records policy changes: (previous, new) versions
            self.on_reload(previous, state.version)

    # -- introspection ---------------------------------------------------------------------------

    @property
    def policy_version(self) -> str:
        """Digests of the model and policy files and the purposes version, e.g. ``'3fa…'.'91c…'.p2``."""
        return self._state.version

    @property
    def purposes(self) -> PurposeCatalog:
        return self._state.purposes

    @property
    def policy_lines(self) -> tuple[PolicyLine, ...]:
        return self._state.policy.lines

    @property
    def inert_lines(self) -> tuple[PolicyLine, ...]:
        """Allow lines whose purpose is not tied to their role: they can never allow anything."""
        return self._state.inert

    def cache_info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._cache), self._cache_size)

    # -- deciding --------------------------------------------------------------------------------

    def authorise(self, principal: Principal, domain: str, obj: str, action: str, purpose: str) -> Decision:
        """Allowed or not, and the rule that decided (see the module docstring for the order)."""
        state = self._state
        decision, cached = self._decide(state, principal, domain, obj, action, purpose)
        if self.on_decision is not None:
            record = DecisionRecord(
                at=datetime.now(UTC),
                subject=principal.sub if isinstance(principal, Principal) else "<invalid>",
                role=str(principal.role) if isinstance(principal, Principal) else "<invalid>",
                domain=_printable(domain), obj=_printable(obj), action=_printable(action), purpose=_printable(purpose),
                allowed=decision.allowed, rule=decision.rule, cached=cached,
                policy_version=state.version, purposes_version=state.purposes.version,
            )
            try:
                self.on_decision(record)
            except Exception as exc:  # fail closed: what cannot be audited is not allowed
                logger.error("authorisation decision not recorded: %s", type(exc).__name__)
                return Decision(False, NOT_RECORDED)
        return decision

    def _decide(
        self, state: _State, principal: Principal, domain: str, obj: str, action: str, purpose: str
    ) -> tuple[Decision, bool]:
        if not isinstance(principal, Principal):
            return Decision(False, INVALID_PRINCIPAL), False
        if not isinstance(domain, str) or not (domain == WILDCARD or TERRITORY_RE.fullmatch(domain)):
            return Decision(False, INVALID_DOMAIN), False
        try:
            base, instance = split_object(obj) if isinstance(obj, str) else ("", None)
        except ValueError:
            return Decision(False, UNKNOWN_OBJECT), False
        if base not in Resource.__members__.values() or (Resource(base) in NAMED) != (instance is not None):
            return Decision(False, UNKNOWN_OBJECT), False
        if action not in Action.__members__.values():
            return Decision(False, UNKNOWN_ACTION), False
        if action not in ACTIONS[Resource(base)]:
            return Decision(False, ACTION_NOT_FOR_OBJECT), False
        if not isinstance(purpose, str) or not state.purposes.declares(purpose):
            return Decision(False, UNKNOWN_PURPOSE), False
        if principal.role not in state.purposes.purposes[purpose].roles:
            return Decision(False, PURPOSE_NOT_ALLOWED), False
        holds = principal.holds(domain)
        # a role whose lines may name one principal decides per principal (its own cache entries)
        who = principal.sub if principal.role in PER_SUBJECT else ""
        key = (str(principal.role), who, domain, "1" if holds else "0", str(obj), str(action), purpose)
        with self._lock:
            if self._state is state and (hit := self._cache.get(key)) is not None:
                self._cache.move_to_end(key)
                self._hits += 1
                return hit, True
            self._misses += 1
            decision = self._enforce(state, principal, domain, obj, action, purpose, holds)
            if self._cache_size and self._state is state:
                self._cache[key] = decision
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return decision, False

    def _enforce(
        self, state: _State, principal: Principal, domain: str, obj: str, action: str, purpose: str, holds: bool
    ) -> Decision:
        """Casbin's answer (caller holds the lock: the fast policy filter is shared state)."""
        index_domain = WILDCARD if principal.role in NATIONAL else domain
        policy = state.enforcer.model.model["p"]["p"].policy
        # the index is by exact role: a role whose lines may name one principal is asked twice, with
        # the role's lines and with that principal's ("partner=<sub>"), and the answers combined as
        # the model's effect would (deny overrides allow)
        keys = [str(principal.role)]
        if principal.role in PER_SUBJECT:
            keys.append(f"{principal.role}={principal.sub}")
        try:
            answers = []
            for key in keys:
                with fast_policy_filter(policy, key, index_domain):
                    answers.append(state.enforcer.enforce_ex(principal, domain, str(obj), str(action), purpose))
            denied = next((e for _, e in answers if e and e[-1] == "deny"), None)
            allowed, explain = (False, denied) if denied else next(((a, e) for a, e in answers if a), (False, []))
        except Exception as exc:  # fail closed
            logger.error("authorisation enforcer failed: %s", type(exc).__name__)
            return Decision(False, ENFORCER_FAILED)
        if explain:
            line = state.rules.get(tuple(explain))
            rule = line.rule if line is not None else "p, " + ", ".join(explain)
            return Decision(bool(allowed) and explain[-1] == "allow", rule)
        return Decision(False, DENY_BY_DEFAULT if holds else TERRITORY_NOT_IN_CLAIMS)


def _fresh_purposes(path: Path) -> PurposeCatalog:
    """The purposes catalog as the file says now (the shared loader caches by path; reload must not)."""
    from pdp.pseudonym import reidentify

    reidentify._load_purposes.cache_clear()
    return load_purposes(path)


def _printable(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return " ".join(text.split())[:100]
