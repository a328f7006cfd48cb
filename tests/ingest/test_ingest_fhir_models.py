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
    if mode == "fast":
        assert short_circuits_installed()
        cases.append(["installed", model_class("Observation").__pydantic_decorators__.model_validators[
            "reject_null_complex_elements"].func.__qualname__])
    print(json.dumps(cases))
''')


def _cases(mode: str) -> list:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_short_circuits_give_the_librarys_verdicts_and_errors() -> None:
    fast, library = _cases("fast"), _cases("library")
    installed = fast.pop()
    assert installed[0] == "installed" and "_install" in installed[1], installed  # the fast path really ran
    assert [name for name, _ in fast] == [name for name, _ in library]
    differences = [(name, f, lib) for (name, f), (_, lib) in zip(fast, library, strict=True) if f != lib]
    assert not differences, differences[:5]
    verdicts = [outcome[0] for _, outcome in fast]
    assert verdicts.count("ok") >= 50 and verdicts.count("ValidationError") >= 200, len(verdicts)
    # the library's own validators still catch what the short-circuits hand them
    errors = {e[0] for _, outcome in fast if outcome[0] == "ValidationError" for e in outcome[1]}
    assert {"list_type", "model_field_validation.missing", "extra_forbidden"} <= errors, errors
    assert any("got multiple" in str(outcome) for _, outcome in fast)
