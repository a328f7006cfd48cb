"""The FHIR validation short-circuits (pdp/ingest/parsers/fhir_models.py) accept and reject exactly
what fhir.resources does: valid and broken resources validated in two fresh processes, one with the
short-circuits and one with the library as it ships, every error compared (type, location, message)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Run in a fresh process: `mode` "fast" validates through pdp's model_class (short-circuits installed
# before any model is built), "library" through fhir.resources alone. Prints one JSON list.
_SCRIPT = textwrap.dedent('''
    import copy, json, random, sys
    from pydantic import ValidationError
    from pdp.bench.fhir import _bundle

    mode = sys.argv[1]
    if mode == "fast":
        from pdp.ingest.parsers.fhir_models import model_class, short_circuits_installed
    else:
        from fhir.resources.R4B import get_fhir_model_class as model_class

    EXTENSION = [{"url": "http://example.org/why", "valueString": "unknown"}]

    def complex_lists(node, path=()):
        """Paths of the lists of dicts under `node`, and of lists of strings (primitive lists)."""
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, list) and value:
                    yield path + (key,), isinstance(value[0], dict)
                    for i, item in enumerate(value):
                        yield from complex_lists(item, path + (key, i))
                elif isinstance(value, dict):
                    yield from complex_lists(value, path + (key,))

    def at(node, path):
        for part in path:
            node = node[part]
        return node

    def mutations(resource):
        kind = resource["resourceType"]
        for path, of_dicts in list(complex_lists(resource))[:6]:
            broken = copy.deepcopy(resource)
            at(broken, path).insert(1 if of_dicts else 0, None)
            yield f"null in {'complex' if of_dicts else 'primitive'} list {path}", broken
        yield "unknown element", {**resource, "zzUnknown": 1}
        yield "null element", {**resource, "text": None}
        if "status" in resource:
            broken = dict(resource)
            del broken["status"]
            yield "required missing", broken
            yield "required missing, extension given", {**broken, "_status": {"extension": EXTENSION}}
            yield "required wrong type", {**resource, "status": 5}
            yield "required empty extension", {**broken, "_status": {}}
        if "valueQuantity" in resource:
            yield "two choices", {**resource, "valueString": "high"}
            yield "choice null", {**resource, "valueQuantity": None}
        for key in ("effectiveDateTime", "birthDate", "authoredOn", "onsetDateTime", "performedDateTime"):
            if key in resource:
                yield f"bad date {key}", {**resource, key: "2023-02-30"}
        for key in ("code", "subject", "category"):
            if key in resource:
                yield f"complex as string {key}", {**resource, key: "abc"}
                yield f"complex as list of strings {key}", {**resource, key: ["abc"]}
        yield "wrong resourceType", {**resource, "resourceType": "Patient" if kind != "Patient" else "Group"}, kind
        lists = [k for k, v in resource.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if len(lists) >= 2:  # several errors at once: their order must be the library's
            yield "nulls in two lists", {**resource, lists[0]: [None, *resource[lists[0]]],
                                         lists[1]: [*resource[lists[1]], None]}
        if lists:
            yield "a list of nulls only", {**resource, lists[0]: [None, None]}
        if "status" in resource and "valueQuantity" in resource:
            broken = {**resource, "valueString": "high"}
            del broken["status"]
            yield "required missing and two choices", broken  # which check comes first
            yield "required missing, two choices and a null", {**broken, "category": [None]}
        if kind == "Patient" and resource.get("name"):
            name = dict(resource["name"][0])
            yield "primitive extension list with a null", {
                **resource, "name": [{**name, "_given": [None, {"extension": EXTENSION}]}]}
            yield "primitive extension list of a null only", {**resource, "name": [{**name, "_given": [None]}]}
        for key in ("code", "subject"):
            if key in resource:
                yield f"number where an element is due {key}", {**resource, key: 5}
                yield f"null where an element is due {key}", {**resource, key: None}

    COVERAGE = {"resourceType": "Coverage", "status": "active", "beneficiary": {"reference": "Patient/1"},
                "payor": [{"reference": "Organization/1"}], "class": [{"type": {"text": "plan"}, "value": "A"}]}
    HAND = [  # aliased elements (Coverage.class is class_fhir in the model) and inputs that are no object
        ("Coverage valid", "Coverage", COVERAGE),
        ("Coverage aliased list with a null", "Coverage", {**COVERAGE, "class": [None, *COVERAGE["class"]]}),
        ("Coverage field name list with a null", "Coverage",
         {k: v for k, v in COVERAGE.items() if k != "class"} | {"class_fhir": [None]}),
        ("Coverage alias and field name, null under the name", "Coverage", {**COVERAGE, "class_fhir": [None]}),
        ("Coverage alias and field name, null under the alias", "Coverage",
         {**COVERAGE, "class": [None], "class_fhir": COVERAGE["class"]}),
        ("Observation as a list", "Observation", [{"resourceType": "Observation"}]),
        ("Observation as a string", "Observation", "Observation"),
        ("Observation empty", "Observation", {}),
        ("Observation null contained", "Observation", {"resourceType": "Observation", "status": "final",
                                                      "code": {"text": "x"}, "contained": [None]}),
    ]

    def outcome(kind, resource):
        try:
            model_class(kind).model_validate(resource)
        except ValidationError as exc:
            return ["ValidationError", [[e["type"], [str(p) for p in e["loc"]], e["msg"]] for e in exc.errors()]]
        except (ValueError, TypeError, LookupError) as exc:
            return [type(exc).__name__, str(exc)]
        return ["ok"]

    rng = random.Random(3)
    resources = [e["resource"] for i in range(6) for e in _bundle(rng, i, 8)["entry"]]
    per_kind, cases = {}, []
    for resource in resources:
        kind = resource["resourceType"]
        per_kind[kind] = per_kind.get(kind, 0) + 1
        if per_kind[kind] > 6:
            continue
        cases.append([f"{kind} valid", outcome(kind, resource)])
        for name, broken, *forced in mutations(resource):
            cases.append([f"{kind} {name}", outcome(forced[0] if forced else kind, broken)])
    for name, kind, resource in HAND:
        cases.append([name, outcome(kind, resource)])
    if mode == "fast":
        assert short_circuits_installed()
    # which validators the built classes run: a resource's and an element type's (built lazily)
    from fhir.resources.R4B.codeableconcept import CodeableConcept
    bound = [model.__pydantic_decorators__.model_validators[name].func.__qualname__
             for model in (model_class("Observation"), CodeableConcept)
             for name in ("reject_null_complex_elements", "validate_after_model_construction")]
    cases.append(["bound", bound])
    print(json.dumps(cases))
''')


def _cases(mode: str) -> list:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_short_circuits_give_the_librarys_verdicts_and_errors() -> None:
    fast, library = _cases("fast"), _cases("library")
    (_, bound_fast), (_, bound_library) = fast.pop(), library.pop()
    assert all("_install" in name for name in bound_fast), bound_fast  # the short-circuits really ran
    assert not any("_install" in name for name in bound_library), bound_library  # and the reference did not
    assert [name for name, _ in fast] == [name for name, _ in library]
    differences = [(name, f, lib) for (name, f), (_, lib) in zip(fast, library, strict=True) if f != lib]
    assert not differences, differences[:5]
    verdicts = [outcome[0] for _, outcome in fast]
    assert verdicts.count("ok") >= 50 and verdicts.count("ValidationError") >= 200, len(verdicts)
    # the library's own validators still catch what the short-circuits hand them
    errors = {e[0] for _, outcome in fast if outcome[0] == "ValidationError" for e in outcome[1]}
    assert {"list_type", "model_field_validation.missing", "extra_forbidden"} <= errors, errors
    assert sum("got multiple" in str(outcome) for _, outcome in fast) >= 4
    # several errors in one resource: the order compared above is meaningful
    assert sum(len(outcome[1]) > 1 for _, outcome in fast if outcome[0] == "ValidationError") >= 5
