"""A trained linkage model, persisted and versioned: what every batch links with.

Why: EM per batch (:mod:`pdp.pseudonym.linkage_model`) makes the model a function of the batch.
A lab file of ten patients cannot train (it falls back to the built-in parameters), a large
batch trains its own m/u (~4 s of every 215 000-record ingest), and two batches of one
territory may weigh the same evidence differently. ``pdp linkage train`` trains once, on a
representative set of identities, and writes the parameters here; every later batch's linkage
loads the current model (:func:`current_options`) and records its version in the ingest report.
When none has been trained, linkage does what it did before (EM on batches of at least
``min_train_variants`` distinct identities, else the built-in
:data:`~pdp.pseudonym.linkage_model.DEFAULT_PARAMETERS`) and says so.

Two ways to train. On a batch of source files (``--from``): EM learns ``m`` (how the records of
one person agree) and ``u`` (how strangers agree) from each person's spellings. On a sample of the
vault: it holds each person once, so EM finds no matches there — on the 1 M-person vault's
100 000-identity sample it converged on "same birth date and place" as its match class, 96 % of
whose pairs disagreed entirely on the birth name, and linking with that model merged nothing
beyond the rules. So a vault sample trains ``u`` only (the population's own chance agreement)
and keeps the prior and ``m`` of the current model, or of the built-in one (``m_from``). Any model
whose matches mostly disagree on names or birth date is refused when trained and when read
(:func:`~pdp.pseudonym.linkage_model.check_usable`).

Measured (``pdp linkage train`` then ``pdp bench linkage --json`` with the platform's settings on
the 1 M-person lake's vault, 912 445 persons, 2026-12-07, quiet machine): training 34 s, 0.5 GB
peak RSS; on the bench's territory (20 000 persons, seed 8191, never trained on), the vault-u
model: recall 0.997834, 116 persons split, 0 collisions; the built-in: 0.997783, 118; EM on the
territory itself: 0.998472, 94; the model EM made on the vault sample before: 0.995629, 297 (the
rules alone). Accuracy on the generator's own errors: a floor, not a proof.

What the file holds: the format, the version, when and on how many distinct identities it was
trained, whose prior and ``m`` it kept if it trained ``u`` only (``m_from``), the prior and
``m``/``u`` per comparison level. Never a name, a date, a NIR or a term-frequency table: the
level labels are checked against the comparisons' own fixed labels (free text could carry a
value), numbers are probabilities. Validated by pydantic, unknown keys are errors; a bad file
stops the ingest with one line naming the file and the field (never its value).

Layout under ``Settings.linkage_model_dir`` (default ``<var_dir>/linkage``; a directory or an
object-store URI such as ``s3://bucket/pdp/linkage``, read through ``pyarrow.fs``)::

    lm-20261205T130102Z-3f9a1c2e.json   # one file per version, never overwritten
    current                              # the version in use (one line)

Example::

    store = ModelStore.from_settings()
    model = store.save(parameters, trained_on="batch", variants=33_000)
    store.current().version == model.version
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pdp.config import Settings
from pdp.pseudonym.linkage_model import DEFAULT_PARAMETERS, ModelOptions, UnusableModel, check_usable, train_parameters
from pdp.pseudonym.linkage_rules import UnionFind, apply_rules, build_variants
from pdp.pseudonym.normalise import CanonicalIdentity

if TYPE_CHECKING:
    from pdp.pseudonym.vault import IdentityVault

__all__ = ["FORMAT", "LinkageModelError", "ModelStore", "TrainedModel", "current_options", "train", "vault_sample"]

FORMAT = "pdp-linkage-model/1"
_VERSION = re.compile(r"^lm-\d{8}T\d{6}Z-[0-9a-f]{8}$")
_LABELS: dict[str, tuple[str, ...]] = {
    name: tuple(level["level"] for level in levels) for name, levels in DEFAULT_PARAMETERS["levels"].items()
}


class LinkageModelError(ValueError):
    """A linkage model file that cannot be used (missing, not JSON, not valid): one line, no value."""


class Level(BaseModel):
    """One comparison level's probabilities among matches (``m``) and non-matches (``u``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: str
    m: float = Field(gt=0, le=1)
    u: float = Field(gt=0, le=1)


