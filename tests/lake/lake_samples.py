"""Sample table files for the lake tests (imported by the tests and by conftest)."""

from __future__ import annotations

import textwrap
from pathlib import Path

# A silver table as a later issue would add it: one YAML file, with quasi-identifiers and a
# change data feed. Loading it from a temporary catalog is also the proof that adding a table
# is adding a file.
PATIENT_STATE = """
name: patient_state
zone: silver
description: Test table — one row per person, with two quasi-identifiers.
change_data_feed: true
columns:
  - {name: person_id, type: STRING, nullable: false, description: Pseudonym of the person.}
  - {name: territory, type: STRING, nullable: false, description: Territory code.}
  - {name: birth_year, type: INT, description: Year of birth., quasi_identifier: true}
  - {name: postcode, type: STRING, description: Postcode of residence., quasi_identifier: true}
  - {name: score, type: DOUBLE, description: A measurement.}
"""


def write_table_file(catalog_dir: Path, zone: str, name: str, body: str) -> Path:
    """Write one table file into a catalog directory, as an engineer adding a table would."""
    path = catalog_dir / zone / f"{name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path
