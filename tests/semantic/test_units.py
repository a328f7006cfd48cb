"""Units of measurement (pdp/semantic/units.yml): what the edge lands, and silver's conversion.

The conversion is written twice on purpose — in Python (:func:`convert`, the edge's and the tests'
reference) and as the SQL silver runs — so every accepted unit is run through both, on Spark.
"""

from __future__ import annotations

import doctest

import pytest
from pyspark.sql import SparkSession

import pdp.semantic.units as units_module
from pdp.semantic import UnitRefused, UnitsError, concept_sets, convert, implied_unit, land_unit, unit_conversion_sql
from pdp.semantic.units import is_unit, parse_units

# (code system, code, unit as sent) -> unit landed, or the refusal's kind
LANDED = [
    ("LOINC", "4548-4", "%", "%"),
    ("LOINC", "59261-8", "mmol/mol", "mmol/mol"),
    ("LOINC", "59261-8", " MMOL / mol ", "mmol/mol"),
    ("LOINC", "14682-9", "µmol/l", "umol/L"),            # micro sign
    ("LOINC", "14682-9", "μmol/L", "umol/L"),            # Greek mu
    ("LOINC", "39156-5", "kg/m²", "kg/m2"),
    ("LOINC", "8480-6", "mmHg", "mm[Hg]"),
    ("LOINC", "62238-1", "mL/min/1,73m²", "mL/min/{1.73_m2}"),
    ("LOINC", "29463-7", "lbs", "[lb_av]"),
    ("LOINC", "4548-4", "g/L", "unknown"),               # HbA1c is a ratio: no conversion from a mass
    ("LOINC", "59261-8", "%", "unknown"),                # the IFCC code is defined in mmol/mol
    ("LOINC", "4548-4", "mmol/mol", "unknown"),          # and the NGSP one in %
    ("LOINC", "4548-4", "", "unknown"),
    ("LOINC", "33762-6", "Jeanne DUPONT", "unknown"),
    ("LOINC", "3016-3", "mUI/L", "mUI/L"),               # TSH: no rule reads it, a unit-shaped token lands
    ("LOINC", "3016-3", "µUI / mL", "uUI/mL"),
    ("LOINC", "3016-3", "DUPONT Jeanne 06 12 34 56 78", "malformed"),
    ("LOINC", "3016-3", "né le 12/03/1950", "malformed"),
    ("LOINC", "3016-3", "x" * 33, "malformed"),
    ("LOINC", "26464-8", "10³/mm³", "10^3/mm3"),          # leukocytes: a power of ten, not 103
    ("LOINC", "26464-8", "G/L", "G/L"),                   # giga per litre, as French labs write it
    ("LOINC", "26464-8", "x1000/mm3", "x1000/mm3"),
    ("LOINC", "9318-7", "mg/g{creat}", "mg/g"),           # the UCUM annotation LOINC writes
    ("LOINC", "9318-7", "g/mol", "g/mol"),
    ("LOINC", "8480-6", "cmHg", "cm[Hg]"),
    ("LOINC", "62238-1", "ml/mn/1,73m²", "mL/min/{1.73_m2}"),
    ("SNOMED", "43396009", "%", "%"),
]


@pytest.mark.parametrize(("system", "code", "sent", "landed"), LANDED)
def test_what_the_edge_lands_of_a_unit(system: str, code: str, sent: str, landed: str) -> None:
    if landed in ("unknown", "malformed"):
        with pytest.raises(UnitRefused) as refused:
            land_unit(system, code, sent)
        assert refused.value.kind == landed
        assert sent.strip() == "" or sent not in str(refused.value), "a refusal never quotes the unit"
    else:
        assert land_unit(system, code, sent) == landed


@pytest.mark.parametrize(("text", "unit"), [
    ("mUI/L", True), ("10*9/L", True), ("x10E9/L", True), ("/mm3", True), ("mg/24h", True), ("°C", True),
    ("mL/min/1.73m2", True), ("[IU]/L", True), ("{pack}", True), ("ratio", True),
    ("DUPONT", False), ("Jeanne.DUPONT", False), ("Dr_Martin", False), ("Martin", False), ("{DUPONT}", False),
    ("06.12.34.56.78", False), ("06-12-34-56-78", False), ("0612345678", False), ("12/03/57", False),
    ("299-05-99-123-456-78", False), ("x" * 40, False),
])
def test_a_unit_reads_as_one_a_name_a_number_or_a_date_does_not(text: str, unit: bool) -> None:
    assert is_unit(text) is unit