class TrainedModel(BaseModel):
    """The persisted model: no nominative value (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["pdp-linkage-model/1"]
    version: str = Field(pattern=_VERSION.pattern)
    trained_at: datetime
    trained_on: Literal["vault_sample", "batch"]
    variants: int = Field(ge=0, description="distinct identities trained on")
    m_from: str | None = Field(None, pattern=r"^(builtin|lm-\d{8}T\d{6}Z-[0-9a-f]{8})$",
                               description="the model whose prior and m were kept (u only was trained), if any")
    probability_two_random_records_match: float = Field(gt=0, lt=1)
    levels: dict[str, list[Level]]

    @model_validator(mode="after")
    def _fits_the_comparisons(self) -> TrainedModel:
        if set(self.levels) != set(_LABELS):
            raise ValueError(f"levels must name the comparisons {sorted(_LABELS)}")
        for name, levels in self.levels.items():
            if tuple(level.level for level in levels) != _LABELS[name]:
                raise ValueError(f"levels of {name} differ from the comparison's (labels or order)")
        check_usable(self.parameters())  # a model that ignores names is refused, never used (fail closed)
        return self

    def parameters(self) -> dict[str, Any]:
        """The model as :func:`~pdp.pseudonym.linkage.link` takes it (``LinkageOptions.parameters``)."""
        return {
            "probability_two_random_records_match": self.probability_two_random_records_match,
            "levels": {name: [level.model_dump() for level in levels] for name, levels in self.levels.items()},
        }


def _one_line(exc: ValidationError) -> str:
    """The first validation error's location and message: never its input value."""
    error = exc.errors(include_input=False, include_url=False)[0]
    known = set(TrainedModel.model_fields) | set(Level.model_fields) | set(_LABELS)
    # a location part that is neither an index nor a known name is a key of the file: it could
    # be a value (a name written as a comparison key), so it is not quoted
    parts = [str(part) if isinstance(part, int) or part in known else "<key>" for part in error["loc"]]
    message = error["msg"] if error["type"] != "extra_forbidden" else "unknown key (not permitted)"
    return f"{'.'.join(parts) or 'file'}: {message}"


