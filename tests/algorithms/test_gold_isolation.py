"""Gold never sees the generator's truth: the algorithms, governance and serving code neither read
`ground_truth/` nor import `pdp.synth` (or the evaluation in `pdp.bench`, which reads it), so the
accuracy figures cannot be circular."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_PDP = Path(__file__).resolve().parents[2] / "pdp"
_FORBIDDEN = ("ground_truth", "pdp.synth", "from pdp import synth", "pdp.bench", "from pdp import bench")


def test_no_gold_serving_or_governance_source_names_the_truth() -> None:
    offenders = []
    for folder in ("algorithms", "governance", "api"):
        for path in sorted((_PDP / folder).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".yml", ".yaml", ".j2"}:
                text = path.read_text(encoding="utf-8")
                offenders += [f"{path.relative_to(_PDP)}: {word}" for word in _FORBIDDEN if word in text]
    assert offenders == []


def test_importing_every_gold_module_loads_no_generator_module() -> None:
    modules = [p.stem for p in (_PDP / "algorithms").glob("*.py") if p.stem != "__init__"]
    code = (
        "import sys\n"
        + "".join(f"import pdp.algorithms.{m}\n" for m in modules)
        + "bad = sorted(m for m in sys.modules if m.startswith(('pdp.synth', 'pdp.bench')))\n"
        + "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == ""
