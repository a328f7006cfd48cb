"""Linkage inside the edge: records without a common identifier → one pseudonym per person.

Why: a keyed pseudonym of the canonical identity (:mod:`pdp.pseudonym.pseudonymise`) gives one
person one pseudonym only when every source spells the person the same way and carries the
same NIR. They do not: social referrals rarely carry a NIR, a pharmacy card carries the
insured parent's NIR for a child, and names have typos, a married name in the birth-name
field, or a day/month swap. Without linkage such a person gets a NIR pseudonym from one
source and one or more traits pseudonyms from the others (3 090 persons of the 20 000-person
synthetic territory). Linkage runs inside the edge on the normalised identities; only the
resulting pseudonym leaves it.

Pipeline (deterministic rules first, then a Fellegi-Sunter model for what they leave)::

    records ─► variants (distinct identity + postcode; sorted: input order does not matter)
            ─► rules 1-3 (linkage_rules): same NIR canonical · traits key of one NIR person ·
               same traits key with compatible first names and birthplaces
            ─► Splink on DuckDB in memory (linkage_model): candidate pairs between groups that
               may merge, m/u trained by EM and random sampling, match probability per pair
            ─► constrained clustering: group pairs ≥ ``threshold`` merged strongest first;
               refused when it would put two different own NIRs in one person (twins,
               homonyms); a group without NIR that fits two NIR persons about equally
               (within ``ambiguity_margin`` bits) joins neither, even through another group
            ─► one pseudonym per person: the NIR-scheme pseudonym if the person has an own
               NIR, else the known pseudonym from an earlier batch, else the traits-scheme
               pseudonym of the person's best record (majority spelling, most first names,
               with a birthplace); two persons kept apart but sharing a traits key get
               distinct pseudonyms (see :func:`_disambiguated`)

Example::

    from pdp.pseudonym.linkage import LinkInput, link
    result = link([LinkInput(key, canonical) for key, canonical in batch], pseudonymiser,
                  known=vault_identities)           # [(pseudonym, CanonicalIdentity), ...]
    result.pseudonyms[key]                          # 'v1:…'
    result.rule_counts                              # records per deciding rule
    result.superseded                               # known pseudonyms merged into another

Rules counted per record (``LinkResult.rule_counts``): ``deterministic_nir`` (its own NIR
decided), ``deterministic_traits`` (equal traits key: rule 2 or 3), ``probabilistic`` (joined
its person by the model), ``singleton`` (the only record of its person).

Measured with ``pdp bench linkage`` (20 000-person territory douaisis, seed 7: 214 819
records of 17 745 persons, 32 327 distinct identities; 2-core machine):

=================  =========  =======  ========  ==========  ======
assignment         precision  recall   F1        collisions  splits
=================  =========  =======  ========  ==========  ======
normalise alone    1.0        0.9677   0.9836    0           2 980
rules only         1.0        0.99731  0.99865   0           162
rules + model      1.0        0.99999  0.99999   0           11
=================  =========  =======  ========  ==========  ======

With the error kinds the model was not designed around (issue 14: names swapped, short
first names, 01/01 default dates, a mistyped year digit, moves, spouses sharing a home; see
:mod:`pdp.synth.identity_variants`), on a territory no test uses (douaisis, seed 8191, 223 716
records of 18 686 persons): precision 1.0, recall 0.998472, 0 collisions, 94 splits; the
records carrying a swapped name, a default date or a mistyped year are linked to their person
in ~90 % of cases only (per-kind figures: :mod:`pdp.pseudonym.linkage_bench`).

On the old generator (seed 7), the 11 persons left split are mostly women whose only records
without NIR carry the married name and whose NIR records carry only the birth name (no used name to cross): the same
evidence as two different women with the same first name and birth date, so the model
rightly does not decide. Throughput: ~35 000 records/s for 215 000 records (≈ 6 s, of which
Splink's training ≈ 4 s, fixed), 0.24 × the rules-only pass; on 1.07 M records (100 000
persons) 16 s, ~66 000 records/s, 0.49 × the rules-only pass, 1.7 GB peak, with precision
1.0, recall 0.99999, 0 collisions, 53 splits (rules only: 0 collisions, 884 splits;
normalise alone: 1 collision — two homonyms on one traits key — and 15 957 splits).

Privacy: identities stay in this process's memory; DuckDB runs in memory with spilling to
disk disabled; logs carry counts only (never a name, NIR or date); ``LinkResult`` holds record
keys, pseudonyms and counts. Determinism: same records (in any order), same key, same
options → same pseudonyms (Splink's u sampling is seeded; trained parameters are rounded
before prediction, so DuckDB's parallel float sums cannot flip a decision).

Trained model: when ``pdp linkage train`` has written one (:mod:`pdp.pseudonym.linkage_trained`),
the ingest passes it as ``LinkageOptions.parameters`` and no batch runs EM; its version is in
``LinkResult.parameters["model_version"]`` (else ``em-on-batch`` or ``builtin-default``).
Small batches: EM needs volume, so without a trained model a batch of fewer than
``min_train_variants`` distinct identities is scored with
:data:`~pdp.pseudonym.linkage_model.DEFAULT_PARAMETERS` instead of training. Pass the known persons with every
batch: they are linked to, and they make Splink's term frequencies those of the territory.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pdp.pseudonym.linkage_model import DEFAULT_PARAMETERS, ModelOptions, ScoredPair, prediction_rules, score_pairs
from pdp.pseudonym.linkage_rules import UnionFind, Variant, apply_rules, build_variants
from pdp.pseudonym.normalise import CanonicalIdentity
from pdp.pseudonym.pseudonymise import Pseudonymiser

__all__ = [
    "MODEL_BUILTIN", "MODEL_EM_BATCH", "MODEL_GIVEN", "MODEL_NOT_RUN", "RULES", "KnownPerson", "LinkInput",
    "LinkResult", "LinkageOptions", "link",
]  # fmt: skip

logger = logging.getLogger(__name__)

RULES = ("deterministic_nir", "deterministic_traits", "probabilistic", "singleton")

# ``LinkResult.parameters["model_version"]`` when no trained model file was used:
MODEL_EM_BATCH = "em-on-batch"  # m/u trained by EM on this batch (no trained model)
MODEL_BUILTIN = "builtin-default"  # DEFAULT_PARAMETERS (batch too small for EM, or EM underflowed)
MODEL_GIVEN = "given-parameters"  # parameters passed without a version
MODEL_NOT_RUN = "not-run"  # probabilistic stage off, or a single variant

KnownPerson = tuple[str, CanonicalIdentity]
"""A person seen in an earlier batch: ``(pseudonym, canonical identity)``, e.g. from the vault."""


@dataclass(frozen=True, slots=True)
class LinkInput:
    """One record reaching linkage: its key and its normalised identity (never a Rejection).

    ``postcode`` (of the residence, when the source has it) is a comparison feature only.
    """

    record_key: str
    canonical: CanonicalIdentity
    postcode: str | None = None

    def __repr__(self) -> str:
        return f"LinkInput(record_key={self.record_key!r}, <identity hidden>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkageOptions:
    """How to link. ``threshold``: match probability from which two groups are merged.

    ``ambiguity_margin``: in bits of match weight (see :func:`_group_edges`).
    ``parameters``: a trained model (``LinkResult.parameters["model"]`` of an earlier run) to
    reuse instead of training; batches smaller than ``min_train_variants`` distinct identities
    use it, or the built-in :data:`~pdp.pseudonym.linkage_model.DEFAULT_PARAMETERS`, because
    EM needs volume. ``probabilistic=False`` stops after the deterministic rules.
    ``model_version``: the version of ``parameters`` when they come from a trained model file
    (:mod:`pdp.pseudonym.linkage_trained`), recorded in ``LinkResult.parameters["model_version"]``.
    """

    probabilistic: bool = True
    threshold: float = 0.99
    ambiguity_margin: float = 4.0
    min_train_variants: int = 5000
    parameters: dict[str, Any] | None = None
    model_version: str | None = None
    model: ModelOptions = field(default_factory=ModelOptions)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkResult:
    """The outcome of one linkage run: pseudonyms per record and what decided them.

    ``cluster_sizes``: records per pseudonym. ``superseded``: known pseudonyms (earlier batches)
    now merged into another person's pseudonym, ``old → new``: the lake must re-key them.
    ``parameters``: options, blocking rules, the model (prior and m/u per level) and counts.
    ``canonicals``: for each pseudonym made in this run, the canonical identity whose HMAC it is
    (disambiguated ones included): what the vault must keep for a key rotation.
    """

    pseudonyms: dict[str, str]
    cluster_sizes: dict[str, int]
    rule_counts: dict[str, int]
    superseded: dict[str, str]
    parameters: dict[str, Any]
    timings: dict[str, float]
    canonicals: dict[str, CanonicalIdentity] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"LinkResult(records={len(self.pseudonyms)}, pseudonyms={len(self.cluster_sizes)}, "
            f"rule_counts={self.rule_counts})"
        )

    def size_histogram(self) -> dict[int, int]:
        """Number of pseudonyms per cluster size (records per pseudonym)."""
        return dict(sorted(Counter(self.cluster_sizes.values()).items()))


def _traits_rank(variant: Variant, spelling_count: Counter[bytes]) -> tuple[int, int, bool, bytes]:
    """Sort key of a person's best traits record: majority spelling, most first names, a birthplace."""
    c = variant.canonical
    return (
        -spelling_count[c.canonical_bytes],
        -len(variant.first_name_tokens),
        c.birth_place is None,
        c.canonical_bytes,
    )