def test_a_value_without_a_unit_is_in_the_unit_its_code_or_concept_fixes_else_refused() -> None:
    assert implied_unit("LOINC", "59261-8") == "mmol/mol"  # IFCC HbA1c: the code is defined in mmol/mol
    assert implied_unit("LOINC", "62238-1") is None  # eGFR has one unit: the value is in it
    assert implied_unit("LOINC", "3016-3") is None  # no rule reads TSH
    with pytest.raises(UnitRefused, match="glucose comes in several"):
        implied_unit("LOINC", "2345-7")  # 95 without a unit: g/L, mmol/L or mg/dL?


def test_the_docstring_examples_run() -> None:
    assert doctest.testmod(units_module, optionflags=doctest.ELLIPSIS).failed == 0


_GOOD = """
version: 1
concepts:
  hba1c:
    unit: "%"
    decimals: 1
    accept:
      "%": {}
      "mmol/mol": {factor: 0.09148, offset: 2.152}
"""


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("    decimals: 1\n", "    decimals: 1\n    precision: 2\n"),
     "units.yml: concepts.hba1c.precision: Extra inputs are not permitted"),
    (lambda t: t.replace("  hba1c:", "  glycated_haemoglobin:"),
     "units.yml: concepts.glycated_haemoglobin: no such concept in concept_sets.yml"),
    (lambda t: t.replace('      "%": {}\n', ""), "accept must hold the unit '%' itself, unconverted"),
    (lambda t: t.replace("factor: 0.09148", "factor: 0"), "units.yml: concepts.hba1c.accept.mmol/mol.factor"),
    (lambda t: t + 'aliases:\n  "mmol/mol": ["%"]\n', "'%' spells two accepted units"),
    (lambda t: t + 'aliases:\n  "g/L": ["g/l"]\n', "units.yml: aliases.g/L: not a unit any concept accepts"),
    (lambda t: t + '    code_units: {"1558-6": "%"}\n', "code_units: 1558-6 is not a code of hba1c"),
    (lambda t: t + '    code_units: {"4548-4": "g/L"}\n', "code_units.4548-4: 'g/L' is not an accepted unit"),
])
def test_a_bad_registry_stops_with_one_line_naming_what(edit, message: str) -> None:
    parse_units(_GOOD)
    with pytest.raises(UnitsError) as caught:
        parse_units(edit(_GOOD))
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.spark
def test_silver_converts_every_accepted_unit_as_the_reference_does(spark: SparkSession) -> None:
    registry = units_module._units()
    sets = concept_sets()
    rows, expected = [], []
    for concept, table in registry.accept.items():
        vocabulary, codes = next(iter(sets[concept].items()))
        for unit in sorted({spelling for spelling, _, _ in table.values()}):
            for value in (0.0, 7.25, 53.0, 12.5, 81250.0):  # 12.5 mg/dL and 81 250 g: ties at the last decimal
                rows.append((vocabulary, codes[0], unit, value))
                expected.append((convert(concept, unit, value), registry.unit[concept]))
    # other codes, values without a unit, and spellings the edge would not land (a lake landed before
    # units were checked) keep what they have: never relabelled without being converted
    rows += [("LOINC", "3016-3", "mmol/L", 2.5), ("LOINC", "4548-4", None, 7.2), ("CIM-10", "E11.9", None, None),
             ("LOINC", "59261-8", "MMOL/MOL", 53.0)]
    expected += [(2.5, "mmol/L"), (7.2, None), (None, None), (53.0, "MMOL/MOL")]
    value_sql, unit_sql = unit_conversion_sql("system", "code", "unit", "value")
    frame = spark.createDataFrame(rows, "system string, code string, unit string, value double")
    got = [(r.value, r.unit) for r in frame.selectExpr(f"{value_sql} AS value", f"{unit_sql} AS unit").collect()]
    assert got == expected
