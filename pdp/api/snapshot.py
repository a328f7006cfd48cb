"""The serving snapshot: gold's latest run held in memory, read with delta-rs (no Spark, no JVM).

Why a snapshot: a SIOP worklist request must answer in milliseconds; starting a Spark job (or
even a Delta scan) per request would not. Gold changes once per ``pdp run`` (and per lab-feed
micro-batch for alerts), so the API reads the latest ``as_of`` partition of each gold table once,
indexes it by person and by GP, and swaps in a new snapshot when a table's Delta version
changes (checked at most every ``PDP_API_SNAPSHOT_CHECK_SECONDS``). A snapshot is immutable:
requests keep the one they started with.

What it never does: filter opposed persons. Opposition is applied per response from the
registry (:mod:`pdp.api.deps`), so an opposition is effective on the very next request, even
before the propagation job has erased gold.

Territory: a lake serves one territory today; its policy domain is the slug of the label
``pdp run --territory`` gave the published indicators (``Douaisis`` → ``douaisis``).

Measured: 300 persons, 6 tables: ~0.1 s to load; the version check is one log listing per table.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["GoldSnapshot", "SnapshotStore", "territory_slug"]

GOLD = ("care_action", "stratum", "population", "alert", "evidence", "indicator", "psi_registry")


def territory_slug(label: str) -> str:
    """The policy domain of a territory label: ``Aube-Sézannais`` → ``aube-sezannais``."""
    plain = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode("ascii")
    return "-".join(plain.lower().replace("_", " ").replace("-", " ").split())


@dataclass(frozen=True)
class GoldSnapshot:
    """One consistent view of gold at one ``as_of`` (immutable; rebuilt on a version change)."""

    versions: dict[str, int]
    as_of: date | None = None
    territory: str | None = None
    territory_label: str | None = None
    definitions: str | None = None
    actions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    strata: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    populations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    gp_of: dict[str, str | None] = field(default_factory=dict)
    worklist_order: list[str] = field(default_factory=list)
    by_gp: dict[str | None, list[str]] = field(default_factory=dict)
    evidence: pa.Table | None = None
    #: PSI registry → its members' pseudonyms (before opposition: the PSI service drops the opposed)
    registries: dict[str, list[str]] = field(default_factory=dict)
    loaded_at: float = 0.0
    #: Per-snapshot memo of rendered person views (:func:`pdp.api.views.person_parts`): gold does
    #: not change under a snapshot, so each person's strata and actions are rendered once, not per request.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def worklist_persons(self, gp: str | None) -> list[str]:
        """Persons with due actions in worklist order (GP, then pseudonym); only ``gp``'s when given."""
        return self.worklist_order if gp is None else self.by_gp.get(gp, [])

    @property
    def version_tag(self) -> str:
        """A short tag of the table versions (cursors are bound to it)."""
        return ".".join(str(self.versions.get(t, -1)) for t in GOLD)

    def persons(self) -> set[str]:
        return set(self.strata) | set(self.populations) | set(self.actions)

    def facts(self, pseudonyms: list[str]) -> dict[str, dict[tuple[str, str], list[dict[str, Any]]]]:
        """The evidence of these persons: pseudonym → (kind, subject) → facts (one vectorised filter)."""
        out: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {p: defaultdict(list) for p in pseudonyms}
        if self.evidence is None or self.evidence.num_rows == 0 or not pseudonyms:
            return out
        mask = pc.is_in(self.evidence["person_pseudonym"], value_set=pa.array(pseudonyms, pa.string()))
        rows = self.evidence.filter(mask).to_pylist()
        for r in sorted(rows, key=lambda r: (r["kind"], r["subject"], r["criterion"], str(r["fact_date"]))):
            out[r["person_pseudonym"]][(r["kind"], r["subject"])].append(
                {k: r[k] for k in ("rule_id", "criterion", "fact_table", "event_id", "fact_date", "source",
                                   "vocabulary", "source_code", "value")})
        return out