def _preferred(members: list[Variant], pseudonymiser: Pseudonymiser) -> tuple[str, Variant, CanonicalIdentity | None]:
    """The pseudonym one person should get, the variant it comes from (see the module docstring),
    and the canonical identity that makes it when it is made here (None: a known pseudonym, whose
    canonical identity the vault already holds)."""
    nir_members = [v for v in members if v.canonical.scheme == "nir"]
    if nir_members:
        count: Counter[bytes] = Counter()
        for v in nir_members:
            count[v.canonical.canonical_bytes] += len(v.records) + len(v.known)
        chosen = min(nir_members, key=lambda v: (-count[v.canonical.canonical_bytes], v.canonical.canonical_bytes))
        return pseudonymiser.pseudonym(chosen.canonical), chosen, chosen.canonical
    spelling: Counter[bytes] = Counter()
    for v in members:
        spelling[v.canonical.canonical_bytes] += len(v.records) + len(v.known)
    pool = [v for v in members if v.known] or members
    chosen = min(pool, key=lambda v: _traits_rank(v, spelling))
    if chosen.known:
        return min(chosen.known), chosen, None
    return pseudonymiser.pseudonym(chosen.canonical), chosen, chosen.canonical


def _disambiguated(chosen: Variant, used: set[str], pseudonymiser: Pseudonymiser) -> tuple[str, CanonicalIdentity]:
    """A pseudonym for a person whose preferred one another person already holds.

    Two persons kept apart by linkage can share a traits key (twins ``MARIE CLAIRE`` and
    ``MARIE FRANCE``: the key holds the first token only). The second one gets the traits
    pseudonym computed over *all* its first-name tokens (``MARIE CLAIRE``) instead of the first
    token, then with a counter (`` 2``, `` 3``...) if that is taken too. A normalised first
    token never holds a space or a digit, so these inputs cannot be any record's own canonical.
    Returns the pseudonym and the canonical identity that makes it: the vault keeps the latter,
    so a key rotation can re-key a disambiguated person like any other.
    """
    c = chosen.canonical
    base = " ".join(chosen.first_name_tokens)
    n = 1
    while True:
        token = base if n == 1 else f"{base} {n}"
        candidate = replace(c, scheme="traits", nir=None, first_name_first_token=token)
        pseudonym = pseudonymiser.pseudonym(candidate)
        if pseudonym not in used:
            return pseudonym, candidate
        n += 1


