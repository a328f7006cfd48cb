"""Linkage at the commit of an ingest run: link, re-key, withhold the opposed, relink the rows.

The pipeline's one linkage step (:mod:`pdp.ingest.pipeline`, both modes): the batch's identities
are linked to each other and to the known persons they could join (:func:`link_batch`; known
persons found to be one are re-keyed in the lake, then the vault), the persons who objected are
withheld at the edge (:func:`withhold_opposed`, :func:`split_opposed`: their records become
``OPPOSED`` quarantine rows, counted as quarantined), and the staged bronze rows take their
person's pseudonym (:func:`relink`, the one relinker: a join with the mapping — broadcast from
memory for a small batch, read where it was written for a staged one — on disk-staged or
in-memory rows alike).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pdp.ingest.reasons import REASONS, ReasonCode

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from sqlalchemy import Engine

    from pdp.config import Settings
    from pdp.ingest.edge import Edge, LinkOutcome
    from pdp.ingest.identity_stage import FoldedIdentities
    from pdp.ingest.report import IngestReport
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.vault import IdentityVault

__all__ = ["account_opposed", "kept_rows", "link_batch", "relink", "split_opposed", "withhold_opposed"]


def link_batch(
    spark: SparkSession,
    edge: Edge,
    vault: IdentityVault,
    report: IngestReport,
    *,
    lake_root: str,
    settings: Settings | None = None,
    staged: FoldedIdentities | None = None,
) -> LinkOutcome:
    """Link the batch's identities to each other and to the known persons they could join; when
    known persons turn out to be one, re-key the lake, then the vault.

    `staged`: the batch's identities folded on Spark (:mod:`pdp.ingest.identity_stage`). Their
    blocking keys are hashed on the executors, and the known persons they could join are staged
    sealed beside them a chunk at a time; linked on Spark, neither comes to this process
    (:meth:`Edge.link_boxed`); linked in memory (a batch under ``PDP_LINKAGE_SPARK_MIN_IDENTITIES``),
    both are read into it first."""
    from pdp.pseudonym.linkage_spark import engine_for
    from pdp.pseudonym.linkage_trained import current_options

    options = current_options(settings)  # the trained model, if any: no EM per batch (a bad file stops here)
    if staged is not None:  # the known persons staged sealed beside the batch, a chunk at a time
        n_known = staged.stage_known(vault.known_chunks(staged.blocks(spark, vault.blocking_versions())))
        engine = engine_for(staged.persons() + n_known, settings)
        if engine == "spark":
            outcome = edge.link_boxed(staged.boxed(), staged.boxed_known(), options, spark=spark,
                                      changes=staged.changes_path, seal=staged.opener.seal_owner, settings=settings)
        else:
            from pdp.ingest.edge import EdgeState

            known = staged.known()
            canonicals, postcodes = staged.canonicals()
            edge.absorb(EdgeState(canonicals=canonicals, postcodes=postcodes))
    else:
        known = vault.linkable(edge.canonicals.values()) if edge.canonicals else []
        engine = engine_for(len(edge.canonicals) + len(known), settings)
    if staged is None or engine == "memory":
        outcome = edge.link(known, options, spark=spark if engine == "spark" else None, settings=settings)
    report.link_engine = engine
    report.identities_on_driver = staged is None or engine == "memory"
    report.link_rules = outcome.rule_counts
    report.link_model = outcome.model_version
    report.relinked = outcome.relinked
    if outcome.superseded:
        from pdp.governance.opposition import OppositionRegistry
        from pdp.lake import RunInfo, erase_pseudonyms, load_catalog
        from pdp.pseudonym.rotation import remap_lake

        remap_lake(spark, load_catalog(), outcome.superseded, f"{report.batch_id}-relink", lake_root)
        vault.repseudonymise(outcome.superseded)
        OppositionRegistry(vault.engine).follow(outcome.superseded)
        # the superseded aliases leave the lake's history too: a later erasure of the person, who
        # is known by the new pseudonym only, must not leave the old one behind
        erase_pseudonyms(spark, outcome.superseded, lake_root=lake_root, reason="linkage merged known persons",
                         run=RunInfo(run_id=f"{report.batch_id}-relink-purge", job="ingest",
                                     definitions_version="linkage-purge/1"))
    return outcome


def withhold_opposed(edge: Edge, outcome: LinkOutcome, engine: Engine, store: KeyStore, *,
                     staged: FoldedIdentities | None = None, spark: SparkSession) -> set[str]:
    """The person pseudonyms of this batch whose person objected; their identities leave the edge's
    vault records (never stored). Their records become ``OPPOSED`` quarantine rows (:func:`_split_opposed`).

    A `staged` batch's pseudonyms are streamed from its folded parts; its opposition tokens are
    hashed on `spark`'s executors unless linkage read its canonical identities into the edge."""
    from pdp.governance.opposition import withheld_at_edge

    mapping = outcome.mapping
    if staged is not None:  # every person of the batch, the tokens hashed where the identities are
        tokens = staged.tokens(spark, store.ensure("opposition").version) if not edge.canonicals else None
        finals = (outcome.staged.finals(spark, staged) if outcome.staged is not None
                  else ((p, mapping.get(p, p)) for p in staged.pseudonyms()))
        withheld = withheld_at_edge(engine, store, finals, edge.canonicals, tokens=tokens)
    else:
        batch = set(edge.canonicals) | set(edge.vault_records)
        withheld = withheld_at_edge(engine, store, ((p, mapping.get(p, p)) for p in batch), edge.canonicals)
    if outcome.staged is not None:  # the few withheld looked up, not the mapping brought here
        mapping = outcome.staged.lookup(spark, withheld)
    persons = withheld | {mapping.get(p, p) for p in withheld}
    if persons:
        edge.forget(persons)
    return persons


