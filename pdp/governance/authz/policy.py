"""Loading the Casbin model and the policy CSV, validated against the vocabulary (fail closed).

Why our own reader in front of Casbin's: Casbin accepts any word in a policy line, so a typo
(``worklists``, ``care-coordination``) would load and silently never match — or, in a deny
line, silently never protect. Here every line is checked against
:mod:`pdp.governance.authz.vocabulary` and the purposes catalog before Casbin sees it, and any
problem stops the load with one line naming the file (and the line number).

The Casbin model is the real one from ``infra/policy/model.conf``; its request and policy
shapes, its effect (deny overrides allow) and the ``role_in`` grouping function are checked,
because the authoriser's explanations rely on them.

Example::

    >>> from pdp.pseudonym.reidentify import load_purposes
    >>> policy = load_policy(DEFAULT_POLICY_FILE, load_purposes())
    >>> str(policy.lines[0].role), policy.lines[0].effect
    ('siop_platform', 'allow')
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from casbin.model import FastModel, Model
from casbin.persist import Adapter

from pdp.governance.authz.vocabulary import (
    ACTIONS,
    NAMED,
    NATIONAL,
    NEVER,
    PER_SUBJECT,
    WILDCARD,
    Action,
    Resource,
    Role,
)
from pdp.pseudonym.reidentify import PurposeCatalog

__all__ = [
    "DEFAULT_MODEL_FILE",
    "DEFAULT_POLICY_DIR",
    "DEFAULT_POLICY_FILE",
    "INDEX_KEYS",
    "AuthzConfigError",
    "Policy",
    "PolicyAdapter",
    "PolicyLine",
    "load_model",
    "load_policy",
    "split_object",
    "validate_purpose_roles",
]

DEFAULT_POLICY_DIR = Path(__file__).resolve().parents[3] / "infra" / "policy"
DEFAULT_MODEL_FILE = DEFAULT_POLICY_DIR / "model.conf"
DEFAULT_POLICY_FILE = DEFAULT_POLICY_DIR / "policy.csv"

TERRITORY_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
#: The name of a named object's instance (a PSI registry: its definition file's name).
INSTANCE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: A principal named in a line (``partner=<sub>``): the token subjects' alphabet, without ``=`` or ``,``.
_LINE_SUBJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@\-|]{0,199}")
_REQUEST = ("r_sub", "r_dom", "r_obj", "r_act", "r_purpose")
_POLICY = ("p_sub", "p_dom", "p_obj", "p_act", "p_purpose", "p_eft")
_EFFECT = "some(where (p_eft == allow)) && !some(where (p_eft == deny))"
#: Positions of the policy fields Casbin's fast policy indexes lines by: (role, domain). Exact,
#: because a role's lines always use one kind of domain (a territory, or ``*`` if national).
INDEX_KEYS = (0, 1)

Effect = Literal["allow", "deny"]


class AuthzConfigError(Exception):
    """The model, policy or purposes file is missing or invalid: authorisation cannot start."""


@dataclass(frozen=True, slots=True)
class PolicyLine:
    """One ``p`` line of the policy CSV, validated; ``rule`` is how decisions name it."""

    role: Role
    domain: str
    obj: Resource
    action: Action
    purpose: str
    effect: Effect
    source: str  # "policy.csv:42"
    subject: str | None = None  # one principal of the role (vocabulary.PER_SUBJECT)
    instance: str | None = None  # one instance of a named object (vocabulary.NAMED)

    @property
    def fields(self) -> tuple[str, ...]:
        role = f"{self.role}={self.subject}" if self.subject else str(self.role)
        obj = f"{self.obj}/{self.instance}" if self.instance else str(self.obj)
        return (role, self.domain, obj, self.action, self.purpose, self.effect)

    @property
    def rule(self) -> str:
        return f"{self.source}: p, {', '.join(self.fields)}"


@dataclass(frozen=True)
class Policy:
    """The validated policy lines of one file and the digest that versions them."""

    path: Path
    lines: tuple[PolicyLine, ...]
    digest: str

    def by_fields(self) -> dict[tuple[str, ...], PolicyLine]:
        return {line.fields: line for line in self.lines}


class PolicyAdapter(Adapter):
    """A read-only Casbin adapter over validated lines: how the policy reaches the enforcer.

    Lines are appended as Casbin's own file adapter does (``model.add_policies`` would check
    each line against all others: quadratic, 80 s for 10 000 lines on the fast model).
    """

    def __init__(self, lines: tuple[PolicyLine, ...] | list[list[str]]) -> None:
        self._rows = [list(line.fields) if isinstance(line, PolicyLine) else list(line) for line in lines]

    def load_policy(self, model: Model) -> None:
        policy = model.model["p"]["p"].policy
        for row in self._rows:
            policy.append(row)


def load_model(path: Path) -> tuple[FastModel, str]:
    """The Casbin model at ``path`` (indexed by role and domain) and its text's SHA-256.

    Raises :class:`AuthzConfigError` naming the file when it is unreadable, is not a Casbin
    model, or does not have the request/policy shape, effect and grouping the authoriser needs.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthzConfigError(f"policy model {path} is unreadable: {type(exc).__name__}") from exc
    model = FastModel(INDEX_KEYS)
    try:
        model.load_model_from_text(text)
        request = tuple(model.model["r"]["r"].tokens)
        policy = tuple(model.model["p"]["p"].tokens)
        effect = model.model["e"]["e"].value
        matcher = model.model["m"]["m"].value
    except Exception as exc:  # Casbin raises KeyError/RuntimeError/ValueError for a bad model
        raise AuthzConfigError(f"policy model {path} is not a valid Casbin model: {type(exc).__name__}: {exc}") from exc
    if request != _REQUEST:
        raise AuthzConfigError(f"policy model {path}: request must be 'sub, dom, obj, act, purpose'")
    if policy != _POLICY:
        raise AuthzConfigError(f"policy model {path}: policy must be 'sub, dom, obj, act, purpose, eft'")
    if " ".join(effect.split()) != _EFFECT:
        raise AuthzConfigError(f"policy model {path}: the effect must be deny-overrides-allow ({_EFFECT})")
    if "role_in(r_sub, p_sub, r_dom)" not in matcher:
        raise AuthzConfigError(f"policy model {path}: the matcher must call role_in(r.sub, p.sub, r.dom)")
    if "g" in model.model:
        raise AuthzConfigError(f"policy model {path}: no role_definition: roles come from the principal's claims")
    return model, hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_policy(path: Path, purposes: PurposeCatalog) -> Policy:
    """The validated lines of the policy CSV at ``path``; stops at the first bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthzConfigError(f"policy file {path} is unreadable: {type(exc).__name__}") from exc
    lines: list[PolicyLine] = []
    seen: dict[tuple[str, ...], str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path.name}:{number}"
        try:
            line = _parse_line(stripped, where, purposes)
        except ValueError as exc:
            raise AuthzConfigError(f"policy file {path} line {number}: {exc}") from None
        if line.fields in seen:
            raise AuthzConfigError(f"policy file {path} line {number}: duplicate of {seen[line.fields]}")
        seen[line.fields] = where
        lines.append(line)
    if not any(line.effect == "allow" for line in lines):
        raise AuthzConfigError(f"policy file {path} has no allow line")
    return Policy(path=path, lines=tuple(lines), digest=hashlib.sha256(text.encode("utf-8")).hexdigest())


def validate_purpose_roles(purposes: PurposeCatalog, source: str) -> None:
    """Every role named in the purposes catalog must be a declared role."""
    for name, purpose in purposes.purposes.items():
        for role in purpose.roles:
            if role not in Role.__members__.values():
                raise AuthzConfigError(f"purposes file {source}: purpose {name!r} names unknown role {role!r}")


def _parse_line(text: str, where: str, purposes: PurposeCatalog) -> PolicyLine:
    fields = next(csv.reader([text], skipinitialspace=True))
    fields = [field.strip() for field in fields]
    if fields[0] != "p":
        raise ValueError(f"only 'p' lines are allowed (got {fields[0]!r}): roles come from the principal's claims")
    if len(fields) != 7:
        raise ValueError(f"expected 'p, role, domain, object, action, purpose, allow|deny', got {len(fields)} fields")
    _, role_s, domain, obj_s, action_s, purpose, effect = fields
    role_s, _, subject = role_s.partition("=")
    role = _member(Role, role_s, "role")
    if subject and (role not in PER_SUBJECT or not _LINE_SUBJECT_RE.fullmatch(subject)):
        raise ValueError(f"role {role_s!r} cannot name one principal" if role not in PER_SUBJECT
                         else "malformed principal after '='")
    obj_s, instance = split_object(obj_s)
    obj = _member(Resource, obj_s, "object")
    if (obj in NAMED) != bool(instance):
        raise ValueError(f"object {obj_s!r} must name its instance ({obj_s}/<name>)" if obj in NAMED
                         else f"object {obj_s!r} has no named instances")
    action = _member(Action, action_s, "action")
    if action not in ACTIONS[obj]:
        raise ValueError(f"action {action_s!r} is not defined for object {obj_s!r}")
    if effect not in ("allow", "deny"):
        raise ValueError(f"effect must be allow or deny, got {effect!r}")
    if role in NATIONAL and domain != WILDCARD:
        raise ValueError(f"role {role_s!r} is national: its domain must be '*'")
    if role not in NATIONAL and (domain == WILDCARD or not TERRITORY_RE.fullmatch(domain)):
        raise ValueError(f"role {role_s!r} is territorial: the domain must be one territory name, got {domain!r}")
    if purpose == WILDCARD:
        if effect != "deny":
            raise ValueError("purpose '*' is allowed in deny lines only")
    elif not purposes.declares(purpose):
        raise ValueError(f"unknown purpose {purpose!r}")
    if effect == "allow" and obj in NEVER.get(role, frozenset()):
        raise ValueError(f"an allow line may never grant {obj_s!r} to {role_s!r} (vocabulary.NEVER)")
    return PolicyLine(role, domain, obj, action, purpose, effect, where,  # type: ignore[arg-type]
                      subject=subject or None, instance=instance)


def split_object(obj: str) -> tuple[str, str | None]:
    """``psi_registry/t2d`` → ``('psi_registry', 't2d')``; ValueError on a malformed instance name.

    >>> split_object("psi_registry/t2d_at_risk_unscreened"), split_object("worklist")
    (('psi_registry', 't2d_at_risk_unscreened'), ('worklist', None))
    """
    base, sep, instance = obj.partition("/")
    if not sep:
        return obj, None
    if not INSTANCE_RE.fullmatch(instance):
        raise ValueError("malformed instance name after '/'")
    return base, instance


_E = TypeVar("_E", Role, Resource, Action)


def _member(enum: type[_E], value: str, kind: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"unknown {kind} {value!r}") from None