def _assign(
    persons: dict[int, list[Variant]], pseudonymiser: Pseudonymiser
) -> tuple[dict[int, tuple[str, Variant]], dict[str, CanonicalIdentity], int]:
    """One distinct pseudonym per person (root → pseudonym, chosen variant); the canonical identity
    behind each pseudonym made here; and how many were disambiguated.

    When several persons prefer the same pseudonym, the one holding it from an earlier batch,
    else the one with most records, keeps it; the others get :func:`_disambiguated` ones.
    """
    preferred = {root: _preferred(members, pseudonymiser) for root, members in persons.items()}
    claims: dict[str, list[int]] = defaultdict(list)
    for root, (pseudonym, _, _) in preferred.items():
        claims[pseudonym].append(root)
    used = set(claims)
    assigned: dict[int, tuple[str, Variant]] = {}
    made: dict[str, CanonicalIdentity] = {}
    disambiguated = 0
    for pseudonym in sorted(claims):
        roots = claims[pseudonym]

        def rank(root: int, pseudonym: str = pseudonym) -> tuple[bool, int, int]:
            members = persons[root]
            holds = any(pseudonym in v.known for v in members)
            return (not holds, -sum(len(v.records) for v in members), root)

        roots.sort(key=rank)
        first, chosen, canonical = preferred[roots[0]]
        assigned[roots[0]] = (first, chosen)
        if canonical is not None:
            made[first] = canonical
        for root in roots[1:]:
            chosen = preferred[root][1]
            other, made[other] = _disambiguated(chosen, used, pseudonymiser)
            used.add(other)
            assigned[root] = (other, chosen)
            disambiguated += 1
    return assigned, made, disambiguated


