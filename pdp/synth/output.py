"""What a source writer hands back for one chunk of persons: text to append to files.

Why this shape: writers run in worker processes and must not touch the disk, so the
generator stays deterministic (files are appended in chunk order by one process) and
memory stays bounded (one chunk's text at a time).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file of the output tree and how it is encoded.

    `header` is written once when the file is created; `footer` once when generation ends,
    with ``{count}`` replaced by the number of records appended to the file.
    """

    path: str  # relative to the output directory, "/"-separated
    encoding: str = "utf-8"  # "utf-8", "utf-8-sig" (BOM) or "latin-1"
    header: str = ""
    footer: str = ""


@dataclass(frozen=True, slots=True)
class Rendered:
    """Text to append to `spec.path`, holding `records` records (rows, messages, bundles...)."""

    spec: FileSpec
    text: str
    records: int = 1


RECORD_LINKS = FileSpec(
    path="ground_truth/record_links.csv",
    header="source,file,record_id,person_id\n",
)


def record_link(source: str, file: str, record_id: str, person_id: int) -> Rendered:
    """One ground-truth row saying which true person a source record belongs to."""
    return Rendered(RECORD_LINKS, f"{source},{file},{record_id},{person_id}\n")


IDENTITY_ERRORS = FileSpec(
    path="ground_truth/identity_errors.csv",
    header="source,person_id,errors\n",
)
"""Per (source, person): the identity error kinds that source's records of the person carry
(``|``-separated, :data:`pdp.synth.identity_variants.ERROR_KINDS`); rows without any are left out."""


def identity_errors(source: str, person_id: int, errors: tuple[str, ...]) -> Rendered:
    """One ground-truth row of the error kinds of a person's identity in one source."""
    return Rendered(IDENTITY_ERRORS, f"{source},{person_id},{'|'.join(errors)}\n")
