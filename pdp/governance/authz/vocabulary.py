"""The authorisation vocabulary: every role, resource (Casbin object) and action, declared once.

Why one place: the policy CSV, the purposes file, the API's permission dependency and the
matrix test must all speak the same words. A policy line naming a word not declared here is
refused when the policy loads (fail closed), so a typo can never silently grant or deny.

Scopes. A *territorial* role (``siop_platform``, ``professional``, ``partner``) is held in the
territories listed in the principal's claims, and its policy lines name one territory each:
onboarding a territory is a reviewed policy change, and a token claiming a territory that no
line names gets nothing. A *national* role (``dmp``, ``ethics``, ``data_engineer``) serves every
territory: the DMP is the citizens' national health space, the ethics committee and the data
engineers oversee or run the whole platform; their lines use the domain wildcard ``*`` and
their claims carry ``*`` (or a list of territories, which then narrows them).

Patient scope. What a role may see of patients once a decision allows it: ``domain`` (every
patient of the territory: the SIOP platform), ``relationship`` (only the patients the
professional is the declared GP of or has a recorded care relationship with — checked per
patient by :class:`pdp.governance.authz.CareRelationships`, not by policy lines), ``none``
(no patient-level data at all).

Example::

    >>> Role("ethics") in NATIONAL, PATIENT_SCOPE[Role.PROFESSIONAL]
    (True, 'relationship')
    >>> sorted(str(action) for action in ACTIONS[Resource.OPPOSITION])
    ['read', 'submit', 'withdraw']
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

__all__ = [
    "ACTIONS",
    "NAMED",
    "NATIONAL",
    "NEVER",
    "PATIENT_LEVEL",
    "PATIENT_SCOPE",
    "PER_SUBJECT",
    "WILDCARD",
    "Action",
    "PatientScope",
    "Resource",
    "Role",
]

WILDCARD = "*"


class Role(StrEnum):
    """The roles a token may carry (claim ``pdp_role``)."""

    SIOP_PLATFORM = "siop_platform"
    PROFESSIONAL = "professional"
    DMP = "dmp"
    ETHICS = "ethics"
    DATA_ENGINEER = "data_engineer"
    PARTNER = "partner"


class Resource(StrEnum):
    """The objects a decision is about (Casbin ``obj``)."""

    WORKLIST = "worklist"  # due actions per GP / territory / stratum, re-identified for the reader
    STRATUM = "stratum"  # a person's or a group's stratum assignment
    POPULATION = "population"  # population memberships
    ALERT = "alert"  # the real-time alerts feed
    INDICATOR = "indicator"  # aggregated indicators and the territory report
    LOOKUP = "lookup"  # the contextual call from GP software (one patient, by INS/NIR)
    CARE_TEAM = "care_team"  # who, besides the declared GP, is in a patient's care team (recorded by the SIOP)
    IDENTITY = "identity"  # re-identification through the vault
    AUDIT_LOG = "audit_log"
    ETHICS_SAMPLE = "ethics_sample"  # the ethics committee's draw of pseudonymised records
    OPPOSITION = "opposition"  # a citizen's opposition (FHIR Consent)
    TRANSPARENCY = "transparency"  # a citizen's record of the uses made of their data
    CITIZEN_PATHWAY = "citizen_pathway"  # a citizen's own due actions, for the DMP to show them
    PATIENT_FEEDBACK = "patient_feedback"  # a citizen's PREM / PROM questionnaire response, handed to the edge
    SOURCE = "source"  # the source registry
    INGESTION_LOG = "ingestion_log"
    QUARANTINE_STATS = "quarantine_stats"  # counts by reason, never the quarantined records
    PSI_REGISTRY = "psi_registry"  # private set intersection registries (partners)
    POLICY = "policy"  # the policy in force (read for review; changed only through the repository)


class Action(StrEnum):
    """What is done to a resource (Casbin ``act``)."""

    READ = "read"
    QUERY = "query"
    REIDENTIFY = "reidentify"
    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    DRAW = "draw"
    VERIFY = "verify"
    WRITE = "write"
    COUNT = "count"


PatientScope = Literal["domain", "relationship", "none"]

#: The actions that make sense on each resource; a policy line outside this table is an error.
ACTIONS: dict[Resource, frozenset[Action]] = {
    Resource.WORKLIST: frozenset({Action.READ}),
    Resource.STRATUM: frozenset({Action.READ}),
    Resource.POPULATION: frozenset({Action.READ}),
    Resource.ALERT: frozenset({Action.READ}),
    Resource.INDICATOR: frozenset({Action.READ}),
    Resource.LOOKUP: frozenset({Action.QUERY}),
    Resource.CARE_TEAM: frozenset({Action.WRITE}),
    Resource.IDENTITY: frozenset({Action.REIDENTIFY}),
    Resource.AUDIT_LOG: frozenset({Action.READ, Action.VERIFY}),
    Resource.ETHICS_SAMPLE: frozenset({Action.DRAW, Action.READ}),
    Resource.OPPOSITION: frozenset({Action.SUBMIT, Action.WITHDRAW, Action.READ}),
    Resource.TRANSPARENCY: frozenset({Action.READ}),
    Resource.CITIZEN_PATHWAY: frozenset({Action.READ}),
    Resource.PATIENT_FEEDBACK: frozenset({Action.SUBMIT}),
    Resource.SOURCE: frozenset({Action.READ}),
    Resource.INGESTION_LOG: frozenset({Action.READ}),
    Resource.QUARANTINE_STATS: frozenset({Action.READ}),
    Resource.PSI_REGISTRY: frozenset({Action.QUERY, Action.COUNT}),  # full intersection, cardinality only
    Resource.POLICY: frozenset({Action.READ, Action.WRITE}),
}

#: Objects that exist in many named instances, each with its own policy lines: written
#: ``psi_registry/t2d_at_risk_unscreened`` in a line and in a request (the name is required).
NAMED: frozenset[Resource] = frozenset({Resource.PSI_REGISTRY})

#: Roles whose lines may name one principal (``partner=pharmacie-du-centre``): a partner is
#: an organisation, and what each one may query is its own agreement, not the role's.
PER_SUBJECT: frozenset[Role] = frozenset({Role.PARTNER})

#: Roles whose policy lines use the domain wildcard and whose claims may carry ``*``.
NATIONAL: frozenset[Role] = frozenset({Role.DMP, Role.ETHICS, Role.DATA_ENGINEER})

#: What a role may see of patients once a decision allows it (see the module docstring).
PATIENT_SCOPE: dict[Role, PatientScope] = {
    Role.SIOP_PLATFORM: "domain",
    Role.PROFESSIONAL: "relationship",
    Role.DMP: "none",
    Role.ETHICS: "none",
    Role.DATA_ENGINEER: "none",
    Role.PARTNER: "none",
}

#: Resources that carry patient-level data (identified, or pseudonymised per person).
PATIENT_LEVEL: frozenset[Resource] = frozenset(
    {Resource.WORKLIST, Resource.STRATUM, Resource.POPULATION, Resource.ALERT, Resource.LOOKUP,
     Resource.CARE_TEAM, Resource.IDENTITY, Resource.ETHICS_SAMPLE, Resource.CITIZEN_PATHWAY, Resource.TRANSPARENCY,
     Resource.PATIENT_FEEDBACK}
)

#: Invariants of the platform: no *allow* line may ever grant these (the policy refuses to load).
#: Ethics never sees re-identified data; data engineers never see patient-level data; a
#: partner only ever queries PSI registries.
NEVER: dict[Role, frozenset[Resource]] = {
    Role.ETHICS: frozenset({Resource.IDENTITY, Resource.WORKLIST, Resource.LOOKUP, Resource.ALERT,
                            Resource.CARE_TEAM, Resource.CITIZEN_PATHWAY, Resource.TRANSPARENCY,
                            Resource.PATIENT_FEEDBACK}),
    Role.DATA_ENGINEER: PATIENT_LEVEL,
    Role.PARTNER: frozenset(Resource) - {Resource.PSI_REGISTRY},
    Role.DMP: frozenset({Resource.IDENTITY, Resource.WORKLIST, Resource.LOOKUP, Resource.CARE_TEAM,
                         Resource.AUDIT_LOG}),
}