class SnapshotStore:
    """Holds the current :class:`GoldSnapshot` of a lake; refreshes it when a table's version changes."""

    def __init__(self, lake_uri: str, *, check_seconds: float = 2.0) -> None:
        self.lake_uri = lake_uri
        self.check_seconds = check_seconds
        self._tables: dict[str, Any] = {}
        self._snapshot = GoldSnapshot(versions={})
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def _path(self, name: str) -> str:
        from pdp.lake import table

        return table(f"gold.{name}").path(self.lake_uri)

    def _versions(self) -> dict[str, int]:
        from deltalake import DeltaTable

        versions: dict[str, int] = {}
        for name in GOLD:
            handle = self._tables.get(name)
            try:
                if handle is None:
                    path = self._path(name)
                    if not DeltaTable.is_deltatable(path):
                        continue
                    handle = self._tables[name] = DeltaTable(path)
                else:
                    handle.update_incremental()
                versions[name] = handle.version()
            except Exception:  # a table being rewritten or vacuumed: keep serving the snapshot we have
                self._tables.pop(name, None)
                versions[name] = self._snapshot.versions.get(name, -1)
        return versions

    def current(self) -> GoldSnapshot:
        """The snapshot in force, rebuilt first if a gold table has a new version."""
        now = time.monotonic()
        if now - self._checked < self.check_seconds:
            return self._snapshot
        with self._lock:
            if time.monotonic() - self._checked >= self.check_seconds:
                versions = self._versions()
                if versions != self._snapshot.versions:
                    self._snapshot = self._build(versions)
                self._checked = time.monotonic()
            return self._snapshot

    def _latest(self, name: str) -> tuple[pa.Table | None, date | None]:
        handle = self._tables.get(name)
        if handle is None:
            return None, None
        days = sorted({p["as_of"] for p in handle.partitions() if p.get("as_of")})
        if not days:
            return None, None
        day = date.fromisoformat(days[-1])
        return handle.to_pyarrow_table(filters=[("as_of", "=", day)]), day

    def _build(self, versions: dict[str, int]) -> GoldSnapshot:
        started = time.perf_counter()
        strata, as_of = self._latest("stratum")
        if strata is None or as_of is None:
            return GoldSnapshot(versions=versions)

        def rows_of(name: str) -> list[dict[str, Any]]:
            handle = self._tables.get(name)
            if handle is None:
                return []
            return handle.to_pyarrow_table(filters=[("as_of", "=", as_of)]).to_pylist()

        by_person: dict[str, dict[str, list[dict[str, Any]]]] = {"strata": defaultdict(list),
                                                                 "populations": defaultdict(list),
                                                                 "actions": defaultdict(list)}
        gp_of: dict[str, str | None] = {}
        definitions = None
        for key, rows in (("strata", strata.to_pylist()), ("populations", rows_of("population")),
                          ("actions", rows_of("care_action"))):
            for r in rows:
                p = r["person_pseudonym"]
                by_person[key][p].append(r)
                gp_of.setdefault(p, r.get("gp_rpps"))
                definitions = definitions or r.get("definitions")
        for rows in by_person["actions"].values():
            rows.sort(key=lambda r: (r["pathway"], r["action"]))
        alerts = sorted(rows_of("alert"), key=lambda r: (r["person_pseudonym"], r["alert"]))
        evidence_handle = self._tables.get("evidence")
        evidence = (evidence_handle.to_pyarrow_table(filters=[("as_of", "=", as_of)])
                    if evidence_handle is not None else None)
        territory = label = None
        indicator = self._tables.get("indicator")
        if indicator is not None:
            labels = indicator.to_pyarrow_table(filters=[("as_of", "=", as_of)],
                                                columns=["territory"]).column("territory").unique().to_pylist()
            slugs = sorted({territory_slug(x) for x in labels if x})
            territory = slugs[0] if len(slugs) == 1 else None
            label = next((x for x in labels if x and territory_slug(x) == territory), None)
        registries: dict[str, list[str]] = defaultdict(list)
        for r in rows_of("psi_registry"):
            registries[r["registry"]].append(r["person_pseudonym"])
        order = sorted(by_person["actions"], key=lambda p: (gp_of.get(p) or "~", p))
        by_gp: dict[str | None, list[str]] = defaultdict(list)
        for p in order:
            by_gp[gp_of.get(p)].append(p)
        return GoldSnapshot(
            versions=versions, as_of=as_of, territory=territory, territory_label=label, definitions=definitions,
            actions=dict(by_person["actions"]), strata=dict(by_person["strata"]),
            populations=dict(by_person["populations"]), alerts=alerts, gp_of=gp_of, worklist_order=order,
            by_gp=dict(by_gp),
            evidence=evidence, registries={k: sorted(v) for k, v in registries.items()},
            loaded_at=time.perf_counter() - started,
        )
