"""Population algorithms: from silver to gold — populations, pyramids, pathways, alerts, indicators.

Definitions are versioned YAML files under ``definitions/`` (criteria, populations, pyramids,
pathways, alerts), validated at load (unknown keys and names are errors) and compiled once
into SQL steps that Spark (``pdp run``) and DuckDB (the benchmark's reference) both run.
Every gold row says which rule fired on which silver facts (``gold.evidence``).

>>> defs = load_definitions()
>>> sorted(defs.populations)
['hf', 'hf_at_risk', 't2d', 't2d_at_risk']

Public surface: :func:`load_definitions`, :class:`Definitions`, :class:`DefinitionError`,
:func:`compile_pipeline`, :func:`build_gold`, :class:`GoldReport`, :func:`protect` (disclosure
control), :func:`render_report` and :class:`ReportModel`.
"""

from pdp.algorithms.compile import OUTPUTS, DuckDBDialect, SparkDialect, Step, compile_pipeline
from pdp.algorithms.model import DefinitionError, Definitions, load_definitions

__all__ = [
    "OUTPUTS",
    "DefinitionError",
    "Definitions",
    "DuckDBDialect",
    "GoldReport",
    "ReportModel",
    "SparkDialect",
    "Step",
    "build_gold",
    "compile_pipeline",
    "load_definitions",
    "protect",
    "render_report",
]


def __getattr__(name: str) -> object:
    """Heavy parts (Spark, pandas, plotly) load on first use, so `import pdp.algorithms` stays light."""
    if name in ("build_gold", "GoldReport"):
        from pdp.algorithms import gold

        return getattr(gold, name)
    if name == "protect":
        from pdp.algorithms.disclosure import protect

        return protect
    if name in ("render_report", "ReportModel"):
        from pdp.algorithms import report, report_model

        return getattr(report, name, None) or getattr(report_model, name)
    raise AttributeError(name)
