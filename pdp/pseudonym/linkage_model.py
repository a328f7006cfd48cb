"""Probabilistic linkage of identity variants: a Fellegi-Sunter model in Splink, on in-memory DuckDB.

Internal to :mod:`pdp.pseudonym.linkage`. Given the variants and the deterministic groups,
returns scored pairs of variants that the rules did not already put together.

Why Splink: it is the reference implementation of Fellegi-Sunter linkage (unsupervised EM
training, term-frequency adjustments, SQL blocking), and its DuckDB backend runs in process,
in memory — no service, no file — which is what an edge holding identities needs. Splink 5's
API is used: ``DuckDBAPI.register`` → ``Linker(table, SettingsCreator)`` → ``linker.training``
/ ``linker.inference``.

The model (one comparison per trait, levels in decreasing order of agreement):

=============  ===========================================================================
birth name     birth and used names equal · birth name equal (both with term-frequency
               adjustment: ``MARTIN`` is weaker evidence than ``VANDENBUSSCHE``) ·
               married-name cross (one record's birth name is the other's used name: the
               married name written as the only name) · Damerau-Levenshtein ≤ 1 ·
               Jaro-Winkler ≥ 0.92 · else
first names    same list · one list a prefix of the other (``JEAN`` / ``JEAN MARIE``) ·
               written together (``TRISTANGEORGES`` / ``TRISTAN``, ``JEANCLAUDE``) ·
               same first token, conflicting after it (twins ``MARIE CLAIRE`` /
               ``MARIE FRANCE``) · first token Damerau-Levenshtein ≤ 1 · Jaro-Winkler ≥ 0.9
               on the first token · a first name in common · else
birth date     exact · day/month swapped · two of day, month, year equal · else
sex            exact · else
birthplace     exact · else (null when either side lacks it; a record without one takes the
               birthplace its own NIR encodes)
postcode       exact · else (null when either side lacks it)
own NIR        same body · different (null when either side lacks it)
=============  ===========================================================================

The insured NIR (a parent's or spouse's) is not compared — it is shared by twins and siblings,
so as evidence it would pull them together — it only generates candidate pairs.

Training (no labels: the synthetic ground truth is never used here): ``u`` by random
sampling (2 M pairs, fixed seed); ``m`` by expectation maximisation on two blocking rules
(same birth date, which trains every comparison but the date; same birth name and first
token, which trains the date); the prior from the deterministic NIR and traits matches
(assumed recall 0.9). The trained values are rounded to 9 digits (DuckDB's parallel sums
differ in their last bits from run to run; rounded, the decisions cannot) and ``m`` is
floored at 1e-6 (see :func:`_describe`). Batches too small to train on use
:data:`DEFAULT_PARAMETERS`. Once ``pdp linkage train`` has persisted a model
(:func:`train_parameters` → :mod:`pdp.pseudonym.linkage_trained`), no batch trains: every
ingest scores with the current model and reports its version.

Candidate pairs (blocking) for prediction, every rule restricted to variants of different
deterministic groups that may merge (not two groups with different own NIRs) and whose first
names are related (any first-name level but "else": two records with unrelated first names
are never linked — twins share everything else): same birth date; same birth name and birth
year; same birth name and first token; married-name cross and birth year; first token,
Soundex of the birth name and birth year; same own NIR; insured NIR of one = own NIR of the
other. Measured: ~1 100 candidate pairs for the 20 000-person territory (33 000 variants),
~20 000 for 1.07 M records (164 000 variants).

Two engines, one definition: the comparisons, their levels and the blocking rules are written
once here; the only engine-specific text is the four functions of :data:`_DIALECT_SQL` (as
Splink's dialect classes do). :func:`score_pairs` runs them on DuckDB; :func:`scoring_sql`
renders the same settings, with a given trained model, into Splink's prediction SQL for its
Spark dialect, which :mod:`pdp.pseudonym.linkage_spark` runs (no EM on Spark).

The DuckDB database is in memory and may not spill to disk (``temp_directory=''``): no file
with identities is written. Splink's own logging is held at ERROR while it runs (its messages
carry counts and SQL conditions, never values).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pdp.pseudonym.linkage_rules import UnionFind, Variant

__all__ = ["FEATURES", "ModelOptions", "ScoredPair", "UnusableModel", "check_usable", "features", "prediction_rules",
           "score_pairs", "scoring_sql", "train_parameters"]

_SOUNDEX = str.maketrans("BFPVCGJKQSXZDTLMNR", "111122222222334556")


@lru_cache(maxsize=1 << 16)
def soundex(name: str) -> str:
    """American Soundex of an A-Z name (spaces ignored): ``ROBERT`` → ``R163``."""
    letters = name.replace(" ", "")
    if not letters:
        return ""
    codes = letters.translate(_SOUNDEX)
    out = [letters[0]]
    last = codes[0]
    for ch, code in zip(letters[1:], codes[1:], strict=True):
        if code.isdigit():
            if code != last:
                out.append(code)
            last = code
        elif ch not in "HW":
            last = ""
    return ("".join(out) + "000")[:4]


Dialect = Literal["duckdb", "spark"]

# The functions the custom levels and blocking rules need, per SQL engine: the one place where the
# engines differ (as Splink's dialect classes do). Splink renders its own levels (Damerau-Levenshtein,
# Jaro-Winkler) per dialect itself; on Spark, :mod:`pdp.pseudonym.linkage_spark` registers the two
# functions Spark lacks under Splink's Spark names. ``{a}``/``{b}``: the two sides' columns.
_DIALECT_SQL: dict[str, dict[str, str]] = {
    "duckdb": {
        "starts_with": "starts_with({a}, {b})",
        "shares_token": "list_has_any(str_split({a}, ' '), str_split({b}, ' '))",
        "damerau_levenshtein": "damerau_levenshtein({a}, {b})",
        "jaro_winkler": "jaro_winkler_similarity({a}, {b})",
    },
    "spark": {
        "starts_with": "startswith({a}, {b})",
        "shares_token": "arrays_overlap(split({a}, ' '), split({b}, ' '))",
        "damerau_levenshtein": "damerau_levenshtein({a}, {b})",
        "jaro_winkler": "jaro_winkler({a}, {b})",
    },
}


def _sql(dialect: Dialect, function: str, a: str, b: str) -> str:
    """``function(a, b)`` in ``dialect`` (see :data:`_DIALECT_SQL`)."""
    return _DIALECT_SQL[dialect][function].format(a=a, b=b)


FEATURES = (
    "nir", "insured_nir", "birth_name", "used_name", "first_names", "first_compact", "first_token", "sex",
    "birth_date", "birth_year", "birth_month", "birth_day", "birth_place", "postcode", "name_sdx",
)  # fmt: skip
"""The columns the comparisons and blocking rules read, besides ids (:func:`features`)."""


def features(variant: Variant) -> dict[str, Any]:
    """One variant's comparison columns (:data:`FEATURES`): the one definition both engines use."""
    c = variant.canonical
    tokens = variant.first_name_tokens
    return {
        "nir": variant.own_nir,
        "insured_nir": c.insured_nir[:13] if c.insured_nir else None,
        "birth_name": c.birth_name_compact,
        "used_name": c.used_name.replace(" ", "") if c.used_name else None,
        "first_names": " ".join(tokens),
        "first_compact": "".join(tokens),
        "first_token": c.first_name_first_token,
        "sex": c.sex,
        "birth_date": c.birth_date,
        "birth_year": c.birth_date.year,
        "birth_month": c.birth_date.month,
        "birth_day": c.birth_date.day,
        "birth_place": variant.birth_place,  # the record's, else its own NIR's
        "postcode": variant.postcode,
        "name_sdx": soundex(c.birth_name_compact),
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelOptions:
    """Parameters of the probabilistic stage (recorded in ``LinkResult.parameters``)."""

    candidate_probability: float = 0.5  # pairs below are not returned at all
    u_max_pairs: float = 2e6
    seed: int = 7
    prior_recall: float = 0.9  # assumed recall of the deterministic rules, for the prior
    em_max_iterations: int = 25
    threads: int | None = None  # DuckDB threads (default: DuckDB's, i.e. every core)


@dataclass(frozen=True, slots=True, order=True)
class ScoredPair:
    left: int  # variant index
    right: int
    match_probability: float
    match_weight: float


@contextmanager
def _quiet_splink() -> Iterator[None]:
    splink_logger = logging.getLogger("splink")
    level = splink_logger.level
    splink_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        splink_logger.setLevel(level)


def _table(variants: list[Variant], uf: UnionFind) -> Any:
    import pyarrow as pa

    rows: dict[str, list[Any]] = {name: [] for name in ("unique_id", "cluster_id", "cluster_nir", *FEATURES)}
    for v in variants:
        root = uf.find(v.index)
        rows["unique_id"].append(v.index)
        rows["cluster_id"].append(root)
        rows["cluster_nir"].append(uf.nir[root])
        for name, value in features(v).items():
            rows[name].append(value)
    return pa.table(rows)


def _comparisons(parameters: dict[str, Any] | None = None, dialect: Dialect = "duckdb") -> list[Any]:
    """The comparisons (see the module docstring), configured with ``parameters``' m/u if given;
    the custom levels' SQL written for ``dialect`` (Splink renders its own levels per dialect)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    first_names_prefix = (
        _sql(dialect, "starts_with", "first_names_l || ' '", "first_names_r || ' '")
        + " OR "
        + _sql(dialect, "starts_with", "first_names_r || ' '", "first_names_l || ' '")
    )
    comparisons = [
        cl.CustomComparison(
            output_column_name="birth_name",
            comparison_levels=[
                cll.NullLevel("birth_name"),
                cll.CustomLevel(
                    "birth_name_l = birth_name_r AND used_name_l = used_name_r",
                    label_for_charts="birth and used names equal",
                ).configure(tf_adjustment_column="birth_name", tf_adjustment_weight=1.0),
                cll.ExactMatchLevel("birth_name", term_frequency_adjustments=True),
                cll.CustomLevel(
                    "birth_name_l = used_name_r OR used_name_l = birth_name_r OR used_name_l = used_name_r",
                    label_for_charts="married name cross",
                ),
                cll.DamerauLevenshteinLevel("birth_name", 1),
                cll.JaroWinklerLevel("birth_name", 0.92),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="first_names",
            comparison_levels=[
                cll.NullLevel("first_names"),
                cll.ExactMatchLevel("first_names"),
                cll.CustomLevel(first_names_prefix, label_for_charts="one list a prefix of the other"),
                cll.CustomLevel(
                    _sql(dialect, "starts_with", "first_compact_l", "first_compact_r")
                    + " OR "
                    + _sql(dialect, "starts_with", "first_compact_r", "first_compact_l"),
                    label_for_charts="written together",
                ),
                cll.CustomLevel("first_token_l = first_token_r", label_for_charts="same first token, then conflict"),
                cll.DamerauLevenshteinLevel("first_token", 1),
                cll.JaroWinklerLevel("first_token", 0.9),
                cll.CustomLevel(
                    _sql(dialect, "shares_token", "first_names_l", "first_names_r"),
                    label_for_charts="a first name in common",
                ),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="birth_date",
            comparison_levels=[
                cll.NullLevel("birth_date"),
                cll.ExactMatchLevel("birth_date"),
                cll.CustomLevel(
                    "birth_day_l = birth_month_r AND birth_month_l = birth_day_r AND birth_year_l = birth_year_r",
                    label_for_charts="day/month swapped",
                ),
                cll.CustomLevel(
                    "(CAST(birth_year_l = birth_year_r AS INTEGER) + CAST(birth_month_l = birth_month_r AS INTEGER)"
                    " + CAST(birth_day_l = birth_day_r AS INTEGER)) = 2",
                    label_for_charts="one of day, month, year differs",
                ),
                cll.ElseLevel(),
            ],
        ),
        cl.ExactMatch("sex"),
        cl.ExactMatch("birth_place"),
        cl.ExactMatch("postcode"),
        cl.ExactMatch("nir"),
    ]
    if parameters is not None:
        levels = parameters["levels"]
        for comparison in comparisons:
            trained = levels[comparison.create_output_column_name()]
            if len(trained) != comparison.num_non_null_levels:
                raise ValueError("linkage model parameters do not fit the comparisons (levels differ)")
            comparison.configure(
                m_probabilities=[level["m"] for level in trained], u_probabilities=[level["u"] for level in trained]
            )
    return comparisons


_M_FLOOR = 1e-6
_TRAINING_RULES = (("birth_date",), ("birth_name", "first_token"))


# First names "related": any level of the first-name comparison but its "else". A pair with
# unrelated first names is never a candidate: twins share birth date, surname, insured NIR
# and address and differ by nothing else, and a rare surname's weight could outvote them.
def _first_names_related(dialect: Dialect) -> str:
    return (
        "(l.first_token = r.first_token"
        f" OR {_sql(dialect, 'starts_with', 'l.first_compact', 'r.first_compact')}"
        f" OR {_sql(dialect, 'starts_with', 'r.first_compact', 'l.first_compact')}"
        f" OR {_sql(dialect, 'damerau_levenshtein', 'l.first_token', 'r.first_token')} <= 1"
        f" OR {_sql(dialect, 'jaro_winkler', 'l.first_token', 'r.first_token')} >= 0.9"
        f" OR {_sql(dialect, 'shares_token', 'l.first_names', 'r.first_names')})"
    )


def _may_merge(dialect: Dialect) -> str:
    return (
        " AND l.cluster_id <> r.cluster_id"
        " AND (l.cluster_nir IS NULL OR r.cluster_nir IS NULL OR l.cluster_nir = r.cluster_nir)"
        " AND " + _first_names_related(dialect)
    )


def _prediction_rules(dialect: Dialect = "duckdb") -> list[str]:
    rules = [
        "l.birth_date = r.birth_date",
        "l.birth_name = r.birth_name AND l.birth_year = r.birth_year",
        "l.birth_name = r.birth_name AND l.first_token = r.first_token",
        "l.birth_name = r.used_name AND l.birth_year = r.birth_year",
        "l.used_name = r.birth_name AND l.birth_year = r.birth_year",
        "l.first_token = r.first_token AND l.name_sdx = r.name_sdx AND l.birth_year = r.birth_year",
        "l.nir = r.nir",
        "l.insured_nir = r.nir",
        "l.nir = r.insured_nir",
    ]
    return [rule + _may_merge(dialect) for rule in rules]


def prediction_rules(dialect: Dialect = "duckdb") -> list[str]:
    """The blocking rules used to generate candidate pairs (for the record of parameters; the
    Spark engine joins on the ``spark`` ones)."""
    return _prediction_rules(dialect)


def score_pairs(
    variants: list[Variant],
    uf: UnionFind,
    options: ModelOptions,
    *,
    parameters: dict[str, Any] | None = None,
) -> tuple[list[ScoredPair], dict[str, Any]]:
    """Scored pairs of variants from different, mergeable deterministic groups, and the model.

    Trains the model on ``variants`` unless ``parameters`` (a model description as returned
    here: prior and m/u per level) is given. Returns the pairs with ``match_probability >=
    options.candidate_probability``, sorted, and the model's description: aggregate figures
    only, nothing nominative.
    """
    try:
        import duckdb
        import splink  # noqa: F401
    except ImportError as exc:  # pragma: no cover - both are project dependencies
        raise ImportError("probabilistic linkage needs splink 5 and duckdb: pip install 'splink==5.0.0'") from exc
    config: dict[str, Any] = {"temp_directory": ""}  # in memory only: never spill identities to disk
    if options.threads:
        config["threads"] = options.threads
    con = duckdb.connect(":memory:", config=config)
    try:
        table, parameters = _run_splink(con, _table(variants, uf), options, parameters)
    finally:
        con.close()
        # Splink's objects hold DuckDB handles in reference cycles: collect them now, while the
        # connection's threads exist. Left to a later collection — possibly in a process forked
        # meanwhile (the synthetic generator's workers) — they crash it.
        gc.collect()
    lefts = table.column("unique_id_l").to_pylist()
    rights = table.column("unique_id_r").to_pylist()
    probabilities = table.column("match_probability").to_pylist()
    weights = table.column("match_weight").to_pylist()
    pairs = sorted(
        ScoredPair(min(a, b), max(a, b), p, w) for a, b, p, w in zip(lefts, rights, probabilities, weights, strict=True)
    )
    return pairs, parameters


class UnusableModel(ValueError):
    """EM converged on parameters that cannot link (the message says which check, with no value)."""


# A model must find that the records it calls one person agree on their names and birth date.
# EM on identities that hold few persons twice converges on another class: on a 100 000-identity
# sample of the 1 M-person vault (one merged identity per person) its "matches" were persons
# sharing a birth date and place, 96 % of them disagreeing entirely on the birth name (the
# built-in model: 1 %); scored with it, `pdp bench linkage` merged nothing beyond the rules
# (recall 0.99563 against 0.99778 with the built-in, 297 persons split against 118).
_AGREEMENT_COMPARISONS = ("birth_name", "first_names", "birth_date")
MAX_MATCH_DISAGREEMENT = 0.5


def check_usable(parameters: dict[str, Any]) -> None:
    """Raise :class:`UnusableModel` unless, for names and birth date, at most
    `MAX_MATCH_DISAGREEMENT` of the matches fall in the comparison's last level (all else)."""
    for name in _AGREEMENT_COMPARISONS:
        disagreeing = parameters["levels"][name][-1]["m"]
        if disagreeing > MAX_MATCH_DISAGREEMENT:
            raise UnusableModel(
                f"EM found no match class: {disagreeing:.0%} of the pairs it calls matches disagree entirely "
                f"on {name} (at most {MAX_MATCH_DISAGREEMENT:.0%}); the identities hold too few persons twice"
            )


def train_parameters(variants: list[Variant], uf: UnionFind, options: ModelOptions, *,
                     m_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the model on ``variants`` (EM + random sampling, as a batch would) and return its
    description (prior, m/u per level: no value); raises ValueError when EM underflows or
    :class:`UnusableModel` when it converges on no match class (:func:`check_usable`).

    `m_from`: a model whose prior and ``m`` are kept; only ``u`` is estimated on `variants` (random
    pairs: what chance agreement costs in this population). For identities that hold each person
    once, such as a sample of the vault, where ``m`` cannot be learnt.

    What ``pdp linkage train`` persists (:mod:`pdp.pseudonym.linkage_trained`).
    """
    import duckdb

    config: dict[str, Any] = {"temp_directory": ""}
    if options.threads:
        config["threads"] = options.threads
    con = duckdb.connect(":memory:", config=config)
    try:
        from splink import DuckDBAPI

        with _quiet_splink():
            sdf = DuckDBAPI(con).register(_table(variants, uf), table_name="variants")
            return _train(sdf, options) if m_from is None else _train_u(sdf, options, m_from)
    finally:
        con.close()
        gc.collect()


def _settings(parameters: dict[str, Any] | None, options: ModelOptions, dialect: Dialect = "duckdb") -> Any:
    from splink import SettingsCreator

    return SettingsCreator(
        link_type="dedupe_only",
        comparisons=_comparisons(parameters, dialect),
        blocking_rules_to_generate_predictions=_prediction_rules(dialect),
        probability_two_random_records_match=(
            parameters["probability_two_random_records_match"] if parameters else 0.0001
        ),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
        max_iterations=options.em_max_iterations,
        linker_uid="pdp_linkage",
    )


def _train(sdf: Any, options: ModelOptions) -> dict[str, Any]:
    """Prior, u by random sampling, m by EM; rounded (see the module docstring)."""
    from splink import Linker, block_on

    trainer = Linker(sdf, _settings(None, options), log_level=None)
    trainer.training.estimate_probability_two_random_records_match(
        [block_on("nir", "birth_date"), block_on("birth_name", "first_names", "birth_date", "sex")],
        recall=options.prior_recall,
    )
    trainer.training.estimate_u_using_random_sampling(max_pairs=options.u_max_pairs, seed=options.seed)
    for rule in _TRAINING_RULES:
        trainer.training.estimate_parameters_using_expectation_maximisation(
            block_on(*rule), estimate_without_term_frequencies=True
        )
    # Rounded, so that the last bits of DuckDB's parallel sums cannot change a decision.
    parameters = _describe(trainer.misc.save_model_to_json(), unseen_u=1.0 / options.u_max_pairs)
    check_usable(parameters)
    return parameters


def _train_u(sdf: Any, options: ModelOptions, m_from: dict[str, Any]) -> dict[str, Any]:
    """`m_from`'s prior and m, u by random sampling on `sdf`. A level no sampled pair fell in (a
    trait the identities lack, say the vault's postcode) keeps `m_from`'s u: Splink leaves a u it
    was given and did not observe as it was (an unseen u would make its agreement overwhelming)."""
    from splink import Linker

    trainer = Linker(sdf, _settings(m_from, options), log_level=None)
    trainer.training.estimate_u_using_random_sampling(max_pairs=options.u_max_pairs, seed=options.seed)
    trained = _describe(trainer.misc.save_model_to_json(), unseen_u=1.0 / options.u_max_pairs)
    levels = {name: [{**old, "u": new["u"]} for old, new in zip(kept, trained["levels"][name], strict=True)]
              for name, kept in m_from["levels"].items()}
    return {"probability_two_random_records_match": m_from["probability_two_random_records_match"], "levels": levels}


def _run_splink(
    con: Any, variants_table: Any, options: ModelOptions, parameters: dict[str, Any] | None
) -> tuple[Any, dict[str, Any]]:
    """Train (unless ``parameters``) and predict on one DuckDB connection; the predictions as Arrow."""
    from splink import DuckDBAPI, Linker

    def settings(parameters: dict[str, Any] | None) -> Any:
        return _settings(parameters, options)

    with _quiet_splink():
        db_api = DuckDBAPI(con)
        sdf = db_api.register(variants_table, table_name="variants")
        if parameters is None:
            try:
                parameters = _train(sdf, options)
            except UnusableModel as exc:
                logging.getLogger(__name__).warning("linkage: %s; built-in parameters used", exc)
                parameters = DEFAULT_PARAMETERS
            except ValueError:
                # EM can drive an m probability below 1e-300, which Splink refuses: link with the
                # built-in trained parameters rather than stop the ingest.
                logging.getLogger(__name__).warning("linkage: EM training underflowed; built-in parameters used")
                parameters = DEFAULT_PARAMETERS
        linker = Linker(sdf, settings(parameters), log_level=None)
        predictions = linker.inference.predict(
            threshold_match_probability=options.candidate_probability, warning_mode="never"
        )
        return predictions.as_pyarrow_table(), parameters


@dataclass(frozen=True, slots=True)
class ScoringSql:
    """The model as SQL for another engine, rendered by Splink from the one definition above.

    ``blocking_rules``: join conditions over ``l``/``r`` (the variants table twice);
    ``blocked_columns``: the select list of the blocked pairs (``l.x AS x_l``...);
    ``vectors``: the comparison vector (``gamma_*``) of ``__splink__df_blocked``, a statement;
    ``predict``: ``(output table, SQL)`` steps from ``__splink__df_comparison_vectors`` to
    ``__splink__df_predict`` (match weight and probability, ``>= candidate_probability`` only);
    ``tf_columns``: the columns with term-frequency adjustments (``tf_<column>`` = its share).
    """

    blocking_rules: tuple[str, ...]
    blocked_columns: tuple[str, ...]
    vectors: str
    predict: tuple[tuple[str, str], ...]
    tf_columns: tuple[str, ...]


def _for_engine(sql: str, dialect: Dialect) -> str:
    """A statement of Splink's pipeline as Splink itself runs it on ``dialect`` (its Spark backend
    rewrites each statement with sqlglot into its ``customspark`` dialect: ``float8`` and the like)."""
    if dialect != "spark":
        return sql
    import sqlglot
    from splink.internals.spark.spark_helpers import custom_spark_dialect  # noqa: F401 - registers the dialect

    return sqlglot.transpile(sql, read="spark", write="customspark")[0]


def scoring_sql(parameters: dict[str, Any], options: ModelOptions, dialect: Dialect = "spark") -> ScoringSql:
    """Splink's prediction SQL for ``dialect`` with the given trained ``parameters`` (no EM: a
    model is trained by ``pdp linkage train``, or the built-in one is used). Holds no value: the
    SQL carries column names, level conditions and m/u weights only."""
    from splink.internals.predict import predict_from_comparison_vectors_sqls_using_settings

    settings = _settings(parameters, options, dialect).get_settings(dialect)
    steps = predict_from_comparison_vectors_sqls_using_settings(
        settings, threshold_match_probability=options.candidate_probability
    )
    vectors = f"SELECT {', '.join(settings._columns_to_select_for_comparison_vector_values)} FROM __splink__df_blocked"
    return ScoringSql(
        blocking_rules=tuple(_prediction_rules(dialect)),
        blocked_columns=tuple(settings._columns_to_select_for_blocking),
        vectors=_for_engine(vectors, dialect),
        predict=tuple((step["output_table_name"], _for_engine(step["sql"], dialect)) for step in steps),
        tf_columns=tuple(column.unquote().name for column in settings._term_frequency_columns),
    )


def _round(value: float | None, digits: int = 9) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def _describe(model: dict[str, Any], *, unseen_u: float) -> dict[str, Any]:
    """Prior and m/u per comparison level of a saved Splink model (no values, no SQL), rounded.

    ``m`` is floored at 1e-6 (a level never or almost never seen among matches is strong
    evidence against, ~-20 bits, but not an absolute veto that one data-entry error could
    trigger); a level never seen among the sampled non-matches gets ``u = unseen_u`` (one
    pseudo-observation).
    """
    levels = {}
    for comparison in model["comparisons"]:
        levels[comparison["output_column_name"]] = [
            {
                "level": level.get("label_for_charts", ""),
                "m": _round(max(level.get("m_probability") or 0.0, _M_FLOOR)),
                "u": _round(level.get("u_probability") or unseen_u),
            }
            for level in comparison["comparison_levels"]
            if not level.get("is_null_level")
        ]
    prior = _round(model["probability_two_random_records_match"])
    return {"probability_two_random_records_match": prior, "levels": levels}


# Trained (EM + random sampling, no labels) on a 20 000-person synthetic territory of another
# département and seed (cornouaille, seed 11) than the benchmark's, rounded to 4 digits. Used
# for batches too small to train on (see ``LinkageOptions.min_train_variants``); the prior
# is that of a territory (~35 000 distinct identities), conservative for smaller batches.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "probability_two_random_records_match": 3.585e-05,
    "levels": {
        "birth_name": [
            {"level": "birth and used names equal", "m": 0.05906, "u": 1.006e-06},
            {"level": "Exact match on birth_name", "m": 0.8446, "u": 0.002453},
            {"level": "married name cross", "m": 0.08173, "u": 0.0005938},
            {"level": "Damerau-Levenshtein distance of birth_name <= 1", "m": 0.00479, "u": 0.0009115},
            {"level": "Jaro-Winkler distance of birth_name >= 0.92", "m": 4.482e-05, "u": 0.0002308},
            {"level": "All other comparisons", "m": 0.009761, "u": 0.9958},
        ],
        "first_names": [
            {"level": "Exact match on first_names", "m": 0.5764, "u": 0.002741},
            {"level": "one list a prefix of the other", "m": 0.4064, "u": 0.002691},
            {"level": "written together", "m": 0.008641, "u": 0.001098},
            {"level": "same first token, then conflict", "m": 8.955e-05, "u": 0.001184},
            {"level": "Damerau-Levenshtein distance of first_token <= 1", "m": 0.005836, "u": 0.0005716},
            {"level": "Jaro-Winkler distance of first_token >= 0.9", "m": 1e-06, "u": 0.002367},
            {"level": "a first name in common", "m": 1e-06, "u": 0.006692},
            {"level": "All other comparisons", "m": 0.002659, "u": 0.9827},
        ],
        "birth_date": [
            {"level": "Exact match on birth_date", "m": 0.9986, "u": 6.988e-05},
            {"level": "day/month swapped", "m": 0.001409, "u": 1.357e-05},
            {"level": "one of day, month, year differs", "m": 2.242e-06, "u": 0.003946},
            {"level": "All other comparisons", "m": 1e-06, "u": 0.996},
        ],
        "sex": [
            {"level": "Exact match on sex", "m": 1.0, "u": 0.5566},
            {"level": "All other comparisons", "m": 1e-06, "u": 0.4434},
        ],
        "birth_place": [
            {"level": "Exact match on birth_place", "m": 1.0, "u": 0.138},
            {"level": "All other comparisons", "m": 1e-06, "u": 0.862},
        ],
        "postcode": [
            {"level": "Exact match on postcode", "m": 1.0, "u": 0.1696},
            {"level": "All other comparisons", "m": 1e-06, "u": 0.8304},
        ],
        "nir": [
            {"level": "Exact match on nir", "m": 0.9999, "u": 4.294e-05},
            {"level": "All other comparisons", "m": 7.421e-05, "u": 1.0},
        ],
    },
}
