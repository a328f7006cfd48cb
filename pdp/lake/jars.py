"""Delta Lake jars: pinned coordinates, fetched once, then used offline.

Why not `spark.jars.packages`: Ivy resolves the whole transitive tree at every start and
fails as soon as the local Maven repository holds a pom without its jar. The five Delta
jars are all we need (their dependencies already ship in pyspark's `jars/`), so we pin
them, fetch them with Maven once at set-up, and hand Spark their local paths.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from pdp.config import get_settings


class DeltaJarsMissing(RuntimeError):
    """The Delta jars are not in the local Maven repository and cannot be fetched."""


def coordinates() -> list[str]:
    """The pinned `group:artifact:version` coordinates, in load order."""
    text = resources.files("pdp.lake").joinpath("delta_jars.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def jar_path(coordinate: str, repo: Path) -> Path:
    """Where Maven stores the jar of `coordinate` inside `repo`."""
    group, artifact, version = coordinate.split(":")
    return repo.joinpath(*group.split("."), artifact, version, f"{artifact}-{version}.jar")


def missing_jars(repo: Path | None = None) -> list[str]:
    repo = repo or get_settings().maven_repo
    return [c for c in coordinates() if not jar_path(c, repo).is_file()]


def fetch(repo: Path | None = None) -> list[Path]:
    """Make sure every pinned jar is in the local Maven repository; return their paths."""
    repo = repo or get_settings().maven_repo
    todo = missing_jars(repo)
    if todo:
        mvn = shutil.which("mvn")
        if mvn is None:
            raise DeltaJarsMissing(
                "Delta jars are missing and Maven (mvn) is not installed: install Maven once, "
                "or set PDP_SPARK_JARS to the Delta jar paths"
            )
        for coordinate in todo:
            done = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "dependency:get",
                    "-Dtransitive=false",
                    f"-Dartifact={coordinate}",
                    f"-Dmaven.repo.local={repo}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0 or not jar_path(coordinate, repo).is_file():
                raise DeltaJarsMissing(f"could not fetch {coordinate} with Maven (exit {done.returncode})")
    return [jar_path(c, repo) for c in coordinates()]


def spark_jars_setting() -> str:
    """The value for `spark.jars`: the Delta jars (the explicit setting, else the local jars,
    fetched if needed), then the project's own compiled JVM classes when a JDK can build them."""
    from pdp.lake.jvm import extension_jar

    explicit = get_settings().spark_jars
    jars = explicit.split(",") if explicit else [str(p) for p in fetch()]
    extension = extension_jar()
    return ",".join([*jars, str(extension)] if extension else jars)


if __name__ == "__main__":  # `python -m pdp.lake.jars`: the set-up step of the Makefile
    try:
        for path in fetch():
            print(path)
    except DeltaJarsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