def _group_edges(
    pairs: list[ScoredPair], det_root: list[int], uf: UnionFind, options: LinkageOptions
) -> tuple[list[tuple[int, int]], set[int]]:
    """Edges between deterministic groups to merge, strongest first, and the ambiguous groups.

    One edge per pair of groups (their best variant pair, if ≥ the threshold). A group without
    an own NIR whose two best candidates hold *different* own NIRs and score within
    ``ambiguity_margin`` bits of each other is ambiguous (it could be either twin, either
    homonym): the caller keeps it away from every NIR person, directly or through another
    group (:meth:`UnionFind.forbid_nir`).
    """
    best: dict[tuple[int, int], float] = {}
    for pair in pairs:
        if pair.match_probability < options.threshold:
            continue
        a, b = sorted((det_root[pair.left], det_root[pair.right]))
        if a != b and pair.match_weight > best.get((a, b), float("-inf")):
            best[(a, b)] = pair.match_weight
    candidates: dict[int, dict[str, float]] = defaultdict(dict)
    for (a, b), weight in best.items():
        for group, other in ((a, b), (b, a)):
            nir = uf.nir[other]
            if uf.nir[group] is None and nir is not None:
                candidates[group][nir] = max(weight, candidates[group].get(nir, float("-inf")))
    ambiguous = set()
    for group, by_nir in candidates.items():
        if len(by_nir) > 1:
            first, second = sorted(by_nir.values(), reverse=True)[:2]
            if first - second < options.ambiguity_margin:
                ambiguous.add(group)
    edges = sorted(best, key=lambda edge: (-best[edge], edge))
    return edges, ambiguous


def _cluster(
    pairs: list[ScoredPair], det_root: list[int], uf: UnionFind, options: LinkageOptions
) -> tuple[int, int, int]:
    """The constrained clustering (module docstring): merges into ``uf``, strongest first, no two
    own NIRs, ambiguous groups kept from every NIR person. Returns merges, refusals, ambiguous
    groups. Both engines run it: the Spark one per connected component of the group graph, which
    gives the same merges (a merge only ever follows an edge, and the edge order is kept)."""
    edges, ambiguous_groups = _group_edges(pairs, det_root, uf, options)
    for group in sorted(ambiguous_groups):
        uf.forbid_nir(group)
    before = uf.refused
    merged = 0
    for a, b in edges:
        if uf.find(a) != uf.find(b) and uf.union(a, b):
            merged += 1
    return merged, uf.refused - before, len(ambiguous_groups)


def _record_rule(variant: Variant, person_records: int, *, same_group: bool) -> str:
    """Which rule decided a variant's records (``LinkResult.rule_counts``); ``same_group``: the
    variant is in the deterministic group of its person's chosen variant."""
    if person_records == 1:
        return "singleton"
    if not same_group:
        return "probabilistic"
    if variant.canonical.scheme == "nir":
        return "deterministic_nir"
    if variant.rule in {"traits_to_nir", "traits"} or len(variant.records) > 1:
        return "deterministic_traits"
    return "probabilistic"