def split_opposed(rows: DataFrame, persons: set[str], report: IngestReport) -> tuple[DataFrame, DataFrame]:
    """The staged bronze rows to land, and the opposed persons' rows as ``OPPOSED`` quarantine rows
    (merged with the batch's quarantine), counted as quarantined in their files."""
    from pyspark.sql import functions as F

    opposed = F.col("person_pseudonym").isin(sorted(persons))
    dropped = rows.where(opposed).select(
        "batch_id", "source", "file", "record_position", F.lit(ReasonCode.OPPOSED.value).alias("reason_code"),
        F.lit(REASONS[ReasonCode.OPPOSED]).alias("message"), "record_hash",
        F.col("ingested_at").alias("quarantined_at"),
    ).localCheckpoint()
    per_file = {(r["source"], r["file"]): int(r["n"]) for r in dropped.groupBy("source", "file").agg(
        F.count(F.lit(1)).alias("n")).collect()}
    account_opposed(report, per_file)
    return rows.where(~opposed), dropped


def account_opposed(report: IngestReport, per_file: dict[tuple[str, str], int]) -> None:
    """Withheld records count as quarantined (records_in = landed + quarantined still holds)."""
    for file_report in report.files:
        n = per_file.get((file_report.source, file_report.file), 0)
        file_report.landed -= n
        file_report.quarantined += n
    report.by_reason[ReasonCode.OPPOSED.value] += sum(per_file.values())


def relink(spark: SparkSession, rows: DataFrame, mapping: dict[str, str] | DataFrame) -> DataFrame:
    """Bronze rows with each batch pseudonym replaced by its person's (linkage), rule noted: the one
    relinker. `mapping`: in memory (a small batch's: broadcast), or staged beside the batch
    (``record_key``, ``target``: :meth:`~pdp.ingest.identity_stage.StagedChanges.mapping`, joined
    where it is)."""
    from pyspark.sql import functions as F

    if isinstance(mapping, dict):
        if not mapping:
            return rows
        relink = F.broadcast(spark.createDataFrame(sorted(mapping.items()), "old string, new string"))
    else:
        relink = mapping.select(F.col("record_key").alias("old"), F.col("target").alias("new"))
    joined = rows.join(relink, rows.person_pseudonym == relink.old, "left")
    return joined.select(
        *[
            F.coalesce("new", "person_pseudonym").alias(c)
            if c == "person_pseudonym"
            else F.when(F.col("new").isNotNull(), F.concat(F.col("link_rule"), F.lit("+linked")))
            .otherwise(F.col("link_rule"))
            .alias(c)
            if c == "link_rule"
            else F.col(c)
            for c in rows.columns
        ]
    )


def kept_rows(rows: list[dict], mapping: dict[str, str], withheld: set[str]) -> list[dict]:
    """The in-memory bronze rows that land (not withheld), their pseudonyms relinked (as :func:`relink`)."""
    kept = []
    for row in rows:
        person = row["person_pseudonym"]
        person = mapping.get(person, person) if person is not None else None
        if person is None or person not in withheld:
            kept.append(row | {"person_pseudonym": person})
    return kept
