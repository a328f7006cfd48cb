"""The R4B models the FHIR parsers validate with, and two short-circuits that make their validation cheaper.

Why: validating a resource with ``fhir.resources`` (its ``fhir_core`` base) was 56 % of the
parsers' CPU on the demo source mix (``pdp bench ingest``'s ``reference_parse_only_by_source``,
2026-12-07: the FHIR GP records, ~150 µs of a resource's 199 µs). An ad hoc profile of 18 030
generator-style resources (``pdp bench fhir``'s bundles) put about a third of that validation in
two of ``fhir_core``'s Python validators that every element of every resource runs, and that
almost always find nothing to do:

- ``reject_null_complex_elements`` (a "before" model validator) walks *every field* of the
  element's model to find a list of complex elements holding a null; almost no list holds one.
- ``validate_after_model_construction`` (an "after" model validator, run twice per element: once
  when the element is built, once when its parent's schema receives it) asks the class for its
  required primitive fields and its choice (``[x]``) groups, lists the generated code rebuilds at
  each call, even for the many element types that have neither.

The short-circuits answer the common case and hand everything else to the library's own code:

- before: if no list value of the input dict holds a null, the library's validator has no error
  to raise and returns the input unchanged, so that is returned; otherwise the library's own
  validator runs;
- after: a class's required fields and choice groups are constants of its generated code, so
  whether it has any is computed once per class; the library's own checks run for a class that
  has some, and are skipped for one that has none (where they do nothing).

So the same resources are accepted and the same errors raised, in the same order:
``tests/ingest/test_ingest_fhir_models.py`` validates valid and broken resources in two fresh
processes, with and without them, and compares every error. They are installed only on a
``fhir_core`` version whose code was read and tested (:data:`VERIFIED_FHIR_CORE`); on any other
the library runs as it is (correct, slower), and that test fails until the new version is read.

How: pydantic binds a model validator to each model class *when the class is built*, looking the
function up by name on the class, so the short-circuits are set on ``FHIRAbstractModel`` before the
R4B modules are imported: :func:`model_class` installs them first. A model class built earlier in
the same process (another part importing ``fhir.resources`` first) keeps the library's validators:
slower, not different.

Measured (ad hoc: the 18 030 resources of ``pdp bench fhir``'s 40 bundles, ``model_validate``
alone, one process, a 1 M-person synth running beside it, paired runs): 192.9-210.7 µs a resource
without, 114.6-135.2 µs with. ``pdp bench fhir`` (the parser and the edge, per CPU-second), paired
runs on the same load (a synth beside them, load 3.3-3.5): 2 342 and 1 755 resources per CPU-second
without, 3 230 and 2 906 with.

    >>> model_class("Observation").__name__
    'Observation'
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# fhir_core versions whose two validators were read and found to match the short-circuits' reasoning
VERIFIED_FHIR_CORE = ("1.1.12",)

_installed: list[bool] = []  # [] until the first model is asked for, then [whether installed]


def short_circuits_installed() -> bool:
    """Whether the short-circuits are set on ``FHIRAbstractModel`` (after the first :func:`model_class`)."""
    return bool(_installed and _installed[0])


def _install() -> bool:
    try:
        if version("fhir_core") not in VERIFIED_FHIR_CORE:
            return False
    except PackageNotFoundError:
        return False
    from fhir_core.fhirabstractmodel import FHIRAbstractModel

    library_reject = FHIRAbstractModel.__dict__["reject_null_complex_elements"].__func__
    choices_and_required: dict[type, tuple[bool, bool]] = {}

    def reject_null_complex_elements(cls: type, data: Any) -> Any:
        if isinstance(data, dict):
            for value in data.values():
                if isinstance(value, list) and any(item is None for item in value):
                    return library_reject(cls, data)
        return data

    def validate_after_model_construction(self: Any) -> Any:
        kind = type(self)
        has = choices_and_required.get(kind)
        if has is None:
            has = choices_and_required[kind] = (bool(self.get_required_fields()), bool(self.get_one_of_many_fields()))
        if has[0]:
            self._validate_required_primitive_elements()
        if has[1]:
            self._validate_one_of_many()
        return self

    reject_null_complex_elements.__doc__ = library_reject.__doc__
    FHIRAbstractModel.reject_null_complex_elements = classmethod(reject_null_complex_elements)
    FHIRAbstractModel.validate_after_model_construction = validate_after_model_construction
    return True


@lru_cache(maxsize=64)
def model_class(resource_type: str) -> Any:
    """The R4B model class of `resource_type` (``fhir.resources``), the short-circuits installed
    before the first one is built. Raises the library's error (KeyError, ValueError...) for a name
    that is no R4B resource type."""
    if not _installed:
        _installed.append(_install())
    from fhir.resources.R4B import get_fhir_model_class  # heavy import: only when a FHIR file is read

    return get_fhir_model_class(resource_type)
