"""The serving snapshot reads gold with delta-rs and follows its Delta version (no Spark needed here:
the tables are written by delta-rs in the catalog's layout)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from pdp.api.snapshot import SnapshotStore, territory_slug
from pdp.lake import table

AS_OF = date(2026, 6, 30)
P1, P2 = "v1:" + "A" * 43, "v1:" + "B" * 43


def _write(lake: Path, name: str, rows: list[dict], *, mode: str = "append") -> None:
    write_deltalake(table(f"gold.{name}").path(str(lake)), pa.Table.from_pylist(rows), mode=mode,
                    partition_by=["as_of"])


def _stratum(p: str, stratum: str) -> dict:
    return {"as_of": AS_OF, "person_id": 1, "person_pseudonym": p, "pyramid": "t2d", "stratum": stratum,
            "rule_id": f"pyramid.t2d.{stratum}@1", "location_id": "59178", "gp_rpps": "10000000001",
            "definition_version": 1, "definitions": "defs-x"}


def test_the_snapshot_follows_the_delta_version(tmp_path: Path) -> None:
    _write(tmp_path, "stratum", [_stratum(P1, "1")])
    _write(tmp_path, "indicator", [{"as_of": AS_OF, "territory": "Aube-Sézannais", "level": "territory"}])
    store = SnapshotStore(str(tmp_path), check_seconds=0)
    first = store.current()
    assert first.as_of == AS_OF and first.territory == "aube-sezannais" and first.persons() == {P1}
    assert store.current() is first, "no new version, same snapshot"
    _write(tmp_path, "stratum", [_stratum(P2, "3")])
    second = store.current()
    assert second is not first and second.persons() == {P1, P2}
    DeltaTable(table("gold.stratum").path(str(tmp_path))).delete(f"person_pseudonym = '{P1}'")
    assert store.current().persons() == {P2}
    assert first.persons() == {P1}, "a request keeps the snapshot it started with"


def test_territory_labels_become_policy_domains() -> None:
    assert territory_slug("Douaisis") == "douaisis"
    assert territory_slug("Deux-Sèvres") == "deux-sevres"
    assert territory_slug("Haute Saône") == "haute-saone"
