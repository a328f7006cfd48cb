"""The project's own JVM classes (Spark UDFs), compiled once into a jar Spark loads at start.

Why compile here and not ship a jar: a binary in the repository cannot be reviewed, and a
Maven module would download Spark's whole dependency tree to compile a few classes that
pyspark's own ``jars/`` folder already lets ``javac`` compile offline. The jar is cached under
``PDP_JVM_CACHE`` with the hash of its sources, the JDK and pyspark in its name, so a changed
source or upgraded Spark rebuilds it and concurrent builders never clobber each other (each
writes a temporary jar, then renames it atomically).

Sources: every ``*.java`` under a ``jvm/`` folder of a ``pdp`` package (today
``pdp/pseudonym/jvm/``: the keyed-pseudonym UDF). Without a JDK compiler the jar is not built
and callers fall back to their Python paths (:func:`extension_jar` returns ``None``; the reason
is logged once).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from pdp.config import get_settings

__all__ = ["JvmBuildError", "extension_jar", "java_sources"]

_LOG = logging.getLogger(__name__)
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class JvmBuildError(RuntimeError):
    """The project's JVM classes failed to compile (a bug in the sources, not the environment)."""


def java_sources() -> list[Path]:
    """The project's Java sources, in a stable order."""
    return sorted(_PACKAGE_ROOT.glob("*/jvm/**/*.java"))


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "jars"


def _fingerprint(sources: list[Path], javac: str) -> str:
    import pyspark

    digest = hashlib.sha256()
    digest.update(pyspark.__version__.encode())
    version = subprocess.run([javac, "-version"], capture_output=True, text=True, check=False)
    digest.update((version.stdout + version.stderr).encode())
    for source in sources:
        digest.update(source.relative_to(_PACKAGE_ROOT).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


@cache
def extension_jar() -> Path | None:
    """Path of the compiled jar (built if missing), or ``None`` when no JDK compiler is available."""
    sources = java_sources()
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if not sources:
        return None
    if javac is None or jar_tool is None:
        _LOG.warning("no JDK compiler (javac/jar) on PATH: the JVM UDFs are unavailable, Python paths are used")
        return None
    cache_dir = get_settings().jvm_cache
    target = cache_dir / f"pdp-jvm-{_fingerprint(sources, javac)}.jar"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as tmp:
        classes = Path(tmp) / "classes"
        compiled = subprocess.run(
            [javac, "--release", "17", "-nowarn", "-cp", f"{_pyspark_jars()}/*", "-d", str(classes)]
            + [str(s) for s in sources],
            capture_output=True,
            text=True,
            check=False,
        )
        if compiled.returncode != 0:
            raise JvmBuildError(f"javac failed on the project's JVM sources:\n{compiled.stderr.strip()}")
        partial = Path(tmp) / "out.jar"
        packed = subprocess.run(
            [jar_tool, "--create", "--file", str(partial), "-C", str(classes), "."],
            capture_output=True,
            text=True,
            check=False,
        )
        if packed.returncode != 0:
            raise JvmBuildError(f"jar failed: {packed.stderr.strip()}")
        os.replace(partial, target)
    return target


if __name__ == "__main__":  # `python -m pdp.lake.jvm`: the set-up step of the Makefile
    try:
        print(extension_jar() or "no JDK compiler: JVM UDFs skipped")
    except JvmBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
