"""The share of persons unique on (sex, birth year and month, commune) in silver.person, and `pdp uniqueness`.

A small silver.person written by Spark into a lake of the test's own: eight persons in five
classes, one of them with no commune (a class of its own, as an attacker would see it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pdp.config import get_settings
from pdp.governance.uniqueness import UniquenessError, person_uniqueness
from pdp.lake import LakeTable, RunInfo

pytestmark = pytest.mark.spark

#         sex  year  month commune   persons
CLASSES = [("M", 1950, 3, "59001", 2),
           ("F", 1960, 1, "59001", 1),
           ("F", 1960, 1, "59002", 1),  # same birth month as the line above, another commune: unique too
           ("M", 1970, 12, None, 3),  # no commune known: three persons alike
           ("M", 1970, 12, "59002", 1)]


@pytest.fixture()
def lake(spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The configured lake, pointed at a fresh directory holding the persons of ``CLASSES``."""
    root = tmp_path / "lake"
    monkeypatch.setenv("PDP_LAKE_URI", str(root))
    get_settings.cache_clear()
    table = LakeTable(spark, "silver.person", lake_root=str(root)).create()
    schema = table.definition.spark_schema()
    rows = []
    for sex, year, month, commune, n in CLASSES:
        for _ in range(n):
            i = len(rows) + 1
            person = {"person_id": i, "person_pseudonym": f"v1:{i:043d}", "gender": sex, "year_of_birth": year,
                      "month_of_birth": month, "location_id": commune, "gp_rpps": None, "first_seen": None,
                      "last_seen": None, "sources": ["pmsi"]}
            rows.append(tuple(person.get(name) for name in schema.names))  # person_bucket: Delta computes it
    table.append(spark.createDataFrame(rows, schema), run=RunInfo(run_id="r1", job="test", definitions_version="t"))
    yield root
    get_settings.cache_clear()


def test_unique_persons_and_persons_below_k_are_counted(spark: SparkSession, lake: Path) -> None:
    result = person_uniqueness(spark, lake_root=str(lake), k=3)
    assert (result.persons, result.classes, result.unique, result.below_k) == (8, 5, 3, 5)
    assert result.unique_share == pytest.approx(3 / 8) and result.below_k_share == pytest.approx(5 / 8)
    coarser = person_uniqueness(spark, lake_root=str(lake), k=2, columns=("gender", "year_of_birth"))
    assert (coarser.classes, coarser.unique) == (3, 0), "birth year alone: nobody is alone"


def test_bad_k_and_unknown_columns_are_refused(spark: SparkSession, lake: Path) -> None:
    with pytest.raises(UniquenessError, match="at least 2"):
        person_uniqueness(spark, lake_root=str(lake), k=1)
    with pytest.raises(UniquenessError, match=r"not columns of silver\.person: nir"):
        person_uniqueness(spark, lake_root=str(lake), columns=("gender", "nir"))


def test_cli_prints_the_share_and_refuses_bad_input_in_one_line(
    lake: Path, tmp_path: Path, pdp_cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = pdp_cli("uniqueness", "--json", "--k", "3")
    assert code == 0
    assert json.loads(out) | {"columns": None} == {
        "persons": 8, "classes": 5, "unique": 3, "unique_share": 0.375, "k": 3, "below_k": 5, "below_k_share": 0.625,
        "columns": None}
    code, out, _ = pdp_cli("uniqueness")
    assert code == 0 and "unique 3 (37.5%)" in out and "v1:" not in out
    code, _, err = pdp_cli("uniqueness", "--k", "1")
    assert code == 2 and err == "error: --k must be at least 2 (got 1)\n"
    code, _, err = pdp_cli("uniqueness", "--k", "many")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    monkeypatch.setenv("PDP_LAKE_URI", str(tmp_path / "empty"))
    get_settings.cache_clear()
    code, _, err = pdp_cli("uniqueness")
    assert code == 2 and err == "error: silver.person does not exist yet: run `pdp ingest` first\n"