class ModelStore:
    """The trained models of one platform (one directory or object-store prefix): save a version,
    read the current one.

    `location`: a local directory, or a URI any node can read (``s3://bucket/pdp/linkage``,
    ``gs://``, ``hdfs://``, ``file://``) through ``pyarrow.fs`` — the model is shared by every
    machine that ingests, so it must not live on one machine's disk. A version file is written
    once and never overwritten; the ``current`` pointer is written after it (on an object store a
    write is atomic per object).
    """

    def __init__(self, location: str | Path) -> None:
        from pyarrow import fs

        text = str(location)
        if "://" in text:
            self._fs, self._root = fs.FileSystem.from_uri(text)
            self.directory: Path | None = None
        else:
            self._fs, self._root = fs.LocalFileSystem(), str(Path(text).resolve())
            self.directory = Path(text)
        self._where = text  # what messages name: the location as configured

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ModelStore:
        from pdp.config import get_settings

        settings = settings or get_settings()
        return cls(settings.linkage_model_dir or settings.var_dir / "linkage")

    def _path(self, name: str) -> str:
        return f"{self._root.rstrip('/')}/{name}"

    def _exists(self, name: str) -> bool:
        from pyarrow import fs

        return self._fs.get_file_info(self._path(name)).type != fs.FileType.NotFound

    def _write(self, name: str, text: str) -> None:
        tmp = self._path(f".{name}.{os.getpid()}.tmp")
        with self._fs.open_output_stream(tmp) as out:
            out.write(text.encode("utf-8"))
        self._fs.move(tmp, self._path(name))

    def _read_text(self, name: str) -> str:
        with self._fs.open_input_stream(self._path(name)) as stream:
            return stream.read().decode("utf-8")

    def save(
        self, parameters: dict[str, Any], *, trained_on: Literal["vault_sample", "batch"], variants: int,
        m_from: str | None = None,
    ) -> TrainedModel:
        """Write ``parameters`` as a new version and make it current; the model written."""
        now = datetime.now(UTC).replace(microsecond=0)
        digest = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode("utf-8")).hexdigest()[:8]
        try:
            model = TrainedModel(
                format=FORMAT,
                version=f"lm-{now:%Y%m%dT%H%M%SZ}-{digest}",
                trained_at=now,
                trained_on=trained_on,
                variants=variants,
                m_from=m_from,
                probability_two_random_records_match=parameters["probability_two_random_records_match"],
                levels=parameters["levels"],
            )
        except ValidationError as exc:
            raise LinkageModelError(f"trained linkage model does not validate: {_one_line(exc)}") from None
        self._fs.create_dir(self._root, recursive=True)
        if not self._exists(f"{model.version}.json"):
            self._write(f"{model.version}.json", model.model_dump_json(indent=1) + "\n")
        self._write("current", model.version + "\n")
        return model

    def current(self) -> TrainedModel | None:
        """The model in use, or None when none has been trained; :class:`LinkageModelError` when
        the pointer or the file it names is unusable (fail closed: no silent fallback)."""
        if not self._exists("current"):
            return None
        version = self._read_text("current").strip()
        if not _VERSION.match(version):
            raise LinkageModelError(f"linkage model pointer {self._where}/current: not a model version")
        return self.load(f"{version}.json")

    def load(self, name: str) -> TrainedModel:
        """One model file of this store, validated (:class:`LinkageModelError` in one line otherwise)."""
        try:
            data = json.loads(self._read_text(name))
        except FileNotFoundError:
            raise LinkageModelError(f"linkage model {name}: file missing in {self._where}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            line = getattr(exc, "lineno", "?")
            raise LinkageModelError(f"linkage model {name}: not JSON (line {line})") from None
        try:
            model = TrainedModel.model_validate(data)
        except ValidationError as exc:
            hint = "; retrain it (pdp linkage train)" if "no match class" in str(exc) else ""
            raise LinkageModelError(f"linkage model {name}: {_one_line(exc)}{hint}") from None
        if f"{model.version}.json" != name:
            raise LinkageModelError(f"linkage model {name}: its version names another file")
        return model


def current_options(settings: Settings | None = None) -> Any:
    """``LinkageOptions`` with the current trained model, or None when none has been trained."""
    from pdp.pseudonym.linkage import LinkageOptions

    model = ModelStore.from_settings(settings).current()
    if model is None:
        return None
    return LinkageOptions(parameters=model.parameters(), model_version=model.version)


_SAMPLE_PAGE = 20_000  # pseudonyms read per query while drawing a vault sample


def sample_pseudonyms(vault: IdentityVault, sample: int, seed: int, *, page: int = _SAMPLE_PAGE) -> list[str]:
    """Up to `sample` of the vault's pseudonyms, drawn uniformly (reservoir sampling, seeded), sorted;
    the vault walked `page` pseudonyms at a time."""
    import random

    rng, chosen, seen, after = random.Random(seed), [], 0, ""
    while rows := vault.pseudonym_page(after=after, limit=page):
        for pseudonym in rows:
            seen += 1
            if len(chosen) < sample:
                chosen.append(pseudonym)
            elif (slot := rng.randrange(seen)) < sample:
                chosen[slot] = pseudonym
        after = rows[-1]
    return sorted(chosen)


def vault_sample(vault: IdentityVault, sample: int, seed: int) -> list[tuple[CanonicalIdentity, str | None]]:
    """Up to `sample` known persons drawn at random (seeded) from the vault, as training identities.

    Reads the linkage view only (names, sex, birth date and place, NIR: what linkage compares),
    never a sealed record; the identities stay in this process and only m/u leave it. The draw
    walks the vault's pseudonyms a keyset page at a time (reservoir sampling, seeded): memory
    follows `sample`, not the population (68 M pseudonyms would be ~4 GB in one list).
    """
    from pdp.pseudonym.vault import record_canonical

    chosen = sample_pseudonyms(vault, sample, seed)
    items: list[tuple[CanonicalIdentity, str | None]] = []
    for record in vault.linkage_view(chosen).values():
        canonical = record_canonical(record)
        if canonical is not None:
            items.append((canonical, None))
    return items


def train(
    identities: Iterable[tuple[CanonicalIdentity, str | None]],
    options: ModelOptions | None = None,
    *,
    min_variants: int = 1000,
    m_from: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], int]:
    """Train on ``(canonical identity, postcode)`` items as a batch would (distinct variants,
    deterministic groups, then EM): the parameters and the number of distinct variants.
    `m_from`: keep that model's prior and m, train u only (identities holding each person once).

    Raises :class:`LinkageModelError` when there are fewer than ``min_variants`` distinct
    identities (EM needs volume), EM underflows, or it finds no match class (:func:`check_usable`).
    """
    variants = build_variants((str(i), c, p) for i, (c, p) in enumerate(identities))
    if len(variants) < min_variants:
        raise LinkageModelError(
            f"too few distinct identities to train a linkage model ({len(variants)} < {min_variants})"
        )
    uf = UnionFind(variants)
    apply_rules(variants, uf)
    try:
        return train_parameters(variants, uf, options or ModelOptions(), m_from=m_from), len(variants)
    except UnusableModel as exc:
        raise LinkageModelError(f"{exc}: nothing written") from None
    except ValueError:
        raise LinkageModelError("linkage model training underflowed (EM); nothing written") from None
