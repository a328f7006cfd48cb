"""Coverage-guided fuzzing of one parser with atheris (libFuzzer): ``make fuzz`` or ``make fuzz-<format>``.

Usage: ``python tests/fuzz/atheris_target.py <format> [libFuzzer flags] [corpus dirs]``. Each input
goes through the same harness as the hypothesis tests (``fuzz_harness.run``: parse_file, the time
bound, tracemalloc, the accounting, value-free messages and logs); a property that fails is a
crash libFuzzer saves (``-artifact_prefix``), to be turned into a ``crash-*`` corpus file and a
named test in ``test_fuzz_findings.py``. The ingest package is instrumented for coverage, the
libraries it calls (python-hl7, fhir.resources, csv, json) are not.

atheris is not a dependency of the tests: ``make fuzz`` installs it (a manylinux wheel for
CPython 3.11 on x86-64); where it does not install, ``make fuzz`` runs the hypothesis budget only.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["pdp.ingest"]):
    import fuzz_harness

    from pdp.ingest.parsers.base import BUILTIN_PARSERS

    for _module in BUILTIN_PARSERS:
        import_module(_module)


def main() -> None:
    # the format travels in the environment too: libFuzzer re-runs this script without it (-merge=1)
    if len(sys.argv) > 1 and sys.argv[1] in fuzz_harness.FORMATS:
        os.environ["PDP_FUZZ_FORMAT"] = sys.argv.pop(1)
    format_name = os.environ.get("PDP_FUZZ_FORMAT", "")
    scratch = Path(__file__).resolve().parents[2] / "var" / "fuzz" / "tmp"  # libFuzzer's exit skips atexit
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PDP_FUZZ_TMP", str(scratch))
    if format_name not in fuzz_harness.FORMATS:
        sys.exit(f"usage: atheris_target.py FORMAT [libFuzzer args]; FORMAT in {sorted(fuzz_harness.FORMATS)}")
    fuzz_harness.spec_for(format_name)
    fuzz_harness.run(format_name, fuzz_harness.seed(format_name))  # warm-up (lazy imports) outside the timing

    def one_input(data: bytes) -> None:
        fuzz_harness.run(format_name, data, time_bound=10.0, trace_memory=True, memory_bound=64 << 20)

    # libFuzzer re-runs argv[0] through the shell for -merge=1: the interpreter must be part of it
    sys.argv[0] = f"{sys.executable} {os.path.abspath(__file__)}"
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
