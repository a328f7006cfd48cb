"""The R4B models the FHIR parsers validate with, and two short-circuits that make their validation cheaper.

Why: validating a resource with ``fhir.resources`` (its ``fhir_core`` base) was 56 % of the
parsers' CPU on the demo source mix (``pdp bench ingest``'s ``reference_parse_only_by_source``,
2026-12-07: the FHIR GP records, ~150 µs of a resource's 199 µs). An ad hoc profile of 18 030
generator-style resources (``pdp bench fhir``'s bundles) put about a third of that validation in
two of ``fhir_core``'s Python validators that every element of every resource runs, and that
almost always find nothing to do:

- ``reject_null_complex_elements`` (a "before" model validator) walks *every field* of the
  element's model to find a list of complex elements holding a null; almost no list holds one.
- ``validate_after_model_construction`` (an "after" model validator, run twice per element:
  ``FHIRAbstractModel.__init__`` validates again what pydantic has just built) asks the class for
  its required primitive fields and its choice (``[x]``) groups, lists the generated code rebuilds
  at each call, even for the many element types that have neither.

The short-circuits answer the common case and hand everything else to the library's own code:

- before: the library's validator can raise only for a list value of the input dict that holds
  a null; if none does, it returns the input unchanged, so that is returned; otherwise the
  library's own validator runs on the whole input (its errors, in its order);
- after: in ``fhir.resources``' generated classes, the required fields and choice groups are
  literals returned by generated methods, so whether a class has any is computed once per class;
  the library's own checks run for a class that has some and are skipped for one that has none
  (where they do nothing). Any other class (a profile's subclass, a class that overrides the
  checks, another package's model) runs the library's validator as it is.

So the same resources are accepted and the same errors raised: ``tests/ingest/test_ingest_fhir_models.py``
validates valid resources and broken ones (nulls in complex and primitive lists, several at once,
missing required elements beside two choices, unknown elements, wrong types, impossible dates,
aliased elements, non-objects where an element is due) in two fresh processes, one with the
short-circuits and one with the library as it ships, and compares every error (type, location,
message). They are installed only on the versions whose code was read and tested
(:data:`VERIFIED`: ``fhir_core``'s validators, ``fhir.resources``' generated methods); on any other
the library runs as it is (correct, slower), and that test fails until the new versions are read.
They also rely on how pydantic 2 binds model validators (below), which the test checks by looking
at the validators bound on the built classes.

How: pydantic binds a model validator to each model class *when the class is built*, looking the
function up by name on the class, so the short-circuits are set on ``FHIRAbstractModel`` before the
R4B modules are imported: :func:`model_class` installs them first. A model class built earlier in
the same process (another part importing ``fhir.resources`` first, as the opposition registry's
Consent does) keeps the library's validators: slower, not different.

Measured (ad hoc: the 18 030 resources of ``pdp bench fhir``'s 40 bundles, ``model_validate``
alone, one process, a 1 M-person synth running beside it, paired runs): 192.9-210.7 µs a resource
without, 114.6-135.2 µs with. ``pdp bench fhir`` (the parser and the edge, per CPU-second), paired
runs on the same load (a synth beside them, load 3.3-3.5): 2 342 and 1 755 resources per CPU-second
without, 3 230 and 2 906 with; four pairs on the quiet machine (load 0.8-1.0): 3 472, 3 315, 3 345,
3 447 without, 3 487, 3 786, 4 734, 4 161 with (medians 3 396 → 3 974, +17 %; its NDJSON reference
3 092 → 3 518). A loaded machine penalises the library's path more than the short-circuits'.
The GP source's whole parse (``parse_file``: JSON, depth checks, validation, extraction; the
25 311 outcomes of a 2 000-person synthetic territory, one process, three alternating pairs on a
quiet machine): 311-421 µs of CPU an outcome with the library's validators alone, 249-284 µs
with the short-circuits (about a fifth less).

    >>> model_class("Observation").__name__
    'Observation'
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# the versions whose validators (fhir_core) and generated methods (fhir.resources) were read and tested
VERIFIED = {"fhir_core": ("1.1.12",), "fhir.resources": ("8.3.0",)}

_lock = threading.Lock()
_installed: list[bool] = []  # [] until the first model is asked for, then [whether installed]


def short_circuits_installed() -> bool:
    """Whether the short-circuits are set on ``FHIRAbstractModel`` (after the first :func:`model_class`).
    Model classes built before that in the process keep the library's validators."""
    return bool(_installed and _installed[0])


def _verified() -> bool:
    try:
        return all(version(package) in versions for package, versions in VERIFIED.items())
    except PackageNotFoundError:
        return False


def _install() -> bool:
    if not _verified():
        return False
    from fhir_core.fhirabstractmodel import FHIRAbstractModel

    library_reject = FHIRAbstractModel.__dict__["reject_null_complex_elements"].__func__
    library_after = FHIRAbstractModel.__dict__["validate_after_model_construction"]
    library_checks = (FHIRAbstractModel._validate_required_primitive_elements, FHIRAbstractModel._validate_one_of_many)
    # per class: None (run the library's validator as it is) or (has required fields, has choice groups)
    plans: dict[type, tuple[bool, bool] | None] = {}

    def plan(kind: type, instance: Any) -> tuple[bool, bool] | None:
        generated = kind.__module__.startswith("fhir.resources.") and (
            kind._validate_required_primitive_elements, kind._validate_one_of_many) == library_checks
        return (bool(instance.get_required_fields()), bool(instance.get_one_of_many_fields())) if generated else None

    def reject_null_complex_elements(cls: type, data: Any) -> Any:
        if isinstance(data, dict):
            for value in data.values():
                if isinstance(value, list) and any(item is None for item in value):
                    return library_reject(cls, data)
        return data

    def validate_after_model_construction(self: Any) -> Any:
        kind = type(self)
        if kind not in plans:
            plans[kind] = plan(kind, self)
        has = plans[kind]
        if has is None:
            return library_after(self)
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
    with _lock:
        if not _installed:
            _installed.append(_install())
    from fhir.resources.R4B import get_fhir_model_class  # heavy import: only when a FHIR file is read

    return get_fhir_model_class(resource_type)


_ELEMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


def fhir_error_location(root: str, error: Mapping[str, Any]) -> str:
    """Where one pydantic error of a FHIR model is (``Bundle.entry[0].resource.status``), with
    nothing the sender chose in it.

    A location holds the model's own element names and list positions, except for a key the
    model does not know (``extra_forbidden``): that one is the sender's (``"DUPONT_Jeanne": 1``
    would name a person), so it is ``?``, like any part not shaped like an element name.

        >>> fhir_error_location("Patient", {"type": "extra_forbidden", "loc": ("name", 0, "DUPONT_Jeanne")})
        'Patient.name[0].?'
    """
    loc = tuple(error.get("loc", ()))
    sender_key = len(loc) - 1 if error.get("type") == "extra_forbidden" else -1
    return root + "".join(
        f"[{part}]" if isinstance(part, int)
        else f".{part}" if i != sender_key and _ELEMENT_NAME.fullmatch(str(part)) else ".?"
        for i, part in enumerate(loc)
    )