def options_description(options: LinkageOptions) -> dict[str, Any]:
    """The options a linkage ran with, as the result's `parameters` record them (both engines)."""
    return {
        "probabilistic": options.probabilistic,
        "threshold": options.threshold,
        "ambiguity_margin": options.ambiguity_margin,
        "min_train_variants": options.min_train_variants,
        "model": asdict(options.model),
    }


def link(
    inputs: Iterable[LinkInput],
    pseudonymiser: Pseudonymiser,
    *,
    known: Iterable[KnownPerson] = (),
    options: LinkageOptions | None = None,
) -> LinkResult:
    """Link records to persons and give each record its person's pseudonym (see the module docstring)."""
    options = options or LinkageOptions()
    timings: dict[str, float] = {}
    start = time.perf_counter()

    items = [(item.record_key, item.canonical, item.postcode) for item in inputs]
    keys = [key for key, _, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError("record keys must be unique within a linkage batch")
    variants = build_variants(items, known)
    del items
    uf = UnionFind(variants)
    apply_rules(variants, uf)
    det_root = [uf.find(v.index) for v in variants]
    timings["deterministic_s"] = time.perf_counter() - start

    model_description: dict[str, Any] | None = None
    pairs_scored = merged = refused = ambiguous = 0
    trained = False
    model_version = MODEL_NOT_RUN
    if options.probabilistic and len(variants) > 1:
        t = time.perf_counter()
        parameters = options.parameters
        if parameters is None and len(variants) < options.min_train_variants:
            parameters = DEFAULT_PARAMETERS
        trained = parameters is None
        pairs, model_description = score_pairs(variants, uf, options.model, parameters=parameters)
        if options.parameters is not None:
            model_version = options.model_version or MODEL_GIVEN
        elif model_description is DEFAULT_PARAMETERS:
            model_version = MODEL_BUILTIN  # a small batch, or EM underflowed or found no match class
        else:
            model_version = MODEL_EM_BATCH
        pairs_scored = len(pairs)
        timings["model_s"] = time.perf_counter() - t
        t = time.perf_counter()
        merged, refused, ambiguous = _cluster(pairs, det_root, uf, options)
        timings["clustering_s"] = time.perf_counter() - t

    t = time.perf_counter()
    persons: dict[int, list[Variant]] = defaultdict(list)
    for v in variants:
        persons[uf.find(v.index)].append(v)
    pseudonyms: dict[str, str] = {}
    sizes: dict[str, int] = {}
    superseded: dict[str, str] = {}
    rule_counts: Counter[str] = Counter({rule: 0 for rule in RULES})
    assigned, made, disambiguated = _assign(persons, pseudonymiser)
    in_use = {pseudonym for pseudonym, _ in assigned.values()}
    for root, members in persons.items():
        pseudonym, chosen = assigned[root]
        for old in sorted({p for v in members for p in v.known} - in_use):
            superseded[old] = pseudonym
        records = sum(len(v.records) for v in members)
        if records == 0:
            continue  # a known person not seen in this batch
        sizes[pseudonym] = records
        anchor = det_root[chosen.index]
        for v in members:
            for key in v.records:
                pseudonyms[key] = pseudonym
            rule_counts[_record_rule(v, records, same_group=det_root[v.index] == anchor)] += len(v.records)
    timings["resolution_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start

    parameters_out: dict[str, Any] = {
        "options": options_description(options),
        "trained": trained,
        "model_version": model_version,
        "model": model_description,
        "blocking_rules": prediction_rules() if options.probabilistic else [],
        "counts": {
            "records": len(pseudonyms),
            "variants": len(variants),
            "deterministic_groups": len(set(det_root)),
            "pairs_scored": pairs_scored,
            "merges": merged,
            "merges_refused_own_nir": refused,
            "ambiguous_groups": ambiguous,
            "disambiguated_pseudonyms": disambiguated,
            "persons": len(sizes),
        },
    }
    logger.info(
        "linkage: %d records, %d variants, %d deterministic groups, %d merges (%d refused), %d pseudonyms",
        len(pseudonyms), len(variants), len(set(det_root)), merged, refused, len(sizes),
    )  # fmt: skip
    return LinkResult(
        pseudonyms=pseudonyms,
        cluster_sizes=sizes,
        rule_counts=dict(rule_counts),
        superseded=superseded,
        parameters=parameters_out,
        timings=timings,
        canonicals={p: c for p, c in made.items() if p in sizes},
    )
